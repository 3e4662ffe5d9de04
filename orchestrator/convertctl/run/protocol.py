"""The stage protocol, typed: what the host writes into each stage's
request.json and what it reads back from result.json. The JSON Schemas in
images/common/schemas/ are the same contract for the stage side (stdlib-only
scripts cannot import this module): a test holds these types and those
schemas equal, validates every request the host builds against them, and
checks that each stage script reads only the fields its schema declares.

A result whose contract version the host does not know is refused with a
clear message: the stage code in an environment and this convertctl are then
from different versions."""

from __future__ import annotations

from typing import Any, TypedDict

CONTRACT_VERSION = 2  # images/common/contract.py writes it into every result; a test holds them equal
STAGES = ("export", "convert", "quantize", "measure", "metadata")


class InputsPart(TypedDict, total=False):
    """What every model-facing request says about the model and its inputs."""

    model: str
    model_format: str
    input_names: list[str]
    input_shapes: list[list[int]]
    input_dtypes: list[str]
    dynamic_batch: bool
    input_sets: dict[str, str]  # set name -> npz in the run directory


class LoadPart(TypedDict, total=False):
    """How a stage that reads the PyTorch model loads it (images/common/modelio.py)."""

    arch: str
    arch_kwargs: dict[str, Any]
    code_dir: str
    trusted: bool
    onnx_renames: dict[str, str]


class ExportRequest(InputsPart, LoadPart, total=False):
    reference: bool
    opset: int | None
    output_names: list[str]


class ExampleRequest(TypedDict):
    action: str  # "example"
    example: str
    seed: int
    input_shape: list[int]
    output: str


class ConvertRequest(InputsPart, LoadPart, total=False):
    output_names: list[str]
    layout: str | None  # nchw | nhwc | None: the converter's own
    onnx: str  # families that read ONNX


class ModeSpec(TypedDict):
    """A mode as a quantize step is told it (config/modes.py Mode.spec)."""

    name: str
    weights: str
    activations: str
    calibrated: bool
    granularity: str
    block_size: int


class QuantizeRequest(InputsPart, total=False):
    mode: str
    mode_spec: ModeSpec
    output_names: list[str]
    layout: dict[str, Any]  # {"inputs": {name: perm}, "outputs": {name: perm}}
    saved_model: str  # a tflite-converter quantizer reads the SavedModel
    tflite: str  # a litert-quantizer reads the float .tflite
    calibration: str
    calibration_stat: str  # litert-quantizer: minmax (default) or ema; the host leaves it to the stage
    int8_io: str
    debug_samples: int
    float_layers: str | list[str]
    search: dict[str, Any] | None
    allow_flex: bool
    latency_runs: int
    threads: int
    judge: str  # "litert": the host runs the file in LiteRT (measure/judge.py); the maker only makes it
    modules: str  # the convert step's modules.json: layers named by PyTorch module path (common/module_names.py)


class MeasureFile(TypedDict):
    name: str
    file: str


class MeasureRequest(TypedDict):
    files: list[MeasureFile]
    runs: int
    rounds: int
    warmup: int
    threads: list[int]
    xnnpack: list[bool]


class MetadataTensor(TypedDict):
    name: str  # the signature name
    tensor: str  # its tensor's name in the file


class MetadataRequest(TypedDict, total=False):
    """TFLite metadata for a final file (--labels): images/metadata/metadata.py."""

    tflite: str
    name: str
    description: str
    labels: str  # one class name per line, in the output's order
    labels_output: str
    image_input: str  # the image input the normalisation is for; absent: none
    mean: list[float]  # per channel, on the 0..255 pixel scale the metadata uses
    std: list[float]
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ResultPart(TypedDict, total=False):
    """What every result.json holds (images/common/contract.py run_stage)."""

    contract: int
    stage: str
    status: str  # ok | failed
    python: str
    versions: dict[str, str]
    seconds: float
    error: str
    error_kind: str  # stage | input
    traceback: str


class ExportResult(ResultPart, total=False):
    output_names: list[str]
    outputs: list[dict[str, Any]]  # [{name, shape, dtype}]
    reference: str  # torch | onnxruntime
    model_input_names: list[str] | None
    onnx: dict[str, Any]  # {file, opset, nodes, ...}
    onnx_error: str
    model: str  # the example action: the file it saved
    tflite: str  # a float .tflite's reference step: its copy, which the quantizer reads


class ConvertResult(ResultPart, total=False):
    saved_model: str
    tflite: str
    layout: dict[str, Any]
    signature: dict[str, Any]
    reason_code: str  # a converter's own failure code (onnx2tf 2.x)
    op_coverage: dict[str, Any]  # onnx2tf 2.x: its op coverage report, summarised
    modules: str  # modules.json: the PyTorch module path of the graph's op names (common/module_names.py)


class QuantizeResult(ResultPart, total=False):
    artifact: dict[str, Any]  # the file's facts: see images/common/schemas/quantize.result.json


class MeasureResult(ResultPart, total=False):
    runtime: dict[str, str]
    cpu_count: int
    measurements: dict[str, Any]


class MetadataResult(ResultPart, total=False):
    file: str  # the file with its metadata
    size_bytes: int
    metadata: dict[str, Any]  # read back: {labels, labels_file, labels_output, normalization, written_by}


REQUESTS: dict[str, type] = {
    "export": ExportRequest,
    "example": ExampleRequest,
    "convert": ConvertRequest,
    "quantize": QuantizeRequest,
    "measure": MeasureRequest,
    "metadata": MetadataRequest,
}
RESULTS: dict[str, type] = {
    "export": ExportResult,
    "convert": ConvertResult,
    "quantize": QuantizeResult,
    "measure": MeasureResult,
    "metadata": MetadataResult,
}


def contract_problem(stage: str, result: dict) -> str:
    """'' when the result speaks this convertctl's contract (or wrote none:
    a crash, judged by its exit code), else why it cannot be read."""
    version = result.get("contract")
    if version is None or version == CONTRACT_VERSION:
        return ""
    return (
        f"the {stage} stage speaks contract version {version!r}, this convertctl reads {CONTRACT_VERSION}: "
        "the environment holds stage code of another convertctl version (rebuild it: `convertctl envs prune "
        "--all` or `convertctl images build --force`)"
    )


def field_problems(stage: str, result: dict) -> list[str]:
    """The top-level fields of a result whose JSON type is not the one the
    protocol declares (a stage's result is data like any other)."""
    kinds: dict[Any, type | tuple[type, ...]] = {
        str: str,
        int: int,
        float: (int, float),
        bool: bool,
        dict: dict,
        list: list,
    }
    problems = []
    for name, annotation in _hints(RESULTS.get(stage, ResultPart)).items():
        if name not in result or result[name] is None:
            continue
        origin = getattr(annotation, "__origin__", annotation)
        want = kinds.get(origin)
        if want is None:
            continue
        value = result[name]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            problems.append(f"{name} is {type(value).__name__}, not {origin.__name__}")
    return problems


def _hints(cls: type) -> dict:
    import typing

    return typing.get_type_hints(cls)
