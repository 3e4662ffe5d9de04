"""int8 that keeps accuracy, host side: what the quantize step is asked
(I/O type, per-layer error, layers to keep float, the target of the auto
search) and what the host does with its answer (the trade-off curve timed
by LiteRT, the latency cap).

The search itself runs inside the quantize step (one calibration, the
debugger once, files made and judged in the same TensorFlow): see
images/quantize/selective.py for the request and result fields a family's
quantize step reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from convertctl.errors import UsageError

if TYPE_CHECKING:  # numpy only where arrays are handled: `convertctl --help` imports this module
    import numpy as np

DEBUG_SAMPLES = 16  # the debugger's per-layer error settles well before 16 samples
HOLDOUT_SHARE = 4  # without --eval-data, 1 calibration sample in 4 is held out to judge the search
MIN_HOLDOUT = 16
LABELS = "inputs/search_labels.npz"


@dataclass
class Int8Options:
    float_layers: str | list | None = None  # None, "auto" or op output names
    io: str = "int8"
    max_latency_cost: float | None = None  # 0.10: 10 % slower than full int8 at most
    debug_samples: int = DEBUG_SAMPLES

    @classmethod
    def of(cls, options) -> Int8Options:
        """From a run's Options (the three int8 options of the table)."""
        return cls(
            float_layers=parse_float_layers(options.int8_float_layers),
            io=options.int8_io,
            max_latency_cost=parse_cost(options.max_int8_latency_cost),
        )

    @property
    def auto(self) -> bool:
        return self.float_layers == "auto"


def parse_float_layers(text: str | list | None) -> str | list | None:
    """'auto', or op output tensor names separated by commas (as the report lists them)."""
    if text is None or text == "":
        return None
    if isinstance(text, list):
        names = [str(n).strip() for n in text if str(n).strip()]
    elif text.strip() == "auto":
        return "auto"
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--int8-float-layers: give auto or layer names separated by commas")
    return names


def parse_cost(text: str | float | None) -> float | None:
    """'10%' or 0.1 -> 0.1."""
    if text is None or text == "":
        return None
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UsageError(f"--max-int8-latency-cost {text!r}: expected a share such as 10% or 0.1") from None
    if not 0 <= value <= 100:  # nan%, -5%, 1e9% (a NaN compares false)
        raise UsageError(f"--max-int8-latency-cost {text!r}: expected a share from 0% to 10000% (0 to 100)")
    return value


def split_holdout(calib: dict) -> tuple[dict, dict]:
    """Calibration minus a hold-out (the last quarter), and the hold-out."""
    count = len(next(iter(calib.values())))
    held = count // HOLDOUT_SHARE
    if held < MIN_HOLDOUT:
        raise UsageError(
            f"--int8-float-layers auto judges its choice on --eval-data or on a hold-out of the calibration "
            f"data; {count} calibration samples leave {held} (at least {MIN_HOLDOUT} needed): give --eval-data "
            f"or at least {MIN_HOLDOUT * HOLDOUT_SHARE} calibration samples"
        )
    return {k: v[: count - held] for k, v in calib.items()}, {k: v[count - held :] for k, v in calib.items()}


def request_fields(opts: Int8Options, mode: str) -> dict:
    """What every int8 / int16x8 quantize request carries (no search yet)."""
    if mode == "dynamic":
        return {"debug_samples": opts.debug_samples}
    if mode not in ("int8", "int16x8"):
        return {}
    fields: dict = {"int8_io": opts.io}
    if mode == "int8":
        fields["debug_samples"] = opts.debug_samples
        if opts.float_layers:
            fields["float_layers"] = opts.float_layers
    return fields


def search_spec(run_dir, reference: dict, labels: np.ndarray | None, max_drop: float) -> dict:
    """The auto search's set, labels and target. With --eval-data: its
    labels, target PyTorch's accuracy minus the budget; otherwise the
    calibration hold-out, labelled by PyTorch's own top-1 (agreement)."""
    import numpy as np

    from convertctl.checks import validate
    from convertctl.inputs.arrays import save_set

    set_name = "eval" if labels is not None else "holdout"
    scores = reference.get(set_name)
    if scores is None:
        raise UsageError(f"no PyTorch reference outputs on the {set_name} set to judge --int8-float-layers auto")
    if labels is None:
        labels = top1(scores)
        baseline = 100.0
    else:
        baseline = validate.accuracy(scores, labels)
    save_set(run_dir / LABELS, {"y": np.asarray(labels, dtype=np.int64)})
    return {"set": set_name, "labels": LABELS, "target": baseline - max_drop, "baseline": baseline}


def top1(scores: dict) -> np.ndarray:
    from convertctl.checks import validate

    for name in sorted(scores):
        arr = scores[name]
        if validate.looks_like_scores(arr.shape[1:]):
            return arr.reshape(len(arr), -1).argmax(1)
    raise UsageError("--int8-float-layers auto needs a model output of class scores, (1, C) or (C,) per sample")


def over_cap(selective: dict, cap: float | None) -> dict | None:
    """The curve point to fall back to when the chosen file costs more
    latency than the cap allows over full int8 (LiteRT, XNNPACK, 1 thread):
    the most accurate point with fewer float layers within the cap. None
    when within it. Costs compare the fastest run of each file, the one
    least disturbed by whatever else the machine runs (medians are what the
    report shows)."""
    curve = selective.get("curve") or []
    base = next((p for p in curve if p["float_layers"] == 0), None)
    chosen = selective.get("chosen") or {}

    def fastest(point: dict) -> float | None:
        return point.get("latency_min_ms") or point.get("latency_ms")

    if base is None or not fastest(base):
        return None
    base_ms = fastest(base) or 0.0
    for point in curve:
        ms = fastest(point)
        if ms:
            point["latency_cost"] = ms / base_ms - 1.0
    if cap is None or chosen.get("latency_cost") is None or chosen["latency_cost"] <= cap:
        return None
    within = [
        p
        for p in curve
        if p.get("latency_cost") is not None and p["latency_cost"] <= cap and p["float_layers"] < chosen["float_layers"]
    ]
    return max(within, key=lambda p: (p["accuracy"], -p["float_layers"])) if within else base
