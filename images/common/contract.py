"""The run-directory contract, shared by every stage script.

A stage is started as ``python <script>.py RUN_DIR [WORK]``. WORK (default:
the stage's name) is the step's own folder in the run directory: the stage
reads ``RUN_DIR/WORK/request.json``, writes its artifacts into ``RUN_DIR/WORK``,
then ``RUN_DIR/WORK/result.json``, and exits 0 (ok) or non-zero. Paths in a
request are relative to RUN_DIR. Nothing else crosses between host and stage.

This file runs inside every stage environment: Python 3.8 to 3.11+, next to
2020-era libraries as well as current ones. Standard library only, and no
syntax newer than 3.8.
"""
import json
import os
import platform
import sys
import time
import traceback

CONTRACT_VERSION = 2

EXIT_OK = 0
EXIT_CRASH = 1  # an exception the stage did not expect
EXIT_FAILED = 2  # a failure the stage understood and explained


class StageFailure(Exception):
    """A failure the stage understands: reported by its message alone."""

    kind = "stage"


class InputProblem(StageFailure):
    """The user's model or inputs are at fault, not the conversion."""

    kind = "input"


def write_json(path, data):
    """Write JSON atomically so a reader never sees half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def in_run(run_dir, relpath):
    """Paths in a request are relative to the run directory, so the same
    request works on the host and inside a container that mounts it
    elsewhere."""
    if os.path.isabs(relpath):
        return relpath
    return os.path.join(run_dir, relpath)


def work_path(run_dir, request, name):
    """Where this step writes a file: inside its own WORK folder."""
    return os.path.join(run_dir, request["work"], name)


def work_rel(request, name):
    """The same file as the host names it: relative to the run directory."""
    return request["work"] + "/" + name


def log(msg):
    sys.stdout.write("[stage] %s\n" % msg)
    sys.stdout.flush()


def run_stage(stage, body):
    """Run ``body(run_dir, request, result)`` under the contract.

    ``body`` fills ``result`` (a dict) as it goes, so whatever it learned
    before a failure still reaches the host.
    """
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: %s RUN_DIR [WORK]\n" % sys.argv[0])
        return EXIT_CRASH
    run_dir = sys.argv[1]
    work = sys.argv[2] if len(sys.argv) == 3 else stage
    stage_dir = os.path.join(run_dir, work)
    result = {
        "contract": CONTRACT_VERSION,
        "stage": stage,
        "status": "failed",
        "python": platform.python_version(),
        "versions": {},
    }
    started = time.time()
    code = EXIT_CRASH
    try:
        with open(os.path.join(stage_dir, "request.json")) as f:
            request = json.load(f)
        request["work"] = work
        body(run_dir, request, result)
        result["status"] = "ok"
        code = EXIT_OK
    except StageFailure as exc:
        result["error"] = str(exc)
        result["error_kind"] = exc.kind
        code = EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - everything must reach the host
        # Exporters put whole graphs in their messages: the first line is
        # the message, the rest stays in the traceback and the stage log.
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        result["error"] = "%s: %s" % (type(exc).__name__, lines[0][:500] if lines else "")
        result["traceback"] = traceback.format_exc()
        code = EXIT_CRASH
    result["seconds"] = round(time.time() - started, 3)
    try:
        write_json(os.path.join(stage_dir, "result.json"), result)
    except OSError as exc:
        sys.stderr.write("cannot write result.json: %s\n" % exc)
        code = code or EXIT_CRASH
    if result.get("error"):
        sys.stderr.write("%s failed: %s\n" % (stage, result["error"]))
    return code


def load_sets(run_dir, request, np):
    """The named input sets of a request: {set name: {input name: array}}.

    Each array is (N, *input_shape): N samples stacked on a leading axis.
    """
    sets = {}
    for set_name, rel in sorted(request.get("input_sets", {}).items()):
        with np.load(in_run(run_dir, rel)) as data:
            sets[set_name] = dict((k, data[k]) for k in data.files)
    return sets


def first_sample(arrays):
    """The first sample of a set, still stacked: {name: (1, *shape)}."""
    return dict((k, v[:1]) for k, v in arrays.items())


def sample_count(arrays):
    return len(next(iter(arrays.values())))


def to_layout(np, arr, perm):
    """One sample in PyTorch's layout -> the converted model's (perm: the
    axes of the PyTorch tensor in the order the model has them)."""
    return arr if not perm else np.transpose(arr, perm)


def from_layout(np, arr, perm):
    """One output in the converted model's layout -> PyTorch's, so that every
    comparison happens in PyTorch's layout."""
    return arr if not perm else np.transpose(arr, np.argsort(perm))


def save_outputs(path, per_sample, np):
    """Stack a list of {output name: array} (one per sample) into one npz."""
    names = list(per_sample[0].keys()) if per_sample else []
    stacked = dict((n, np.stack([s[n] for s in per_sample])) for n in names)
    np.savez(path, **stacked)
