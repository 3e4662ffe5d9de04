"""The combined report of a batch: batch-report.json, batch-report.md and
the terminal table, models × modes. Every name and reason in it comes from
outside (model files, stage errors): the terminal shows them escaped with
control characters made visible, Markdown in code spans or HTML-escaped."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.table import Table

from convertctl import __version__
from convertctl.batch.outcome import PASSED, Outcome
from convertctl.config.modes import NAMES as MODE_ORDER
from convertctl.report.text import md_code, md_text, term
from convertctl.store import safefs

SCHEMA = "convertctl.batch-report"
SCHEMA_VERSION = 1
JSON_NAME, MD_NAME = "batch-report.json", "batch-report.md"


def modes_of(outcomes: list) -> list:
    found = {m for o in outcomes for m in o.modes}
    return sorted(found, key=lambda m: MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER))


def cell(row: dict | None) -> tuple[bool | None, str]:
    """(passed?, words) of one model × mode."""
    if not row:
        return None, ""
    if row["status"] == "passed":
        parts = [row.get("variant", "")]
        if row.get("size_bytes"):
            parts.append(f"{row['size_bytes'] / 1024:.0f} KiB")
        if row.get("latency_ms") is not None:
            parts.append(f"{row['latency_ms']:.3g} ms")
        if row.get("accuracy") is not None:
            parts.append(f"acc {row['accuracy']:.1f}%")
        return True, " ".join(p for p in parts if p)
    return False, row.get("reason", "") or "failed"


def model_facts(o: Outcome) -> str:
    parts = [f"{o.seconds:.0f}s"]
    if o.peak_rss_mb is not None:
        parts.append(f"peak {o.peak_rss_mb:.0f} MB")
    if o.cached:
        parts.append("cached")
    if o.node:
        parts.append(f"node {o.node[:8]}")
    if len(o.attempts) > 1:
        parts.append(f"{len(o.attempts)} tries")
    return ", ".join(parts)


def to_dict(outcomes: list, meta: dict) -> dict:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "convertctl_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **meta,
        "models": [o.to_dict() for o in outcomes],
    }


def save(out: Path, outcomes: list, meta: dict) -> dict:
    """batch-report.json and .md in --out, each whole or not at all."""
    data = to_dict(outcomes, meta)
    out.mkdir(parents=True, exist_ok=True)
    safefs.write_atomic(out, MD_NAME, markdown(outcomes, meta))
    safefs.write_atomic(out, JSON_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(markdown(outcomes, meta) + "\n")
    return data


def headline(outcomes: list, meta: dict) -> str:
    passed = sum(o.state == PASSED for o in outcomes)
    word = "PASSED" if meta.get("exit_code") == 0 else f"FAILED (exit {meta.get('exit_code')})"
    if meta.get("exit_code") == 130:
        word = "INTERRUPTED (exit 130)"
    return (
        f"{word}: {passed} of {len(outcomes)} model(s) passed in {meta.get('seconds', 0):.0f}s "
        f"({meta.get('executor', '')}, {meta.get('workers', '?')} at a time)"
    )


def table(outcomes: list, meta: dict) -> Table:
    modes = modes_of(outcomes)
    t = Table(title=f"convertctl batch: {term(meta.get('source', ''))}", title_justify="left")
    for header in ("Model", "State", *modes, "Wall, memory"):
        t.add_column(header, overflow="fold")
    marks = {True: "[green]✓[/] ", False: "[red]✗[/] ", None: ""}
    for o in outcomes:
        cells = []
        for mode in modes:
            ok, words = cell(o.modes.get(mode))
            cells.append(marks[ok] + term(words))
        state = o.state if o.exit_code in (None, 0) else f"{o.state} ({o.exit_code})"
        if o.failure and not o.modes:
            cells = [term(o.failure)] + [""] * (len(modes) - 1) if modes else cells
            state += f": {o.failure}" if not modes else ""
        t.add_row(term(o.name), term(state), *cells, term(model_facts(o)))
    return t


def markdown(outcomes: list, meta: dict) -> str:
    modes = modes_of(outcomes)
    lines = [
        f"## convertctl batch: {md_code(meta.get('source', ''))}",
        "",
        f"**{md_text(headline(outcomes, meta))}**",
        "",
        "| model | state | " + " | ".join(modes) + " | wall, peak memory |",
        "|---|---|" + "---|" * len(modes) + "---|",
    ]
    for o in outcomes:
        cells = []
        for mode in modes:
            ok, words = cell(o.modes.get(mode))
            mark = {True: "✓ ", False: "✗ ", None: ""}[ok]
            cells.append(mark + md_text(words))
        state = o.state if o.exit_code in (None, 0) else f"{o.state} (exit {o.exit_code})"
        lines.append(f"| {md_code(o.name)} | {state} | " + " | ".join(cells) + f" | {md_text(model_facts(o))} |")
    failed = [o for o in outcomes if o.failure]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- {md_code(o.name)}: {md_text(o.failure)}" for o in failed]
    return "\n".join(lines) + "\n"
