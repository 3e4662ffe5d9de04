"""What a run will try, decided before anything runs: which export rungs can
load the model, which convert rungs apply, at which ONNX opset, and which
quantize variant makes each mode on each rung (or why none can). Pure: it
reads the options, the model file's facts and the catalog, and runs nothing.
`convertctl run --dry-run` prints it; the ladders follow it."""

from __future__ import annotations

from dataclasses import dataclass, field

from convertctl.config.catalog import Catalog, Variant
from convertctl.config.modes import LITERT_QUANTIZER
from convertctl.config.options import Options
from convertctl.errors import UsageError
from convertctl.inputs.modelfile import ModelFacts


@dataclass(frozen=True)
class ExportRung:
    variant: Variant
    skip: str = ""  # why this rung cannot load the model ('' when it can)


@dataclass(frozen=True)
class ConvertRung:
    variant: Variant
    skip: str = ""  # why the rung does not apply at all
    opset: int | None = None  # the ONNX opset it reads (ONNX families)
    quantizers: dict = field(default_factory=dict)  # mode -> [the quantize variants that make it, in order]
    cannot: dict = field(default_factory=dict)  # mode -> why this rung cannot make it as asked


@dataclass(frozen=True)
class Plan:
    exports: tuple[ExportRung, ...]
    converts: tuple[ConvertRung, ...]
    measure: Variant | None
    modes: tuple[str, ...]
    # A float .tflite is quantized as it is: no convert rung, one quantizer (convertctl quantize).
    tflite: ConvertRung | None = None

    def usable_exports(self) -> list[Variant]:
        return [r.variant for r in self.exports if not r.skip]

    def first_opset(self) -> int | None:
        """The opset of the first convert rung that applies and reads ONNX: the reference run exports it too."""
        first = next((r for r in self.converts if not r.skip), None)
        return first.opset if first is not None and first.variant.input == "onnx" else None

    def lines(self) -> list[str]:
        """The plan in words, rung by rung (--dry-run)."""
        out = []
        for r in self.exports:
            out.append(f"export  {r.variant.name}: " + (f"skipped: {r.skip}" if r.skip else "can load the model"))
        for c in self.converts:
            head = f"convert {c.variant.name} ({c.variant.family})"
            if c.skip:
                out.append(f"{head}: skipped: {c.skip}")
                continue
            opset = f" at ONNX opset {c.opset}" if c.opset else ""
            made = ", ".join(f"{m} by {_names(q)}" for m, q in c.quantizers.items()) or "no mode it can make"
            out.append(f"{head}{opset}: {made}")
            out += [f"        {m}: cannot: {why}" for m, why in c.cannot.items()]
        if self.tflite is not None:
            made = ", ".join(f"{m} by {_names(q)}" for m, q in self.tflite.quantizers.items()) or "no mode it can make"
            out.append(f"quantize the float .tflite as it is: {made}")
            out += [f"        {m}: cannot: {why}" for m, why in self.tflite.cannot.items()]
        out.append(f"measure {self.measure.name}" if self.measure else "measure: no measure environment")
        return out


def export_skip(facts: ModelFacts, variant: Variant) -> str:
    return facts.loadable_by(variant)


def opset_for(rung: Variant, facts: ModelFacts, usable: list[Variant], asked: int | None) -> int | None:
    """The highest opset both the converter and an export variant accept
    (the converter's preferred one unless --opset says otherwise)."""
    lo, hi = rung.opsets or (7, 13)
    if facts.format == "onnx":  # the file's own opset, as given
        have = facts.opset or 0
        return have if lo <= have <= hi else None
    if asked:
        return asked if lo <= asked <= hi else None
    top = max((v.max_opset for v in usable), default=0)
    want = min(rung.opset or hi, top)
    return want if want >= lo else None


def convert_skip(rung: Variant, facts: ModelFacts, opset: int | None, options: Options) -> str:
    if rung.input == "torch" and facts.format == "onnx":
        return f"{rung.family} converts PyTorch models, and this model is an ONNX file"
    if options.layout and options.layout not in rung.layouts:
        return f"{rung.family} gives {'/'.join(rung.layouts).upper()} I/O only, --layout {options.layout} asked for"
    if rung.input == "onnx" and opset is None:
        lo, hi = rung.opsets
        if facts.format == "onnx":
            return f"{rung.name} reads opsets {lo}-{hi}; this ONNX file is opset {facts.opset}"
        if options.opset:
            return f"{rung.name} reads opsets {lo}-{hi}, --opset {options.opset} given"
        return f"{rung.name} reads opsets {lo}-{hi}, which no usable export variant writes"
    return ""


def make_plan(
    options: Options, facts: ModelFacts, catalog: Catalog, runtime: str, keeps_float_layers: bool = False
) -> Plan:
    """The plan, or a UsageError when no rung could take the run: no export
    variant loads the model, or flags (--opset, --layout) no converter meets."""
    export_rungs = catalog.pick(runtime, "export", options.export_image)
    convert_variants = catalog.pick(runtime, "convert", options.converter)
    if not export_rungs or not convert_variants:
        raise UsageError(f"the catalog has no export or convert variant for the {runtime} runtime")
    model = options.model
    if options.opset is not None and facts.format == "onnx" and options.opset != facts.opset:
        raise UsageError(f"--opset {options.opset}: {model} is an ONNX file at opset {facts.opset}")
    # A .tflite has its own path (its reference by LiteRT, then the quantizer): rungs of the other path
    # are left out of the plan, not listed as skipped.
    export_rungs = [v for v in export_rungs if ("tflite" in v.formats) == (facts.format == "tflite")]
    exports = tuple(ExportRung(v, export_skip(facts, v)) for v in export_rungs)
    usable = [r.variant for r in exports if not r.skip]
    if not usable:
        reasons = "; ".join(f"{r.variant.name}: {r.skip}" for r in exports)
        raise UsageError(f"{model}: no export variant can load this model ({reasons})")
    if facts.format == "tflite":
        return Plan(
            exports, (), catalog.measurer(runtime), tuple(options.modes), _tflite_rung(options, catalog, runtime)
        )
    converts = []
    for rung in convert_variants:
        opset = opset_for(rung, facts, usable, options.opset) if rung.input == "onnx" else None
        skip = convert_skip(rung, facts, opset, options)
        quantizers, cannot = {}, {}
        for mode in options.modes:
            able, why = catalog.quantizers_for(rung, mode)
            if mode == "int8" and keeps_float_layers:
                able = [q for q in able if q.float_layers]
                why = why or f"the {rung.family} family cannot keep int8 layers float (--int8-float-layers)"
            if able:
                quantizers[mode] = able
            else:
                cannot[mode] = why
        converts.append(ConvertRung(rung, skip, opset, quantizers, cannot))
    if all(c.skip for c in converts):
        raise UsageError("no converter variant applies: " + "; ".join(f"{c.variant.name}: {c.skip}" for c in converts))
    return Plan(exports, tuple(converts), catalog.measurer(runtime), tuple(options.modes))


def _tflite_rung(options: Options, catalog: Catalog, runtime: str) -> ConvertRung:
    """The quantizer a float .tflite goes to: the runtime's first one that reads a .tflite."""
    reads_tflite = [
        q for v in catalog.ladder(runtime, "convert") for q in catalog.quantizers(v) if q.kind == LITERT_QUANTIZER
    ]
    if not reads_tflite:
        raise UsageError(
            f"the catalog has no quantizer of a .tflite (kind {LITERT_QUANTIZER}) for the {runtime} runtime"
        )
    quantizer = reads_tflite[0]
    quantizers, cannot = {}, {}
    for mode in options.modes:
        why = quantizer.makes(mode)
        if why:
            cannot[mode] = why
        else:
            quantizers[mode] = [quantizer]
    return ConvertRung(quantizer, "", None, quantizers, cannot)


def _names(variants: list[Variant]) -> str:
    return " then ".join(v.name for v in variants)
