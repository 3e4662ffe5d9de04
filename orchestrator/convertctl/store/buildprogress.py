"""What an environment or image build says while it runs: a step counter,
the time so far and what is being installed, read from the installer's own
lines (uv, pip, docker build), not those lines themselves. A download of a
few hundred megabytes prints nothing for a minute or more, so a ticker says
the status again every TICK seconds: the elapsed time moves on a terminal's
progress line, and a log that keeps a line every 15 s (cli/ui.py Progress)
shows the build is alive."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

TICK = 5.0  # seconds between repeats of an unchanged status

# (pattern, what it means): the installer's words, kept short.
PATTERNS = [
    (re.compile(r"^Step (\d+)/(\d+) : (.*)"), "step"),  # docker build (classic builder)
    (re.compile(r"^#(\d+) \[[^\]]*?(\d+)/(\d+)\] (.*)"), "buildkit"),  # docker buildx: "#7 [build 3/6] RUN ..."
    # uv: "Downloading torch (190.0MiB)"; pip: "Downloading torch-2.13.0-cp311-...whl (190.2 MB)"
    (re.compile(r"^\s*Downloading (\S+?)(?:-\d[^ ]*)? \(([^)]+)\)"), "downloading"),
    (re.compile(r"^\s*Downloading (\S+)"), "downloading"),
    (re.compile(r"^\s*Collecting (\S+)"), "collecting"),  # pip
    (re.compile(r"^Resolved (\d+) packages?"), "resolved"),  # uv
    (re.compile(r"^Prepared (\d+) packages?"), "prepared"),  # uv
    (re.compile(r"^Installing collected packages: (.*)"), "installing"),  # pip
    (re.compile(r"^Installed (\d+) packages?"), "installed"),  # uv
    (re.compile(r"^Successfully installed (.*)"), "installed-pip"),  # pip
    (re.compile(r"^Bytecode compiled (\d+) files?"), "compiled"),  # uv --compile-bytecode
]


def _short(name: str) -> str:
    return name if len(name) <= 60 else name[:59] + "…"


class BuildProgress:
    """`with BuildProgress(say, "export-torch2.13", steps=2) as p: p.step(1,
    "venv"); p.line(raw)...`: say() gets "<what>: step k/n <step>, 37s:
    downloading torch (190.0MiB)" whenever it changes, and every TICK s."""

    def __init__(self, say: Callable[[str], None], what: str, steps: int = 0, clock=time.monotonic):
        self.say, self.what, self.steps, self.clock = say, what, steps, clock
        self.started = clock()
        self.k, self.step_text, self.doing = 0, "", "starting"
        self.packages = 0  # how many the resolver said
        self.done = 0  # downloads seen
        self._said: tuple = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BuildProgress:
        self._thread = threading.Thread(target=self._tick, name="convertctl-build-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            self.tick()

    def tick(self) -> None:
        """Say the status again (its elapsed time has moved)."""
        self._say(force=True)

    def status(self) -> str:
        elapsed = int(self.clock() - self.started)
        where = f"step {self.k}/{self.steps or '?'} {self.step_text}".rstrip() if self.k else ""
        count = f" ({self.done} of {self.packages})" if self.packages and self.done else ""
        head = f"{self.what}: {where}, " if where else f"{self.what}: "
        return f"{head}{elapsed}s: {self.doing}{count}"

    def _say(self, force: bool = False) -> None:
        with self._lock:
            state = (self.k, self.steps, self.step_text, self.doing, self.done, self.packages)
            if force or state != self._said:  # what changed, not just the seconds
                self._said = state
                self.say(self.status())

    def step(self, k: int, text: str, steps: int | None = None) -> None:
        self.k, self.step_text = k, text
        if steps:
            self.steps = steps
        self.doing = "starting"
        self._say()

    def line(self, raw: str) -> None:
        """One line of the installer's output: the status follows what it says."""
        text = raw.strip()
        for pattern, kind in PATTERNS:
            found = pattern.match(text)
            if found:
                self._read(kind, found)
                self._say()
                return

    def _read(self, kind: str, found: re.Match) -> None:
        g = found.groups()
        if kind == "step":
            self.k, self.steps, self.step_text = int(g[0]), int(g[1]), _short(g[2])
            self.doing = "running"
        elif kind == "buildkit":
            self.k, self.steps, self.step_text = int(g[1]), int(g[2]), _short(g[3])
            self.doing = "running"
        elif kind == "downloading":
            self.done += 1
            size = f" ({g[1]})" if len(g) > 1 and g[1] else ""
            self.doing = f"downloading {_short(g[0])}{size}"
        elif kind == "collecting":
            self.doing = f"resolving {_short(g[0])}"
        elif kind == "resolved":
            self.packages, self.doing = int(g[0]), f"resolved {g[0]} packages"
        elif kind == "prepared":
            self.doing = f"prepared {g[0]} packages, installing"
        elif kind == "installing":
            self.packages = len(g[0].split(","))
            self.doing = f"installing {self.packages} packages"
        elif kind in ("installed", "installed-pip"):
            count = g[0] if kind == "installed" else str(len(g[0].split()))
            self.doing, self.packages, self.done = f"installed {count} packages", 0, 0
        elif kind == "compiled":
            self.doing = f"compiled {g[0]} files"
