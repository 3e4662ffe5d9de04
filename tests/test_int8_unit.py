"""int8 quality without real stages: the elementwise tolerance and "k of n",
calibration preprocessing and its warnings, the quantize step's selective
request/result contract (against the fake runtime), the int8 contract's
float-op allowance, the latency cap."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from convertctl.checks.validate import Tolerance, compare, share
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_CONVERSION, EXIT_OK, EXIT_VALIDATION, UsageError
from convertctl.inputs.data import ImagePrep, calibration_notes, spread_files
from convertctl.report.model import SCHEMA_FILE
from convertctl.report.render import markdown, rows
from convertctl.run import selective
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file
from fakes import model as fake_model
from test_stage_code_unit import io, load


# -- elementwise tolerance, counts --------------------------------------------
def outputs(n=8, size=1000, seed=0):
    return {"out": np.random.default_rng(seed).standard_normal((n, 1, size)).astype(np.float32)}


def test_one_unlucky_element_among_many_passes_where_one_bound_failed_it():
    """FCN-ResNet50's fp32 file failed on one element (3.2e-4 against
    2.7e-4 at cosine 0.99999999): judged per element, it passes."""
    ref = outputs()
    got = {"out": ref["out"] + 1e-6}
    tol = Tolerance(atol=1e-4, rtol=1e-4, cosine=0.9999)
    got["out"][3, 0, 17] += 1.2 * (1e-4 + 1e-4 * float(np.abs(ref["out"]).max()))  # 1.2x the bound, as FCN's
    check = compare("tflite", "fp32", "samples", ref, got, tol)
    assert check.status == "passed", check.failures
    m = check.outputs[0]
    assert m["within"] == pytest.approx(1 - 1 / 8000) and m["worst"] > 1


def test_elements_outside_their_bound_beyond_the_quantile_fail_and_say_how_many():
    ref = outputs()
    got = {"out": ref["out"].copy()}
    got["out"][:, 0, :20] += 1e-3  # 160 of 8000 elements, 2 %, each within 10x its bound
    check = compare("tflite", "fp32", "samples", ref, got, Tolerance(atol=1e-4, rtol=1e-4))
    assert check.failures == [check.failures[0]] and check.failures[0].startswith(
        "out: 160 of 8000 elements outside atol 0.0001 + rtol 0.0001"
    )


def test_no_element_may_miss_by_more_than_the_cap():
    ref = outputs()
    got = {"out": ref["out"].copy()}
    got["out"][0, 0, 0] += 1.0  # one element, far out
    check = compare("tflite", "fp32", "samples", ref, got, Tolerance(atol=1e-4, rtol=1e-4))
    assert (
        len(check.failures) == 1
        and "x the tolerance at its element" in check.failures[0]
        and "at most 10x" in check.failures[0]
    )


def test_small_sample_shares_are_said_as_counts():
    assert share(7, 8) == "7 of 8"
    assert share(63, 64) == "98.4% (63 of 64)"
    ref = {"out": np.eye(8, dtype=np.float32)[:, None]}
    got = {"out": ref["out"][[0, 1, 2, 3, 4, 5, 6, 0]]}
    check = compare("tflite", "int8", "samples", ref, got, Tolerance(top1=1.0))
    assert check.failures == ["out: top-1 agreement 7 of 8 < 100% of 8"]


# -- calibration preprocessing -------------------------------------------------
def test_center_crop_takes_the_middle_after_scaling_the_shorter_side(tmp_path):
    from PIL import Image

    img = np.zeros((100, 200, 3), dtype=np.uint8)
    img[:, 75:125] = 255  # a white band in the middle; black on both sides
    Image.fromarray(img).save(tmp_path / "wide.png")
    stretch = ImagePrep((1, 3, 32, 32), (0.0,), (1.0,), "stretch")(tmp_path / "wide.png")
    crop = ImagePrep((1, 3, 32, 32), (0.0,), (1.0,), "shorter-side+center-crop")(tmp_path / "wide.png")
    assert stretch.shape == crop.shape == (1, 3, 32, 32)
    # Shorter side 100 -> 32/0.875 = 36.6, so the crop shows 32 of the 73 scaled columns: the band fills
    # 21 of the 32 (the stretch squeezes it into a quarter).
    assert (crop[0, 0, 16] > 0.5).sum() > 16 > (stretch[0, 0, 16] > 0.5).sum()
    with pytest.raises(UsageError, match="--resize 'crop'"):
        ImagePrep((1, 3, 32, 32), resize="crop")


def test_degenerate_calibration_is_named(tmp_path):
    from PIL import Image

    (tmp_path / "cats").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40, np.uint8)).save(tmp_path / "cats" / f"{i}.png")
    notes = calibration_notes(tmp_path, {"input": np.full((3, 1, 3, 8, 8), 0.5, np.float32)})
    text = " ".join(notes)
    assert "only 3 samples" in text and "near-constant" in text and "one folder (cats)" in text
    varied = np.random.default_rng(0).standard_normal((60, 1, 3, 8, 8)).astype(np.float32)
    assert calibration_notes(tmp_path / "x.npz", {"input": varied}) == []
    same = np.repeat(varied[:1], 60, axis=0) + 1e-7
    assert any("near-identical" in n for n in calibration_notes(tmp_path / "x.npz", {"input": same}))


def test_a_limited_image_folder_takes_every_class_in_turn(tmp_path):
    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            (tmp_path / cls / f"{i}.png").write_bytes(b"")
    picked = spread_files(tmp_path, 6)
    assert sorted({p.parent.name for p in picked}) == ["a", "b", "c"] and len(picked) == 6


# -- the int8 contract: exactly the float ops chosen ---------------------------
def test_int8_contract_allows_exactly_the_layers_chosen_to_stay_float():
    q = load("tflite_run", "common")
    ops = {
        "flex_ops": [],
        "total": 6,
        "float_ops": 3,
        "float_op_list": [
            {"op": "DEQUANTIZE", "output": "d0"},
            {"op": "CONV_2D", "output": "conv1"},
            {"op": "MEAN", "output": "pool1", "as": "pool"},  # renamed: a QUANTIZE took its name
        ],
    }
    i8 = [io("int8")]
    assert q.contract_problems("int8", i8, i8, ops, False, "int8", ["conv1", "pool"]) == []
    problems = q.contract_problems("int8", i8, i8, ops, False, "int8", ["conv1"])
    assert problems == ["int8 mode left 1 of 6 ops computing in float (MEAN) beyond the 1 chosen to stay float"]
    assert q.float_summary(ops, ["conv1", "pool"]) == {"chosen": 2, "float_ops": 2, "glue_ops": 1, "total_ops": 6}


def test_int8_io_choice_is_the_io_contract():
    q = load("tflite_run", "common")
    ops = {"flex_ops": [], "total": 3, "float_ops": 1, "float_op_list": [{"op": "DEQUANTIZE", "output": "y"}]}
    f32 = [io("float32")]
    assert q.contract_problems("int8", f32, f32, ops, False, "float") == []
    assert "not uint8" in q.contract_problems("int8", f32, f32, ops, False, "uint8")[0]
    assert q.contract_problems("int16x8", [io("int16")], [io("int16")], dict(ops, float_ops=0), False) == []


# -- host side of the selective contract ---------------------------------------
def test_flag_values():
    assert selective.parse_float_layers("auto") == "auto"
    assert selective.parse_float_layers("a;b/c, d") == ["a;b/c", "d"]
    assert selective.parse_cost("10%") == pytest.approx(0.1) and selective.parse_cost("0.25") == 0.25
    with pytest.raises(UsageError, match="10% or 0.1"):
        selective.parse_cost("ten")
    with pytest.raises(UsageError, match="at least 64 calibration samples"):
        selective.split_holdout({"x": np.zeros((40, 1))})
    calib, held = selective.split_holdout({"x": np.arange(100)[:, None]})
    assert len(calib["x"]) == 75 and held["x"][0, 0] == 75


def test_latency_cap_falls_back_to_the_most_accurate_point_within_it():
    curve = [
        {"float_layers": 0, "accuracy": 90.0, "latency_ms": 10.0},
        {"float_layers": 2, "accuracy": 95.0, "latency_ms": 10.5},
        {"float_layers": 4, "accuracy": 97.0, "latency_ms": 12.0},
        {"float_layers": 8, "accuracy": 99.0, "latency_ms": 14.0},
    ]
    sel = {"curve": curve, "chosen": curve[3]}
    assert selective.over_cap(sel, None) is None and selective.over_cap(sel, 0.5) is None
    assert selective.over_cap(sel, 0.1)["float_layers"] == 2
    assert curve[3]["latency_cost"] == pytest.approx(0.4)


# -- the pipeline with the fake runtime ----------------------------------------
@pytest.fixture
def net(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


@pytest.fixture
def eval_npz(tmp_path) -> Path:
    x = np.random.default_rng(3).standard_normal((96, 1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y=fake_model(x).reshape(96, -1).argmax(1))
    return tmp_path / "eval.npz"


GAIN = {0: 1.0, 1: 0.6, 2: 0.3, 4: 0.0, 8: 0.0}  # int8 noise left with k layers kept float
LOOSE = {"int8": {"cosine": -1.0, "top1": 0.0}}  # judged on accuracy only


def run(net, tmp_path, fake, **kw):
    kw.setdefault("tolerances", LOOSE)
    opts = options(model=net, shapes=[(1, 3, 8, 8)], modes=kw.pop("modes", ["int8"]), out=tmp_path / "out", **kw)
    fake.name = "local"
    return Pipeline(opts, fake, load_catalog(), lambda _: None).run()


def test_auto_keeps_layers_float_until_the_budget_holds_and_reports_the_curve(net, tmp_path, eval_npz):
    fake = FakeRuntime(noise={"int8": 0.2}, float_layer_gain=GAIN)
    report = run(
        net,
        tmp_path,
        fake,
        eval_data=eval_npz,
        max_drop={"int8": 1.0},
        int8=selective.Int8Options(float_layers="auto"),
        latency_runs=5,
    )
    asked = next(r for r in fake.requests if r.get("mode") == "int8")
    assert asked["float_layers"] == "auto" and asked["debug_samples"] == selective.DEBUG_SAMPLES
    assert asked["search"] == {"set": "eval", "labels": selective.LABELS, "target": 99.0, "baseline": 100.0}
    assert report.exit_code == EXIT_OK, report.failure
    art = report.artifacts[0]
    sel = art["selective"]
    assert sel["met"] and sel["float_layers"] == [f"layer{i}" for i in range(len(sel["float_layers"]))]
    assert [p["float_layers"] for p in sel["curve"]][0] == 0 and sel["curve"][0]["accuracy"] < 99.0
    assert all(p["latency_ms"] > 0 for p in sel["curve"]) and sel["latency_runtime"] == "ai-edge-litert fake"
    assert report.accuracy["modes"]["int8"]["accuracy"] >= 99.0
    # --threads 1 (the default): XNNPACK on and off, at 1 thread
    assert art["latency"]["runtime"] == "ai-edge-litert fake" and len(art["latency"]["configs"]) == 2
    jsonschema.validate(json.loads((tmp_path / "out" / "report.json").read_text()), json.loads(SCHEMA_FILE.read_text()))
    md = markdown(report)
    assert "### int8: trade-off (layers kept float, worst first)" in md and "- `layer0`" in md
    assert "### Latency: ai-edge-litert fake on this host" in md
    selective_row = next(r for r in rows(report) if r[0] == "int8 float layers")
    assert selective_row[2] is True and "the int8 check allowed exactly these" in selective_row[3]


def test_over_the_latency_cap_the_file_is_made_again_with_fewer_float_layers(net, tmp_path, eval_npz):
    fake = FakeRuntime(
        noise={"int8": 0.2}, float_layer_gain=GAIN, latency={0: 10.0, 1: 10.5, 2: 11.0, 4: 20.0, 8: 30.0}
    )
    report = run(
        net,
        tmp_path,
        fake,
        eval_data=eval_npz,
        max_drop={"int8": 1.0},
        int8=selective.Int8Options(float_layers="auto", max_latency_cost=0.15),
        latency_runs=5,
    )
    sel = report.artifacts[0]["selective"]
    assert sel["curve"][-1]["float_layers"] == 4, "the search met the target at 4 layers, 100 % slower"
    again = [r for r in fake.requests if r.get("mode") == "int8"][-1]
    assert isinstance(again["float_layers"], list) and len(again["float_layers"]) <= 2
    assert sel["stopped"].startswith("latency cap 15% over full int8")
    assert report.exit_code == EXIT_VALIDATION and "int8 accuracy" in report.failure


def test_auto_without_eval_data_is_judged_on_held_out_calibration(net, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).standard_normal((128, 3, 8, 8)).astype(np.float32))
    fake = FakeRuntime(noise={"int8": 0.2}, float_layer_gain=GAIN)
    report = run(net, tmp_path, fake, calib=calib, int8=selective.Int8Options(float_layers="auto"), latency_runs=0)
    asked = next(r for r in fake.requests if r.get("mode") == "int8")
    assert asked["search"]["set"] == "holdout" and "holdout" in asked["input_sets"]
    assert report.inputs["calibration"]["count"] == 96 and report.inputs["holdout"]["count"] == 32
    assert report.accuracy["set"] == "holdout" and report.accuracy["samples"] == 32


def test_int8_float_io_and_named_float_layers_reach_the_stage(net, tmp_path):
    fake = FakeRuntime()
    report = run(net, tmp_path, fake, int8=selective.Int8Options(io="float", float_layers=["layer3"]), latency_runs=0)
    asked = next(r for r in fake.requests if r.get("mode") == "int8")
    assert asked["int8_io"] == "float" and asked["float_layers"] == ["layer3"] and "search" not in asked
    assert report.exit_code == EXIT_OK and report.artifacts[0]["inputs"][0]["dtype"] == "float32"


def test_a_mode_the_family_cannot_make_says_so_per_mode(net, tmp_path, monkeypatch):
    from convertctl.config import modes

    catalog = load_catalog()
    narrowed = dataclasses.replace(
        modes.MODES["int16x8"], quantizers={"tflite-converter": "why", "litert-quantizer": "why"}
    )
    monkeypatch.setitem(modes.MODES, "int16x8", narrowed)
    opts = options(
        model=net, shapes=[(1, 3, 8, 8)], modes=["fp32", "int16x8"], out=tmp_path / "out", converter="onnx-tf"
    )
    fake = FakeRuntime()
    fake.name = "local"
    report = Pipeline(opts, fake, catalog, lambda _: None).run()
    assert report.exit_code == EXIT_CONVERSION
    assert report.failure == "int16x8: convert-tf2.15: the onnx-tf family cannot make int16x8: why"


def test_float_layers_need_int8(net, tmp_path):
    with pytest.raises(UsageError, match="add --quant int8"):
        run(net, tmp_path, FakeRuntime(), modes=["fp32"], int8=selective.Int8Options(float_layers="auto"))


# -- the stage's search, without TensorFlow -------------------------------------
def test_search_doubles_then_bisects_to_the_fewest_float_layers(tmp_path, monkeypatch):
    sel = load("int8_search", "common")  # shared by the TF and litert-quantizer steps
    assert sel.steps(10, 0) == [0, 1, 2, 4, 8, 10] and sel.steps(10, 3) == [0, 1, 2, 3] and sel.steps(0, 0) == [0]

    accuracy = {0: 90.0, 1: 91.0, 2: 92.0, 4: 95.0, 8: 99.5, 5: 97.0, 6: 99.2, 7: 99.4}
    made = []

    def fake_accuracy(np_, interp, path, arrays, labels, request):
        picks = tuple(int(n[1:]) for n in made_names[Path(path).name])
        made.append(picks)
        if picks == tuple(range(len(picks))):
            return accuracy[len(picks)]
        return 99.1 if {1, 2, 3, 4, 5} <= set(picks) else 98.0  # l0 (the largest) is not needed; the others are

    made_names = {}

    class Plan:
        def quantize(self, io, names):
            made_names[f"{len(made_names):03d}-k{len(names):03d}.tflite"] = list(names)
            return b"x" * (100 + len(names))

    monkeypatch.setattr(sel, "top1_accuracy", fake_accuracy)
    (tmp_path / "q").mkdir()
    np.savez(tmp_path / "labels.npz", y=np.zeros(10))
    request = {"work": "q", "search": {"set": "eval", "labels": "labels.npz", "target": 99.0}}
    ranking = [{"name": f"l{i}", "elements": 1000 - i} for i in range(20)]
    got = sel.search(Plan(), np, None, str(tmp_path), request, ranking, {"eval": {"x": np.zeros((10, 1))}})
    # doubling until 8 holds, then 6 holds and 5 does not; then l0 (largest output) back to int8 holds, l1 does not
    assert [len(p) for p in made[:7]] == [0, 1, 2, 4, 8, 6, 5]
    assert made[7] == (1, 2, 3, 4, 5) and made[8] == (2, 3, 4, 5)
    assert got["float_layers"] == ["l1", "l2", "l3", "l4", "l5"] and got["met"]
    assert got["chosen"]["names"] == got["float_layers"] and got["chosen"]["accuracy"] == 99.1
    assert "1 of the 6 worst layers given back to int8" in got["stopped"]
    assert [p["float_layers"] for p in got["curve"]][:5] == [0, 1, 2, 4, 4]
    assert (tmp_path / got["chosen"]["file"]).is_file()


def test_a_float_layer_renamed_by_quantize_ops_is_still_the_one_chosen():
    """The quantizer hands a float op's name to the QUANTIZE after it (and
    to a second one for uint8 I/O): PartitionedCall:0 -> PartitionedCall:01."""
    q = load("tflite_run", "common")

    class Interp:
        tensors = [("x", np.int8), ("d", np.float32), ("P:01", np.float32), ("q2", np.int8), ("P:0", np.uint8)]

        def get_tensor_details(self):
            return [{"index": i, "name": n, "dtype": d} for i, (n, d) in enumerate(self.tensors)]

        def _get_ops_details(self):
            ops = [("DEQUANTIZE", 0, 1), ("FULLY_CONNECTED", 1, 2), ("QUANTIZE", 2, 3), ("QUANTIZE", 3, 4)]
            return [{"op_name": o, "inputs": [i], "outputs": [j]} for o, i, j in ops] + [
                {"op_name": "DELEGATE", "inputs": [0], "outputs": [4]}
            ]

    ops = q.op_facts(np, Interp())
    assert ops["total"] == 4 and "DELEGATE" not in ops["histogram"]
    assert ops["float_op_list"][1] == {"op": "FULLY_CONNECTED", "output": "P:01", "as": "P:0"}
    u8 = [io("uint8")]
    assert q.contract_problems("int8", u8, u8, ops, False, "uint8", ["P:0"]) == []
    assert "FULLY_CONNECTED" in q.contract_problems("int8", u8, u8, ops, False, "uint8", [])[0]


def test_a_rung_that_cannot_keep_layers_float_hands_int8_to_the_next(net, tmp_path, monkeypatch):
    catalog = load_catalog()
    monkeypatch.setitem(catalog.ladders["local"], "convert", ["litert-torch0.10", "convert-tf2.15"])
    quantizer = catalog.quantizers(catalog.get("litert-torch0.10"))[0]
    assert quantizer.float_layers  # litert-quantizer keeps layers float; a quantizer that could not:
    narrowed = type(quantizer)(**{**quantizer.__dict__, "float_layers": False})
    monkeypatch.setitem(catalog.variants, quantizer.name, narrowed)
    int8 = selective.Int8Options(float_layers=["layer3"])
    opts = options(model=net, shapes=[(1, 3, 8, 8)], modes=["fp32", "int8"], out=tmp_path / "out", int8=int8)
    fake = FakeRuntime()
    fake.name = "local"
    report = Pipeline(opts, fake, catalog, lambda _: None).run()
    assert report.exit_code == EXIT_OK, report.failure
    litert = next(e for e in report.ladder if e["variant"] == "litert-torch0.10")
    assert litert["modes"]["int8"] == "the litert-torch family cannot keep int8 layers float (--int8-float-layers)"
    assert litert["modes"]["fp32"] == "ok"
    made = {a["mode"]: a["variant"] for a in report.artifacts}
    assert made == {"fp32": "litert-torch0.10", "int8": "convert-tf2.15"}
    asked = next(r for r in fake.requests if r.get("mode") == "int8")
    assert asked["float_layers"] == ["layer3"]
