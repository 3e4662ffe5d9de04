"""Small charts as inline SVG, built by hand from the report's numbers.

Why by hand: report.html must open offline, from a GitHub artifact or an
e-mail, with no script and no network, and be the same bytes for the same
report. A charting library (Vega-Lite, Plotly, matplotlib) would bring
hundreds of kilobytes of JavaScript or a heavy import into the host, and
its output changes with its version. Four chart kinds cover the report:
horizontal bars, lines over a few named steps, a scatter and a curve, each
a viewBox that scales to the screen.

Every text that reaches the SVG is escaped here (names come from model
files); every mark carries data-v (its value) and a <title> (what a
pointer shows), so a test or a reader can check the picture against the
numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence

from convertctl.report.text import esc

W = 520  # viewBox width: on a phone (~360 px) its 13-unit text is 9 px; the element is at most 40rem wide
PAD_L, PAD_R, PAD_T, PAD_B = 60, 12, 12, 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _num(value: float) -> str:
    """A coordinate: one decimal, no -0.0, the same text for the same value everywhere."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3g}"


def _open(kind: str, height: int, label: str) -> str:
    return (
        f'<svg class="chart" data-chart="{esc(kind)}" viewBox="0 0 {W} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{esc(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    )


def _scale(lo: float, hi: float, a: float, b: float, log: bool = False):
    """value -> coordinate between a and b (linear or log10)."""
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    span = (hi - lo) or 1.0

    def to(value: float) -> float:
        v = math.log10(value) if log else value
        return a + (v - lo) / span * (b - a)

    return to


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    if hi == lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / 2))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 5:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _axes(height: int, y_ticks: list, y_to, x_label: str, y_label: str, y_fmt=fmt) -> list[str]:
    bottom = height - PAD_B
    parts = [
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{bottom}"/>',
        f'<line class="axis" x1="{PAD_L}" y1="{bottom}" x2="{W - PAD_R}" y2="{bottom}"/>',
        f'<text class="lbl" x="{(PAD_L + W - PAD_R) // 2}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>',
        f'<text class="lbl" x="12" y="{(PAD_T + bottom) // 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(PAD_T + bottom) // 2})">{esc(y_label)}</text>',
    ]
    for t in y_ticks:
        y = _num(y_to(t))
        parts.append(f'<line class="grid" x1="{PAD_L}" y1="{y}" x2="{W - PAD_R}" y2="{y}"/>')
        parts.append(f'<text class="tick" x="{PAD_L - 4}" y="{y}" text-anchor="end" dy="0.3em">{esc(y_fmt(t))}</text>')
    return parts


def _x_tick(x: float, height: int, text: str) -> str:
    return f'<text class="tick" x="{_num(x)}" y="{height - PAD_B + 15}" text-anchor="middle">{esc(text)}</text>'


def bars(items: Sequence[tuple[str, float, str]], label: str, unit: str = "", kind: str = "bars") -> str:
    """Horizontal bars, one per (name, value, hover text), longest scale first."""
    row, top, name_w = 24, 8, 190
    height = top + row * len(items) + 8
    hi = max((v for _, v, _ in items if math.isfinite(v)), default=1.0) or 1.0
    to = _scale(0, hi, 0, W - name_w - 60)
    parts = [_open(kind, height, label)]
    for i, (name, value, hover) in enumerate(items):
        y = top + i * row
        shown = name if len(name) <= 26 else name[:25] + "…"
        width = _num(max(to(value), 1.0)) if math.isfinite(value) else "1.0"
        parts.append(
            f'<g class="bar" data-v="{esc(fmt(value))}"><title>{esc(hover)}</title>'
            f'<text class="name" x="{name_w - 6}" y="{y + 14}" text-anchor="end">{esc(shown)}</text>'
            f'<rect x="{name_w}" y="{y + 3}" width="{width}" height="{row - 6}" fill="{PALETTE[0]}"/>'
            f'<text class="tick" x="{name_w + float(width) + 4:.1f}" y="{y + 14}">'
            f"{esc(fmt(value))}{esc(unit)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def lines(series: dict, steps: Sequence[str], label: str, y_label: str, kind: str = "lines") -> str:
    """One line per series over named steps, y on a log scale (differences
    span 1e-8 to 1); series: {name: [(step index, value, hover text)]}."""
    height = 220
    values = [v for pts in series.values() for _, v, _ in pts if v is not None and v > 0 and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (1e-6, 1.0)
    lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    if lo == hi:
        hi = lo * 10
    y_to = _scale(lo, hi, height - PAD_B, PAD_T, log=True)
    x_step = (W - PAD_L - PAD_R - 40) / max(len(steps) - 1, 1)

    def x_to(i: int) -> float:
        return PAD_L + 20 + i * x_step

    parts = [_open(kind, height, label), *_axes(height, _ticks(lo, hi, True), y_to, "", y_label, lambda t: f"{t:.0e}")]
    for i, step in enumerate(steps):
        parts.append(_x_tick(x_to(i), height, step))
    taken: list = []  # label heights used at the line ends: equal values would print on each other
    for n, (name, pts) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        drawn = [(x_to(i), y_to(max(v, lo)), v, hover) for i, v, hover in pts if v is not None and math.isfinite(v)]
        if len(drawn) > 1:
            path = " ".join(f"{_num(x)},{_num(y)}" for x, y, _, _ in drawn)
            parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y, v, hover in drawn:
            parts.append(
                f'<circle class="pt" data-v="{esc(fmt(v))}" cx="{_num(x)}" cy="{_num(y)}" r="4" fill="{color}">'
                f"<title>{esc(hover)}</title></circle>"
            )
        if drawn:
            x, y = drawn[-1][0], drawn[-1][1]
            while any(abs(y - t) < 12 for t in taken):
                y += 12
            taken.append(y)
            parts.append(
                f'<text class="tick" x="{_num(x + 8)}" y="{_num(y)}" dy="0.3em" fill="{color}">{esc(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def scatter(points: Sequence[tuple[float, float, str, str]], label: str, x_label: str, y_label: str) -> str:
    """Points (x, y, name, hover text) on linear axes from 0."""
    height = 240
    xs = [x for x, _, _, _ in points] or [1.0]
    ys = [y for _, y, _, _ in points] or [1.0]
    x_hi, y_hi = max(xs) * 1.15 or 1.0, max(ys) * 1.15 or 1.0
    x_to = _scale(0, x_hi, PAD_L, W - PAD_R - 40)
    y_to = _scale(0, y_hi, height - PAD_B, PAD_T)
    parts = [_open("scatter", height, label), *_axes(height, _ticks(0, y_hi, False), y_to, x_label, y_label)]
    for t in _ticks(0, x_hi, False):
        parts.append(_x_tick(x_to(t), height, fmt(t)))
    for n, (x, y, name, hover) in enumerate(points):
        color = PALETTE[n % len(PALETTE)]
        parts.append(
            f'<g class="pt" data-v="{esc(fmt(x))},{esc(fmt(y))}"><title>{esc(hover)}</title>'
            f'<circle cx="{_num(x_to(x))}" cy="{_num(y_to(y))}" r="6" fill="{color}"/>'
            f'<text class="tick" x="{_num(x_to(x) + 9)}" y="{_num(y_to(y))}" dy="0.3em">{esc(name)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def curve(
    points: Sequence[tuple[float, float, str]], chosen: int | None, label: str, x_label: str, y_label: str
) -> str:
    """A line through (x, y, hover text), the chosen point ringed."""
    height = 200
    ys = [y for _, y, _ in points] or [0.0]
    xs = [x for x, _, _ in points] or [0.0]
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.1 or abs(y_hi) * 0.1 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_to = _scale(min(xs), max(xs) or 1.0, PAD_L + 12, W - PAD_R - 12)
    y_to = _scale(y_lo, y_hi, height - PAD_B, PAD_T)
    parts = [_open("curve", height, label), *_axes(height, _ticks(y_lo, y_hi, False), y_to, x_label, y_label)]
    for x in sorted(set(xs)):
        parts.append(_x_tick(x_to(x), height, fmt(x)))
    if len(points) > 1:
        path = " ".join(f"{_num(x_to(x))},{_num(y_to(y))}" for x, y, _ in points)
        parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    for i, (x, y, hover) in enumerate(points):
        mark = i == chosen
        parts.append(
            f'<circle class="pt{" chosen" if mark else ""}" data-v="{esc(fmt(y))}" cx="{_num(x_to(x))}" '
            f'cy="{_num(y_to(y))}" r="{8 if mark else 4}" fill="{"none" if mark else PALETTE[0]}" '
            f'stroke="{PALETTE[1] if mark else "none"}" stroke-width="3"><title>{esc(hover)}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)
