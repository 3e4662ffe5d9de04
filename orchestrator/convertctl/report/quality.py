"""The report's quality rows and sections: latency as LiteRT measured it,
int8's worst layers, the layers kept float and the trade-off curve. Rows
go into both renderings' table; the Markdown sections hold the full lists
(layer names are long: the terminal shows the first few)."""

from __future__ import annotations

from convertctl.checks.validate import FEW_SAMPLES, share
from convertctl.report.text import md_code, md_text

TERMINAL_LAYERS = 5
NAME_WIDTH = 48


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3g} ms" if value < 10 else f"{value:.0f} ms"


def _short(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def latency_text(latency: dict) -> str:
    """'ai-edge-litert 2.3.0: XNNPACK 1 thr 3.1 ms (p90 3.3), 4 thr …; without XNNPACK …'"""
    if latency.get("error") and not latency.get("configs"):
        return f"not measured: {latency['error']}"
    parts = []
    for xnn in (True, False):
        configs = [c for c in latency.get("configs", []) if c["xnnpack"] == xnn]
        if configs:
            timed = ", ".join(f"{c['threads']} thr {_ms(c['median_ms'])} (p90 {_ms(c['p90_ms'])})" for c in configs)
            parts.append(f"{'XNNPACK' if xnn else 'without XNNPACK'} {timed}")
    runs = next((c["runs"] for c in latency.get("configs", [])), 0)
    delegated = next((c for c in latency.get("configs", []) if c["xnnpack"] and c.get("nodes")), None)
    if delegated and delegated.get("delegate_partitions") is not None:
        parts.append(f"XNNPACK took {delegated['delegate_partitions']} partition(s)")
    parts += timing_caveats(latency)
    return f"{latency.get('runtime', 'LiteRT')}, median of {runs} runs: " + "; ".join(parts)


def timing_caveats(latency: dict) -> list:
    """What a reader must know before trusting the numbers: more threads
    than CPUs, and a timing replayed from the stage cache (not this run's)."""
    out = []
    cpus = latency.get("cpu_count") or 0
    most = max((c.get("threads", 1) for c in latency.get("configs", [])), default=1)
    if cpus and most > cpus:
        out.append(f"MORE THREADS ({most}) THAN CPUS ({cpus}): that timing is not meaningful")
    if latency.get("cached"):
        out.append(f"cached timing from {latency.get('measured_at') or 'an earlier run'}")
    return out


def layer_label(row: dict, width: int = NAME_WIDTH) -> str:
    """'features.3.conv.1 (model/tf.nn.relu6_3/Re…)': the PyTorch module path
    first, the TFLite tensor name beside it; the tensor name alone when the
    module is unknown. A row from an older report has its name only."""
    module, tensor = row.get("module"), str(row.get("tflite") or row.get("name", ""))
    if not module:
        return _short(tensor) if width >= NAME_WIDTH else tensor[: width - 1] + "…" if len(tensor) > width else tensor
    side = tensor if len(tensor) <= width // 2 else tensor[: width // 2 - 1] + "…"
    return f"{module} ({side})"


def kept_float(sel: dict) -> list:
    """The layers kept float as rows {name, tflite, module} (older reports: names only)."""
    return list(sel.get("layers") or ({"name": n, "tflite": n} for n in sel.get("float_layers", [])))


def _unnamed(errors: dict) -> str:
    said = errors.get("modules") or {}
    if not said.get("unnamed"):
        return ""
    if not said.get("named"):
        return f"; no PyTorch module names ({said.get('note') or said.get('source', '')})"
    return f"; {said['unnamed']} of {said['named'] + said['unnamed']} layers without a PyTorch module name"


def _layers_text(errors: dict, count: int) -> str:
    layers = errors.get("layers", [])[:count]
    listed = "; ".join(f"{r['op']} {layer_label(r)} {r['rmse_scale']:.2f}" for r in layers)
    metric = errors.get("metric", "rmse/scale").replace("rmse/scale", "RMSE/scale")
    return (
        f"worst of {errors.get('total', len(layers))} by {metric} ({errors.get('samples', 0)} samples): {listed}"
        + _unnamed(errors)
    )


def _accuracy(value: float, samples: int) -> str:
    return share(round(value * samples / 100.0), samples) if 0 < samples < FEW_SAMPLES else f"{value:.1f}%"


def _point(p: dict, samples: int = 0) -> str:
    lat = f", {_ms(p['latency_ms'])}" if p.get("latency_ms") else ""
    return f"{p['float_layers']} float: {_accuracy(p['accuracy'], samples)}, {p['size_bytes'] / 1e6:.2f} MB{lat}"


def _selective_text(sel: dict, floats: dict | None) -> str:
    names = sel.get("float_layers", [])
    if sel.get("requested") != "auto":
        text = f"{len(names)} layer(s) kept float as named"
    else:
        chosen = sel.get("chosen") or {}
        n = sel.get("samples") or 0
        acc = _accuracy(chosen["accuracy"], n) if chosen else "-"
        text = (
            f"auto: {len(names)} layer(s) kept float, {acc} on {sel.get('set')} ({sel.get('samples')} samples, "
            f"target {sel['target']:.2f}%): {sel.get('stopped', '')}; curve "
            + " | ".join(_point(p, n) for p in sel["curve"])
        )
    if floats:
        text += (
            f"; the int8 check allowed exactly these {floats['float_ops']} float op(s)"
            f" and {floats['glue_ops']} DEQUANTIZE/QUANTIZE next to them, of {floats['total_ops']}"
        )
    if names:
        text += "; kept float: " + ", ".join(layer_label(r) for r in kept_float(sel)[:TERMINAL_LAYERS])
        text += f" (+{len(names) - TERMINAL_LAYERS} more in report.md)" if len(names) > TERMINAL_LAYERS else ""
    return text


def metadata_text(meta: dict) -> str:
    """'tflite-support 0.4.4: 10 labels on output; input normalised (mean …, std … on 0..255); outputs unchanged …'"""
    text = f"{meta.get('written_by', '')}: {meta.get('labels')} labels on {meta.get('labels_output', 'the output')}"
    norm = meta.get("normalization")
    if norm:
        nums = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(norm.get("mean", []), norm.get("std", [])))
        text += f"; {norm.get('input')} normalised as (pixel - mean) / std, mean/std {nums} (0..255 scale)"
    same = meta.get("outputs_unchanged") or {}
    if same.get("compared"):
        text += f"; outputs unchanged ({same.get('runtime', 'LiteRT')}, {same.get('samples')} samples, bit for bit)"
    elif same:
        text += f"; outputs not compared: {same.get('why', '')}"
    return text


def artifact_rows(art: dict) -> list:
    """Rows under an artifact's own: latency, worst layers, layers kept float."""
    mode = art["mode"]
    out: list[tuple[str, str, bool | None, str]] = []
    if art.get("latency"):
        out.append(("latency", mode, None, latency_text(art["latency"])))
    elif art.get("latency_ms"):
        lat = art["latency_ms"]
        out.append(
            ("latency", mode, None, f"{lat['median']:.2f} ms ({lat['threads']} thr), converting TF's interpreter")
        )
    if art.get("io"):  # int8 / int16x8: what an app must feed and read
        io = [
            f"{t['name']} {t['dtype']}" + (f" scale {t['scale']:.3g} zp {t['zero_point']}" if t["scale"] else "")
            for t in art.get("inputs", []) + art.get("outputs", [])
        ]
        out.append(("io", mode, None, f"{art['io']} I/O: " + "; ".join(io)))
    if art.get("layer_errors", {}).get("layers"):
        out.append(("layer errors", mode, None, _layers_text(art["layer_errors"], TERMINAL_LAYERS)))
    if art.get("metadata"):
        out.append(("metadata", mode, True, metadata_text(art["metadata"])))
    sel = art.get("selective")
    if sel:
        ok = sel.get("met") if sel.get("requested") == "auto" else None
        out.append(("int8 float layers", mode, ok, _selective_text(sel, art.get("float_ops"))))
    return out


def markdown_sections(report) -> list:
    """Layer names, ops and runtimes come from stages (and a report from
    anywhere): each is shown as text (md_code, md_text)."""
    lines = []
    for art in report.artifacts:
        mode = md_text(art["mode"])
        errors = art.get("layer_errors") or {}
        if errors.get("layers"):
            metric = md_text(str(errors.get("metric", "rmse/scale")).replace("rmse/scale", "RMSE / scale"))
            samples = md_text(errors.get("samples"))
            lines += ["", f"### {mode}: layers by quantization error ({metric}, {samples} samples)"]
            lines += [
                "",
                "| # | op | RMSE/scale | max abs error | scale | PyTorch module | TFLite tensor |",
                "|---|---|---|---|---|---|---|",
            ]
            for i, r in enumerate(errors["layers"], 1):
                module = md_code(r["module"]) if r.get("module") else "-"
                lines.append(
                    f"| {i} | {md_text(r['op'])} | {r['rmse_scale']:.3f} | {r['max_abs_error']:.3g} | {r['scale']:.3g} "
                    f"| {module} | {md_code(r.get('tflite') or r['name'])} |"
                )
            if _unnamed(errors):
                lines += ["", md_text(_unnamed(errors)[2:]) + "."]
        sel = art.get("selective") or {}
        if sel.get("curve"):
            lines += ["", f"### {mode}: trade-off (layers kept float, worst first)", ""]
            lines += [
                "| float layers | accuracy | size | latency (XNNPACK, 1 thread, median) | vs full int8 (fastest run) "
                "| chosen |",
                "|---|---|---|---|---|---|",
            ]
            for p in sel["curve"]:
                chosen = "✓" if p.get("file") == (sel.get("chosen") or {}).get("file") else ""
                cost = f"{p['latency_cost']:+.0%}" if p.get("latency_cost") is not None else "-"
                lines.append(
                    f"| {md_text(p['float_layers'])} | {p['accuracy']:.2f}% | {p['size_bytes'] / 1e6:.2f} MB "
                    f"| {_ms(p.get('latency_ms'))} | {cost} | {chosen} |"
                )
            if sel.get("latency_runtime"):
                lines += ["", f"Latency measured with {md_text(sel['latency_runtime'])}."]
        if sel.get("float_layers"):
            lines += ["", f"{mode}: layers kept float ({len(sel['float_layers'])}):", ""]
            lines += [
                f"- {md_code(r['module'], table=False)} ({md_code(r['tflite'], table=False)})"
                if r.get("module")
                else f"- {md_code(r['tflite'], table=False)}"
                for r in kept_float(sel)
            ]
    timed = [a for a in report.artifacts if (a.get("latency") or {}).get("configs")]
    if timed:
        runtime = md_text(timed[0]["latency"].get("runtime", "LiteRT"))
        cpus = md_text(timed[0]["latency"].get("cpu_count", 0))
        configs = list(dict.fromkeys((c["xnnpack"], c["threads"]) for a in timed for c in a["latency"]["configs"]))
        head = " | ".join(f"{'XNNPACK' if x else 'no XNNPACK'} {md_text(t)} thr" for x, t in configs)
        lines += ["", f"### Latency: {runtime} on this host ({cpus} CPUs), median (p90)", ""]
        lines += [f"| mode | {head} | |", "|---" * (len(configs) + 2) + "|"]
        for art in timed:
            got = {(c["xnnpack"], c["threads"]): c for c in art["latency"]["configs"]}
            cells = [f"{_ms(got[k]['median_ms'])} ({_ms(got[k]['p90_ms'])})" if k in got else "-" for k in configs]
            note = md_text("; ".join(timing_caveats(art["latency"])))
            lines.append(f"| {md_text(art['mode'])} | " + " | ".join(cells) + f" | {note} |")
    return lines
