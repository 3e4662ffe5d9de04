"""convertctl.convert() against the fake runtime (the one fake, put in at
the runtime seam as the CLI tests do): options from the one table with the
CLI's rules and messages naming the keyword, inputs in each form, the
Result against the files on disk, raise_for_status, the displays, and an
`import convertctl` that stays light."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import convertctl
import numpy as np
import pytest
from convertctl.errors import EXIT_VALIDATION, ConversionError, EnvironmentProblem, UsageError, ValidationFailed
from convertctl.report.model import load_report
from convertctl.store.digests import sha256_file
from fakes import FakeRuntime, torchscript_file
from rich.console import Console

ALL = ["fp32", "dynamic", "int8", "fp16"]


@pytest.fixture
def fake(monkeypatch):
    from convertctl import runtimes

    made: list = []

    def select(name, settings, say, build=None):
        runtime = made[0] if made else FakeRuntime()
        runtime.name = "local" if name == "auto" else name  # whose ladders to use
        made.append(runtime)
        return runtime

    monkeypatch.setattr(runtimes, "select_runtime", select)
    return made


@pytest.fixture
def model(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


def test_convert_returns_a_result_that_matches_the_files(fake, model, tmp_path):
    lines: list = []
    result = convertctl.convert(
        model, inputs=[(1, 3, 8, 8)], quant=ALL, out=tmp_path / "out", runtime="local", latency_runs=0, say=lines.append
    )
    assert isinstance(result, convertctl.Result)
    assert result.ok and result.status == "passed" and result.exit_code == 0 and result.failure == ""
    assert result.raise_for_status() is result
    assert list(result.files) == ALL and any(line.startswith("export:") for line in lines)
    saved = load_report(tmp_path / "out" / "report.json")
    assert result.report.to_dict() == saved.to_dict() and result.report_path == tmp_path / "out" / "report.json"
    for mode, f in result.files.items():
        assert f.passed and Path(f.path) == tmp_path / "out" / f"net_{mode}.tflite"
        assert f.sha256 == sha256_file(Path(f.path)) == saved.manifest["outputs"][f"net_{mode}.tflite"]
        assert f.variant == next(a["variant"] for a in saved.artifacts if a["mode"] == mode)
        assert [c["stage"] for c in f.checks] == ["tflite"] and f.agreement is not None
    assert result["int8"].layer_errors["layers"], "int8's per-layer errors"
    assert [r.stage for r in result.ladder][:1] == ["export"] and result.ladder[-1].status == "used"
    assert saved.manifest["options"]["quant"] == ALL


def test_options_are_the_tables_with_the_clis_rules_named_by_keyword(fake, model, tmp_path):
    base = {"inputs": [(1, 3, 8, 8)], "out": tmp_path / "out"}
    with pytest.raises(UsageError, match=r"convertctl.convert\(\): unknown option 'quantize'"):
        convertctl.convert(model, quantize=["fp16"], **base)
    with pytest.raises(UsageError) as bad:
        convertctl.convert(model, allow_flex="no", **base)
    assert bad.value.message.startswith('convertctl.convert(): allow_flex = "no": expected true or false')
    with pytest.raises(UsageError, match="unknown mode"):
        convertctl.convert(model, quant=["int4"], **base)
    with pytest.raises(UsageError, match="give inputs="):
        convertctl.convert(model, input_shape=["1,3,8,8"], out=tmp_path / "out")
    with pytest.raises(UsageError, match="calibration is for --quant int8"):  # the run's own checks, as the CLI's
        convertctl.convert(model, calib=str(tmp_path), **base)
    assert not (tmp_path / "out").exists(), "refused before any work"
    assert fake == [], "no runtime was even made"


def test_a_number_for_a_per_mode_option_means_every_mode_and_aliases_fold(fake, model, tmp_path):
    result = convertctl.convert(
        model, inputs="1,3,8,8", quant="fp16", out=tmp_path / "out", atol=0.5, convert_image="onnx-tf", latency_runs=0
    )
    opts = result.report.manifest["options"]
    assert opts["tolerance"]["fp16"] == {"atol": 0.5, "rtol": 0.0}
    assert opts["converter"] == "onnx-tf" and result.files["fp16"].family == "onnx-tf"


def test_example_arrays_give_shapes_and_dtypes(fake, model, tmp_path):
    image = np.zeros((1, 3, 8, 8), np.float32)
    result = convertctl.convert(model, inputs=[image], out=tmp_path / "a", latency_runs=0)
    assert result.report.model["inputs"] == [
        {"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32", "range": "standard normal"}
    ]
    with pytest.raises(UsageError, match="dtype float64"):
        convertctl.convert(model, inputs=[np.zeros((1, 3), np.float64)], out=tmp_path / "b")
    with pytest.raises(UsageError, match="name every input or none"):
        convertctl.convert(model, inputs=["x:1,3,8,8", (1, 4)], out=tmp_path / "b")
    with pytest.raises(UsageError, match=r"inputs\[0\] is a dict"):
        convertctl.convert(model, inputs=[{"x": 1}], out=tmp_path / "b")


def test_a_failed_check_raises_validation_failed_carrying_the_report(fake, model, tmp_path):
    fake.append(FakeRuntime(noise={"fp16": 0.5}))
    result = convertctl.convert(model, inputs=[(1, 3, 8, 8)], quant=["fp32", "fp16"], out=tmp_path / "out")
    assert not result.ok and result.exit_code == EXIT_VALIDATION
    assert result.files["fp32"].passed and not result.files["fp16"].passed
    assert "outside tolerance" in result.files["fp16"].problem
    assert result.run_dir is not None and result.report_path == result.run_dir / "report.json"
    with pytest.raises(ValidationFailed) as raised:
        result.raise_for_status()
    assert raised.value.report is result.report and raised.value.exit_code == EXIT_VALIDATION
    assert raised.value.message == result.failure and str(result.run_dir) in raised.value.hint
    assert "fp16=failed" in repr(result)


def test_displays_show_hostile_names_as_text(fake, tmp_path):
    folder = tmp_path / "[" / "]" / "<script>alert(1)<"
    folder.mkdir(parents=True)
    model = torchscript_file(folder / "net[bold red]\x1b[2J.pt")
    result = convertctl.convert(model, inputs=[(1, 3, 8, 8)], out=tmp_path / "out", latency_runs=0)
    html = result._repr_html_()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;" in html and "\x1b" not in html
    assert 'data-mode="fp32"' in html
    buffer = io.StringIO()
    Console(file=buffer, width=300, force_terminal=True).print(result)
    said = buffer.getvalue()
    flat = "".join(said.split())  # the title wraps at the table's width
    assert "[/]" in flat and "net[boldred]\\x1b[2J.pt" in flat and "\x1b[2J" not in said


def test_import_convertctl_is_light_and_names_load_on_use():
    code = (
        "import sys, convertctl\n"
        "heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'rich', 'typer') "
        "or m in ('convertctl.api.run', 'convertctl.report.html', 'convertctl.report.svg'))\n"
        "print(heavy())\n"
        "convertctl.convert, convertctl.Result, convertctl.ValidationFailed\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'rich')))\n"
        "print('convert' in dir(convertctl))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["[]", "[]", "True"], proc.stdout
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        convertctl.nope  # noqa: B018


def test_help_imports_neither_the_html_report_nor_numpy():
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('loaded:', sorted(m for m in sys.modules if m.split('.')[0] == 'numpy' "
        "or m in ('convertctl.report.html', 'convertctl.report.svg', 'convertctl.api.run'))))\n"
        "sys.argv = ['convertctl', '--help']\nfrom convertctl.cli.app import main\nmain()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "loaded: []" in proc.stdout, proc.stdout[-500:]


class _NoEnvironment(FakeRuntime):
    """A runtime whose environments cannot be made (an installer that fails)."""

    def prepare(self, variants, say):
        from convertctl.errors import EnvironmentProblem

        raise EnvironmentProblem("could not create the fake environment", hint="installer said: no space")


@pytest.mark.parametrize(
    "case, runtime, extra, family",
    [
        ("usage", FakeRuntime, {"atol": -1.0}, UsageError),
        ("conversion", lambda: FakeRuntime(crash="convert"), {}, ConversionError),
        ("validation", lambda: FakeRuntime(noise={"fp16": 0.5}), {}, ValidationFailed),
        ("environment", _NoEnvironment, {}, EnvironmentProblem),
    ],
)
def test_the_api_raises_the_family_the_cli_maps_to_the_same_exit_code(
    fake, model, tmp_path, case, runtime, extra, family
):
    from convertctl.cli.app import app
    from typer.testing import CliRunner

    flags = ["--input-shape", "1,3,8,8", "-q", "fp16", "--latency-runs", "0"]
    flags += [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    fake.append(runtime())
    cli = CliRunner().invoke(app, ["run", str(model), *flags, "--out", str(tmp_path / "cli")])
    assert cli.exit_code == family.exit_code not in (0, 1), (case, cli.output)
    fake.clear()
    fake.append(runtime())
    with pytest.raises(family) as raised:
        result = convertctl.convert(
            model, inputs=[(1, 3, 8, 8)], quant="fp16", out=tmp_path / "api", latency_runs=0, **extra
        )
        result.raise_for_status()  # a run that ended: its report carries the failure
    assert raised.value.exit_code == cli.exit_code
