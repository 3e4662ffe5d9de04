"""`convertctl batch` without conversions: the plan (batch file and globs,
validated by the option table), bad input as one line and exit 2 or 5, the
exit-code rule, the pool's sizing, the combined report's rendering, the
GitHub Actions matrix, and the stage cache under concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import convertctl
from convertctl.batch import matrix, plan, summary
from convertctl.batch.outcome import FAILED, NOT_RUN, PASSED, Outcome, exit_code, mode_rows
from convertctl.batch.sizing import UNMEASURED_MB, Sizing
from convertctl.errors import UsageError
from convertctl.store.cache import StageCache
from fakes import torchscript_file


def zoo(tmp_path: Path, text: str, models=("a", "b")) -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    for name in models:
        torchscript_file(tmp_path / "models" / f"{name}.pt")
    path = tmp_path / "zoo.toml"
    path.write_text(text)
    return path


def make(tmp_path, text, flags=None, **kw):
    return plan.make_plan([str(zoo(tmp_path, text, **kw))], flags or {}, tmp_path / "out")


# -- the plan ------------------------------------------------------------------


def test_batch_file_defaults_tables_flags_and_the_models_own_file(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "convertctl.toml").write_text(
        'quant = ["int8"]\ninput_shape = "1,3,8,8"\ncalib = "calib.npz"\n[tolerance.fp16]\ncosine = 0.5\n'
    )
    text = """
[defaults]
quant = ["fp32", "fp16", "int8"]
[defaults.tolerance.fp16]
atol = 0.05
[models.first]
model = "models/a.pt"
[models.second]
model = "models/b.pt"
input_shape = [1, 3, 16, 16]
convert_image = "onnx2tf"
calib = "data/calib"
[models.second.tolerance.fp16]
rtol = 0.2
"""
    p = make(tmp_path, text, {"samples": 4})
    first, second = p.models
    assert [m.name for m in p.models] == ["first", "second"]
    # The batch's values over the model's own file; the file's keys the batch leaves alone still apply.
    assert first.options.quant == ["fp32", "fp16", "int8"] and first.options.input_shape == [(1, 3, 8, 8)]
    assert first.options.tolerance["fp16"] == {"atol": 0.05, "rtol": 0.0, "cosine": 0.5}
    assert first.options.calib == str((tmp_path / "models" / "calib.npz").resolve())  # relative to its file
    assert second.options.input_shape == [(1, 3, 16, 16)] and second.options.converter == "onnx2tf"
    assert second.options.tolerance["fp16"] == {"atol": 0.05, "rtol": 0.2, "cosine": 0.5}
    assert second.options.calib == str((tmp_path / "data" / "calib").resolve())  # relative to the batch file
    assert first.options.samples == second.options.samples == 4  # a flag over everything
    assert first.options.out == str(tmp_path / "out" / "first")
    assert first.config == str(tmp_path / "models" / "convertctl.toml")


def test_globs_name_models_by_their_stem(tmp_path):
    for name in ("x", "y"):
        torchscript_file(tmp_path / f"{name}.pt")
    p = plan.make_plan([str(tmp_path / "*.pt")], {"input_shape": ["1,3,8,8"]}, tmp_path / "out")
    assert [m.name for m in p.models] == ["x", "y"] and p.source == "command line"
    assert all(m.options.input_shape == [(1, 3, 8, 8)] for m in p.models)


@pytest.mark.parametrize(
    "text, said",
    [
        ('[models.a]\nmodel = "models/a.pt"\nquantize = "fp16"\n', "[models.a]: unknown key(s) quantize"),
        ('[defaults]\nspeed = 1\n[models.a]\nmodel = "models/a.pt"\n', "[defaults]: unknown key(s) speed"),
        ('[models.a]\nmodel = "models/a.pt"\nopset = "eleven"\n', "[models.a]: opset"),
        ('[models.a]\nmodel = "models/a.pt"\n[models.b]\nmodel = "models/a.pt"\n', "listed twice"),
        ('[models.a]\nmodel = "models/gone.pt"\n', "no such model file"),
        ("[models.a]\ninput_shape = '1,3'\n", 'no model = "path"'),
        ('[models."a b"]\nmodel = "models/a.pt"\n', "a model's name is its output folder"),
        ('[model.a]\nmodel = "models/a.pt"\n', "unknown table(s) model"),
        ('[models.a]\nmodel = "models/a.pt"\narch = "net:Net"\n', "names code to run"),
        ('[models.a]\nmodel = "models/a.pt"\n[models.a]\nmodel = "models/b.pt"\n', "not valid TOML"),
    ],
)
def test_bad_batch_files_are_one_usage_error_naming_the_file(tmp_path, text, said):
    with pytest.raises(UsageError) as info:
        make(tmp_path, text)
    assert said in info.value.message and "zoo.toml" in info.value.message
    assert "\n" not in info.value.message


def test_a_bad_value_in_a_models_own_file_stops_the_batch_before_anything_runs(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "convertctl.toml").write_text('allow_flex = "no"\n')
    with pytest.raises(UsageError, match=r"model a .*convertctl.toml: allow_flex"):
        make(tmp_path, '[models.a]\nmodel = "models/a.pt"\ninput_shape = "1,3,8,8"\n')


def test_bad_command_lines(tmp_path):
    torchscript_file(tmp_path / "m.pt")
    (tmp_path / "sub").mkdir()
    torchscript_file(tmp_path / "sub" / "m.pt")
    cases = [
        ([str(tmp_path / "nothing*.pt")], "matches no file"),
        ([str(tmp_path / "m.pt"), str(tmp_path / "m.pt")], "listed twice"),
        ([str(tmp_path / "m.pt"), str(tmp_path / "sub" / "m.pt")], "two models named m"),
        ([], "give model files"),
        (["zoo.toml", str(tmp_path / "m.pt")], "a batch file is given alone"),
    ]
    for sources, said in cases:
        with pytest.raises(UsageError, match=said):
            plan.make_plan(sources, {"input_shape": ["1,3,8,8"]}, tmp_path / "out")


def test_cli_bad_input_is_exit_2_with_one_line(tmp_path):
    zoo(tmp_path, '[models.a]\nmodel = "models/a.pt"\nlayers = 3\n')
    proc = convertctl("batch", tmp_path / "zoo.toml", "--out", tmp_path / "out")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown key(s) layers" in lines[0], proc.stderr
    proc = convertctl("batch", str(tmp_path / "none" / "*.pt"), "--input-shape", "1,3,8,8")
    assert proc.returncode == 2 and "matches no file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_an_address_no_ray_cluster_answers_at_is_exit_5_before_anything(tmp_path):
    pytest.importorskip("ray")
    torchscript_file(tmp_path / "m.pt")
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = convertctl(
        "batch", tmp_path / "m.pt", "--input-shape", "1,3,8,8", "--executor", "ray",
        "--address", f"127.0.0.1:{port}", "--out", tmp_path / "out",
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_imports_neither_ray_nor_numpy():
    code = (
        "import sys\nfrom convertctl.cli.app import main\n"
        "for argv in (['convertctl', '--help'], ['convertctl', 'batch', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "print('LOADED', 'ray' in sys.modules, 'numpy' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "--executor" in proc.stdout and "LOADED False False" in proc.stdout, proc.stdout[-2000:]


def test_convertctl_batch_is_callable_however_it_is_reached():
    import convertctl
    import convertctl.batch.plan  # noqa: F401 - the package becomes convertctl.batch

    assert callable(convertctl.batch)
    with pytest.raises(UsageError, match="give model files"):
        convertctl.batch([])


# -- outcomes, the exit code, the report ---------------------------------------------


def outcome(name, state, code, modes=None, **kw) -> Outcome:
    return Outcome(name, f"/m/{name}.pt", f"/out/{name}", state=state, exit_code=code, modes=modes or {}, **kw)


def test_the_exit_code_is_0_only_when_every_file_passed_else_the_most_severe():
    ok = outcome("a", PASSED, 0, {"fp32": {"status": "passed"}})
    assert exit_code([ok], False) == 0
    assert exit_code([ok, outcome("b", FAILED, 4), outcome("c", FAILED, 3)], False) == 3
    assert exit_code([outcome("b", FAILED, 4), outcome("c", FAILED, 5)], False) == 5
    assert exit_code([outcome("b", FAILED, 2), outcome("c", FAILED, 5)], False) == 2
    assert exit_code([ok, outcome("b", FAILED, 4), outcome("c", NOT_RUN, None)], False) == 4
    assert exit_code([ok, outcome("b", FAILED, 4)], True) == 130


def test_mode_rows_read_a_report():
    report = {
        "status": "failed",
        "failure": "int8: no converter made it",
        "modes": ["fp32", "int8"],
        "artifacts": [
            {
                "mode": "fp32",
                "status": "ok",
                "variant": "onnx2tf-tf2.19",
                "size_bytes": 1000,
                "latency": {"configs": [{"xnnpack": True, "threads": 1, "median_ms": 0.5}]},
            }
        ],  # fmt: skip
        "checks": [{"stage": "tflite", "mode": "fp32", "variant": "onnx2tf-tf2.19", "status": "passed"}],
        "ladder": [{"stage": "convert", "variant": "onnx2tf-tf2.19", "modes": {"int8": "quantize failed: boom"}}],
    }
    rows = mode_rows(report)
    # fp32 validated, but the run failed (int8), so no file was placed: not passed.
    assert rows["fp32"]["status"] == "failed" and rows["fp32"]["latency_ms"] == 0.5
    assert rows["int8"] == {"status": "failed", "reason": "int8: no converter made it"}
    report["status"], report["modes"] = "passed", ["fp32"]
    assert mode_rows(report)["fp32"]["status"] == "passed"


def test_the_report_shows_outside_text_as_text(tmp_path):
    evil = "m[bold]x\x1b[31m|`"
    o = outcome(evil, FAILED, 3, {"fp32": {"status": "failed", "reason": "<script>|[red]boom\x07"}}, failure="bad")
    meta = {"source": "zoo.toml", "exit_code": 3, "executor": "local", "workers": 2, "seconds": 1}
    md = summary.markdown([o], meta)
    assert "<script>" not in md and "&lt;script&gt;" in md and "\x1b" not in md and "\x07" not in md
    assert "``" in md  # the name's backtick cannot end its code span
    data = summary.save(tmp_path, [o], meta)
    assert json.loads((tmp_path / "batch-report.json").read_text()) == data
    assert data["models"][0]["name"] == evil  # the data is kept as it was
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(summary.table([o], meta))
    text = console.export_text()
    assert "[bold]" in text and "\\x1b" in text and "\\x07" in text


def test_the_pool_is_sized_by_cores_and_measured_memory():
    s = Sizing(slots=2, budget_mb=3000)
    first = Outcome("a", "", "", family="cnn")
    assert s.may_start("cnn", [])
    assert not s.may_start("cnn", [first])  # the first of a family runs before the others of it
    assert s.may_start("rnn", []) and not s.may_start("rnn", [first])  # 2 x unmeasured > budget
    s.learn("cnn", 600.0)
    assert s.may_start("cnn", [first]) and s.may_start("rnn", [first]) is (600 + UNMEASURED_MB <= 3000)
    assert not s.may_start("cnn", [first, Outcome("b", "", "", family="cnn")])  # no third slot
    s.learn("big", 2900.0)
    assert not s.may_start("big", [first]) and s.may_start("big", [])  # alone it still gets its turn
    s.learn("cnn", 10.0, cached=True)
    assert s.peaks["cnn"] == 600.0  # a cached model ran nothing: it tells nothing


# -- GitHub Actions matrix -----------------------------------------------------------


def test_the_matrix_gives_the_actions_inputs_and_chunks_at_256(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zoo(
        tmp_path,
        """
[defaults]
quant = ["fp32", "fp16"]
runtime = "local"
[models.a]
model = "models/a.pt"
input_shape = "1,3,8,8"
samples = 32
allow_flex = true
mean = [0.5, 0.5, 0.5]
[models.a.max_accuracy_drop]
int8 = 1.5
[models.a.tolerance.fp16]
atol = 0.05
""",
    )
    _, found = plan.entries(["zoo.toml"], {})
    (chunk,) = matrix.matrices(found, "out")
    (row,) = chunk["include"]
    assert row["model"] == "models/a.pt" and row["quant"] == "fp32 fp16" and row["input-shape"] == "1,3,8,8"
    assert row["runtime"] == "local" and row["max-accuracy-drop"] == "int8=1.5"
    assert row["out"] == "out/a" and row["artifact-name"] == "convertctl-a" and row["name"] == "a"
    assert row["args"].split() == ["--atol", "fp16=0.05", "--samples", "32", "--allow-flex", "--mean", "0.5,0.5,0.5"]
    many = [plan.Entry(f"m{i}", Path(f"models/m{i}.pt"), {"input_shape": ["1,3,8,8"]}) for i in range(300)]
    chunks = matrix.matrices(many, "out")
    assert [len(c["include"]) for c in chunks] == [256, 44]
    cosine = [plan.Entry("c", Path("c.pt"), {"tolerance": {"fp16": {"cosine": 0.9}}})]
    with pytest.raises(UsageError, match="tolerance.fp16.cosine has no `run` flag"):
        matrix.matrices(cosine, "out")


# -- the stage cache under concurrent writers -------------------------------------------


def _writer(root: str, key: str, work: str, start, results) -> None:
    start.wait()
    entry = StageCache(Path(root)).put(key, Path(work), {"stage": "convert", "result": {"status": "ok"}})
    results.put(entry is not None and entry["key"] == key)


def test_concurrent_writers_of_one_key_leave_one_whole_entry(tmp_path):
    """Batches share one cache: writers of the same step race to rename their
    entry into place; each gets a whole entry back, readers never see half of one."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "model.tflite").write_bytes(os.urandom(1 << 20))
    (work / "sub" / "result.json").write_text('{"status": "ok"}')
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(8), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(str(tmp_path / "c"), "k" * 64, str(work), start, results))
               for _ in range(8)]  # fmt: skip
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert [results.get(timeout=5) for _ in writers] == [True] * 8
    cache = StageCache(tmp_path / "c")
    hit = cache.restore("k" * 64, tmp_path / "restored")
    assert (
        hit is not None
        and (tmp_path / "restored" / "model.tflite").read_bytes() == (work / "model.tflite").read_bytes()
    )
    assert not list((tmp_path / "c" / "tmp").iterdir())  # no writer's staging folder left behind


def test_an_owner_is_judged_only_in_its_own_pid_namespace():
    """A Ray node or test in a PID namespace of its own shares /proc with the
    reapers outside it: a token from another namespace is never "gone" here."""
    from convertctl.store import procs

    mine = procs.owner_token()
    host, pid, start = mine.split(":")
    assert "#" in host and not procs.owner_gone(mine)
    assert procs.owner_gone(f"{host}:{pid}:{int(start) + 1}")  # this namespace: a reused pid
    assert not procs.owner_gone(f"{host.split('#')[0]}#1:{pid}:{int(start) + 1}")  # another one: left alone


@pytest.mark.acceptance  # the batch makes the local environments ready before its workers start
def test_the_batch_goes_on_past_a_failure_unless_fail_fast(tmp_path):
    """Real workers on files no export can read (each fails in its worker, before any stage):
    every model is tried and reported, the batch exits with their code; --fail-fast starts no more."""
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.pt").write_bytes(b"not a model at all")
    args = ["batch", str(tmp_path / "*.pt"), "--input-shape", "1,3,8,8", "--jobs", "1", "--runtime", "local"]
    proc = convertctl(*args, "--out", tmp_path / "all")
    report = json.loads((tmp_path / "all" / "batch-report.json").read_text())
    assert proc.returncode == report["exit_code"] == 2, proc.stdout[-2000:]
    assert [m["state"] for m in report["models"]] == ["failed"] * 3
    assert all(m["failure"] and "\n" not in m["failure"] for m in report["models"])
    assert "FAILED (exit 2): 0 of 3 model(s) passed" in proc.stdout
    proc = convertctl(*args, "--out", tmp_path / "fast", "--fail-fast")
    report = json.loads((tmp_path / "fast" / "batch-report.json").read_text())
    assert proc.returncode == 2 and [m["state"] for m in report["models"]] == ["failed", "not run", "not run"]


def batch_outcomes() -> tuple[list, dict]:
    """Two passing models, one failing with a hostile name and reason."""
    row = {"status": "passed", "variant": "onnx2tf-tf2.21", "size_bytes": 40960, "latency_ms": 0.4}
    ok = [
        outcome(name, PASSED, 0, {"fp32": dict(row), "int8": dict(row)}, seconds=s, peak_rss_mb=mb)
        for name, s, mb in (("resnet", 31.0, 612.0), ("gru", 12.5, 580.0))
    ]
    evil = "<img src=x onerror=alert(1)>\x1b[2J"
    bad = outcome(
        evil, FAILED, 4, {"fp32": dict(row), "int8": {"status": "failed", "reason": "<script>alert(2)</script>"}},
        failure="int8 outside tolerance", seconds=20.0, peak_rss_mb=640.0,
    )  # fmt: skip
    meta = {"source": "zoo.toml", "exit_code": 4, "executor": "local", "workers": 2, "seconds": 44.0}
    return [*ok, bad], meta


def test_the_batch_page_holds_every_model_and_mode_with_outside_text_as_text(tmp_path):
    from convertctl.batch import page

    outcomes, meta = batch_outcomes()
    page.save(tmp_path, outcomes, meta)
    html_text = (tmp_path / "batch-report.html").read_text()
    assert html_text.count('<tr data-model="') == 3 and html_text.count('class="fail"') == 1
    assert "<img src=x" not in html_text and "<script>alert" not in html_text and "\x1b" not in html_text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html_text and "\\x1b[2J" in html_text
    assert 'href="resnet/report.html"' in html_text and "%3Cimg" in html_text  # the link's name is quoted
    assert 'data-chart="wall"' in html_text and 'data-chart="memory"' in html_text
    assert not re.search(r"<(img|script|link|iframe|object)\b", html_text) and 'href="http' not in html_text
