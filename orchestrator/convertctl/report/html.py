"""report.html: the report as one self-contained page (inline CSS and SVG,
no script, no font, no image, no link to anything), readable on a phone
and from a CI artifact. Same report, same bytes.

Every string from outside (model path, file, tensor and layer names, stage
errors, notices) goes through esc(): escaped, control characters shown.
`fragment()` is the summary alone, for a notebook (Result._repr_html_)."""

from __future__ import annotations

from pathlib import Path

from convertctl.report import svg
from convertctl.report.model import Report
from convertctl.report.overlay import node_data, overlay_name
from convertctl.report.quality import kept_float
from convertctl.report.render import (
    failed_logs,
    method_text,
    notice_kind,
    reference_name,
    rows,
    stale_lines,
    summary_line,
)
from convertctl.report.summary import ModeFile, file_checks, mode_files
from convertctl.report.text import esc

TOP_LAYERS = 20  # bars in the per-layer chart; the table under it has them all
CSS = """
.cctl{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;max-width:60rem;
margin:0 auto;padding:.75rem}
.cctl h1{font-size:1.3rem;margin:.2rem 0}.cctl h2{font-size:1.1rem;margin:1.4rem 0 .4rem;
border-bottom:1px solid #d0d7de}.cctl h3{font-size:1rem;margin:.8rem 0 .3rem}
.cctl code{font:0.85em ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
.cctl .banner{padding:.5rem .75rem;border-radius:6px;font-weight:600;overflow-wrap:anywhere}
.cctl .ok{background:#dafbe1;color:#116329}.cctl .bad{background:#ffebe9;color:#a40e26}
.cctl .meta,.cctl .muted{color:#57606a;font-size:.9rem}.cctl .note{background:#fff8c5;padding:.4rem .6rem;
border-radius:6px;margin:.3rem 0;overflow-wrap:anywhere}.cctl .note.warn{background:#ffebe9;color:#a40e26}
.cctl .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.6rem}
.cctl .card{border:1px solid #d0d7de;border-radius:8px;padding:.6rem .75rem;border-top:5px solid #2da44e}
.cctl .card.failed{border-top-color:#cf222e}.cctl .card h3{margin:0 0 .3rem;display:flex;justify-content:space-between}
.cctl .card dl{display:grid;grid-template-columns:auto 1fr;gap:.1rem .6rem;margin:0;font-size:.9rem}
.cctl .card dt{color:#57606a}.cctl .card dd{margin:0;overflow-wrap:anywhere}
.cctl .scroll{overflow-x:auto}.cctl table{border-collapse:collapse;font-size:.85rem;width:100%}
.cctl th,.cctl td{border:1px solid #d0d7de;padding:.2rem .4rem;text-align:left;vertical-align:top;
overflow-wrap:break-word}.cctl td:first-child{white-space:nowrap}.cctl th{background:#f6f8fa}
.cctl details{margin:.5rem 0}.cctl summary{cursor:pointer;font-weight:600}
.cctl pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem;background:#f6f8fa;padding:.4rem}
.cctl svg.chart{max-width:40rem;height:auto;font:13px system-ui,sans-serif;display:block}
.cctl svg .axis{stroke:#57606a}.cctl svg .grid{stroke:#eaeef2}.cctl svg .lbl{fill:#57606a;font-size:13px}
.cctl svg .tick,.cctl svg .name{fill:#1b1f24}
.cctl .charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));gap:.5rem}
"""


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _quality(f: ModeFile) -> str:
    if f.accuracy is not None:
        drop = ""
        if f.max_accuracy_drop is not None:
            step = f.accuracy_step or 0.0
            below = ", below one step" if step and f.max_accuracy_drop < step else ""
            drop = f", drop {f.accuracy_drop or 0.0:.2f} pts (budget {f.max_accuracy_drop:g}, step {step:.3g}{below})"
        return f"accuracy {f.accuracy:.2f}%{drop}"
    if f.agreement is not None:
        return f"top-1 agreement {f.agreement:.0%}, cosine {svg.fmt(f.cosine)}"
    return f"cosine {svg.fmt(f.cosine)}" if f.cosine is not None else "-"


def _how(f: ModeFile) -> str:
    """How the file's checks were computed: the sample inputs' first, then fresh inputs' and batch N's."""
    said = [(c.get("input_set", ""), method_text(c)) for c in f.checks]
    said = sorted((s for s in said if s[1]), key=lambda s: s[0] != "samples")
    return "; ".join(how if where == "samples" else f"{where}: {how}" for where, how in said) or "-"


def _card(f: ModeFile) -> str:
    rung = f.variant + (f" ({f.family})" if f.family else "")
    rows_ = [
        ("file", f"<code>{esc(f.name or '-')}</code>"),
        ("size", esc(_size(f.size_bytes)) if f.size_bytes else "-"),
        ("latency", esc(_ms(f.latency_ms)) + (" <span class=muted>XNNPACK, 1 thread</span>" if f.latency_ms else "")),
        ("quality", esc(_quality(f))),
        ("checked", esc(_how(f))),
        ("made by", esc(rung or "-")),
        ("sha256", f"<code>{esc(f.sha256[:16])}</code>" if f.sha256 else "-"),
    ]
    if f.float_layers:
        rows_.append(("float layers", esc(len(f.float_layers))))
    if f.problem:
        rows_.append(("problem", esc(f.problem)))
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows_)
    state = "passed" if f.passed else "failed"
    mark = "✓ passed" if f.passed else "✗ failed"
    return (
        f'<div class="card {state}" data-mode="{esc(f.mode)}"><h3><span>{esc(f.mode)}</span>'
        f'<span class="{"ok" if f.passed else "bad"}">{mark}</span></h3><dl>{body}</dl></div>'
    )


def cards(report: Report) -> str:
    files = mode_files(report)
    if not files:
        return '<p class="muted">No file was made.</p>'
    return '<div class="cards">' + "".join(_card(f) for f in files) + "</div>"


def _head(report: Report) -> str:
    ok = report.status == "passed"
    shapes = ", ".join(f"{k} {v}" for k, v in (report.model.get("input_shapes") or {}).items())
    return (
        f"<h1>convertctl: <code>{esc(report.model.get('path', ''))}</code></h1>"
        f'<div class="banner {"ok" if ok else "bad"}">{esc(summary_line(report))}</div>'
        f'<p class="meta">runtime {esc(report.runtime)} · modes {esc(", ".join(report.modes))} · inputs '
        f"{esc(shapes or '-')} · compared with {esc(reference_name(report))} · {esc(report.created)} · "
        f"convertctl {esc(report.convertctl_version)}</p>"
    )


def fragment(report: Report) -> str:
    """The summary (status and one card per mode) with its own scoped style."""
    return f'<div class="cctl"><style>{CSS}</style>{_head(report)}{cards(report)}</div>'


# -- charts ---------------------------------------------------------------------
def _worst(check: dict | None) -> tuple[float | None, float | None]:
    outs = (check or {}).get("outputs") or []
    if not outs:
        return None, None
    return max(o.get("max_abs") or 0.0 for o in outs), min(o.get("cosine", 1.0) for o in outs)


def _parity(report: Report) -> str:
    samples = [c for c in report.checks if c.get("input_set", "samples") == "samples"]
    onnx = next((c for c in reversed(samples) if c.get("stage") == "onnx"), None)
    steps = ["ONNX", "SavedModel", "TFLite"]
    series, table = {}, []
    for art in report.artifacts:
        mode, variant = art.get("mode", ""), art.get("variant")
        mine = [c for c in samples if c.get("variant") == variant]
        chain = [
            onnx,
            next((c for c in mine if c.get("stage") == "savedmodel"), None),
            next(iter(file_checks(mine, art)), None),
        ]
        pts, cells = [], []
        for i, check in enumerate(chain):
            max_abs, cosine = _worst(check)
            if max_abs is None:
                cells.append("-")
                continue
            text = f"max|Δ| {svg.fmt(max_abs)}, cosine {cosine:.7f}"
            pts.append((i, max(max_abs, 1e-12), f"{mode} {steps[i]} vs {reference_name(report)}: {text}"))
            cells.append(text + (" ✗" if (check or {}).get("status") == "failed" else ""))
        if pts:
            series[mode] = pts
            table.append((mode, cells))
    if not series:
        return ""
    chart = svg.lines(series, steps, "stage-by-stage parity", f"max |Δ| vs {reference_name(report)}", kind="parity")
    head = "".join(f"<th>{s}</th>" for s in steps)
    body = "".join(
        f"<tr><td>{esc(m)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for m, cells in table
    )
    return (
        f"<h2>Parity, stage by stage ({esc(reference_name(report))} → ONNX → SavedModel → TFLite)</h2>{chart}"
        f'<div class="scroll"><table><tr><th>mode</th>{head}</tr>{body}</table></div>'
    )


def _tradeoffs(report: Report) -> str:
    files = [f for f in mode_files(report) if f.size_bytes]
    if not files:
        return ""
    timed = [f for f in files if f.latency_ms is not None]
    if timed:
        points = [
            (f.size_bytes / 1e3, f.latency_ms or 0.0, f.mode, f"{f.mode}: {_size(f.size_bytes)}, "
             f"{_ms(f.latency_ms)}, {_quality(f)}")
            for f in timed
        ]  # fmt: skip
        chart = svg.scatter(points, "size and latency per mode", "size (kB)", "latency (ms, XNNPACK, 1 thread)")
    else:
        items = [(f.mode, f.size_bytes / 1e3, f"{f.mode}: {_size(f.size_bytes)}, {_quality(f)}") for f in files]
        chart = svg.bars(items, "size per mode", " kB", kind="sizes") + '<p class="muted">Latency not measured.</p>'
    body = "".join(
        f"<tr><td>{esc(f.mode)}</td><td>{esc(_size(f.size_bytes))}</td><td>{esc(_ms(f.latency_ms))}</td>"
        f"<td>{esc(_quality(f))}</td></tr>"
        for f in files
    )
    return (
        f"<h2>Size, latency and accuracy across modes</h2>{chart}<div class=scroll><table><tr><th>mode</th>"
        f"<th>size</th><th>latency</th><th>accuracy or agreement</th></tr>{body}</table></div>"
    )


def _selective(art: dict) -> str:
    sel = art.get("selective") or {}
    curve = sel.get("curve") or []
    if not curve:
        return ""
    chosen_file = (sel.get("chosen") or {}).get("file")
    chosen = next((i for i, p in enumerate(curve) if p.get("file") == chosen_file), None)

    def hover(p):
        lat = f", {_ms(p.get('latency_ms'))}" if p.get("latency_ms") else ""
        return f"{p['float_layers']} float: {p['accuracy']:.2f}%, {_size(p['size_bytes'])}{lat}"

    mode = art.get("mode", "")
    charts = [svg.curve([(p["float_layers"], p["accuracy"], hover(p)) for p in curve], chosen,
                        f"{mode} accuracy", "layers kept float", "accuracy %")]  # fmt: skip
    charts.append(svg.curve([(p["float_layers"], p["size_bytes"] / 1e3, hover(p)) for p in curve], chosen,
                            f"{mode} size", "layers kept float", "size kB"))  # fmt: skip
    if all(p.get("latency_ms") for p in curve):
        charts.append(svg.curve([(p["float_layers"], p["latency_ms"], hover(p)) for p in curve], chosen,
                                f"{mode} latency", "layers kept float", "latency ms"))  # fmt: skip
    said = f"target {sel.get('target', 0):.2f}%, {sel.get('stopped', '')}; the chosen point is ringed"
    return (
        f"<h2>{esc(mode)}: the float-layer trade-off</h2><p class=muted>{esc(said)}</p>"
        f'<div class="charts">{"".join(charts)}</div>'
    )


def _kept(art: dict) -> str:
    """The layers kept float, module path first and the TFLite name beside it."""
    sel = art.get("selective") or {}
    if not sel.get("float_layers"):
        return ""
    items = "".join(
        f"<tr><td>{_module_cell(r)}</td><td><code>{esc(r.get('tflite') or r.get('name', ''))}</code></td></tr>"
        for r in kept_float(sel)
    )
    return (
        f"<h2>{esc(art.get('mode', ''))}: layers kept float ({len(sel['float_layers'])})</h2><div class=scroll>"
        f"<table><tr><th>PyTorch module</th><th>TFLite tensor</th></tr>{items}</table></div>"
    )


def _layers(art: dict, stem: str) -> str:
    errors = art.get("layer_errors") or {}
    layers = errors.get("layers") or []
    if not layers:
        return ""
    mode = art.get("mode", "")
    items = [
        (r.get("module") or r.get("name", ""), float(r.get("rmse_scale", 0.0)), f"{r.get('op', '')} "
         f"{r.get('module') or '(no module)'} [{r.get('tflite') or r.get('name', '')}]: "
         f"RMSE/scale {r.get('rmse_scale', 0):.3f}, max abs error {svg.fmt(r.get('max_abs_error'))}")
        for r in layers[:TOP_LAYERS]
    ]  # fmt: skip
    table = "".join(
        f"<tr><td>{i}</td><td>{esc(r.get('op', ''))}</td><td>{r.get('rmse_scale', 0):.3f}</td>"
        f"<td>{esc(svg.fmt(r.get('max_abs_error')))}</td><td>{_module_cell(r)}</td>"
        f"<td><code>{esc(r.get('tflite') or r.get('name', ''))}</code></td></tr>"
        for i, r in enumerate(layers, 1)
    )
    overlay = ""
    if node_data(art) is not None:
        name = overlay_name(stem, mode)
        overlay = (
            f"<p class=muted>On the graph: <code>model-explorer {esc(stem)}_{esc(mode)}.tflite "
            f"--node_data_paths={esc(name)}</code></p>"
        )
    return (
        f"<h2>{esc(mode)}: layers by quantization error (RMSE / scale, {esc(errors.get('samples', 0))} samples)</h2>"
        f"{svg.bars(items, f'{mode} worst layers', kind='layers')}{overlay}<details><summary>all "
        f"{len(layers)} layers</summary><div class=scroll><table><tr><th>#</th><th>op</th><th>RMSE/scale</th>"
        f"<th>max abs error</th><th>PyTorch module</th><th>TFLite tensor</th></tr>{table}</table></div></details>"
    )


def _module_cell(row: dict) -> str:
    return f"<code>{esc(row['module'])}</code>" if row.get("module") else "<span class=muted>none</span>"


# -- tables ---------------------------------------------------------------------
def _table(head: list, body: list) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    tr = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<div class=scroll><table><tr>{th}</tr>{tr}</table></div>"


def _ladder(report: Report) -> str:
    body = []
    for e in report.ladder:
        modes = ", ".join(f"{m}: {v}" for m, v in sorted((e.get("modes") or {}).items()))
        why = e.get("error") or e.get("reason") or e.get("purpose") or ""
        secs = f"{e['seconds']:.1f}" if e.get("seconds") else ""
        body.append([e.get("stage", ""), e.get("variant", ""), e.get("status", ""), secs, modes, why])
    return "<h2>The ladder</h2>" + _table(["stage", "variant", "status", "s", "modes", "note"], body)


def _environments(report: Report) -> str:
    body = [
        [e.get("variant", ""), e.get("stage", ""), "created" if e.get("created") else "found",
         f"{e.get('seconds', 0):.1f}", e.get("location", "")]
        for e in report.environments
    ]  # fmt: skip
    frozen = "".join(
        f"<h3>{esc(name)}</h3><pre>{esc(chr(10).join(map(str, (env or {}).get('pip_freeze') or [])))}</pre>"
        for name, env in sorted((report.manifest.get("environments") or {}).items())
    )
    return (
        "<h2>Environments</h2>" + _table(["variant", "stage", "", "s", "where"], body)
        + f"<details><summary>environment manifest (pip freeze)</summary>{frozen or '-'}</details>"
    )  # fmt: skip


def render(report: Report) -> str:
    stem = Path(str(report.model.get("path", "model"))).stem
    marks = {True: "✓", False: "✗", None: "–"}
    all_rows = [[s, m, marks[ok], n] for s, m, ok, n in rows(report)]
    notes = "".join(
        f'<div class="note warn"><span>WARNING</span> {esc(text)}</div>'
        if kind == "warning"
        else f'<div class="note">{esc(text)}</div>'
        for kind, text in map(notice_kind, report.notices + stale_lines(report))
    )
    logs = "".join(
        f"<details><summary>last lines of the log of the {esc(stage)}</summary><pre>{esc(chr(10).join(tail))}</pre>"
        "</details>"
        for stage, tail in failed_logs(report)
    )
    parts = [
        _head(report),
        notes,
        "<h2>Files</h2>",
        cards(report),
        _parity(report),
        _tradeoffs(report),
        *(_selective(a) + _kept(a) for a in report.artifacts),
        *(_layers(a, stem) for a in report.artifacts),
        _ladder(report),
        _environments(report),
        "<h2>Every check</h2><details><summary>the table of the terminal and report.md</summary>"
        + _table(["stage", "mode", "", "numbers"], all_rows)
        + "</details>",
        logs,
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>convertctl: {esc(Path(str(report.model.get('path', ''))).name)} {esc(report.status)}</title>"
        f'<style>{CSS}</style></head><body class="cctl">{"".join(parts)}</body></html>\n'
    )
