"""A real two-node Ray cluster on loopback, and `convertctl batch` run
against it. Run INSIDE a network and PID namespace of its own, which the
test makes (`unshare --net --pid --fork --mount-proc`):

    python ray_cluster.py RESULT.json RAY_BIN_DIR [--kill-second-node | --interrupt] [--client] -- BATCH ARGS...

In a fresh network namespace only loopback exists (brought up here): Ray
binds to 127.0.0.1, and its probe of an outside address fails at once,
sending nothing anywhere. In the PID namespace `ray stop --force` sees only
this cluster's processes, and whatever is left dies with the namespace.

The head and a second node get one CPU each. With --kill-second-node, once
a conversion runs on the second node, that node (its raylet and every
process under it) is killed with SIGKILL, as a machine that dies would be.
With --client the batch joins through Ray Client (ray://127.0.0.1:CLIENT_PORT,
the head's client server) instead of the GCS address. With --interrupt,
once a model's report.json is in --out and another model is converting,
the batch gets SIGINT, as from a terminal's Ctrl-C.
RESULT.json: the batch's exit code, its output, which model was running
on the node when it was killed, the models finished when it was
interrupted, and any conversion process still alive once the batch ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT, NODE2_PORT, CLIENT_PORT = 6380, 6390, 10001  # nothing else listens in this namespace
WAIT_FOR_NODE2 = 900


def children() -> tuple[dict, dict]:
    """{pid: [child pids]} and {pid: command line} of every process here."""
    kids, cmds = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
        cmds[int(entry)] = cmd
    return kids, cmds


def tree(pid: int, kids: dict) -> list:
    out = [pid]
    for child in kids.get(pid, []):
        out += tree(child, kids)
    return out


def second_raylet(cmds: dict) -> int | None:
    return next((p for p, c in cmds.items() if "raylet" in c and f"--node_manager_port={NODE2_PORT}" in c), None)


def conversion_on_node2() -> tuple[list, str, str] | None:
    """(the second node's processes, the model converting there, the model
    file its conversion reads) once one does."""
    kids, cmds = children()
    raylet = second_raylet(cmds)
    if raylet is None:
        return None
    procs = tree(raylet, kids)
    for pid in procs:
        if "convertctl.batch.worker" in cmds.get(pid, ""):
            job = cmds[pid].split()[-1]
            try:
                options = json.loads(Path(job).read_text())["options"]
                return procs, Path(options["out"]).name, options["model"]
            except (OSError, ValueError, KeyError):
                return procs, "?", "?"
    return None


def conversions() -> list:
    """The command lines of conversion processes alive in this namespace."""
    _, cmds = children()
    return [c for c in cmds.values() if "convertctl.batch.worker" in c]


def interrupt_when_one_finished(driver, out: Path, outcome: dict) -> None:
    deadline = time.monotonic() + WAIT_FOR_NODE2
    while driver.poll() is None and time.monotonic() < deadline:
        finished = sorted(p.parent.name for p in out.glob("*/report.json"))
        if finished and conversions():
            time.sleep(2)  # well into that conversion
            outcome["finished"] = sorted(p.parent.name for p in out.glob("*/report.json"))
            driver.send_signal(signal.SIGINT)
            outcome["interrupted"] = True
            return
        time.sleep(0.5)


def main(argv: list) -> int:
    split = argv.index("--")
    result_path, ray_bin, flags, batch = Path(argv[1]), Path(argv[2]), argv[3:split], argv[split + 1 :]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray = str(ray_bin / "ray")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    outcome: dict = {"killed": None, "interrupted": False}
    try:
        head = [ray, "start", "--head", f"--port={PORT}", "--include-dashboard=false", f"--temp-dir={temp}", *common]
        head += [f"--ray-client-server-port={CLIENT_PORT}"] if "--client" in flags else []
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=300)
        node2 = [ray, "start", f"--address=127.0.0.1:{PORT}", f"--node-manager-port={NODE2_PORT}", *common]
        subprocess.run(node2, env=env, check=True, capture_output=True, timeout=300)
        command = [sys.executable, "-m", "convertctl", "batch", *batch, "--executor", "ray"]
        command += ["--address", f"ray://127.0.0.1:{CLIENT_PORT}" if "--client" in flags else f"127.0.0.1:{PORT}"]
        log = result_path.with_suffix(".log")
        with open(log, "w") as handle:
            driver = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        if "--kill-second-node" in flags:
            deadline = time.monotonic() + WAIT_FOR_NODE2
            while driver.poll() is None and time.monotonic() < deadline:
                found = conversion_on_node2()
                if found:
                    time.sleep(3)  # well into its conversion
                    procs, model, model_file = found
                    _, cmds = children()
                    outcome["killed_commands"] = [cmds.get(p, "")[:120] for p in procs]
                    for pid in procs:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    outcome["killed"] = {"model": model, "processes": len(procs), "model_file": model_file}
                    break
                time.sleep(0.5)
        if "--interrupt" in flags:
            interrupt_when_one_finished(driver, Path(batch[batch.index("--out") + 1]), outcome)
        outcome["exit_code"] = driver.wait(timeout=3000)
        outcome["output"] = log.read_text()
        outcome["left"] = conversions()
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=300)
        result_path.write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
