"""What travels between the batch and a Ray node, and what runs there.

Files travel as {relative name: bytes} through Ray's object store: the
model and its data out (unless they are under a --shared-dir every node
sees), the model's --out folder back (its files, or a failed run's kept
directory). Every name that comes back is data: checked to stay inside its
folder, written without following links (safefs), and links are never sent.

On the node, a conversion runs as locally: worker.py in a process of its
own (it dies with the task should the task be killed), its output folder a
temporary one that is removed once sent back. Ctrl-C on the batch cancels
the task: Ray raises KeyboardInterrupt in it, the task passes SIGINT on to
its conversion as a terminal would, and returns what the stopped
conversion kept (its run directory, saying 130). A running task that
returns after its cancel still gives its value to ray.get (measured with
Ray 2.60); only a task cancelled before it began raises TaskCancelledError.
Nothing in the task waits on ray.get while the conversion runs: Ray lends
a blocked task's CPU to another task, and the pool would run more
conversions at once than it sized."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

from convertctl.store import procs, safefs

PATH_FIELDS = ("model", "calib", "eval_data", "sample_inputs", "code")  # the user's files a conversion reads
SCRATCH = ".stage-home"  # a local stage's home inside its run directory: never sent
SAY_EVERY = 1.0


def read_tree(path: Path) -> dict:
    """{name: bytes} of a file (its own name) or every regular file below a folder; links left out."""
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    files: dict = {}
    for folder, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d != SCRATCH and not os.path.islink(os.path.join(folder, d))]
        for name in names:
            full = os.path.join(folder, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                files[os.path.relpath(full, path)] = Path(full).read_bytes()
    return files


def write_tree(root: Path, files: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        safefs.write_atomic(root, safefs.rel(name, "a returned file"), blob)


def pack_inputs(options: dict, shared_dir: str = "") -> tuple[dict, dict]:
    """The user's files a model's conversion reads, unless under shared_dir:
    ({"<field>/<name>": bytes}, {field: name under the unpacked folder})."""
    shared = Path(shared_dir).resolve() if shared_dir else None
    files, where = {}, {}
    for field in PATH_FIELDS:
        value = options.get(field)
        if not value:
            continue
        path = Path(value).resolve()
        if shared is not None and path.is_relative_to(shared):
            continue  # the node reads it where it is
        for name, blob in read_tree(path).items():
            files[f"{field}/{name}" if path.is_dir() else f"{field}/{path.name}"] = blob
        where[field] = f"{field}/{path.name}" if path.is_file() else field
    return files, where


def run_on_node(name: str, options: dict, inputs: dict, where: dict, progress=None) -> dict:
    """Convert one model here: {result, peak_rss_mb, node, out, inputs, files}."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    tmp = Path(tempfile.mkdtemp(prefix="convertctl-ray-"))
    try:
        write_tree(tmp / "in", inputs)
        options = {**options, **{f: str(tmp / "in" / rel) for f, rel in where.items()}}
        out = tmp / "out" / name
        options["out"] = str(out)
        result_path, log = tmp / "result.json", tmp / "worker.log"
        (tmp / "job.json").write_text(json.dumps({"options": options, "result": str(result_path)}))
        tell(progress, name, node, "started")
        proc, said, stopping = None, "", False
        while True:
            try:
                if proc is None:
                    with open(log, "ab") as handle:
                        proc = procs.start(
                            [sys.executable, "-m", "convertctl.batch.worker", str(tmp / "job.json")],
                            stdout=handle,
                            stderr=procs.STDOUT,
                            stdin=procs.DEVNULL,
                        )
                if procs.exited(proc):
                    break
                time.sleep(SAY_EVERY)
                line = last_line(log)
                if line != said:
                    tell(progress, name, node, line)
                    said = line
                if not stopping and cancelled():
                    raise KeyboardInterrupt
            except KeyboardInterrupt:  # ray.cancel: stop the conversion as Ctrl-C stops `convertctl run`
                if proc is None:
                    raise  # cancelled before it began: nothing to stop
                if not stopping:
                    os.kill(proc.pid, signal.SIGINT)
                    stopping = True
        code, peak = procs.finish_measured(proc)
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            result = {"exit_code": 3, "failure": f"the conversion process on node {node[:8]} ended ({code})"}
        files = read_tree(out) if out.is_dir() else {}
        peak = peak or result.get("peak_rss_mb")
        return {"result": result, "peak_rss_mb": peak, "node": node, "out": str(out), "in": str(tmp / "in"),
                "files": files, "log": log.read_bytes()[-20000:].decode("utf-8", "replace")}  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cancelled() -> bool:
    """Whether Ray cancelled this task. Its KeyboardInterrupt can land where
    Python drops exceptions (an ObjectRef's finalizer; seen in CI: a cancelled
    task converted on to the end), so the task also asks, each second."""
    import ray

    try:
        return bool(ray.get_runtime_context().is_canceled())
    except Exception:  # noqa: BLE001 - nobody to ask: the interrupt is the only word
        return False


def last_line(log: Path) -> str:
    from convertctl.batch.local import last_line as tail

    return tail(log)


def tell(progress, name: str, node: str, line: str) -> None:
    if progress is None:
        return
    try:
        progress.say.remote(name, node, line)  # not awaited: progress never slows a conversion
    except Exception:  # noqa: BLE001 - nor fails one
        pass


class ProgressLog:
    """A Ray actor on the driver's node: tasks tell it how they are doing,
    the driver reads it (who runs where, the latest line of each)."""

    def __init__(self):
        self.events: list = []

    def say(self, name: str, node: str, line: str) -> None:
        self.events.append((name, node, line, time.time()))

    def drain(self) -> list:
        events, self.events = self.events, []
        return events


def rewrite(value, old_to_new: dict):
    """Every string in a report with the node's temporary paths put back as the driver's."""
    if isinstance(value, dict):
        return {k: rewrite(v, old_to_new) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, old_to_new) for v in value]
    if isinstance(value, str):
        for old, new in old_to_new.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old) :]
    return value
