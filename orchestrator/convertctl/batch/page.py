"""batch-report.html: the combined report as one self-contained page,
beside batch-report.json and .md, built like report.html (inline CSS,
hand-built SVG, no script, nothing fetched: it opens from a CI artifact or
on a phone). Models × modes with each file's rung, size and latency, every
model's wall time and peak memory as charts, each failure's reason, and a
link to each model's own report.html. Every name comes from outside:
escaped (report/text.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from convertctl.batch.outcome import PASSED
from convertctl.batch.summary import cell, headline, model_facts, modes_of
from convertctl.report import svg
from convertctl.report.html import CSS
from convertctl.report.text import esc
from convertctl.store import safefs

HTML_NAME = "batch-report.html"
EXTRA_CSS = ".cctl td.pass{background:#dafbe1}.cctl td.fail{background:#ffebe9}"


def _grid(outcomes: list) -> str:
    modes = modes_of(outcomes)
    head = "".join(f"<th>{esc(h)}</th>" for h in ("model", "state", *modes, "wall, peak memory"))
    rows = []
    for o in outcomes:
        cells = []
        for mode in modes:
            ok, words = cell(o.modes.get(mode))
            kind = {True: ' class="pass"', False: ' class="fail"', None: ""}[ok]
            mark = {True: "✓ ", False: "✗ ", None: ""}[ok]
            cells.append(f'<td{kind} data-mode="{esc(mode)}">{mark}{esc(words)}</td>')
        state = o.state if o.exit_code in (None, 0) else f"{o.state} (exit {o.exit_code})"
        # The model's own page, by a relative link under --out (the name is quoted, never markup).
        link = f'<a href="{esc(quote(o.name))}/report.html">{esc(o.name)}</a>' if o.modes else esc(o.name)
        rows.append(
            f'<tr data-model="{esc(o.name)}"><td>{link}</td><td>{esc(state)}</td>{"".join(cells)}'
            f"<td>{esc(model_facts(o))}</td></tr>"
        )
    return f"<h2>Models × modes</h2><div class=scroll><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _charts(outcomes: list) -> str:
    wall = [(o.name, float(o.seconds), f"{o.name}: {o.seconds:.1f} s") for o in outcomes]
    charts = [svg.bars(wall, "wall time per model", " s", kind="wall")]
    peaks = [(o.name, float(o.peak_rss_mb), f"{o.name}: peak {o.peak_rss_mb:.0f} MB") for o in outcomes
             if o.peak_rss_mb is not None]  # fmt: skip
    if peaks:
        charts.append(svg.bars(peaks, "peak memory of a model's stages", " MB", kind="memory"))
    return "<h2>Time and memory</h2><div class=charts>" + "".join(charts) + "</div>"


def _failures(outcomes: list) -> str:
    failed = [o for o in outcomes if o.failure]
    if not failed:
        return ""
    items = "".join(f"<li><code>{esc(o.name)}</code>: {esc(o.failure)}</li>" for o in failed)
    return f"<h2>Failures</h2><ul>{items}</ul>"


def render(outcomes: list, meta: dict) -> str:
    ok = meta.get("exit_code") == 0
    passed = sum(o.state == PASSED for o in outcomes)
    parts = [
        f"<h1>convertctl batch: <code>{esc(meta.get('source', ''))}</code></h1>",
        f'<div class="banner {"ok" if ok else "bad"}">{esc(headline(outcomes, meta))}</div>',
        f'<p class="meta">{passed} of {len(outcomes)} model(s) passed; executor {esc(meta.get("executor", ""))}, '
        f"{esc(meta.get('workers', '?'))} at a time, {float(meta.get('seconds', 0)):.0f} s in all</p>",
        _grid(outcomes),
        _charts(outcomes),
        _failures(outcomes),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>convertctl batch: {esc(meta.get('source', ''))}</title>"
        f'<style>{CSS}{EXTRA_CSS}</style></head><body class="cctl">{"".join(parts)}</body></html>\n'
    )


def save(out: Path, outcomes: list, meta: dict) -> None:
    """batch-report.html in --out, whole or not at all."""
    safefs.write_atomic(out, HTML_NAME, render(outcomes, meta))
