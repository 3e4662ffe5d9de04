"""The stage cache, the manifest, the output folder as a set, verify and the
failed-runs registry, against the fake runtime (tests/fakes.py): which
steps run, which are reused, what lands where, without real stages."""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest
from convertctl.config.catalog import load_catalog
from convertctl.errors import UsageError
from convertctl.report.model import SCHEMA_FILE
from convertctl.report.render import markdown, rows
from convertctl.run.pipeline import Pipeline
from convertctl.store.cache import StageCache, cache_root, parse_age
from convertctl.store.digests import sha256_file
from fakes import FakeRuntime, options, torchscript_file

ALL = ["fp32", "dynamic", "int8", "fp16"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The cache on, in a folder of this test's own."""
    monkeypatch.delenv("CONVERTCTL_NO_CACHE", raising=False)
    monkeypatch.setenv("CONVERTCTL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def model(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


def run(model, out, fake=None, **kw):
    kw.setdefault("converter", "onnx-tf")  # steps with an ONNX file and a SavedModel to cache
    kw.setdefault("latency_runs", 0)  # no measure step (test_latency_is_replayed_... is about it)
    opts = options(model=model, shapes=[(1, 3, 8, 8)], modes=kw.pop("modes", ["fp16"]), out=out, **kw)
    fake = fake or FakeRuntime()
    fake.name = "local"  # whose ladders to use
    return Pipeline(opts, fake, load_catalog(), lambda _: None).run(), fake


def entries(cache: Path) -> list:
    return StageCache(cache).entries()


def test_manifest_records_tool_options_environments_requests_and_hashes(model, tmp_path):
    report, _ = run(model, tmp_path / "out", modes=["fp16", "int8"])
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    m = data["manifest"]
    assert m["tool"]["name"] == "convertctl" and m["tool"]["version"] == data["convertctl_version"]
    assert m["options"]["quant"] == ["fp16", "int8"] and m["options"]["model"] == str(model.resolve())
    assert m["inputs"]["model"]["sha256"] == sha256_file(model)
    assert set(m["inputs"]["arrays"]) == {"inputs/samples.npz", "inputs/calibration.npz"}
    assert [s["work"] for s in m["stages"]] == [
        "export/export-torch2.13",
        "convert/convert-tf2.15",
        "quantize/convert-tf2.15/fp16",
        "quantize/convert-tf2.15/fp16/litert",
        "quantize/convert-tf2.15/int8",
        "quantize/convert-tf2.15/int8/litert",
    ]
    for name, env in m["environments"].items():
        assert env["runtime"] == "fake" and env["variant"] == name
        assert env["pip_freeze"] == [f"fake-{load_catalog().get(name).stage}==1"]
    export, convert, fp16 = m["stages"][:3]
    # Every file a request names is there as its sha256; the model's volatile absolute path is not.
    assert export["request"]["model"] == {"sha256": sha256_file(model)}
    assert export["request"]["input_sets"]["samples"]["path"] == "inputs/samples.npz"
    assert convert["request"]["onnx"]["sha256"] == export["outputs"]["model.onnx"]
    assert fp16["request"]["mode"] == "fp16" and len(fp16["request"]["saved_model"]["sha256"]) == 64
    assert set(convert["outputs"]) == {
        "outputs_samples.npz",
        "saved_model/saved_model.pb",
        "saved_model/variables/variables.index",
    }
    assert all(len(s["key"]) == 64 and s["cached"] is False for s in m["stages"])
    for art in data["artifacts"]:
        assert m["outputs"][Path(art["path"]).name] == art["sha256"] == sha256_file(Path(art["path"]))
    assert fp16["outputs"]["model.tflite"] == m["outputs"]["net_fp16.tflite"]


def test_a_rerun_reuses_every_step_and_says_so(model, tmp_path, own_cache):
    first, _ = run(model, tmp_path / "a", modes=ALL)
    # export, convert, 4 quantize modes and LiteRT's run of each file, and nothing else
    assert len(entries(own_cache)) == 10
    again, fake = run(model, tmp_path / "b", modes=ALL)
    assert fake.calls == [], "every step was cached"
    assert again.status == "passed"
    assert all(st["cached"] and st["status"] == "ok" for st in again.stages)
    assert [st["saved_seconds"] for st in again.stages] == [st["seconds"] for st in first.stages]
    assert [a["sha256"] for a in again.artifacts] == [a["sha256"] for a in first.artifacts]
    assert [c["outputs"] for c in again.checks] == [c["outputs"] for c in first.checks], "validation ran the same"
    table = rows(again)
    assert any("cached, saved" in numbers for stage, _, _, numbers in table if stage == "convert rung")
    assert ("stage cache", "", True) == next(r for r in table if r[0] == "stage cache")[:3]
    assert "10 of 10 steps reused" in markdown(again)
    assert all(s["cached"] for s in again.manifest["stages"])
    assert again.manifest["environments"] == first.manifest["environments"], "taken from the entries"


def test_latency_is_replayed_for_the_same_files_and_measured_afresh_without_the_cache(model, tmp_path, own_cache):
    first, _ = run(model, tmp_path / "a", modes=ALL, latency_runs=3)
    timed = [e for e in entries(own_cache) if e["stage"] == "measure" and e["work"].startswith("measure/")]
    assert len(timed) == len(ALL), "one per file"
    again, fake = run(model, tmp_path / "b", modes=ALL, latency_runs=3)
    assert fake.calls == [], "same files, same environment, same settings: the timing is reused"
    replayed = [{k: v for k, v in a["latency"].items() if k != "cached"} for a in again.artifacts]
    assert replayed == [a["latency"] for a in first.artifacts]
    # A replayed timing is not this run's: it says so, with the date it was taken.
    assert all(a["latency"]["cached"] for a in again.artifacts) and not any(
        "cached" in a["latency"] for a in first.artifacts
    )
    when = first.artifacts[0]["latency"]["measured_at"]
    assert f"cached timing from {when}" in markdown(again) and "cached timing" not in markdown(first)
    assert any(f"cached timing from {when}" in numbers for stage, _, _, numbers in rows(again) if stage == "latency")
    timings = [s for s in again.manifest["stages"] if s["script"] == "measure/measure.py"]
    assert not timings, "nothing verify could reproduce"
    _, fake = run(model, tmp_path / "c", modes=ALL, latency_runs=3, no_cache=True)
    assert fake.calls[-1] == "measure"


def test_an_added_mode_times_only_its_own_file(model, tmp_path):
    first, _ = run(model, tmp_path / "out", modes=["fp16"], latency_runs=3)
    report, fake = run(model, tmp_path / "out", modes=["fp16", "int8"], latency_runs=3)
    assert fake.calls == ["quantize:int8", "judge:int8", "measure"]
    assert [f["name"] for f in fake.requests[-1]["files"]] == ["int8"], "fp16's timing is replayed"
    by_mode = {a["mode"]: a for a in report.artifacts}
    assert by_mode["fp16"]["latency"] == {**first.artifacts[0]["latency"], "cached": True}
    assert by_mode["int8"]["latency"]["configs"], "int8 measured"


def test_the_model_moved_elsewhere_is_still_the_same_model(model, tmp_path):
    run(model, tmp_path / "a")
    moved = tmp_path / "elsewhere" / "net.pt"
    moved.parent.mkdir()
    shutil.copyfile(model, moved)
    _, fake = run(moved, tmp_path / "b")
    assert fake.calls == []


def test_an_added_mode_runs_only_its_quantize_step(model, tmp_path):
    run(model, tmp_path / "out", modes=["fp16"])
    report, fake = run(model, tmp_path / "out", modes=["fp16", "int8"])
    assert fake.calls == ["quantize:int8", "judge:int8"]
    assert [(st["mode"], st["cached"]) for st in report.stages if st["stage"] == "quantize"] == [
        ("fp16", True),
        ("int8", False),
    ]
    notes = [n for stage, _, _, n in rows(report) if stage == "convert rung"]
    assert "cached: convert, fp16" in notes[0]


def test_a_changed_parameter_reruns_only_what_depends_on_it(model, tmp_path):
    run(model, tmp_path / "out", modes=["fp16"])
    _, fake = run(model, tmp_path / "out", modes=["fp16"], latency_runs=3)
    assert fake.calls == ["measure"], "latency settings go to the measure step only"
    _, fake = run(model, tmp_path / "out", modes=["fp16"], seed=7)
    assert fake.calls == ["export", "convert", "quantize:fp16", "judge:fp16"], "other sample inputs: everything again"


def test_another_environment_or_model_misses(model, tmp_path):
    run(model, tmp_path / "out")
    fake = FakeRuntime()
    fake.env_version = "2"
    _, fake = run(model, tmp_path / "out", fake)
    assert fake.calls == ["export", "convert", "quantize:fp16", "judge:fp16"]
    with zipfile.ZipFile(model, "a") as z:
        z.writestr("net/extra", "different bytes")
    _, fake = run(model, tmp_path / "out")
    assert fake.calls == ["export", "convert", "quantize:fp16", "judge:fp16"]


def test_changed_stage_code_reruns_that_stage_and_what_follows_it(model, tmp_path, monkeypatch):
    from convertctl.run import manifest

    run(model, tmp_path / "out")
    real = manifest.code_hash
    monkeypatch.setattr(manifest, "code_hash", lambda step: real(step) + ("x" if step.stage == "convert" else ""))
    _, fake = run(model, tmp_path / "out")
    # A new convert step writes the same SavedModel bytes here, so quantize is still a hit.
    assert fake.calls == ["convert"]


def test_no_cache_runs_everything_and_stores_nothing(model, tmp_path, own_cache, monkeypatch):
    run(model, tmp_path / "out", no_cache=True)
    assert entries(own_cache) == []
    run(model, tmp_path / "out")
    monkeypatch.setenv("CONVERTCTL_NO_CACHE", "1")
    report, fake = run(model, tmp_path / "out")
    assert fake.calls == ["export", "convert", "quantize:fp16", "judge:fp16"]
    assert not any(st["cached"] for st in report.stages)


def test_a_failed_step_is_not_cached(model, tmp_path, own_cache):
    report, _ = run(model, tmp_path / "out", FakeRuntime(crash="convert"))
    assert report.status == "failed"
    assert [e["stage"] for e in entries(own_cache)] == ["export"]


def _entry_of(cache: Path, work: str) -> Path:
    return next(p for p in (cache / "stages").iterdir() if json.loads((p / "entry.json").read_text())["work"] == work)


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: (e / "files" / "model.tflite").write_bytes(b"TFL3 flipped bits"),  # same size or not: a miss
        lambda e: (e / "files" / "model.tflite").unlink(),  # partial
        lambda e: (e / "entry.json").write_text('{"format": 1, "key": '),  # half-written description
        lambda e: (e / "entry.json").unlink(),  # a writer killed before its marker
    ],
    ids=["changed-file", "missing-file", "truncated-entry", "no-entry-json"],
)
def test_a_corrupt_entry_is_a_miss_and_is_rebuilt(model, tmp_path, own_cache, damage):
    first, _ = run(model, tmp_path / "a")
    entry = _entry_of(own_cache, "quantize/convert-tf2.15/fp16")
    damage(entry)
    report, fake = run(model, tmp_path / "b")
    assert report.status == "passed"
    assert fake.calls == ["quantize:fp16"], "only the damaged step runs again"
    assert report.artifacts[0]["sha256"] == first.artifacts[0]["sha256"]
    _, fake = run(model, tmp_path / "c")
    assert fake.calls == [], "the rebuilt entry is whole again"


def test_an_entry_file_changed_in_place_with_its_mtime_set_back_is_still_a_miss(model, tmp_path, own_cache):
    first, _ = run(model, tmp_path / "a")
    stored = _entry_of(own_cache, "quantize/convert-tf2.15/fp16") / "files" / "model.tflite"
    before = stored.stat()
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0x01  # same size
    time.sleep(0.01)
    stored.write_bytes(bytes(data))
    os.utime(stored, ns=(before.st_atime_ns, before.st_mtime_ns))
    report, fake = run(model, tmp_path / "b")
    assert fake.calls == ["quantize:fp16"], "the ctime changed: the file was read and did not match"
    assert report.artifacts[0]["sha256"] == first.artifacts[0]["sha256"]


def test_the_users_model_is_hashed_once_per_version(model, tmp_path, own_cache, monkeypatch):
    import convertctl.store.digests

    hashed = []
    real = convertctl.store.digests.sha256_file
    monkeypatch.setattr(convertctl.store.digests, "sha256_file", lambda p: hashed.append(Path(p)) or real(p))
    run(model, tmp_path / "a")
    assert model in hashed
    hashed.clear()
    _, fake = run(model, tmp_path / "b")
    assert model not in hashed and fake.calls == [], "unchanged since the last run: its hash is remembered"
    before = model.stat()
    time.sleep(0.01)
    model.write_bytes(model.read_bytes())  # same bytes, a new write: read again, same hash, still a hit
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    _, fake = run(model, tmp_path / "c")
    assert model in hashed and fake.calls == []
    hashed.clear()
    run(model, tmp_path / "d", no_cache=True)
    assert model in hashed, "--no-cache trusts nothing remembered"
    (own_cache / "files.json").write_text("{not json")
    _, fake = run(model, tmp_path / "e")
    assert fake.calls == [], "a damaged state only costs reading the file again"


def test_a_rerun_neither_makes_inputs_nor_compares_again(model, tmp_path, own_cache, monkeypatch):
    import convertctl.checks.validate
    import convertctl.inputs.inputspec

    first, _ = run(model, tmp_path / "a", modes=["fp16", "int8"])

    def refuse(*_a, **_k):
        raise AssertionError("computed again")

    monkeypatch.setattr(convertctl.inputs.inputspec, "synthetic", refuse)
    monkeypatch.setattr(convertctl.checks.validate, "compare", refuse)
    again, fake = run(model, tmp_path / "b", modes=["fp16", "int8"])
    assert fake.calls == [] and again.status == "passed"
    assert again.checks == first.checks, "the same comparisons, from the cache"
    assert again.manifest["inputs"]["arrays"] == first.manifest["inputs"]["arrays"], "the same input bytes"
    # Another tolerance is another comparison; no cache, nothing remembered.
    with pytest.raises(AssertionError, match="computed again"):
        run(model, tmp_path / "c", modes=["fp16"], tolerances={"fp16": {"atol": 0.5}})
    with pytest.raises(AssertionError, match="computed again"):
        run(model, tmp_path / "d", modes=["fp16"], no_cache=True)


def test_a_damaged_kept_input_file_is_made_again(model, tmp_path, own_cache):
    first, _ = run(model, tmp_path / "a")
    kept = next((own_cache / "memo" / "inputs").glob("*.npz"))
    kept.write_bytes(b"PK damaged")
    again, fake = run(model, tmp_path / "b")
    assert fake.calls == [] and again.manifest["inputs"]["arrays"] == first.manifest["inputs"]["arrays"]
    assert kept.read_bytes() != b"PK damaged", "kept again, whole"


def test_prune_removes_what_the_host_kept_too(model, tmp_path, own_cache):
    from convertctl.cli.app import app
    from typer.testing import CliRunner

    run(model, tmp_path / "a")
    assert list((own_cache / "memo").glob("*/*.json"))
    listed = CliRunner().invoke(app, ["cache", "list"])
    assert "host results" in listed.output
    pruned = CliRunner().invoke(app, ["cache", "prune", "--all"])
    assert pruned.exit_code == 0, pruned.output
    assert not list((own_cache / "memo").glob("*/*"))


def test_an_entry_appears_whole_or_not_at_all(model, tmp_path, own_cache):
    cache = StageCache(own_cache)
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "request.json").write_text("{}")
    (work / "result.json").write_text('{"status": "ok"}')
    (work / "sub" / "a.bin").write_bytes(b"x" * 1000)
    entry = cache.put("k" * 64, work, {"result": {"status": "ok"}, "seconds": 3.0, "stage": "export"})
    assert set(entry["files"]) == {"result.json", "sub/a.bin"}, "the request is written afresh by each run"
    assert not any((own_cache / "tmp").iterdir()), "no staging leftovers"
    dest = tmp_path / "restored"
    hit = cache.restore("k" * 64, dest)
    assert hit is not None and (dest / "sub" / "a.bin").read_bytes() == b"x" * 1000
    assert cache.restore("0" * 64, tmp_path / "nothing") is None


def test_cache_list_and_prune_by_age(model, tmp_path, own_cache):
    from convertctl.cli.app import app
    from typer.testing import CliRunner

    run(model, tmp_path / "out", modes=["fp16", "int8"])
    listed = CliRunner().invoke(app, ["cache", "list"])
    assert listed.exit_code == 0 and "6 entries" in listed.stdout and "quantize" in listed.stdout
    old = _entry_of(own_cache, "export/export-torch2.13") / "entry.json"
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    pruned = CliRunner().invoke(app, ["cache", "prune", "--older-than", "30d"])
    assert pruned.exit_code == 0 and "removed 1 entries" in pruned.stdout
    assert [e["stage"] for e in entries(own_cache)].count("export") == 0 and len(entries(own_cache)) == 5
    assert CliRunner().invoke(app, ["cache", "prune", "--all"]).exit_code == 0
    assert entries(own_cache) == []
    assert parse_age("12h") == 43200 and parse_age("90") == 90
    with pytest.raises(UsageError):
        parse_age("soon")


def test_cache_root_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVERTCTL_CACHE_DIR", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x"
    monkeypatch.delenv("CONVERTCTL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CONVERTCTL_HOME", raising=False)
    assert cache_root() == tmp_path / "xdg" / "convertctl" / "cache"


# -- the output folder ---------------------------------------------------------------
def test_a_new_run_moves_an_earlier_runs_files_aside_and_lists_them(model, tmp_path):
    out = tmp_path / "out"
    run(model, out, modes=["fp32", "dynamic", "int8"])
    (out / "notes.txt").write_text("the user's own file")
    earlier = json.loads((out / "report.json").read_text())
    earlier_html = (out / "report.html").read_text()
    report, _ = run(model, out, modes=["fp16"])
    assert report.status == "passed"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "net_fp16.tflite",
        "notes.txt",
        "report.html",
        "report.json",
        "report.md",
    ]
    assert [s["name"] for s in report.stale] == [
        "net_dynamic.tflite",
        "net_fp32.tflite",
        "net_int8.layer_errors.json",  # int8's Model Explorer overlay goes with its file
        "net_int8.tflite",
    ]
    aside = Path(report.stale[0]["moved_to"]).parent
    assert aside.parent == out / ".convertctl" / "previous"
    assert sorted(p.name for p in aside.iterdir()) == sorted(
        [s["name"] for s in report.stale] + ["report.html", "report.json", "report.md"]
    )
    assert json.loads((aside / "report.json").read_text()) == earlier, "the earlier report went with its files"
    assert (aside / "report.html").read_text() == earlier_html, "its page too"
    assert sha256_file(aside / "net_int8.tflite") == earlier["manifest"]["outputs"]["net_int8.tflite"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["stale"] == report.stale and set(saved["manifest"]["outputs"]) == {"net_fp16.tflite"}
    assert "moved aside" in markdown(report) and "net_int8.tflite" in markdown(report)


def test_files_another_models_report_named_are_moved_too(model, tmp_path):
    out = tmp_path / "out"
    other = tmp_path / "other.pt"
    shutil.copyfile(model, other)
    run(other, out)
    report, _ = run(model, out)
    assert [s["name"] for s in report.stale] == ["other_fp16.tflite"]
    assert not (out / "other_fp16.tflite").exists()


def test_a_failed_run_leaves_out_alone_and_is_remembered(model, tmp_path):
    from convertctl.store import runs

    out = tmp_path / "out"
    run(model, out, modes=["fp32"])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    report, _ = run(model, out, FakeRuntime(crash="quantize:fp16"), modes=["fp16"])
    assert report.status == "failed"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert [r["path"] for r in runs.failed_runs()] == [report.run_dir]


def test_keep_intermediates_puts_the_onnx_and_savedmodel_in_out(model, tmp_path):
    out = tmp_path / "out"
    report, _ = run(model, out, keep_intermediates=True)
    assert (out / "net.onnx").read_bytes().startswith(b"ONNX")
    assert (out / "net_saved_model" / "saved_model.pb").is_file()
    assert set(report.manifest["outputs"]) == {"net_fp16.tflite", "net.onnx", "net_saved_model"}
    again, _ = run(model, out, keep_intermediates=True)  # a folder replaces a folder
    assert (out / "net_saved_model" / "variables" / "variables.index").is_file() and not again.stale
    third, _ = run(model, out)  # without the flag: the intermediates are an earlier run's now
    assert sorted(s["name"] for s in third.stale) == ["net.onnx", "net_saved_model"]
    assert not (out / "net.onnx").exists()


# -- failed runs ----------------------------------------------------------------------
def test_runs_prune_removes_old_failed_runs_and_envs_list_counts_them(model, tmp_path, monkeypatch):
    from convertctl.cli.app import app
    from typer.testing import CliRunner

    monkeypatch.setenv("CONVERTCTL_HOME", str(tmp_path / "home"))  # no venvs to measure

    old, _ = run(model, tmp_path / "a", FakeRuntime(crash="convert"))
    new, _ = run(model, tmp_path / "b", FakeRuntime(crash="convert"))
    kept, _ = run(model, tmp_path / "c", keep_run=True)
    kept_dir = next((tmp_path / "c" / ".convertctl" / "runs").iterdir())
    past = time.time() - 10 * 86400
    os.utime(old.run_dir, (past, past))
    listed = CliRunner().invoke(app, ["envs", "list"])
    assert "failed run directories: 2" in listed.stdout
    pruned = CliRunner().invoke(app, ["runs", "prune", "--older-than", "7d", "--out", str(tmp_path / "c")])
    assert pruned.exit_code == 0 and "removed 1 failed run" in pruned.stdout
    assert not Path(old.run_dir).exists() and not (tmp_path / "a" / ".convertctl").exists()
    assert Path(new.run_dir).is_dir() and kept_dir.is_dir(), "recent failures and passed --keep-run dirs stay"
    assert "failed run directories: 1" in CliRunner().invoke(app, ["envs", "list"]).stdout


# -- verify -----------------------------------------------------------------------------
def _verify(report_json: Path, fake=None):
    from convertctl.run.verify import verify

    fake = fake or FakeRuntime()

    def runtime_for(name):
        fake.name = name
        return fake

    return verify(report_json, runtime_for, lambda _: None), fake


def test_verify_passes_on_an_untouched_run_without_the_cache(model, tmp_path):
    out = tmp_path / "out"
    run(model, out, modes=["fp32", "int8"])
    verdict, fake = _verify(out / "report.json")
    assert verdict.ok, [f.problem() for f in verdict.files]
    assert fake.calls == ["export", "convert", "quantize:fp32", "judge:fp32", "quantize:int8", "judge:int8"], (
        "re-run with no cache"
    )
    assert [f.name for f in verdict.files] == ["net_fp32.tflite", "net_int8.tflite"]


def test_verify_names_the_file_changed_by_hand(model, tmp_path):
    out = tmp_path / "out"
    run(model, out, modes=["fp32", "int8"])
    (out / "net_int8.tflite").write_bytes(b"edited by hand")
    verdict, _ = _verify(out / "report.json")
    assert not verdict.ok
    bad = [f for f in verdict.files if not f.ok]
    assert [f.name for f in bad] == ["net_int8.tflite"] and "changed since the run" in bad[0].problem()


def test_verify_names_bytes_the_rerun_makes_differently(model, tmp_path):
    out = tmp_path / "out"
    run(model, out, modes=["fp32"])
    fake = FakeRuntime()
    original = fake.quantize

    def drifting(work, request, sets, result, run_dir=None):  # a converter that embeds something volatile
        original(work, request, sets, result, run_dir)
        with open(work / "model.tflite", "ab") as f:
            f.write(str(time.time_ns()).encode())

    fake.quantize = drifting
    verdict, _ = _verify(out / "report.json", fake)
    assert not verdict.ok and verdict.files[0].problem() == "the re-run made different bytes"


def test_verify_refuses_a_changed_model_and_a_report_without_manifest(model, tmp_path):
    from convertctl.run.verify import recorded

    out = tmp_path / "out"
    run(model, out)
    with zipfile.ZipFile(model, "a") as z:
        z.writestr("net/extra", "retrained")
    verdict, fake = _verify(out / "report.json")
    assert not verdict.ok and "model" in verdict.inputs[0] and fake.calls == []
    data = json.loads((out / "report.json").read_text())
    data["manifest"] = {}
    (out / "old.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="nothing to verify"):
        recorded(out / "old.json")


def test_verify_cli_exit_codes(model, tmp_path, monkeypatch):
    from convertctl import runtimes
    from convertctl.cli.app import app
    from typer.testing import CliRunner

    out = tmp_path / "out"
    run(model, out)

    def fake_runtime(name, settings, say, build=None):
        fake = FakeRuntime()
        fake.name = name
        return fake

    monkeypatch.setattr(runtimes, "select_runtime", fake_runtime)
    ok = CliRunner().invoke(app, ["verify", str(out / "report.json")])
    assert ok.exit_code == 0 and "VERIFIED" in ok.stdout
    (out / "net_fp16.tflite").write_bytes(b"x")
    bad = CliRunner().invoke(app, ["verify", str(out / "report.json")])
    assert bad.exit_code == 4 and "NOT VERIFIED: net_fp16.tflite" in bad.stdout
