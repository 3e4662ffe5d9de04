"""Measure stage: latency of .tflite files with LiteRT (ai-edge-litert), the
interpreter Android apps ship, not the TensorFlow that wrote the files.

TF 2.8's interpreter has no XNNPACK for int8 on x86: int8 MobileNetV2 took
1,946 ms there against 186 ms for fp32, a number that says nothing about a
phone. Here every file is timed in one current runtime, with the XNNPACK
delegate on and off, at each thread count, over a fixed number of runs
(median and p90), after warm-up runs.

Request fields (paths relative to the run directory):
  files     [{"name": label, "file": path to a .tflite}]
  runs      timed runs per configuration (after `warmup` untimed ones)
  rounds    the files taken in turn this many times, runs split between
            rounds: drift on a shared machine hits every file alike
  warmup
  threads   thread counts, e.g. [1, 4] (1 and --threads)
  xnnpack   [true, false]: with the default delegate, and without it
Result:
  runtime        {"name": "ai-edge-litert", "version": ...}
  measured_at    when the timing was taken (a timing the stage cache replays
                 keeps it, so a report can say the number is not fresh)
  cpu_count
  measurements   {label: {"configs": [{xnnpack, threads, median_ms, p90_ms,
                 min_ms, runs, nodes, delegate_partitions}], "error": ...}}
A file that does not load or run is reported with its error; the others are
still measured.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402


def fill_inputs(np, interp):
    """Deterministic inputs of each input's dtype and shape: latency of these
    models does not depend on the values."""
    rng = np.random.RandomState(0)
    for detail in interp.get_input_details():
        shape = [int(d) for d in detail["shape"]]
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            value = rng.randint(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
        else:
            value = np.zeros(shape, dtype)
        interp.set_tensor(detail["index"], value)


def partitions(interp):
    """(nodes in the execution plan, how many of them are delegate kernels)."""
    try:
        ops = interp._get_ops_details()  # after delegation: one DELEGATE node per partition
    except Exception:  # noqa: BLE001 - private API; the count is nice to have
        return None, None
    return len(ops), sum(1 for op in ops if op.get("op_name") == "DELEGATE")


def time_one(np, interpreter_mod, path, xnnpack, threads, runs, warmup):
    """Times (ms) of `runs` invocations after `warmup`, and the plan's facts."""
    kind = interpreter_mod.OpResolverType.AUTO if xnnpack else \
        interpreter_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = interpreter_mod.Interpreter(model_path=path, num_threads=threads,
                                         experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    fill_inputs(np, interp)
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    nodes, delegated = partitions(interp)
    return times, {"xnnpack": bool(xnnpack), "threads": int(threads), "nodes": nodes,
                   "delegate_partitions": delegated}


def summary(np, facts, times):
    return dict(facts, runs=len(times), median_ms=float(np.median(times)),
                p90_ms=float(np.percentile(times, 90)), min_ms=float(np.min(times)))


def body(run_dir, request, result):
    import numpy as np
    import ai_edge_litert
    from ai_edge_litert import interpreter as interpreter_mod

    version = getattr(ai_edge_litert, "__version__", "unknown")
    result["versions"] = {"ai-edge-litert": version, "numpy": np.__version__}
    result["runtime"] = {"name": "ai-edge-litert", "version": version}
    # The CPUs this process may run on (a container's or taskset's limit), not the machine's.
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    result["cpu_count"] = len(usable) or os.cpu_count() or 0
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    runs, warmup = int(request.get("runs", 20)), int(request.get("warmup", 3))
    if runs < 1:
        raise StageFailure("measure: runs must be at least 1")
    threads = [int(t) for t in request.get("threads", [1])]
    xnnpack = [bool(x) for x in request.get("xnnpack", [True, False])]
    rounds = max(1, min(int(request.get("rounds", 1)), runs))
    configs = [(use, t) for use in xnnpack for t in threads]
    times, facts, errors = {}, {}, {}
    for r in range(rounds):
        share = runs // rounds + (1 if r < runs % rounds else 0)
        for item in request.get("files", []):
            name, path = item["name"], in_run(run_dir, item["file"])
            for use, t in configs:
                if name in errors:
                    break
                try:
                    got, facts[(name, use, t)] = time_one(np, interpreter_mod, path, use, t, share, warmup)
                except Exception as exc:  # noqa: BLE001 - one file's failure is its own
                    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
                    errors[name] = "%s: %s" % (type(exc).__name__, lines[-1] if lines else "")
                    break
                times.setdefault((name, use, t), []).extend(got)
    out = {}
    for item in request.get("files", []):
        name = item["name"]
        entry = {"file": item["file"], "configs": [summary(np, facts[(name, use, t)], times[(name, use, t)])
                                                   for use, t in configs if (name, use, t) in times]}
        if name in errors:
            entry["error"] = errors[name]
        out[name] = entry
        best = [c for c in entry["configs"] if c["xnnpack"] and c["threads"] == 1]
        log("%s: %s" % (name, entry.get("error") or (
            "%.2f ms median (XNNPACK, 1 thread)" % best[0]["median_ms"] if best else "measured")))
    result["measurements"] = out


if __name__ == "__main__":
    sys.exit(contract.run_stage("measure", body))
