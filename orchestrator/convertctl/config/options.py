"""Every option of a run, declared once: its type and default (the field),
and how it is given (the Spec in the field's metadata: flags, help, the
topic it is listed under, the strict rule its value must pass, and whether a
settings file may give it). The typer options of `convertctl run`, the keys
of convertctl.toml (and of a batch file's tables, and the Python API's
keyword arguments), their validation and messages, the report's `options`
and the option reference in docs/ are all read from here.

A new option is a field here plus the code that uses it."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from convertctl.config import modes, runtimes
from convertctl.config.schema import (
    Invalid,
    Rule,
    anything,
    at_least,
    before,
    boolean,
    dict_of,
    either,
    integer,
    list_of,
    number,
    one_of,
    optional,
    table,
    text,
)

# Topics `convertctl run --help` lists its options under, in this order.
INPUTS = "Model and inputs"
MODES_GROUP = "Modes and int8"
CHECKS = "Checks"
CONVERSION = "Conversion and environments"
OUTPUT = "Output"
GROUPS = (INPUTS, MODES_GROUP, CHECKS, CONVERSION, OUTPUT)

# One sample of one input: beyond this the seeded inputs alone take
# gigabytes (1,3,20000,20000 is 1.2e9 values) and the stages die of memory.
MAX_INPUT_VALUES = 1 << 26
RESIZE = ("stretch", "shorter-side+center-crop")
LAYOUTS = ("nchw", "nhwc")
INT8_IO = ("int8", "uint8", "float")
RUNTIMES = runtimes.CHOICES
BATCH_CHECK = 4  # --dynamic-batch: the TFLite file is checked at batch 1 and at this batch
# Seeded synthetic samples every file is compared on. A quantized file is judged by its agreement, a
# share of samples: seven dynamic/int8 passes of a 20-model zoo sat at exactly 6 of 8. The same count
# for every mode keeps the sample set (and every cached step) the same when a mode is added to a run.
SAMPLES = 64


@dataclass(frozen=True)
class Spec:
    """How an option is given. flags: the command line's names (none: a
    settings file only); file: whether a settings file may give it."""

    flags: tuple
    help: str
    group: str
    rule: Rule
    expected: str  # what the value takes, in words, for messages
    file: bool = True
    cli: type = str  # how the command line parses one value: str, int, float, bool
    repeat: bool = False  # the flag may be given several times (a list)
    per_mode: bool = False  # N or MODE=N on the command line, a table per mode in a file
    code: bool = False  # names code to import: a file gives it only under --trust-config
    path: bool = False  # a path: relative to the settings file that gives it
    aliases: tuple = ()  # other file keys for the same option (convert_image)
    into: tuple = ()  # (option, key): a flag folded into another option's per-mode table (--atol)
    json: bool = False  # the command line gives it as a JSON object
    envvar: str | None = None
    metavar: str | None = None
    sub: dict = field(default_factory=dict)  # words for keys inside a table ("*" stands for a mode)


def option(default: Any, *flags: str, **spec: Any) -> Any:
    """A field of Options: its default, and its Spec."""
    meta = {"spec": Spec(flags, **spec)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _shape(value: Any) -> tuple:
    """'1,3,8,8' or [1, 3, 8, 8] -> (1, 3, 8, 8), each dimension > 0."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not all(p.lstrip("+").isdigit() for p in parts):
            raise Invalid("shape", "not comma-separated whole numbers")
        dims = tuple(int(p) for p in parts)
    elif isinstance(value, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        dims = tuple(value)
    else:
        raise Invalid("shape", "not a shape")
    if not dims or any(d <= 0 for d in dims):
        raise Invalid("shape", "every dimension must be a whole number > 0")
    values = math.prod(dims)
    if values > MAX_INPUT_VALUES:
        # Beyond a float's range (a 400-digit dimension) it is said without one
        count = f"{values:.3g}" if values < 10**300 else f"about 1e{len(str(values)) - 1}"
        size = f"{values * 4 / 1e9:.1f} GB" if values < 10**300 else "more than any disk"
        limit = f"convertctl takes at most {MAX_INPUT_VALUES} values per input"
        raise Invalid("shape", f"{count} values per sample ({size} as float32); {limit}")
    return dims


def _floats(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return [float(p) for p in value.split(",") if p.strip()]
        except ValueError:
            raise Invalid("floats", "not comma-separated numbers") from None
    return value


def _one(value: Any) -> Any:
    """quant = "int8" or --input "x:1,3": a list of one."""
    return [value] if isinstance(value, str) else value


def _one_shape(value: Any) -> Any:
    """One shape ("1,3,8,8" or [1, 3, 8, 8]) -> a list of it; [[1, 3], "1,5"] is two already."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, int) for v in value)):
        return [value]
    return value


TEXT = text(min_length=1)
MODE = one_of(*modes.NAMES)
PERCENT = number(ge=0, le=100)
BOUNDS = ("atol", "rtol", "cosine", "top1")  # what a [tolerance.MODE] table may set
TOLERANCE = table(
    "Tolerance",
    {
        "atol": optional(number(ge=0)),
        "rtol": optional(number(ge=0)),
        "cosine": optional(number(ge=-1, le=1)),
        "top1": optional(number(ge=0, le=1)),
    },
)
PATH = optional(TEXT)
MODE_LIST = "a mode (" + ", ".join(modes.NAMES) + ") or a list of modes"
BOOL = "true or false (a TOML boolean, not a string)"


@dataclass
class Options:
    """A run's options, validated (settings.py builds them from a file and
    flags; the Python API from keyword arguments)."""

    # -- the model and its inputs --------------------------------------------------
    model: str = option(
        "", group=INPUTS, rule=TEXT, file=False, path=True, expected="a model file path (a string)",
        help="TorchScript (torch.jit.save), ExportedProgram (torch.export.save, .pt2), state_dict or checkpoint "
        "(with --arch), ONNX file, or float .tflite (quantized as it is): the command's argument; a batch file's "
        "`model` key.",
    )  # fmt: skip
    input_shape: list = option(
        [], "--input-shape", help="e.g. 1,3,256,256; repeat per input.", group=INPUTS, repeat=True,
        rule=before(_one_shape, list_of(before(_shape, anything))),
        expected='a shape such as "1,3,224,224" or [1, 3, 224, 224] (whole numbers > 0), or a list of shapes',
    )  # fmt: skip
    input: list = option(
        [], "--input", group=INPUTS, repeat=True, rule=before(_one, list_of(TEXT)),
        help="NAME:SHAPE[:DTYPE][:LOW..HIGH], repeatable, in forward()'s order: e.g. image:1,3,224,224 "
        "tokens:1,16:int64:0..999. DTYPE float32 (default), int64 or int32; LOW..HIGH (both included): "
        "the range of synthetic data (default integers 0..9). The names become the TFLite signature's.",
        expected='an input such as "tokens:1,16:int64:0..999" (NAME:SHAPE[:DTYPE][:LOW..HIGH]), or a list of them',
    )  # fmt: skip
    dynamic_batch: bool = option(
        False, "--dynamic-batch", group=INPUTS, cli=bool, rule=boolean, expected=BOOL,
        help=f"Export with a free batch dimension; the TFLite file is checked at batch 1 and {BATCH_CHECK}.",
    )  # fmt: skip
    arch: str | None = option(
        None, "--arch", group=INPUTS, rule=optional(TEXT), code=True, expected="module:callable (a string)",
        help="module:callable building the nn.Module a state_dict or checkpoint fits.",
    )  # fmt: skip
    arch_kwargs: dict = option(
        {}, "--arch-kwargs", group=INPUTS, rule=dict_of(text(), anything), code=True, json=True,
        expected="a table of keyword arguments for --arch", metavar="JSON",
        help="JSON object of keyword arguments for --arch.",
    )  # fmt: skip
    code: str | None = option(
        None, "--code", group=INPUTS, rule=PATH, code=True, path=True, expected="a folder path (a string)",
        help="Folder holding the --arch module; mounted read-only only into the stages that load the PyTorch "
        "model (export, and litert-torch's convert).",
    )  # fmt: skip
    trust_model: bool = option(
        False, "--trust-model", group=INPUTS, cli=bool, rule=boolean, file=False, expected=BOOL,
        help="Unpickle a pickled module (torch.save(model)), which runs code from the file: Docker runtime "
        "only, in a container without network that writes only its run directory.",
    )  # fmt: skip
    sample_inputs: str | None = option(
        None, "--sample-inputs", group=INPUTS, rule=PATH, file=False, path=True, expected="a path (a string)",
        help="npz of inputs to compare on (instead of random ones).",
    )  # fmt: skip
    reference_run: str | None = option(
        None, "--reference-run", group=INPUTS, rule=PATH, file=False, path=True, expected="a folder path (a string)",
        help="convertctl quantize: judge against PyTorch's outputs, on the inputs of the run (kept with --keep-run) "
        "that made the float .tflite, instead of the float file's own outputs.",
    )  # fmt: skip
    samples: int = option(
        SAMPLES, "--samples", group=INPUTS, cli=int, rule=integer(ge=1, le=10000), file=False,
        expected="a whole number from 1 to 10000",
        help="How many seeded random sample inputs the files are compared on (a quantized file's agreement is a "
        "share: on 8 samples one flip is 12 points).",
    )  # fmt: skip
    seed: int = option(
        0, "--seed", group=INPUTS, cli=int, rule=integer(ge=0, le=2**32 - 1), file=False,
        expected="a whole number from 0 to 4294967295", help="Seed of the random sample inputs.",
    )  # fmt: skip
    calib: str | None = option(
        None, "--calib", group=INPUTS, rule=PATH, path=True, expected="a path (a string)",
        help="Calibration data for int8/int16x8: image folder, .npy or .npz (100-500 samples).",
    )  # fmt: skip
    mean: list | None = option(
        None, "--mean", group=INPUTS, rule=optional(at_least(1, before(_floats, list_of(number())))),
        expected='finite numbers, one per channel (a list, or "0.485,0.456,0.406")',
        help="Image normalisation mean per channel. Default ImageNet's.",
    )  # fmt: skip
    std: list | None = option(
        None, "--std", group=INPUTS, rule=optional(at_least(1, before(_floats, list_of(number(gt=0))))),
        expected='finite numbers > 0, one per channel (a list, or "0.229,0.224,0.225")',
        help="Image normalisation std per channel. Default ImageNet's.",
    )  # fmt: skip
    resize: str = option(
        "stretch", "--resize", group=INPUTS, rule=one_of(*RESIZE), expected=" or ".join(RESIZE),
        help="Images to inputs: stretch (default) or shorter-side+center-crop (ImageNet's view).",
    )  # fmt: skip
    eval_data: str | None = option(
        None, "--eval-data", group=INPUTS, rule=PATH, file=False, path=True, expected="a path (a string)",
        help="Labelled data: folder of class folders, or npz with x and y.",
    )  # fmt: skip
    labels: str | None = option(
        None, "--labels", group=INPUTS, rule=PATH, path=True, expected="a path (a string)",
        help="Class names, one per line, in the model's output order: --eval-data's folders are labelled by "
        "them (without it, by their sorted names, which is rarely the model's order), and every file gets TFLite "
        "metadata for Android: these labels and the input's --mean/--std.",
    )  # fmt: skip

    # -- modes and int8 -------------------------------------------------------------
    quant: list = option(
        [], "--quant", "-q", group=MODES_GROUP, repeat=True, rule=before(_one, list_of(MODE)), expected=MODE_LIST,
        help=f"Mode, repeatable: {', '.join(modes.NAMES)}. Default fp32.",
    )  # fmt: skip
    int8_float_layers: Any = option(
        None, "--int8-float-layers", group=MODES_GROUP,
        rule=optional(either(("constrained-str", TEXT), ("list[constrained-str]", list_of(TEXT)))),
        expected='auto, or layer names (a list, or "a,b,c")',
        help="int8: keep layers float. auto: the worst, until --max-accuracy-drop holds; or NAME,...: PyTorch "
        "module paths (features.3.conv.1, or features.3 for all its layers) or TFLite tensor names, as the report "
        "lists them.",
    )  # fmt: skip
    max_int8_latency_cost: Any = option(
        None, "--max-int8-latency-cost", group=MODES_GROUP,
        rule=optional(either(("constrained-str", TEXT), ("constrained-float", PERCENT))),
        expected='a share such as "10%" or 0.1', help="auto: at most this much slower than full int8, e.g. 10%.",
    )  # fmt: skip
    int8_io: str = option(
        "int8", "--int8-io", group=MODES_GROUP, rule=one_of(*INT8_IO), expected="int8, uint8 or float",
        help="int8 file's input/output type: int8 (default), uint8, float.",
    )  # fmt: skip
    allow_flex: bool = option(
        False, "--allow-flex", group=MODES_GROUP, cli=bool, rule=boolean, expected=BOOL,
        help="Allow Flex (SELECT_TF_OPS) ops.",
    )  # fmt: skip

    # -- checks ---------------------------------------------------------------------
    tolerance: dict = option(
        {}, group=CHECKS, rule=dict_of(MODE, TOLERANCE),
        expected="a table per mode, e.g. [tolerance.fp16] with atol, rtol, cosine, top1",
        help="Per mode: atol, rtol, cosine, top1 (convertctl.toml's [tolerance.MODE]).",
        sub={
            "*": "a table with atol, rtol, cosine and/or top1, e.g. [tolerance.fp16] atol = 0.05",
            "*.atol": "a finite number >= 0",
            "*.rtol": "a finite number >= 0",
            "*.cosine": "a number from -1 to 1",
            "*.top1": "a fraction from 0 to 1",
        },
    )  # fmt: skip
    atol: dict = option(
        {}, "--atol", group=CHECKS, repeat=True, per_mode=True, file=False, into=("tolerance", "atol"),
        rule=dict_of(MODE, number(ge=0)), expected="a finite number >= 0",
        help="Max abs difference: N or MODE=N. Without --rtol it is the whole bound.",
    )  # fmt: skip
    rtol: dict = option(
        {}, "--rtol", group=CHECKS, repeat=True, per_mode=True, file=False, into=("tolerance", "rtol"),
        rule=dict_of(MODE, number(ge=0)), expected="a finite number >= 0",
        help="Relative tolerance (times max |PyTorch output|): N or MODE=N.",
    )  # fmt: skip
    max_accuracy_drop: dict = option(
        {}, "--max-accuracy-drop", group=CHECKS, repeat=True, per_mode=True, rule=dict_of(MODE, PERCENT),
        expected="a table of points per mode, e.g. int8 = 1.5",
        sub={"*": "a number of percentage points from 0 to 100"},
        help="Points of accuracy a mode may lose: N or MODE=N.",
    )  # fmt: skip
    strict: bool = option(
        False, "--strict", group=CHECKS, cli=bool, rule=boolean, expected=BOOL,
        help="Fail, rather than warn, when a check cannot mean what it says: PyTorch's own accuracy on "
        "--eval-data near chance, an accuracy budget smaller than one sample's step, files with different I/O "
        "layouts.",
    )  # fmt: skip
    latency_runs: int = option(
        10, "--latency-runs", group=CHECKS, cli=int, rule=integer(ge=0, le=10000), file=False,
        expected="a whole number from 0 to 10000", help="Timed runs per TFLite file (0: skip).",
    )  # fmt: skip
    threads: int = option(
        1, "--threads", group=CHECKS, cli=int, rule=integer(ge=1, le=256), file=False,
        expected="a whole number from 1 to 256",
        help="Threads for latency: each file is timed at 1 thread and at this many (more than the CPUs is flagged).",
    )  # fmt: skip

    # -- conversion and environments -----------------------------------------------------
    converter: str = option(
        "auto", "--converter", "--convert-image", group=CONVERSION, rule=TEXT, aliases=("convert_image",),
        expected="a variant name, image tag or family (a string)",
        help="auto (try the catalog's ladder until one converts and validates), a family "
        "(onnx-tf, onnx2tf, litert-torch), or a variant name or image tag (see `convertctl images list`).",
    )  # fmt: skip
    export_image: str = option(
        "auto", "--export-image", group=CONVERSION, rule=TEXT, expected="a variant name or image tag (a string)",
        help="auto (the catalog's ladder), or an export variant or tag.",
    )  # fmt: skip
    opset: int | None = option(
        None, "--opset", group=CONVERSION, cli=int, rule=optional(integer(ge=7, le=20)),
        expected="a whole number from 7 to 20",
        help="ONNX opset. Default: the highest both the converter and the exporter take.",
    )  # fmt: skip
    layout: str | None = option(
        None, "--layout", group=CONVERSION, rule=optional(one_of(*LAYOUTS)), expected=" or ".join(LAYOUTS),
        help="nchw or nhwc I/O. Default: whatever the converter gives.",
    )  # fmt: skip
    runtime: str = option(
        "auto", "--runtime", group=CONVERSION, rule=one_of(*RUNTIMES), expected=", ".join(RUNTIMES[:-1])
        + f" or {RUNTIMES[-1]}",
        help="auto (Docker if a daemon answers, else local); "
        + "; ".join(f"{k.name}: {k.summary}" for k in runtimes.KINDS) + ".",
    )  # fmt: skip
    no_cache: bool = option(
        False, "--no-cache", group=CONVERSION, cli=bool, rule=boolean, file=False, expected=BOOL,
        envvar="CONVERTCTL_NO_CACHE", help="Run every stage; reuse nothing cached.",
    )  # fmt: skip

    ca_bundle: str | None = option(
        None, "--ca-bundle", group=CONVERSION, rule=PATH, file=False, expected="a path (a string)",
        help="CA bundle for the package index (TLS-intercepting proxies). Default: pip's cert setting, then "
        "SSL_CERT_FILE.",
    )  # fmt: skip
    pip_index_url: str | None = option(
        None, "--pip-index-url", group=CONVERSION, rule=PATH, file=False, expected="a URL (a string)",
        help="Package index for building environments. Default: pip's configuration.",
    )  # fmt: skip
    wheelhouse: str | None = option(
        None, "--wheelhouse", group=CONVERSION, rule=PATH, file=False, expected="a folder path (a string)",
        help="Folder of wheels to install from first (air-gapped machines; the CPU torch wheel). Docker builds "
        "copy in only the files the lock names. Default: pip's find-links.",
    )  # fmt: skip
    base_image: str | None = option(
        None, "--base-image", group=CONVERSION, rule=PATH, file=False, expected="an image name (a string)",
        help="FROM image for stage image builds (a local base; Docker).",
    )  # fmt: skip

    # -- output ---------------------------------------------------------------------------
    out: str = option(
        "convertctl-out", "--out", "-o", group=OUTPUT, rule=TEXT, file=False, expected="a folder path (a string)",
        help="Output directory.",
    )  # fmt: skip
    keep_run: bool = option(
        False, "--keep-run", group=OUTPUT, cli=bool, rule=boolean, file=False, expected=BOOL,
        help="Keep the run directory after success.",
    )  # fmt: skip
    dry_run: bool = option(
        False, "--dry-run", group=OUTPUT, cli=bool, rule=boolean, file=False, expected=BOOL,
        help="Check everything and print the plan (rungs, opsets, which quantizer makes each mode, why a rung "
        "is skipped); run nothing, write nothing.",
    )  # fmt: skip
    keep_intermediates: bool = option(
        False, "--keep-intermediates", group=OUTPUT, cli=bool, rule=boolean, file=False, expected=BOOL,
        help="Put the ONNX file and SavedModel in --out too.",
    )  # fmt: skip

    # -- derived values (not options) -----------------------------------------------
    @property
    def modes(self) -> list[str]:
        """The modes asked for, each once, in order; fp32 when none."""
        return list(dict.fromkeys(self.quant or [modes.DEFAULT]))

    def max_drop_for(self, mode: str) -> float:
        return float(self.max_accuracy_drop.get(mode, modes.get(mode).max_drop))

    def tolerances(self) -> dict:
        """{mode: the bounds the user gave}, for validate.tolerance_for."""
        return {m: {k: v for k, v in t.items() if v is not None} for m, t in self.tolerance.items()}

    def path(self, name: str) -> Path | None:
        value = getattr(self, name)
        return Path(value) if value else None


SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(Options)}
FILE_KEYS = {key for name, s in SPECS.items() if s.file for key in (name, *s.aliases)}
ALIASES = {alias: name for name, s in SPECS.items() for alias in s.aliases}
# The options that choose and build stage environments: every command that
# builds one takes them, and a batch's models that share them share one runtime.
ENVIRONMENT = ("runtime", "ca_bundle", "pip_index_url", "wheelhouse", "base_image")


def default(name: str) -> Any:
    f = next(f for f in fields(Options) if f.name == name)
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def flag(name: str) -> str:
    """The flag that gives an option, for messages ("" for a file-only key)."""
    spec = SPECS[name]
    return next((f for f in spec.flags if f.startswith("--")), "")
