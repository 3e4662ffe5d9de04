"""Issue 20, "a pass means what it says", point by point against the fake
runtime: every file proves its mode or its rung fails; the cosine check is
the worst sample's; LiteRT's run of a file is what is judged; quantized
files are judged on 64 samples, and on fresh ones after another file of
their mode missed; --labels numbers --eval-data's class folders; a check
that cannot mean what it says (PyTorch's own accuracy near chance, a budget
below one sample's step, files with different I/O layouts) is a WARNING,
and a failure under --strict; an environment that cannot be built says the
installer's last words and its log. Then the two renderings of how each
check was computed and of the step next to every budget."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from convertctl.config.catalog import load_catalog
from convertctl.config.options import SAMPLES, Options
from convertctl.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE, EXIT_VALIDATION, EnvironmentProblem
from convertctl.inputs.data import IMAGENET_MEAN, IMAGENET_STD
from convertctl.report import html
from convertctl.report.render import markdown, print_report, rows
from convertctl.run.pipeline import Pipeline
from fakes import WEIGHTS, FakeRuntime, options, torchscript_file
from rich.console import Console

FLOAT_WEIGHTS = {"CONV_2D": {"float32": 3}, "FULLY_CONNECTED": {"float32": 1}}


@pytest.fixture
def model(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


# The local ladder as this machine runs it: onnx2tf, litert-torch, onnx-tf (a rung whose Python is
# not installed here, onnx2tf 2.x on 3.13, is passed over by the local runtime, not by the fake).
LOCAL = [v.name for v in load_catalog().ladder("local", "convert") if v.python == "3.11"]
FIRST = LOCAL[0]


def run(model, out, runtime=None, modes=("fp32",), **kw):
    runtime = runtime or FakeRuntime()
    runtime.name = "local"
    catalog = load_catalog()
    catalog.ladders["local"]["convert"] = LOCAL
    opts = options(model, out, modes=list(modes), latency_runs=0, **kw)
    return Pipeline(opts, runtime, catalog, lambda _: None).run()


def rung_of(request: dict) -> str:
    """quantize/<rung>/<mode>[...] or convert/<rung>: the rung a step belongs to."""
    parts = request["work"].split("/")
    return parts[1] if len(parts) > 1 else ""


class PerRung(FakeRuntime):
    """Noise on a mode's outputs by rung ({rung: {mode: stddev}}); `fresh`:
    the same, on fresh inputs only (what LiteRT gives on another seed)."""

    def __init__(self, by_rung: dict | None = None, fresh: dict | None = None, **kw):
        super().__init__(**kw)
        self.by_rung, self.fresh = by_rung or {}, fresh or {}

    def quantize(self, work, request, sets, result, run_dir=None):
        self.noise = self.by_rung.get(rung_of(request), {})
        super().quantize(work, request, sets, result, run_dir)

    def judge(self, work, request, sets, result, run_dir=None):
        table = self.fresh if "fresh" in sets else self.by_rung
        self.noise = table.get(rung_of(request), {})
        super().judge(work, request, sets, result, run_dir)


def tflite_checks(report, mode: str) -> list:
    return [c for c in report.checks if c["stage"] == "tflite" and c["mode"] == mode]


def shown(report) -> str:
    buf = io.StringIO()
    print_report(report, Console(file=buf, width=400))
    return buf.getvalue()


# -- every file proves its mode ---------------------------------------------------------------
class FloatDynamic(FakeRuntime):
    """A "dynamic" file that keeps every weight float (TFLiteConverter leaves weights under 1024
    elements float: a small CNN's file held no int8 tensor), made by the quantizers of `rungs`."""

    def __init__(self, rungs: tuple, **kw):
        super().__init__(**kw)
        self.rungs = rungs

    def quantize(self, work, request, sets, result, run_dir=None):
        super().quantize(work, request, sets, result, run_dir)
        if request["mode"] == "dynamic" and rung_of(request).startswith(self.rungs):
            result["artifact"]["tensors"]["weights"] = FLOAT_WEIGHTS


def test_a_float_file_is_never_passed_as_dynamic(model, tmp_path):
    """Every rung's "dynamic" file keeps float weights: the run fails naming the signature, and no
    file lands in --out as dynamic."""
    report = run(model, tmp_path / "out", FloatDynamic(("onnx2tf", "litert", "convert")), modes=["dynamic"])
    assert report.status == "failed" and report.exit_code == EXIT_VALIDATION
    assert "signature: dynamic stores weights as int8, but 0 of 4 weighted ops do" in report.failure
    tried = [e for e in report.ladder if e["stage"] == "convert" and e["status"] != "skipped"]
    assert len(tried) == 3, "every rung was tried"
    assert all(e["modes"]["dynamic"].startswith("tflite:dynamic outside tolerance: signature:") for e in tried)
    assert not (tmp_path / "out" / "net_dynamic.tflite").exists()


def test_a_rung_whose_dynamic_file_is_float_fails_that_mode_and_the_next_rung_makes_it(model, tmp_path):
    report = run(model, tmp_path / "out", FloatDynamic(("onnx2tf",)), modes=["fp32", "dynamic"])
    assert report.status == "passed", report.failure
    first = next(e for e in report.ladder if e["stage"] == "convert")
    assert first["variant"] == FIRST and first["modes"]["fp32"] == "ok"
    assert "signature: dynamic stores weights as int8" in first["modes"]["dynamic"]
    made = {a["mode"]: a["variant"] for a in report.artifacts}
    assert made == {"fp32": FIRST, "dynamic": "litert-torch0.10"}
    assert next(a for a in report.artifacts if a["mode"] == "dynamic")["tensors"]["weights"] != FLOAT_WEIGHTS


# -- the cosine check is the worst sample's ------------------------------------------------------
class OneBadSample(FakeRuntime):
    """int8 outputs exact but for sample 5, turned away from PyTorch's: its own cosine ~0.96, the
    cosine of all 64 samples pooled ~0.999."""

    def _outputs(self, mode, arrays, float_layers=0):
        out = super()._outputs(mode, arrays, float_layers)
        if mode == "int8" and len(out) > 5:
            ref = out[5, 0].astype(np.float64)
            turn = np.random.default_rng(7).standard_normal(ref.shape)
            turn -= (turn @ ref) / (ref @ ref) * ref  # orthogonal to the reference: cosine 1/sqrt(1 + 0.3²)
            out[5, 0] = (ref + 0.3 * np.linalg.norm(ref) * turn / np.linalg.norm(turn)).astype(np.float32)
        return out


def test_one_sample_below_the_cosine_bound_fails_the_file_though_the_pooled_cosine_passes(model, tmp_path):
    report = run(model, tmp_path / "out", OneBadSample(), modes=["int8"])
    checks = tflite_checks(report, "int8")
    assert checks and all(c["status"] == "failed" for c in checks)
    out = checks[0]["outputs"][0]
    assert out["cosine"] < 0.98 <= out["cosine_pooled"], out
    assert out["worst_sample"] == 5 and out["samples"] == SAMPLES
    assert f"output: cosine similarity {out['cosine']:.6f} < 0.98 (sample 5, the worst of 64)" in checks[0]["failures"]
    assert checks[0]["method"]["cosine"].startswith("the worst sample's")
    assert report.exit_code == EXIT_VALIDATION


# -- LiteRT judges every file -------------------------------------------------------------------
class MakerAndLiteRT(FakeRuntime):
    """The interpreter of the environment that made the file and LiteRT disagree: `maker` noise on
    the maker's outputs, `litert` noise on LiteRT's; `unloadable`: LiteRT cannot run it."""

    def __init__(self, maker: dict | None = None, litert: dict | None = None, unloadable: bool = False):
        super().__init__()
        self.maker, self.litert, self.unloadable = maker or {}, litert or {}, unloadable

    def quantize(self, work, request, sets, result, run_dir=None):
        self.noise = self.maker
        super().quantize(work, request, sets, result, run_dir)

    def judge(self, work, request, sets, result, run_dir=None):
        self.noise = self.litert
        super().judge(work, request, sets, result, run_dir)
        if self.unloadable:
            error = "LiteRT fake cannot run the file: Didn't find op for builtin opcode 'CONV_2D' version '6'"
            result["artifact"].update(status="failed", error=error, problems=[error])


def test_the_outputs_judged_are_litert_s_not_the_maker_s(model, tmp_path):
    fake = MakerAndLiteRT(maker={"int8": 3.0})
    report = run(model, tmp_path / "good", fake, modes=["fp32", "int8"])
    assert report.status == "passed", report.failure
    made = [r for r in fake.requests if r["work"].startswith("quantize/") and not r["work"].endswith("/litert")]
    assert made and all(r["judge"] == "litert" for r in made), "the quantize step is told LiteRT judges"
    assert [c for c in fake.calls if c.startswith("judge:")] == ["judge:fp32", "judge:int8"]
    for check in tflite_checks(report, "int8") + tflite_checks(report, "fp32"):
        assert check["method"]["runtime"] == "fake-litert"
    assert {a["judged_by"] for a in report.artifacts} == {"fake-litert"}

    report = run(model, tmp_path / "bad", MakerAndLiteRT(litert={"int8": 3.0}), modes=["int8"])
    assert report.exit_code == EXIT_VALIDATION and "cosine similarity" in report.failure


def test_a_file_litert_cannot_run_fails_whatever_its_maker_said(model, tmp_path):
    report = run(model, tmp_path / "out", MakerAndLiteRT(unloadable=True), modes=["fp16"])
    assert report.status == "failed"
    assert "LiteRT fake cannot run the file" in report.failure


# -- 64 samples, and fresh ones after a miss ------------------------------------------------------
def test_quantized_modes_are_judged_on_64_seeded_samples_by_default(model, tmp_path):
    assert SAMPLES == 64 and Options(model="m.pt", out="o").samples == 64
    report = run(model, tmp_path / "out", modes=["dynamic", "int8"])
    assert report.inputs["samples"] == {"count": 64, "source": "synthetic (seed 0)"}
    for mode in ("dynamic", "int8"):
        check = tflite_checks(report, mode)[0]
        assert check["method"]["samples"] == 64 and check["outputs"][0]["samples"] == 64
        assert check["outputs"][0]["top1_count"] == 64


def test_a_file_that_passes_after_another_of_its_mode_missed_is_also_judged_on_fresh_inputs(model, tmp_path):
    fake = PerRung({FIRST: {"int8": 3.0}})
    report = run(model, tmp_path / "out", fake, modes=["fp32", "int8"])
    assert report.status == "passed", report.failure
    fresh = [c for c in tflite_checks(report, "int8") if c["input_set"] == "fresh"]
    assert len(fresh) == 1 and fresh[0]["variant"] == "litert-torch0.10" and fresh[0]["status"] == "passed"
    assert fresh[0]["note"] == "fresh inputs (seed 2)" and fresh[0]["method"]["samples"] == 64
    # The reference is computed on the fresh inputs, then LiteRT runs the file on them.
    asked = [r for r in fake.requests if "fresh" in r.get("input_sets", {})]
    assert [r["work"].split("/")[0] for r in asked] == ["export", "quantize"], "reference, then LiteRT's run"
    # fp32 passed on its first rung: no fresh inputs for it.
    assert [c["input_set"] for c in tflite_checks(report, "fp32")] == ["samples"]


def test_a_file_that_passes_after_a_miss_but_fails_on_fresh_inputs_fails(model, tmp_path):
    fake = PerRung({FIRST: {"int8": 3.0}}, fresh={"litert-torch0.10": {"int8": 3.0}})
    report = run(model, tmp_path / "out", fake, modes=["int8"])
    second = next(e for e in report.ladder if e["variant"] == "litert-torch0.10")
    assert second["modes"]["int8"].startswith("tflite:int8 outside tolerance: fresh inputs: output: cosine")
    fresh = [c for c in tflite_checks(report, "int8") if c["input_set"] == "fresh"]
    assert fresh[0]["status"] == "failed"
    assert next(a for a in report.artifacts if a["mode"] == "int8")["variant"] == "convert-tf2.15"


# -- --labels and PyTorch's own accuracy near chance -----------------------------------------------
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]  # sorted: not this order


def fake_class(rgb) -> int:
    """The fake model's class for a solid-colour image, prepared as ImagePrep does it."""
    x = (np.asarray(rgb, np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return int(np.argmax(x @ WEIGHTS))


def class_folders(root: Path, per_class: int = 8) -> dict:
    """Solid-colour 8x8 images in folders named for the fake model's classes: {class: count}."""
    from PIL import Image

    counts: dict = {}
    for rgb in np.random.default_rng(0).integers(0, 256, (4000, 3)):
        k = fake_class(rgb)
        if counts.get(k, 0) < per_class:
            counts[k] = counts.get(k, 0) + 1
            folder = root / NAMES[k]
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), tuple(int(v) for v in rgb)).save(folder / f"{counts[k]}.png")
    return counts


def test_labels_number_the_class_folders_in_the_models_order(model, tmp_path):
    counts = class_folders(tmp_path / "val")
    assert len(counts) >= 3, counts
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    given = run(model, tmp_path / "a", eval_data=tmp_path / "val", labels=labels)
    assert given.accuracy["pytorch"] == 100.0 and given.status == "passed", given.failure
    assert not [n for n in given.notices if "near chance" in n]
    # Without it, the folders' sorted names number them: eight, five, four, nine, one...
    by_name = run(model, tmp_path / "b", eval_data=tmp_path / "val")
    sorted_right = sum(n for k, n in counts.items() if sorted(NAMES).index(NAMES[k]) == k)
    assert by_name.accuracy["pytorch"] == pytest.approx(100.0 * sorted_right / sum(counts.values()))
    assert by_name.accuracy["pytorch"] < given.accuracy["pytorch"]
    # Another order in the file is another accuracy: the file is what numbers them.
    labels.write_text("\n".join(reversed(NAMES)) + "\n")
    reversed_ = run(model, tmp_path / "c", eval_data=tmp_path / "val", labels=labels)
    assert reversed_.accuracy["pytorch"] < 100.0


def test_the_classes_are_the_ones_labels_lists_with_or_without_a_folder(model, tmp_path):
    import shutil

    counts = class_folders(tmp_path / "val")
    shutil.rmtree(tmp_path / "val" / NAMES[max(counts)])  # the last class has no images here
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    report = run(model, tmp_path / "a", eval_data=tmp_path / "val", labels=labels)
    assert report.inputs["eval"]["classes"] == len(NAMES)


def test_a_class_folder_missing_from_labels_is_a_usage_error_naming_it(model, tmp_path):
    from convertctl.errors import UsageError

    class_folders(tmp_path / "val")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(n for n in NAMES if n != "six" and n != "two") + "\n")
    present = [n for n in ("six", "two") if (tmp_path / "val" / n).is_dir()]
    assert present
    with pytest.raises(UsageError, match=f"class folder\\(s\\) '{present[0]}'.* are not in --labels"):
        run(model, tmp_path / "out", eval_data=tmp_path / "val", labels=labels)


def eval_npz(path: Path, count: int, shift: int = 0, seed: int = 3) -> Path:
    """count samples labelled by the fake model's own top-1, shifted by `shift` classes."""
    from fakes import model as fake_model

    x = np.random.default_rng(seed).standard_normal((count, 1, 3, 8, 8)).astype(np.float32)
    y = (fake_model(x).reshape(count, -1).argmax(1) + shift) % 10
    np.savez(path, x=x, y=y)
    return path


def test_pytorchs_own_accuracy_near_chance_is_a_warning_and_a_failure_under_strict(model, tmp_path):
    data = eval_npz(tmp_path / "eval.npz", 400, shift=1)  # labels one class off: PyTorch 0 %
    report = run(model, tmp_path / "a", eval_data=data)
    assert report.status == "passed" and report.accuracy["pytorch"] == 0.0
    warning = next(n for n in report.notices if "near chance" in n)
    assert warning.startswith("WARNING: PyTorch's own accuracy on --eval-data is 0.0%, near chance (10.0% for 10")
    assert "--labels FILE" in warning
    # Louder than a note: WARNING in the terminal, a Warning in Markdown, red on the page.
    assert "WARNING PyTorch's own accuracy on --eval-data is 0.0%" in shown(report)
    assert "> **Warning:** PyTorch's own accuracy on --eval-data is 0.0%" in markdown(report)
    assert '<div class="note warn"><span>WARNING</span> PyTorch&#x27;s own accuracy' in html.render(report)
    strict = run(model, tmp_path / "b", eval_data=data, strict=True)
    assert strict.status == "failed" and strict.exit_code == EXIT_USAGE
    assert "near chance" in strict.failure and strict.failure.endswith("(--strict)")
    right = run(model, tmp_path / "c", eval_data=eval_npz(tmp_path / "right.npz", 400), strict=True)
    assert right.status == "passed" and not right.notices


# -- the step next to every budget ---------------------------------------------------------------
def test_a_budget_below_one_samples_step_is_a_warning_and_a_failure_under_strict(model, tmp_path):
    data = eval_npz(tmp_path / "eval.npz", 40)  # one sample is 2.5 points; fp32's budget is 0.5
    report = run(model, tmp_path / "a", eval_data=data)
    assert report.status == "passed"
    assert report.accuracy["step"] == 2.5 and report.accuracy["samples"] == 40
    assert (
        "WARNING: fp32's accuracy budget (0.5 points) is smaller than one sample of --eval-data "
        "(40 samples: 2.5 points each)" in report.notices[0]
    )
    strict = run(model, tmp_path / "b", eval_data=data, strict=True)
    assert strict.exit_code == EXIT_VALIDATION and "(--strict)" in strict.failure
    enough = run(model, tmp_path / "c", eval_data=eval_npz(tmp_path / "more.npz", 400), strict=True)
    assert enough.status == "passed" and enough.accuracy["step"] == 0.25 and not enough.notices


def test_the_step_is_said_next_to_every_budget_in_both_renderings_and_the_page(model, tmp_path):
    report = run(model, tmp_path / "out", eval_data=eval_npz(tmp_path / "eval.npz", 40), modes=["fp32", "dynamic"])
    said = {mode: numbers for stage, mode, _, numbers in rows(report) if stage == "accuracy"}
    assert said["fp32"] == (
        "40 of 40 (drop 0.00 pts, budget 0.5 pts (step 2.5 pts: 1 of 40 samples), BELOW ONE STEP)"
    ), said
    assert said["dynamic"].endswith("budget 1 pt (step 2.5 pts: 1 of 40 samples), BELOW ONE STEP)")
    assert "budget 0.5 pts (step 2.5 pts: 1 of 40 samples)" in markdown(report)
    assert "budget 0.5 pts (step 2.5 pts: 1 of 40 samples)" in shown(report)
    page = html.render(report)
    assert "drop 0.00 pts (budget 0.5, step 2.5, below one step)" in page


# -- one I/O layout per run ----------------------------------------------------------------------
NHWC = [0, 2, 3, 1]


class Layouts(FakeRuntime):
    """Converters that give the layout asked for (request["layout"]) when their catalog entry can,
    else their first; files whose inputs are laid out as the convert step said. Noise by rung."""

    def __init__(self, by_rung: dict):
        super().__init__()
        self.by_rung = by_rung

    def convert(self, work, request, sets, result, run_dir=None):
        super().convert(work, request, sets, result, run_dir)
        can = load_catalog().get(rung_of(request)).layouts
        layout = request.get("layout") if request.get("layout") in can else can[0]
        result["layout"] = {"inputs": {"input": NHWC} if layout == "nhwc" else {}, "outputs": {}}

    def quantize(self, work, request, sets, result, run_dir=None):
        self.noise = self.by_rung.get(rung_of(request), {})
        super().quantize(work, request, sets, result, run_dir)
        if (request.get("layout") or {}).get("inputs", {}).get("input") == NHWC:
            for tensor in result["artifact"]["inputs"]:
                c, h, w = tensor["shape"][1:]
                tensor["shape"] = [tensor["shape"][0], h, w, c]

    def judge(self, work, request, sets, result, run_dir=None):
        self.noise = self.by_rung.get(rung_of(request), {})
        super().judge(work, request, sets, result, run_dir)


def test_a_later_rung_is_asked_for_the_first_files_layout(model, tmp_path):
    fake = Layouts({FIRST: {"int8": 3.0}})
    report = run(model, tmp_path / "out", fake, modes=["fp32", "int8"], strict=True)
    assert report.status == "passed", report.failure
    convert = {rung_of(r): r["layout"] for r in fake.requests if r["work"].startswith("convert/")}
    assert convert == {FIRST: None, "litert-torch0.10": "nhwc"}
    assert {a["mode"]: a["layout"]["inputs"] for a in report.artifacts} == {
        "fp32": {"input": NHWC},
        "int8": {"input": NHWC},
    }
    assert not [n for n in report.notices if n.startswith("WARNING")]


def test_files_with_different_layouts_are_said_per_file_and_fail_under_strict(model, tmp_path):
    noisy = {FIRST: {"int8": 3.0}, "litert-torch0.10": {"int8": 3.0}}  # onnx-tf (NCHW only) makes int8
    report = run(model, tmp_path / "a", Layouts(noisy), modes=["fp32", "int8"])
    assert report.status == "passed", report.failure
    warning = next(n for n in report.notices if "layouts" in n)
    assert warning == (
        f"WARNING: the files have different I/O layouts (fp32: NHWC I/O ({FIRST}), int8: NCHW I/O "
        "(convert-tf2.15)): an app feeds each its own way"
    )
    assert "different I/O layouts" in shown(report) and "different I/O layouts" in markdown(report)
    strict = run(model, tmp_path / "b", Layouts(noisy), modes=["fp32", "int8"], strict=True)
    assert strict.exit_code == EXIT_VALIDATION and "different I/O layouts" in strict.failure


# -- an environment that cannot be built says why -------------------------------------------------
PIP_SAID = "ERROR: Package 'backports-strenum' requires a different Python: 3.11.2 not in '<3.11,>=3.8'"
FAKE_UV = f"""#!/bin/sh
# An installer that makes a venv and then fails to install the lock, as pip did with litert-torch's.
case "$1 $2" in
  "python find") echo "$(command -v python3)"; exit 0 ;;
  "pip install") echo "Resolved 12 packages"; echo "Collecting backports-strenum==1.3.1"; echo "{PIP_SAID}"; exit 1 ;;
esac
exit 0
"""


@pytest.fixture
def build_failure(tmp_path, monkeypatch) -> EnvironmentProblem:
    """What the environment store raises when its installer fails: the real store, a fake uv."""
    from convertctl.config.catalog import Variant
    from convertctl.store import envstore
    from convertctl.store.pipconfig import load_settings

    uv = tmp_path / "uv"
    uv.write_text(FAKE_UV)
    uv.chmod(0o755)
    monkeypatch.setattr(envstore, "find_uv", lambda: str(uv))
    lock = tmp_path / "lock.txt"
    lock.write_text("six==1.16.0 \\\n    --hash=sha256:" + "1" * 64 + "\n")
    variant = Variant(
        name="litert-torch0.10", stage="convert", python="3.11", requirements=str(lock), tag="t", base_image="b"
    )
    with pytest.raises(EnvironmentProblem) as err:
        envstore.EnvStore(tmp_path / "store", load_settings()).ensure(variant)
    return err.value


class NoConvertEnvironment(FakeRuntime):
    """Every convert environment fails to build, as the store says it."""

    def __init__(self, problem: EnvironmentProblem):
        super().__init__()
        self.problem = problem

    def prepare(self, variants, say):
        if any(v.stage == "convert" for v in variants):
            raise self.problem
        return super().prepare(variants, say)


def test_an_environment_that_cannot_be_built_says_the_installers_last_words_and_its_log(model, tmp_path, build_failure):
    log = build_failure.hint.removeprefix("full log: ")
    assert Path(log).is_file() and PIP_SAID in Path(log).read_text()
    report = run(model, tmp_path / "out", NoConvertEnvironment(build_failure))
    assert report.exit_code == EXIT_ENVIRONMENT
    tried = [e for e in report.ladder if e["stage"] == "convert" and e["status"] == "failed"]
    assert tried and all(e["failed_stage"] == "environment" for e in tried)
    for entry in tried:
        assert entry["error"].startswith("could not create the litert-torch0.10 environment (lock ")
        assert PIP_SAID in entry["error"] and f"(full log: {log})" in entry["error"]
    assert PIP_SAID in report.failure and log in report.failure
    terminal = shown(report).replace("\n", "")
    assert PIP_SAID[:60] in terminal and "full log:" in terminal


def test_uv_is_the_one_installer(tmp_path, monkeypatch):
    """Without uv the store says so; it never falls back to pip (pip refused a lock uv installs)."""
    from convertctl.config.catalog import Variant
    from convertctl.store import envstore, procs
    from convertctl.store.pipconfig import load_settings

    ran: list = []
    monkeypatch.setattr(envstore, "find_uv", lambda: None)
    monkeypatch.setattr(envstore.EnvStore, "check_python", lambda self, variant: None)
    monkeypatch.setattr(procs, "start", lambda cmd, **kw: ran.append(cmd) or (_ for _ in ()).throw(OSError("no")))
    lock = tmp_path / "lock.txt"
    lock.write_text("six==1.16.0 \\\n    --hash=sha256:" + "1" * 64 + "\n")
    variant = Variant(name="tiny", stage="export", python="3.11", requirements=str(lock), tag="t", base_image="b")
    with pytest.raises(EnvironmentProblem, match="uv is missing"):
        envstore.EnvStore(tmp_path / "store", load_settings()).ensure(variant)
    assert ran == []


# -- how each check was computed, in both renderings and the page ---------------------------------
def test_each_check_says_how_it_was_computed_in_both_renderings_and_the_page(model, tmp_path):
    report = run(model, tmp_path / "out", modes=["fp16", "int8"])
    fp16 = tflite_checks(report, "fp16")[0]
    assert fp16["method"] == {
        "samples": 64,
        "cosine": "the worst sample's (each sample's outputs flattened)",
        "elements": "99.9% of elements within atol + rtol·max|ref| (max over all samples), none beyond 10x that bound",
        "top1": "samples whose top class agrees, of all samples (class-score outputs)",
        "runtime": "fake-litert",
    }
    said = {(stage, mode): numbers for stage, mode, _, numbers in rows(report)}
    assert said[("tflite vs torch", "fp16")].endswith(
        "; how: 64 samples, cosine of the worst sample, 99.9% of elements within the bound, "
        "none beyond 10x, judged by fake-litert"
    ), said
    assert said[("tflite vs torch", "int8")].endswith(
        "how: 64 samples, cosine of the worst sample, judged by fake-litert"
    )
    text, md, page = shown(report), markdown(report), html.render(report)
    for rendering in (md, page):
        assert "64 samples, cosine of the worst sample" in rendering and "judged by fake-litert" in rendering
    assert "judged by fake-litert" in text.replace("\n", "")
    assert "<dt>checked</dt><dd>64 samples, cosine of the worst sample" in page  # on each file's card


def test_fresh_inputs_checks_have_a_row_of_their_own(model, tmp_path):
    report = run(model, tmp_path / "out", PerRung({FIRST: {"int8": 3.0}}), modes=["int8"])
    labels = [stage for stage, mode, _, _ in rows(report) if mode == "int8"]
    assert "tflite vs torch (fresh inputs (seed 2))" in labels and "tflite vs torch" in labels
    page = html.render(report)
    assert "fresh: 64 samples" in page


def test_a_report_from_before_the_method_renders_without_it(model, tmp_path):
    """report show on an older report.json (no method, no step): the same rows, nothing invented."""
    from convertctl.report.model import load_report

    run(model, tmp_path / "out", eval_data=eval_npz(tmp_path / "eval.npz", 400))
    path = tmp_path / "out" / "report.json"
    data = json.loads(path.read_text())
    for check in data["checks"]:
        check.pop("method", None)
    del data["accuracy"]["step"]
    path.write_text(json.dumps(data))
    old = load_report(path)
    said = {(stage, mode): numbers for stage, mode, _, numbers in rows(old)}
    assert "how:" not in said[("tflite vs torch", "fp32")]
    assert said[("accuracy", "fp32")].endswith("budget 0.5 pts (step 0.25 pts: 1 of 400 samples))")
    assert report_ok(old)


def report_ok(report) -> bool:
    return report.status == "passed" and report.exit_code == EXIT_OK


class ConverterSaysWhy(FakeRuntime):
    """The first rung's converter fails with its own reason_code and op coverage, as onnx2tf 2.x does."""

    def convert(self, work, request, sets, result, run_dir=None):
        if rung_of(request) == FIRST:
            coverage = {"graph_ops": 12, "unsupported_ops": ["Einsum"], "custom_ops": []}
            result.update(
                status="error", error="reason_code=unsupported_onnx_op: Einsum", reason_code="unsupported_onnx_op"
            )
            result["op_coverage"] = coverage
            return
        super().convert(work, request, sets, result, run_dir)


def test_a_converters_reason_code_and_op_coverage_are_in_the_ladder(model, tmp_path):
    report = run(model, tmp_path / "out", ConverterSaysWhy())
    assert report.status == "passed", report.failure
    first = next(e for e in report.ladder if e["stage"] == "convert")
    assert first["variant"] == FIRST and first["status"] == "failed"
    assert first["reason_code"] == "unsupported_onnx_op" and first["op_coverage"]["unsupported_ops"] == ["Einsum"]
    assert "reason_code=unsupported_onnx_op" in first["error"]
