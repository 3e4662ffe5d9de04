"""Child processes and containers that die with convertctl, however it dies.

A stage (or a venv installer) is started in its own process group with
PR_SET_PDEATHSIG, so the kernel kills it when convertctl goes, kill -9
included. Its own children (a forked probe, uv's bytecode compilers) are not
covered by that signal, so a guard process holds the other end of a pipe:
when convertctl dies the pipe closes and the guard kills every process group,
and removes every container, that convertctl registered and had not
finished with. The guard sits in its own session, so neither Ctrl-C nor a
kill of convertctl's group reaches it first."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1
UNKNOWN_EXIT = 255  # a child the kernel reaped by itself: its code is not known
OWNER_VAR = "CONVERTCTL_OWNER"
PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL

GUARD = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups, containers, labels = set(), set(), set()
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 3:
        continue
    verb, kind, ident = parts
    bucket = {"pg": groups, "ctr": containers}.get(kind, labels)
    if verb == "add":
        bucket.add(ident)
    else:
        bucket.discard(ident)
for group in groups:
    try:
        os.killpg(int(group), signal.SIGKILL)
    except OSError:
        pass
if containers or labels:
    try:
        import docker
        client = docker.from_env(timeout=30)
        for ident in containers:
            try:
                client.containers.get(ident).remove(force=True)
            except Exception:
                pass
        for label in labels:
            try:
                for container in client.containers.list(all=True, filters={"label": label}):
                    container.remove(force=True)
            except Exception:
                pass
    except Exception:
        pass
"""


class Guard:
    """The one guard process of this convertctl process, started on first use."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None

    def _send(self, line: str) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", GUARD],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",  # nothing in the user's folder shadows the modules it imports
                text=True,
            )
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the guard is gone: PDEATHSIG and the next run's sweep still hold

    def watch(self, kind: str, ident) -> None:
        self._send(f"add {kind} {ident}")

    def release(self, kind: str, ident) -> None:
        self._send(f"del {kind} {ident}")


GUARD_PROCESS = Guard()


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the guard alone kills the group


# Looked up here, in the parent: between fork and exec the child only calls
# it (no imports, no library loading while another thread may hold a lock).
PRCTL = _prctl()


def _die_with_parent(parent: int):
    def setup() -> None:  # runs in the child, between fork and exec
        if PRCTL is not None:
            PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def start(cmd: list, **popen) -> subprocess.Popen:
    """Popen in a new process group, killed with convertctl. Its environment
    names its owner, so that should everything else fail (the guard killed
    too), the next run still finds and stops it (reap_orphans)."""
    popen["env"] = {**(popen.get("env") or os.environ), OWNER_VAR: owner_token()}
    # Held across the start (held_interrupt): a Ctrl-C then stops the new
    # process and is raised here, where the caller has nothing to clean up.
    with held_interrupt() as held:
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()), **popen)
        GUARD_PROCESS.watch("pg", proc.pid)
    if held:
        stop(proc)
        raise KeyboardInterrupt
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Kill the whole group (the process and whatever it started), then reap."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    GUARD_PROCESS.release("pg", proc.pid)


def finish(proc: subprocess.Popen) -> int:
    """Wait for the process to exit by itself, kill what it left in its
    group, and return its exit code. The group is killed before the leader
    is reaped, while its pid (the group's id) cannot have been reused."""
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        os.killpg(proc.pid, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    code = proc.wait()
    GUARD_PROCESS.release("pg", proc.pid)
    return code


def finish_measured(proc: subprocess.Popen) -> tuple[int, float | None]:
    """finish(), and the peak resident memory (MB) of the process and of the
    children it waited for, from the kernel's accounting (wait4): measured,
    not sampled, so a short spike counts too. Where this process ignores
    SIGCHLD, the kernel reaps the child itself: then its
    end is waited for by its /proc entry, and its code and usage are unknown
    (UNKNOWN_EXIT, None); its group is not killed, its id may be anyone's by then."""
    try:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    except ChildProcessError:
        while is_child(proc.pid):
            time.sleep(0.1)
        GUARD_PROCESS.release("pg", proc.pid)
        proc.returncode = UNKNOWN_EXIT
        return UNKNOWN_EXIT, None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    GUARD_PROCESS.release("pg", proc.pid)
    return proc.returncode, round(usage.ru_maxrss / 1024, 1)  # Linux counts KiB


def exited(proc: subprocess.Popen) -> bool:
    """Whether the process has ended, without reaping it (finish_measured still can)."""
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # not waitable (SIGCHLD ignored): ended when its /proc entry is gone
        return not is_child(proc.pid)
    return info is not None and info.si_pid == proc.pid


def is_child(pid: int) -> bool:
    """Whether pid is a live child of this process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and int(fields[1]) == os.getpid()


def owner_token(pid: int | None = None) -> str:
    """host:pid:start-time of a process: unlike a bare pid, never reused.
    The host is qualified by the PID namespace: a pid means another process
    in another namespace (a Ray node or a test started in one of its own
    shares this machine's /proc with the reapers outside it), so an owner is
    only ever judged where its pid means it."""
    pid = pid or os.getpid()
    return f"{_host()}:{pid}:{_start_time(pid)}"


def _host() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}#{namespace}" if namespace else socket.gethostname()


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_gone(token: str) -> bool:
    """True when the process behind an owner_token has ended (on this host, in
    this PID namespace; another host's or namespace's owner is never judged
    gone from here)."""
    host, _, rest = token.partition(":")
    pid, _, started = rest.partition(":")
    if host != _host() or not pid.isdigit():
        return False
    now = _start_time(int(pid))
    return not now or (bool(started) and now != started)


def reap_orphans() -> int:
    """Kill processes convertctl started whose owner is gone: the last line
    of defence, run when a run starts. Only processes whose environment we
    may read (our own user's) are looked at."""
    tag = f"{OWNER_VAR}=".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        at = environ.find(tag)
        if at < 0 or (at and environ[at - 1] != 0):
            continue
        owner = environ[at + len(tag) :].split(b"\0", 1)[0].decode(errors="replace")
        if owner_gone(owner):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


@contextlib.contextmanager
def held_interrupt() -> Iterator[list]:
    """Hold the first SIGINT (Ctrl-C) until the block ends; yields the list of
    those held (empty when none came), for the caller to act on after it. A
    second one is obeyed at once (a block may wait on a lock).

    Two kinds of block need it. Placing a run's files in --out: once they
    start moving the run has passed, and a Ctrl-C then left a report.json
    saying "passed" beside a run that ended with 130. Starting a process
    (start): Popen runs Python's at-fork hooks in the parent, where an
    exception is printed and dropped ("Exception ignored in _releaseLock"),
    so a Ctrl-C landing there was lost, and the batch went on to the end
    (seen in CI)."""
    held: list = []
    if threading.current_thread() is not threading.main_thread():
        yield held  # only the main thread may set handlers; an embedding program keeps its own
        return

    def on_sigint(signum, frame):
        held.append(signum)
        if len(held) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
