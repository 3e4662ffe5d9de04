"""The quantization modes, as data: one row per mode, read by everything
else (the flags and convertctl.toml, the catalog, the ladder, the checks,
the report schema, the stage requests). A stage is told what a mode needs
(`Mode.spec()`); it keeps no list of its own. Like optimum's export
configs, each mode carries its tolerances and capabilities beside it.

A new mode is a row here plus the stage code that makes it.

Fields of a row:
  weights, activations  what the file stores and computes in ("dynamic":
                        activations quantized at run time, float I/O)
  calibrated            needs representative data (--calib)
  granularity, block    how weights are grouped for their scales
  tolerance, max_drop   what its outputs are held to, against PyTorch
  quantizers            the quantizer kinds that make it ("" = can), or why
                        a kind cannot; the catalog names each quantize
                        variant's kind
  signature             what the file must carry, checked after conversion
                        (checks/signature.py): the dtype most weights are
                        stored in, and the share of weight elements that must
                        be (TFLite's converter leaves tensors under 1024
                        elements float: a "dynamic" small CNN came out with no
                        int8 tensor at all)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from convertctl.config.tolerance import Tolerance

# The two kinds of quantizer a catalog quantize variant can be.
TFLITE_CONVERTER = "tflite-converter"  # TensorFlow's TFLiteConverter, from a SavedModel
LITERT_QUANTIZER = "litert-quantizer"  # LiteRT Quantizer (was ai-edge-quantizer), from a float .tflite
QUANTIZER_KINDS = (TFLITE_CONVERTER, LITERT_QUANTIZER)
# What each kind reads: the host hands it the convert step's SavedModel, or a float .tflite.
QUANTIZER_INPUT = {TFLITE_CONVERTER: "saved_model", LITERT_QUANTIZER: "tflite"}


@dataclass(frozen=True)
class Mode:
    name: str
    summary: str
    weights: str  # float32 | float16 | int8 | int4
    activations: str  # float32 | int8 | int16 | dynamic
    tolerance: Tolerance
    max_drop: float  # default accuracy budget, points
    quantizers: dict = field(compare=False, hash=False)  # kind -> "" (can) or why it cannot
    calibrated: bool = False
    granularity: str = "channel"  # tensor | channel | block
    block: int = 0  # block size for granularity "block"
    io: tuple = ("float32",)  # I/O types a file of this mode may have; the first is the default
    weight_share: float = 0.9  # signature: share of weight elements stored as `weights`

    def spec(self) -> dict:
        """What a quantize step is told: everything it needs to make the mode."""
        return {
            "name": self.name,
            "weights": self.weights,
            "activations": self.activations,
            "calibrated": self.calibrated,
            "granularity": self.granularity,
            "block_size": self.block,
        }

    def made_by(self, kind: str) -> bool:
        return self.quantizers.get(kind) == ""

    def why_not(self, kind: str) -> str:
        return self.quantizers.get(kind) or f"no {kind} recipe makes {self.name}"

    @property
    def quantized(self) -> bool:
        """Weights stored in an integer type: judged by agreement, not element by element."""
        return self.weights not in ("float32", "float16")

    @property
    def integer_only(self) -> bool:
        """int8 / int16x8: every op computes in integers (no float op but those kept float)."""
        return self.activations in ("int8", "int16")


CAN = {TFLITE_CONVERTER: "", LITERT_QUANTIZER: ""}
NO_WEIGHT_ONLY = "TFLiteConverter has no weight-only or int4 recipe; LiteRT Quantizer makes it"

MODES_TABLE = (
    Mode(
        "fp32",
        "plain conversion",
        "float32",
        "float32",
        Tolerance(atol=1e-4, rtol=1e-4, cosine=0.9999, top1=1.0),
        0.5,
        CAN,
        granularity="tensor",
        weight_share=1.0,
    ),
    Mode(
        "dynamic",
        "dynamic range: int8 weights, float activations quantized at run time",
        "int8",
        "dynamic",
        Tolerance(cosine=0.98, top1=0.75),
        1.0,
        CAN,
    ),
    Mode(
        "int8",
        "full integer: int8 weights and activations, calibrated",
        "int8",
        "int8",
        Tolerance(cosine=0.98, top1=0.75),
        2.0,
        CAN,
        calibrated=True,
        io=("int8", "uint8", "float32"),
    ),
    Mode(
        "fp16",
        "float16 weights",
        "float16",
        "float32",
        Tolerance(atol=1e-2, rtol=1e-2, cosine=0.999, top1=0.9),
        0.5,
        CAN,
        granularity="tensor",
    ),
    Mode(
        "int16x8",
        "16-bit activations, 8-bit weights, calibrated",
        "int8",
        "int16",
        Tolerance(cosine=0.99, top1=0.9),
        1.0,
        CAN,
        calibrated=True,
        io=("int16", "float32"),
    ),
    Mode(
        "weight-only-int8",
        "int8 weights, dequantized: float compute",
        "int8",
        "float32",
        Tolerance(cosine=0.99, top1=0.9),
        1.0,
        {TFLITE_CONVERTER: NO_WEIGHT_ONLY, LITERT_QUANTIZER: ""},
    ),
    Mode(
        "weight-only-int4",
        "int4 weights (blockwise, 32 per block, where the quantizer can), dequantized: float compute",
        "int4",
        "float32",
        Tolerance(cosine=0.95, top1=0.75),
        3.0,
        {TFLITE_CONVERTER: NO_WEIGHT_ONLY, LITERT_QUANTIZER: ""},
        granularity="block",
        block=32,
    ),
    Mode(
        "dynamic-int4",
        "int4 weights, activations quantized at run time",
        "int4",
        "dynamic",
        Tolerance(cosine=0.95, top1=0.75),
        3.0,
        {TFLITE_CONVERTER: NO_WEIGHT_ONLY, LITERT_QUANTIZER: ""},
    ),
)
MODES: dict[str, Mode] = {m.name: m for m in MODES_TABLE}
NAMES = tuple(MODES)
DEFAULT = "fp32"


def get(name: str) -> Mode:
    return MODES[name]


def calibrated(names) -> list[str]:
    """The modes among names that need calibration data."""
    return [n for n in names if n in MODES and MODES[n].calibrated]
