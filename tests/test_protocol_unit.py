"""The stage protocol, held from both sides: the host's typed requests and
results (run/protocol.py) equal the JSON Schemas the stage side is written
against (images/common/schemas/), every request the host builds validates
against its schema, every field a stage script reads is one its schema
declares, and a result in another contract version is refused."""

from __future__ import annotations

import ast
import json
import re
import typing
from pathlib import Path

import jsonschema
import pytest
from convertctl.config.catalog import images_dir, load_catalog
from convertctl.run import protocol
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file

SCHEMAS = images_dir() / "common" / "schemas"
# Which schema each stage script reads its request by (modules shared by several stages: all of theirs).
SCRIPTS = {
    "export/export.py": ("export", "example"),
    "export/example.py": ("example",),
    "convert/convert.py": ("convert",),
    "onnx2tf/convert.py": ("convert",),
    "onnx2tf/direct.py": ("convert",),
    "litert/convert.py": ("convert",),
    "quantize/quantize.py": ("quantize",),
    "quantize/selective.py": ("quantize",),
    "litert/quantize.py": ("quantize",),
    "measure/measure.py": ("measure",),
    "measure/reference.py": ("export",),
    "measure/judge.py": ("quantize",),
    "metadata/metadata.py": ("metadata",),
    "common/modelio.py": ("export", "convert"),
    "common/savedmodel.py": ("convert",),
    "common/tflite_run.py": ("quantize",),
    "common/contract.py": ("export", "convert", "quantize", "measure", "example"),
}
RUN_STAGE_KEYS = {"work"}  # contract.run_stage adds the step's folder itself


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def fields_of(cls: type) -> set[str]:
    return set(typing.get_type_hints(cls))


@pytest.mark.parametrize("stage", sorted(protocol.REQUESTS))
def test_a_request_schema_declares_exactly_the_hosts_typed_fields(stage):
    assert set(schema(f"{stage}.request")["properties"]) == fields_of(protocol.REQUESTS[stage])


@pytest.mark.parametrize("stage", sorted(protocol.RESULTS))
def test_a_result_schema_declares_exactly_the_hosts_typed_fields(stage):
    data = schema(f"{stage}.result")
    assert set(data["properties"]) == fields_of(protocol.RESULTS[stage])
    assert data["properties"]["contract"] == {"const": protocol.CONTRACT_VERSION}


def test_the_stage_side_writes_the_contract_version_the_host_reads():
    text = (images_dir() / "common" / "contract.py").read_text()
    assert re.search(r"^CONTRACT_VERSION = (\d+)$", text, re.M).group(1) == str(protocol.CONTRACT_VERSION)


def requested_keys(path: Path) -> set[str]:
    """Every request["x"] and request.get("x") in a stage script."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "request":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                keys.add(node.slice.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "request"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
    return keys


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_stage_script_reads_only_what_its_schema_declares(script):
    path = images_dir() / script
    if not path.exists():
        pytest.skip(f"{script} is not in this checkout")
    declared = RUN_STAGE_KEYS.union(*(schema(f"{s}.request")["properties"] for s in SCRIPTS[script]))
    undeclared = requested_keys(path) - declared
    assert not undeclared, f"{script} reads request fields no schema declares: {sorted(undeclared)}"


def test_every_stage_script_of_the_catalog_is_checked():
    scripts = {v.script_rel for v in load_catalog().variants.values()}
    assert scripts <= set(SCRIPTS), sorted(scripts - set(SCRIPTS))


def test_every_request_the_host_builds_fits_its_schema(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    fake = FakeRuntime()
    fake.name = "local"
    opts = options(model, tmp_path / "out", modes=["fp32", "fp16", "int8"], converter="onnx-tf", latency_runs=2)
    report = Pipeline(opts, fake, load_catalog(), lambda _: None).run()
    assert report.status == "passed", report.failure
    assert {c.split(":")[0] for c in fake.calls} == {"export", "convert", "quantize", "judge", "measure"}
    for call, request in zip(fake.calls, fake.requests):
        stage = {"judge": "quantize"}.get(call.split(":")[0], call.split(":")[0])  # judge.py speaks quantize's
        sent = {k: v for k, v in request.items() if k != "work"}  # the fake adds the folder, as run_stage does
        jsonschema.validate(sent, schema(f"{stage}.request"))


def test_the_fakes_results_fit_the_result_schemas(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    fake = FakeRuntime()
    fake.name = "local"
    opts = options(model, tmp_path / "out", modes=["fp16"], converter="onnx-tf", keep_run=True, latency_runs=2)
    Pipeline(opts, fake, load_catalog(), lambda _: None).run()
    run_dir = next((tmp_path / "out" / ".convertctl" / "runs").iterdir())
    results = list(run_dir.rglob("result.json"))
    assert len(results) >= 4
    for path in results:
        data = json.loads(path.read_text())
        jsonschema.validate(data, schema(f"{data['stage']}.result"))


class OtherContract(FakeRuntime):
    """Stage code of another convertctl version: its results speak contract 1."""

    def run(self, step, run_dir, say):
        result = super().run(step, run_dir, say)
        result.result["contract"] = 1
        return result


def test_a_result_in_another_contract_version_fails_the_step_and_says_why(tmp_path):
    model = torchscript_file(tmp_path / "net.pt")
    fake = OtherContract()
    fake.name = "local"
    report = Pipeline(
        options(model, tmp_path / "out", converter="onnx-tf", latency_runs=0), fake, load_catalog(), lambda _: None
    ).run()
    assert report.status == "failed"
    assert "speaks contract version 1, this convertctl reads 2" in report.failure


def test_a_result_field_of_the_wrong_type_fails_the_step():
    assert protocol.field_problems("export", {"output_names": "output", "seconds": 1}) == [
        "output_names is str, not list"
    ]
    assert protocol.field_problems("quantize", {"artifact": {"mode": "fp32"}, "versions": {}}) == []
