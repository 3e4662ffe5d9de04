"""The report's two human renderings, from the same rows: a rich table for
the terminal and Markdown for report.md / GitHub's job summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from convertctl.checks.validate import FEW_SAMPLES, share
from convertctl.config.modes import NAMES as MODES
from convertctl.errors import UsageError
from convertctl.report.model import Report
from convertctl.report.quality import artifact_rows, markdown_sections
from convertctl.report.summary import accuracy_step
from convertctl.report.text import md_code, md_lines, md_text, term

HEADERS = ("Stage", "Mode", "", "Numbers")
MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]–[/]"}
PLAIN = {True: "✓", False: "✗", None: "–"}


def _fmt(value, spec=".3g") -> str:
    return "-" if value is None else format(value, spec)


def _check_numbers(check: dict) -> str:
    parts = []
    for out in check.get("outputs", []):
        txt = f"max|Δ| {_fmt(out['max_abs'])}  cos {_fmt(out['cosine'], '.6f')}"
        if out.get("top1_count") is not None:
            txt += f"  top-1 {share(out['top1_count'], out['samples'])}"
        elif out.get("top1") is not None:
            txt += f"  top-1 {out['top1']:.0%}"
        parts.append(txt if len(check["outputs"]) == 1 else f"{out['name']}: {txt}")
    tol = check.get("tolerance") or {}
    if parts and tol.get("atol") is not None:  # the bound as set, so a user can see what --atol/--rtol did
        parts.append(f"bound atol {tol['atol']:g} + rtol {tol.get('rtol') or 0:g}·max|ref|")
    how = method_text(check)
    if parts and how:
        parts.append(f"how: {how}")
    return "; ".join(parts) or check.get("note", "")


def method_text(check: dict) -> str:
    """How a check was computed, in a few words (Check.method): the samples,
    which cosine, the element bound's share and cap, the runtime that ran the
    file. "" for a report that does not say (written before it did)."""
    how = check.get("method") or {}
    tol = check.get("tolerance") or {}
    parts = []
    if how.get("samples"):
        parts.append(f"{how['samples']} samples")
    cosine = str(how.get("cosine", ""))
    if cosine:  # which sample was the worst is said where it matters: in the failure
        parts.append("cosine of the worst sample" if cosine.startswith("the worst") else f"cosine {cosine}")
    if how.get("elements"):
        if tol.get("quantile") is not None and tol.get("cap") is not None:
            parts.append(f"{tol['quantile']:.1%} of elements within the bound, none beyond {tol['cap']:g}x")
        else:
            parts.append(str(how["elements"]))
    if how.get("runtime"):
        parts.append(f"judged by {how['runtime']}")
    return ", ".join(parts)


def budget_text(drop: float | None, budget, acc: dict) -> str:
    """'drop 0.00 pts, budget 1 pt (step 1.56 pts: 1 of 64 samples)', and
    a word when the budget is below that step (one flip fails it)."""
    step = accuracy_step(acc)
    said = f"drop {drop:.2f} pts, " if drop is not None else ""
    unit = "pt" if budget == 1 else "pts"
    said += f"budget {budget:g} {unit} (step {step:.3g} pts: 1 of {acc.get('samples', 0)} samples)"
    if step and budget < step:
        said += ", BELOW ONE STEP"
    return said


def _artifact_numbers(art: dict) -> str:
    parts = []
    if art.get("size_bytes"):
        parts.append(f"{art['size_bytes'] / 1024:.0f} KiB")
    io = art.get("inputs", []) + art.get("outputs", [])
    if io:
        layout = art.get("layout") or {}
        perms = {**layout.get("inputs", {}), **layout.get("outputs", {})}.values()
        channels_last = " NHWC" if any(list(p) == [0, 2, 3, 1] for p in perms) else ""
        parts.append("io " + "/".join(sorted({t["dtype"] for t in io})) + channels_last)
    ops = art.get("ops") or {}
    if ops:
        parts.append(f"{ops['total']} ops, {ops['transposes']} transposes")
        if ops.get("flex_ops"):
            parts.append("FLEX " + ",".join(ops["flex_ops"]))
    if art.get("quantizer"):  # which tool made the file: TFLiteConverter or LiteRT Quantizer
        parts.append(f"made by {art['quantizer']}")
    if art.get("granularity_note"):
        parts.append(art["granularity_note"])
    return ", ".join(parts)


def _mode_rank(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def _cache_notes(report: Report) -> list:
    """Per ladder entry, which of its steps came from the stage cache and
    the time that saved ("" when none did). An export entry is one step (in
    order per variant); a convert entry is its convert step and its quantize
    steps (quantize/<rung>/<mode>)."""
    exports: dict = {}
    for st in report.stages:
        if st["stage"] == "export":
            exports.setdefault(st["variant"], []).append(st)
    notes = []
    for e in report.ladder:
        if e["status"] == "skipped" or e.get("failed_stage") == "environment":
            notes.append("")
            continue
        if e["stage"] == "export":
            mine = exports.get(e["variant"], [])[:1]
            exports[e["variant"]] = exports.get(e["variant"], [])[1:]
        else:
            v = e["variant"]
            mine = [
                st for st in report.stages if st["work"] == f"convert/{v}" or st["work"].startswith(f"quantize/{v}/")
            ]
        cached = [st for st in mine if st.get("cached")]
        saved = sum(st.get("saved_seconds", 0.0) for st in cached)
        if not cached:
            notes.append("")
        elif len(cached) == len(mine):
            notes.append(f"; cached, saved {saved:.1f}s")
        else:
            which = ", ".join(st["mode"] or st["stage"] for st in cached)
            notes.append(f"; cached: {which} (saved {saved:.1f}s)")
    return notes


def _ladder_row(entry: dict, cache_note: str = "") -> tuple:
    what = entry["variant"] + (f" ({entry['family']})" if entry.get("family") else "")
    seconds = f", {entry['seconds']:.1f}s" if entry.get("seconds") else ""
    seconds += cache_note
    if entry["status"] == "skipped":
        return (f"{entry['stage']} rung", "", None, f"{what}: skipped: {entry.get('reason', '')}")
    modes = sorted(entry.get("modes", {}).items(), key=lambda kv: _mode_rank(kv[0]))  # JSON sorts keys
    if entry["status"] == "used":
        made = [m for m, v in modes if v == "ok"]
        detail = entry.get("purpose") or ("made " + ", ".join(made) if made else "")
        extra = "".join(f"; {m}: {v}" for m, v in modes if v != "ok")
        return (f"{entry['stage']} rung", "", True, f"{what}: {detail}{seconds}{extra}")
    where = f" at {entry['failed_stage']}" if entry.get("failed_stage") else ""
    error = entry.get("error") or "; ".join(f"{m}: {v}" for m, v in modes)
    return (f"{entry['stage']} rung", "", False, f"{what}: failed{where}{seconds}: {error}")


def _environments_row(report: Report) -> tuple:
    """How long making the stage environments ready took, and which were made now."""
    envs = report.environments
    made = [e for e in envs if e.get("created")]
    total = sum(e.get("seconds") or 0.0 for e in envs)
    if made:
        each = ", ".join(f"{e['variant']} {e.get('seconds') or 0.0:.1f}s" for e in made)
        detail = f"{len(made)} created ({each}), {len(envs) - len(made)} ready before; {total:.1f}s in all"
    else:
        detail = f"{len(envs)} ready before, none created ({total:.1f}s)"
    return ("environments", "", True, detail)


def rows(report: Report) -> list:
    """(stage, mode, ok, numbers) in pipeline order: the facts both
    renderings show. ok is None for what was skipped."""
    out = [_environments_row(report)] if report.environments else []
    out += [_ladder_row(e, note) for e, note in zip(report.ladder, _cache_notes(report))]
    ref = reference_name(report)
    for c in report.checks:
        if c["stage"] in ("onnx", "savedmodel"):
            label = f"{c['stage']} vs {ref}" + (f" (opset {c['opset']})" if c.get("opset") else "")
            out.append((label, "", c["status"] != "failed", f"{c.get('variant', '')}: {_check_numbers(c)}"))
    chosen = {(a.get("variant"), a["mode"]) for a in report.artifacts}
    checks: dict = {}
    extra: dict = {}  # batch N (--dynamic-batch) and fresh inputs (after another file of the mode missed)
    for c in report.checks:
        if c["stage"] == "tflite":
            if c.get("input_set") in ("batch", "fresh"):
                extra.setdefault((c.get("variant"), c["mode"]), []).append(c)
            else:
                checks[(c.get("variant"), c["mode"])] = c
    for art in report.artifacts:
        ok = art.get("status") == "ok"
        numbers = _artifact_numbers(art) if ok else art.get("error", "")
        out.append(("tflite", art["mode"], ok, f"{art.get('variant', '')}: {numbers}"))
        c = checks.get((art.get("variant"), art["mode"]))
        if c and (c.get("variant"), c["mode"]) in chosen:
            out.append((f"tflite vs {ref}", art["mode"], c["status"] != "failed", _check_numbers(c)))
        for b in extra.get((art.get("variant"), art["mode"]), []):
            label = f"tflite vs {ref} ({b.get('note') or b.get('input_set')})"
            out.append((label, art["mode"], b["status"] != "failed", _check_numbers(b)))
        out += artifact_rows(art)
    # A timing is not a step verify reproduces (LiteRT's run of a file, judge.py, is).
    cacheable = [st for st in report.stages if not is_timing(st)]
    cached = [st for st in cacheable if st.get("cached")]
    if cached:
        saved = sum(st.get("saved_seconds", 0.0) for st in cached)
        out.append(("stage cache", "", True, f"{len(cached)} of {len(cacheable)} steps reused, {saved:.1f}s saved"))
    acc = report.accuracy
    if acc:
        where = (
            "held-out calibration samples (PyTorch's top-1 as labels)"
            if acc.get("set") == "holdout"
            else "labelled samples"
        )
        base = f"{acc['pytorch']:.2f}%"
        if acc["samples"] < FEW_SAMPLES:
            base = share(round(acc["pytorch"] * acc["samples"] / 100.0), acc["samples"])
        out.append(("accuracy", "pytorch", True, f"{base} on {acc['samples']} {where}"))
        for mode, m in acc["modes"].items():
            value = f"{m['accuracy']:.2f}%"
            if acc["samples"] < FEW_SAMPLES:
                value = share(round(m["accuracy"] * acc["samples"] / 100.0), acc["samples"])
            budget = budget_text(m["drop"], m["max_drop"], acc)
            out.append(("accuracy", mode, m["status"] == "passed", f"{value} ({budget})"))
    return out


REFERENCES = {
    "onnxruntime": "Reference: onnxruntime on the ONNX model file (the model is ONNX, not PyTorch).",
    "litert": "Reference: LiteRT on the float .tflite (the model is a .tflite, not PyTorch).",
}


def is_timing(stage: dict) -> bool:
    return stage.get("stage") == "measure" and not str(stage.get("script", "")).endswith("judge.py")


def reference_name(report: Report) -> str:
    """What the outputs are compared with: PyTorch, onnxruntime (an ONNX file) or LiteRT (a float .tflite)."""
    source = report.model.get("reference")
    return source if source in REFERENCES else "torch"


def reference_line(report: Report) -> str:
    return REFERENCES.get(reference_name(report), "")


def failed_logs(report: Report, lines: int = 8) -> list:
    """(stage, last log lines) of every failed stage: what it said last."""
    return [
        (f"{st['stage']} stage ({st['variant']}{', ' + st['mode'] if st.get('mode') else ''})", st["log_tail"][-lines:])
        for st in report.stages
        if st["status"] != "ok" and st.get("log_tail")
    ]


def stale_lines(report: Report) -> list:
    """Files an earlier run left in --out that this run did not make."""
    if not report.stale:
        return []
    where = str(Path(report.stale[0]["moved_to"]).parent)
    names = ", ".join(s["name"] for s in report.stale)
    return [f"moved aside (an earlier run's files this run did not make): {names} -> {where}"]


WARNING = "WARNING: "  # a check that cannot mean what it says (run/pipeline.py _warn): said louder than a note


def notice_kind(notice: str) -> tuple[str, str]:
    """('warning', text) for a notice that is a WARNING, else ('note', notice)."""
    if str(notice).startswith(WARNING):
        return "warning", str(notice)[len(WARNING) :]
    return "note", str(notice)


def summary_line(report: Report) -> str:
    if report.status == "passed":
        return f"PASSED: {len(report.artifacts)} TFLite file(s) in {report.out_dir}"
    where = f"; everything is kept in {report.run_dir}" if report.run_dir else ""
    return f"FAILED (exit {report.exit_code}): {report.failure}{where}"


# Everything below comes from a report, which may come from anywhere (`report
# show`): each string is shown as text (text.py), never as markup or Markdown.
def print_report(report: Report, console: Console) -> None:
    table = Table(title=f"convertctl: {term(report.model.get('path', ''))}", title_justify="left")
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for stage, mode, ok, numbers in rows(report):
        table.add_row(term(stage), term(mode), MARKS.get(ok, MARKS[None]), term(numbers))
    console.print(table)
    for stage, tail in failed_logs(report):
        console.print(f"[bold]last lines of the log of the {term(stage)}:[/]", highlight=False)
        for line in tail:
            console.print(f"  [dim]{term(line)}[/]", highlight=False, soft_wrap=True)
    if reference_line(report):
        console.print(f"[bold]{reference_line(report)}[/]", highlight=False)
    for notice in [*report.notices, *stale_lines(report)]:
        kind, text = notice_kind(notice)
        mark = "[bold red]WARNING[/]" if kind == "warning" else "[bold yellow]NOTE[/]"
        console.print(f"{mark} {term(text)}", highlight=False, soft_wrap=True)
    style = "bold green" if report.status == "passed" else "bold red"
    console.print(f"[{style}]{term(summary_line(report))}[/]", highlight=False, soft_wrap=True)


def rendered(source: Path | str, render: Callable[[], str]) -> str:
    """render() of a report read from a file: a report whose fields inside
    are not of the shapes convertctl writes (a hand-edited or hostile one)
    is a usage error naming the file, not an internal error."""
    try:
        return render()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise UsageError(f"{source}: not a valid convertctl report ({what})") from None


def markdown(report: Report) -> str:
    shapes = report.model.get("input_shapes")
    lines = [
        f"## convertctl: {md_code(report.model.get('path', ''), table=False)}",
        "",
        f"**{md_text(summary_line(report))}**",
        "",
        f"Runtime: {md_text(report.runtime)}; modes: {md_text(', '.join(map(str, report.modes)))}; "
        f"input shapes: {md_text(shapes)}",
        "",
    ]
    if reference_line(report):
        lines += [f"**{reference_line(report)}**", ""]
    for notice in report.notices + stale_lines(report):
        kind, text = notice_kind(notice)
        lines.append(f"> **{'Warning' if kind == 'warning' else 'Note'}:** {md_text(text)}")
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|---|---|---|---|"]
    for stage, mode, ok, numbers in rows(report):
        lines.append(f"| {md_text(stage)} | {md_text(mode)} | {PLAIN.get(ok, PLAIN[None])} | {md_text(numbers)} |")
    lines += markdown_sections(report)
    for stage, tail in failed_logs(report):
        lines += ["", f"Last lines of the log of the {md_text(stage)}:", "", *md_lines(tail)]
    return "\n".join(lines) + "\n"
