"""Keep the int8 layers that cost accuracy float: the part of the int8
contract every family's quantize step shares (images/quantize/selective.py
with TensorFlow's quantizer, images/litert/quantize.py with
litert-quantizer). A family brings a plan, whose quantize(io, names) makes
an int8 file (bytes) from one calibration with the named layers kept float
(by tensor name), and a ranking of its layers, worst first ({name, tflite,
module, op, rmse_scale, elements}: module_names.py); this module answers the
request's float_layers with them. A name asked for may be a tensor name or a
PyTorch module path (module_names.resolve); the record's float_layers are
tensor names (what the int8 contract check allows), its layers say each
three ways.

Request fields: float_layers (null, "auto" or [layer names]), search (for
"auto": {set, labels, target, max_layers}), int8_io. Artifact fields:
layer_errors (the family's), selective {requested, float_layers, curve:
[{float_layers, accuracy, size_bytes, file, names}], target, met, stopped,
set, samples, chosen}. Python 3.8 syntax.
"""
import os

import contract
import module_names
import tflite_run
from contract import StageFailure, in_run, log

TOP = 20  # layers kept in the record, worst first
# Transpose, pad, reshape: int8 in, the same int8 out (RMSE/scale ~ 0).
# Keeping one float would add conversions and fix nothing.
MOVES_ONLY = 0.01
PRUNE = 6  # chosen layers tried back in int8 (largest outputs first): one file each


def top1_accuracy(np, interpreter_class, path, arrays, labels, request):
    """Top-1 accuracy (percent) of a .tflite file on a labelled input set."""
    layout = request.get("layout") or {}
    in_perms, out_perms = layout.get("inputs", {}), layout.get("outputs", {})
    runner = tflite_run.Runner(interpreter_class, np, path, max(1, int(request.get("threads", 1))))
    hits = 0
    for i in range(len(labels)):
        got = runner.run(dict((n, contract.to_layout(np, arrays[n][i], in_perms.get(n)))
                              for n in request["input_names"]))
        scores = None
        for name in sorted(got):
            value = contract.from_layout(np, got[name], out_perms.get(name))
            dims = [d for d in value.shape if d != 1]
            if len(dims) == 1 and dims[0] >= 2:
                scores = value.reshape(-1)
                break
        if scores is None:
            raise StageFailure("--int8-float-layers auto needs an output of class scores; "
                               "name the layers to keep float instead")
        hits += int(int(scores.argmax()) == int(labels[i]))
    return 100.0 * hits / max(1, len(labels))


def steps(total, max_layers):
    """How many of the worst layers each try keeps float: 0, 1, 2, 4, ... all."""
    limit = min(total, max_layers) if max_layers else total
    out, k = [0], 1
    while k < limit:
        out.append(k)
        k *= 2
    if limit > 0:
        out.append(limit)
    return out


def search(plan, np, interpreter_class, run_dir, request, ranking, sets):
    """Keep the worst layers float, in doubling steps, until the target
    holds; then halve the gap back to the smallest step that holds; then
    give back to int8, costliest first, any of those layers the target holds
    without (the ranking is per layer: some of the worst change nothing at
    the output, and the early ones run on the largest tensors). Every file
    tried is kept (candidates/) with its layers, accuracy and size."""
    spec = request.get("search") or {}
    set_name = spec.get("set", "eval")
    if set_name not in sets:
        raise StageFailure("search set %r is not among the input sets" % set_name)
    with np.load(in_run(run_dir, spec["labels"])) as data:
        labels = data["y"].astype(np.int64).reshape(-1)
    arrays = sets[set_name]
    target = float(spec["target"])
    names = [r.get("tflite") or r["name"] for r in ranking]
    io = request.get("int8_io", "int8")
    os.makedirs(contract.work_path(run_dir, request, "candidates"), exist_ok=True)
    tried = {}  # tuple of ranking indices -> curve point

    def attempt(picks):
        picks = tuple(picks)
        if picks not in tried:
            rel = "candidates/%03d-k%03d.tflite" % (len(tried), len(picks))
            blob = plan.quantize(io, [names[i] for i in picks])
            with open(contract.work_path(run_dir, request, rel), "wb") as f:
                f.write(blob)
            acc = top1_accuracy(np, interpreter_class, contract.work_path(run_dir, request, rel), arrays, labels, request)
            tried[picks] = {"float_layers": len(picks), "accuracy": acc, "size_bytes": len(blob),
                            "file": contract.work_rel(request, rel), "names": [names[i] for i in picks]}
            log("int8 with %d layer(s) float: %.2f%% on %s (target %.2f%%), %d bytes"
                % (len(picks), acc, set_name, target, len(blob)))
        return tried[picks]["accuracy"] >= target

    chosen, stopped, previous = None, "", 0
    for k in steps(len(names), int(spec.get("max_layers") or 0)):
        if attempt(range(k)):
            chosen, stopped = k, "target met"
            break
        previous = k
    if chosen is None:
        keep = tuple(range(max(len(p) for p in tried)))
        stopped = "target not met with %d layer(s) float" % len(keep)
    else:
        lo, hi = previous, chosen  # lo misses, hi holds: bisect for the fewest float layers
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(range(mid)):
                hi = mid
            else:
                lo = mid
        keep = tuple(range(hi))
        for i in sorted(keep, key=lambda j: -ranking[j].get("elements", 0))[:PRUNE]:
            trial = tuple(j for j in keep if j != i)
            if trial and attempt(trial):
                keep = trial
        if len(keep) < hi:
            stopped += "; %d of the %d worst layers given back to int8" % (hi - len(keep), hi)
    return {
        "requested": "auto", "float_layers": [names[i] for i in keep], "target": target,
        "layers": module_names.described([names[i] for i in keep], ranking),
        "met": tried[keep]["accuracy"] >= target, "stopped": stopped, "set": set_name,
        "samples": int(len(labels)), "chosen": tried[keep],
        "curve": sorted(tried.values(), key=lambda p: (p["float_layers"], p["file"])),
    }


def choose(plan, np, interpreter_class, run_dir, request, ranking, sets):
    """The int8 file (bytes) the request's float_layers asks for, and the
    artifact's selective record (None: no layer asked to stay float)."""
    io = request.get("int8_io", "int8")
    want = request.get("float_layers")
    if want == "auto":
        ranking = [r for r in ranking if r["rmse_scale"] > MOVES_ONLY]
        if not ranking:
            raise StageFailure("--int8-float-layers auto needs the per-layer error (debug_samples > 0)")
        record = search(plan, np, interpreter_class, run_dir, request, ranking, sets)
        return plan.quantize(io, record["float_layers"]), record
    if want:
        tensors = resolve(want, ranking)
        return plan.quantize(io, tensors), {"requested": "names", "asked": list(want), "float_layers": tensors,
                                            "layers": module_names.described(tensors, ranking)}
    return plan.quantize(io, []), None


def resolve(want, ranking):
    """The tensor names --int8-float-layers asks for (tensor names or module
    paths); a name no layer answers to fails the step, naming it. Without a
    ranking (no per-layer error asked for) the names go to the quantizer as
    they are, and it says which it does not know."""
    if not ranking:
        return list(want)
    rows = [dict(r, tflite=r.get("tflite") or r["name"]) for r in ranking]
    tensors, unknown = module_names.resolve(want, rows)
    if unknown:
        some = ", ".join(repr(r["name"]) for r in rows[:3])
        raise StageFailure("--int8-float-layers: no quantized layer or PyTorch module named %s (layers are "
                           "named by module path where known, else by tensor name, as the report lists them: %s...)"
                           % (", ".join(repr(n) for n in unknown), some))
    return tensors
