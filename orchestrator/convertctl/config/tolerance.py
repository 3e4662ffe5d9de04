"""What a file's outputs are held to against the reference, per mode (each
mode's defaults live beside it in modes.py; --atol/--rtol/convertctl.toml
override them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Judged per element: |got - ref| <= atol + rtol * max|ref| (over all
    samples) for a `quantile` share of the elements, and none beyond `cap`
    times the bound: a bound every element had to meet failed outputs with
    many elements on a single unlucky one (FCN-ResNet50: 3.2e-4 against
    2.7e-4 at cosine 0.99999999)."""

    atol: float | None = None
    rtol: float = 0.0
    quantile: float = 0.999  # share of elements that must be within their bound
    cap: float = 10.0  # no element may miss its bound by more than this factor
    cosine: float | None = None  # minimum cosine similarity over all samples
    top1: float | None = None  # minimum top-1 agreement (class scores only)

    def bound(self, ref_peak: float) -> float | None:
        """The bound every element is held to, from the largest |ref| over all
        samples: a float16 or converter error follows the size of the activations
        that made the outputs, not of the one element or sample (a random-weight
        MobileNetV2's fp16 file, at cosine 0.9998, missed per-sample bounds on a
        sample of small scores)."""
        return None if self.atol is None else self.atol + self.rtol * ref_peak
