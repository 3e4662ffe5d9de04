"""Stage code: Python 3.8 syntax only, stdlib-only contract, and the int8 /
Flex rules of the quantize stage, tested without TensorFlow."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parent.parent / "images"
STAGE_FILES = sorted(IMAGES.glob("*/*.py"))


@pytest.mark.parametrize("path", STAGE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stage_code_parses_as_python_3_8(path):
    tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))
    for node in ast.walk(tree):
        # PEP 604/585 annotations parse on 3.8 but fail at runtime there
        assert not isinstance(node, ast.AnnAssign), f"{path}: annotations are avoided in stage code"
        if isinstance(node, ast.ImportFrom):
            assert node.module != "__future__" or all(a.name != "annotations" for a in node.names)


def load(name, folder):
    sys.path.insert(0, str(IMAGES / "common"))
    sys.path.insert(0, str(IMAGES / folder))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)
        sys.path.pop(0)


def io(dtype, name="x"):
    return {"name": name, "dtype": dtype, "shape": [1], "scale": 0.1, "zero_point": 0, "tensor": name}


def test_int8_needs_int8_io_and_no_float_ops():
    q = load("tflite_run", "common")
    ops = {"flex_ops": [], "float_ops": 0, "total": 5}
    assert q.contract_problems("int8", [io("int8")], [io("int8")], ops, False) == []
    problems = q.contract_problems(
        "int8", [io("float32", "input")], [io("int8")], {"flex_ops": [], "float_ops": 3, "total": 5}, False
    )
    assert "int8 mode produced input tensor 'input' of type float32, not int8" in problems
    assert "int8 mode left 3 of 5 ops computing in float" in problems


def test_flex_ops_fail_unless_allowed():
    q = load("tflite_run", "common")
    ops = {"flex_ops": ["FlexConv2D"], "float_ops": 1, "total": 1}
    problems = q.contract_problems("fp32", [io("float32")], [io("float32")], ops, False)
    assert len(problems) == 1 and "FlexConv2D" in problems[0] and "--allow-flex" in problems[0]
    assert q.contract_problems("fp32", [io("float32")], [io("float32")], ops, True) == []


def test_calibration_generator_yields_every_sample():
    import numpy as np

    q = load("tflite_run", "common")
    calib = {"input": np.arange(5, dtype=np.float32).reshape(5, 1, 1)}
    seen = [batch[0][0, 0] for batch in q.representative_dataset(np, calib, ["input"])()]
    assert seen == [0, 1, 2, 3, 4]


def test_calibration_and_outputs_follow_the_converters_layout():
    import numpy as np

    q = load("tflite_run", "common")
    c = load("contract", "common")
    calib = {"input": np.arange(2 * 1 * 3 * 4 * 5, dtype=np.float32).reshape(2, 1, 3, 4, 5)}  # N samples of NCHW
    layout = {"inputs": {"input": [0, 2, 3, 1]}}
    batches = list(q.representative_dataset(np, calib, ["input"], layout)())
    assert [b[0].shape for b in batches] == [(1, 4, 5, 3), (1, 4, 5, 3)]
    assert np.array_equal(batches[1][0], calib["input"][1].transpose(0, 2, 3, 1))
    nhwc = c.to_layout(np, calib["input"][0], [0, 2, 3, 1])
    assert np.array_equal(c.from_layout(np, nhwc, [0, 2, 3, 1]), calib["input"][0])


def run_contract(tmp_path, body_src):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "request.json").write_text(json.dumps({"x": 1}))
    script = tmp_path / "stage.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(IMAGES / 'common')!r})\nimport contract\n"
        f"{body_src}\nsys.exit(contract.run_stage('s', body))\n"
    )
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    return proc.returncode, json.loads((tmp_path / "s" / "result.json").read_text())


def test_contract_reports_what_the_stage_learned_before_failing(tmp_path):
    code, result = run_contract(
        tmp_path,
        "def body(run_dir, request, result):\n"
        "    result['seen'] = request['x']\n"
        "    raise contract.InputProblem('bad shape')\n",
    )
    assert code == 2 and result["status"] == "failed" and result["seen"] == 1
    assert result["error"] == "bad shape" and result["error_kind"] == "input"


def test_contract_keeps_first_line_of_a_crash(tmp_path):
    code, result = run_contract(
        tmp_path,
        "def body(run_dir, request, result):\n    raise RuntimeError('export failed: op X\\n  %1 = graph...\\n')\n",
    )
    assert code == 1 and result["error"] == "RuntimeError: export failed: op X"
    assert "graph..." in result["traceback"]


def test_mode_spec_is_read_and_checked():
    from convertctl.config import modes as host

    modes = load("modes", "common")
    contract = load("contract", "common")
    spec = {"name": "wi4", "weights": "int4", "activations": "float32", "granularity": "block", "block_size": 32}
    assert modes.mode_spec({"mode": "wi4", "mode_spec": spec})["calibrated"] is False
    derived = modes.mode_spec({"mode": "dynamic", "mode_spec": host.get("dynamic").spec()})
    assert (derived["weights"], derived["activations"], derived["name"]) == ("int8", "dynamic", "dynamic")
    with pytest.raises(contract.StageFailure, match="comes without a mode_spec"):
        modes.mode_spec({"mode": "int3"})
    bad = {**spec, "weights": "int3", "granularity": "block", "block_size": 0}
    with pytest.raises(contract.StageFailure, match=r"bad weights 'int3'.*granularity block needs a block_size"):
        modes.mode_spec({"mode": "x", "mode_spec": bad})
    with pytest.raises(contract.StageFailure, match="activations int8 need calibration"):
        modes.mode_spec({"mode": "x", "mode_spec": {"weights": "int8", "activations": "int8"}})
    failure = modes.cannot("Q 1.0", derived, "why")
    assert str(failure) == "Q 1.0 cannot make weights int8 with activations dynamic (dynamic): why"
