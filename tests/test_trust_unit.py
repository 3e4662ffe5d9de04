"""Trust at the boundaries (issue: nothing from a file runs, nothing outside
its place is touched): pickles inside every archive, code named by files,
links a stage leaves in its run directory, names from cache entries and
registries. The pipeline runs with the fake runtime (the one seam), whose
stages here behave as hostile code inside a stage would."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
from conftest import convertctl
from convertctl.config.catalog import load_catalog
from convertctl.errors import UsageError
from convertctl.inputs.modelfile import read_model
from convertctl.run.pipeline import Pipeline
from convertctl.store import rundir, runs, safefs
from convertctl.store.cache import StageCache
from fakes import FakeRuntime, options, torchscript_file


class Payload:
    """What a hostile pickle holds: unpickling it would run a command."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/convertctl-pwned",))


EVIL = pickle.dumps(Payload(), protocol=2)
TENSOR_PKL = b"\x80\x02}q\x00."  # an empty dict: data


def torch_save_bytes(pkl: bytes) -> bytes:
    """A torch.save zip (what a .pt2 keeps its sample inputs in)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def pt2(path: Path, members: dict) -> Path:
    """An ExportedProgram archive in torch 2.13's layout, with extra members."""
    base = {
        "m/archive_format": "pt2",
        "m/models/model.json": json.dumps({"graph_module": {"graph": {}, "signature": {}}}),
        "m/data/weights/weight_0": b"\x00" * 16,  # raw tensor bytes: never unpickled
        "m/data/sample_inputs/model.pt": torch_save_bytes(TENSOR_PKL),
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**base, **members}.items():
            z.writestr(name, data)
    return path


# -- pickles inside archives -------------------------------------------------------


def test_a_clean_exported_program_is_read(tmp_path):
    assert read_model(pt2(tmp_path / "m.pt2", {})).format == "exported-program"


@pytest.mark.parametrize(
    "member,data,named",
    [
        ("m/data/sample_inputs/model.pt", torch_save_bytes(EVIL), "m/data/sample_inputs/model.pt!/archive/data.pkl"),
        ("m/data/constants/tensor_0", torch_save_bytes(EVIL), "m/data/constants/tensor_0!/archive/data.pkl"),
        ("m/data/constants/opaque_obj_0", EVIL, "m/data/constants/opaque_obj_0"),
        ("m/data/weights/weight_1", EVIL, "m/data/weights/weight_1"),
        ("m/extra.pkl", EVIL, "m/extra.pkl"),
    ],
)
def test_every_pickle_in_an_exported_program_passes_the_allowlist(tmp_path, member, data, named):
    path = pt2(tmp_path / "m.pt2", {member: data})
    with pytest.raises(UsageError) as err:
        read_model(path)
    assert f"member {named} would import posix.system" in err.value.message
    assert str(path) in err.value.message


def test_a_torchscript_archive_may_name_its_own_classes_but_nothing_else(tmp_path):
    path = torchscript_file(tmp_path / "ok.pt")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("net/data.pkl", pickle.dumps(0, protocol=2).replace(b"K\x00", b"c__torch__\nNet\n)R", 1))
    assert read_model(path).format == "torchscript"
    bad = torchscript_file(tmp_path / "bad.pt")
    with zipfile.ZipFile(bad, "a") as z:
        z.writestr("net/constants.pkl", EVIL)
    with pytest.raises(UsageError, match=r"member net/constants.pkl would import posix.system"):
        read_model(bad)


def test_a_pkl_member_that_is_no_pickle_is_refused_by_name(tmp_path):
    path = torchscript_file(tmp_path / "m.pt")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("net/data.pkl", b"garbage")
    with pytest.raises(UsageError, match=r"member net/data.pkl of the archive is not a readable pickle"):
        read_model(path)


# -- code named by a file ------------------------------------------------------------


@pytest.mark.parametrize(
    "line,key",
    [('arch = "os:system"', "arch"), ('code = "/tmp"', "code"), ("arch_kwargs = {command = 'id'}", "arch_kwargs")],
)
def test_a_settings_file_that_names_code_is_refused(tmp_path, line, key):
    from convertctl.config import settings

    (tmp_path / "convertctl.toml").write_text(line + "\n")
    with pytest.raises(UsageError) as err:
        settings.load(tmp_path / "m.pt", None, {})
    assert err.value.message.startswith(f"{tmp_path / 'convertctl.toml'}: {key} names code to run")
    assert "--trust-config" in err.value.message
    merged, _ = settings.load(tmp_path / "m.pt", None, {}, trust_config=True)
    assert getattr(merged, key) not in (None, {})


def test_verify_refuses_a_report_that_names_code(tmp_path):
    from convertctl.run.verify import named_code

    report = tmp_path / "report.json"
    with pytest.raises(UsageError, match=r"names code to run \(arch = 'os:system'\).*--trust-config"):
        named_code(report, {"arch": "os:system"}, False, print)
    said: list = []
    named_code(report, {"arch": "os:system"}, True, said.append)
    assert said and "os:system" in said[0]
    named_code(report, {"arch": None, "trust_model": False}, False, print)  # nothing named: fine


# -- links and names a stage leaves ------------------------------------------------------


class Planting(FakeRuntime):
    """Its export stage plants links to a victim outside the run directory
    where the host will later write or read."""

    def __init__(self, plant: dict, **kw):
        super().__init__(**kw)
        self.plant = plant  # name in the run directory -> link target

    def export(self, work, request, sets, result, run_dir=None):
        super().export(work, request, sets, result, run_dir)
        for name, target in self.plant.items():
            link = run_dir / name
            if not os.path.lexists(link):
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)


@pytest.fixture
def victim(tmp_path):
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "secret").write_text("do not touch")
    return folder


def run(model, out, fake, **kw):
    opts = options(model=model, shapes=[(1, 3, 8, 8)], modes=["fp16"], out=out, converter="onnx-tf", **kw)
    fake.name = "local"
    return Pipeline(opts, fake, load_catalog(), lambda _: None).run()


def untouched(victim: Path) -> bool:
    return sorted(p.name for p in victim.iterdir()) == ["secret"] and (victim / "secret").read_text() == "do not touch"


@pytest.mark.parametrize(
    "name",
    ["report.md", "report.json", ".report.md.tmp", "convert/convert-tf2.15/request.json", "convert", "quantize"],
)
def test_the_host_never_writes_through_a_link_a_stage_left(tmp_path, victim, name):
    model = torchscript_file(tmp_path / "net.pt")
    target = victim / "secret" if "." in Path(name).name else victim
    report = run(model, tmp_path / "out", Planting({name: target}))
    assert report.status == "failed" and report.exit_code == 3
    assert "symbolic link" in report.failure
    assert untouched(victim)
    assert not (tmp_path / "out" / "net_fp16.tflite").exists()


def test_a_file_a_stage_names_outside_the_run_directory_is_never_read_or_placed(tmp_path, victim):
    class Pointing(FakeRuntime):
        def quantize(self, work, request, sets, result, run_dir=None):
            super().quantize(work, request, sets, result, run_dir)
            result["artifact"]["file"] = str(victim / "secret")

    model = torchscript_file(tmp_path / "net.pt")
    report = run(model, tmp_path / "out", Pointing())
    assert report.status == "failed"
    assert not any("do not touch" in p.read_text(errors="replace") for p in (tmp_path / "out").glob("*.tflite"))
    assert untouched(victim)


def test_a_cache_entry_cannot_restore_outside_the_step_folder(tmp_path, victim):
    cache = StageCache(tmp_path / "cache")
    work = tmp_path / "work"
    (work).mkdir()
    (work / "a.txt").write_text("a")
    entry = cache.put("k" * 64, work, {"result": {"status": "ok"}, "seconds": 1.0})
    assert entry is not None
    stored = cache.entry_dir("k" * 64) / "entry.json"
    data = json.loads(stored.read_text())
    data["files"] = {"../../victim/secret": data["files"]["a.txt"]}
    stored.write_text(json.dumps(data))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert cache.restore("k" * 64, "step", root=run_dir) is None
    assert untouched(victim)


def test_a_cache_put_stores_no_link(tmp_path, victim):
    work = tmp_path / "work"
    work.mkdir()
    (work / "leak").symlink_to(victim / "secret")
    assert StageCache(tmp_path / "cache").put("k" * 64, work, {"result": {}}) is None


def test_runs_prune_deletes_only_run_directories_convertctl_made(tmp_path, monkeypatch, victim):
    monkeypatch.setenv("CONVERTCTL_CACHE_DIR", str(tmp_path / "cache"))
    runs.registry().mkdir(parents=True)
    (runs.registry() / "evil.json").write_text(json.dumps({"path": str(victim), "created": 0, "token": "x"}))
    fake_run = tmp_path / "out" / ".convertctl" / "runs" / "20200101-000000-1"
    fake_run.mkdir(parents=True)  # where runs go, but without convertctl's marker
    assert runs.prune(0.0, (str(tmp_path / "out"),)) == []
    assert untouched(victim) and fake_run.is_dir()
    real = rundir.create_run_dir(tmp_path / "out2")
    rundir.release(real)
    os.utime(real, (0, 0))
    runs.remember(real)
    assert [r["path"] for r in runs.prune(0.0)] == [str(real)] and not real.exists()


def test_safefs_refuses_names_that_leave_their_folder(tmp_path):
    for name in ("../x", "/etc/passwd", "a/../../b", "", "a\0b", 5):
        with pytest.raises(safefs.Unsafe):
            safefs.rel(name)
    assert safefs.rel("a/b.npz") == "a/b.npz"


def test_a_fifo_in_the_run_directory_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(safefs.Unsafe, match="not a regular file"):
        with safefs.open_read(tmp_path, "fifo"):
            pass
    with pytest.raises(safefs.Unsafe):
        with safefs.open_write(tmp_path, "fifo"):
            pass


# -- the output folder -------------------------------------------------------------------


def test_an_empty_out_is_refused_and_writes_nothing(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = convertctl("run", model, "--input-shape", "1,3,8,8", "--out", "", "--runtime", "local", cwd=cwd)
    assert proc.returncode == 2 and "--out ''" in proc.stderr
    assert list(cwd.iterdir()) == []


def test_a_folder_where_report_json_goes_leaves_out_as_it_was(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    out = tmp_path / "out"
    (out / "report.json").mkdir(parents=True)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(UsageError, match="report.json is a folder"):
        run(model, out, FakeRuntime())
    after = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if ".convertctl" not in p.parts)
    assert after == before
