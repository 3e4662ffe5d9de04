"""The one seam between planning and execution. A runtime makes stage
environments ready and runs one stage in one of them; everything a stage
says comes back through the run directory (request in, result + artifacts
out) and its exit code. Two implementations: local venvs and Docker."""

from __future__ import annotations

import json
import os
import signal
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.config.catalog import Variant
from convertctl.errors import machine_sign
from convertctl.store import safefs

Say = Callable[[str], None]


@dataclass
class Prepared:
    """One stage environment made ready: created now, or found ready."""

    variant: Variant
    location: str  # venv path or image tag
    created: bool
    seconds: float = 0.0


@dataclass
class Step:
    """One stage script run in one environment: `python SCRIPT RUN_DIR WORK`.

    WORK is the step's own folder in the run directory, where it finds
    request.json and writes result.json and its artifacts. Several steps of
    one stage (ladder rungs, one quantize step per mode) each get their own.
    """

    variant: Variant
    work: str  # relative to the run directory
    request: dict
    script: str = ""  # relative to images/; default: the variant's
    protocol: str = ""  # whose request and result it speaks (run/protocol.py); default: its stage's

    @property
    def stage(self) -> str:
        return self.variant.stage

    @property
    def script_rel(self) -> str:
        return self.script or self.variant.script_rel

    @property
    def speaks(self) -> str:
        return self.protocol or self.stage

    def reads(self) -> list[str]:
        """The files and folders the request names: run-directory paths
        (relative) and the user's own (absolute: the model, --code)."""
        found: list[str] = []

        def visit(value) -> None:
            if isinstance(value, dict):
                for v in value.values():
                    visit(v)
            elif isinstance(value, list):
                for v in value:
                    visit(v)
            elif isinstance(value, str) and "/" in value and not value.startswith(("http:", "https:")):
                found.append(value)

        visit(self.request)
        return list(dict.fromkeys(found))


@dataclass
class StageRun:
    stage: str
    variant: Variant
    exit_code: int
    result: dict = field(default_factory=dict)
    seconds: float = 0.0
    log_tail: list = field(default_factory=list)
    peak_rss_mb: float | None = None  # the stage's peak resident memory, where the runtime can measure it

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.result.get("status") == "ok"

    @property
    def error(self) -> str:
        if self.result.get("error"):
            return self.result["error"]
        if self.exit_code != 0:
            # A crash in native code leaves no result: quote what it said,
            # without the C++ stack frames.
            said = [ln for ln in self.log_tail if not ln.lstrip().startswith("frame #")][-3:]
            quote = (": " + " | ".join(s.strip() for s in said)) if said else ""
            name = crash_signal(self.exit_code)
            if name:
                return (
                    f"the {self.stage} stage crashed ({name}, exit code {self.exit_code}) and wrote no "
                    f"result{quote}. {CRASH_HINTS.get(name, '')}"
                ).rstrip()
            return f"the {self.stage} stage exited with code {self.exit_code} and wrote no result{quote}"
        return ""


def machine_problem(run: StageRun) -> str:
    """'' unless a failed stage says the disk (or quota) ran out: then that, in words."""
    if run.ok:
        return ""
    return machine_sign([run.result.get("error", ""), *run.log_tail])


# Why a stage died from a signal, in words a user can act on.
CRASH_HINTS = {
    "SIGSEGV": "Native code crashed; old library builds (torch 1.7, TF 2.8) can crash on CPUs newer than "
    "they know: try a newer variant (--export-image / --convert-image) or the other --runtime.",
    "SIGILL": "The CPU lacks an instruction this library build needs: try another variant or the other --runtime.",
    "SIGKILL": "Killed from outside, most often for memory: close other programs or raise the limit.",
    "SIGABRT": "",
}


def crash_signal(exit_code: int) -> str:
    """The signal behind an exit code: a local child reports -N, a
    container's main process 128+N."""
    number = -exit_code if exit_code < 0 else exit_code - 128 if 128 < exit_code < 160 else 0
    try:
        return signal.Signals(number).name if number else ""
    except ValueError:
        return ""


class Runtime(ABC):
    """Where stages run. Every method a caller may use is declared here;
    the three a runtime must say for itself are abstract, the rest have the
    defaults of a runtime whose stages see the host's run directory (local
    venvs, Docker with a bind mount). Kinds are registered in config/runtimes.py."""

    name: str = ""
    sandboxed: bool = False  # stages cannot reach the network or host files beyond their run directory

    def __init__(self) -> None:
        self.notices: list[str] = []  # what the user must know about this runtime, said once per run

    @classmethod
    @abstractmethod
    def create(cls, settings, say: Say, options: dict, flag: str = "") -> Runtime:
        """The runtime, built from the user's package-index settings and build
        options (base_image); an EnvironmentProblem when it cannot be reached."""

    @abstractmethod
    def prepare(self, variants: Iterable[Variant], say: Say) -> list[Prepared]:
        """Make each variant's environment ready (created now, or found)."""

    @abstractmethod
    def run(self, step: Step, run_dir: Path, say: Say) -> StageRun:
        """Run one stage script in its environment, against run_dir."""

    @abstractmethod
    def identity(self, variant: Variant) -> dict:
        """What defines a variant's environment (content keys), known before
        it exists: part of every stage cache key and of the manifest."""

    def freeze(self, variant: Variant) -> dict:
        """The ready environment as seen inside (image ID, `pip freeze`)."""
        return {}

    def preflight(self, variants: Iterable[Variant]) -> None:
        """Raise EnvironmentProblem now for a variant this runtime cannot make
        at all (a missing interpreter), before the stages ahead of it run."""
        return None  # nothing to do by default

    def stage_in(self, step: Step, run_dir: Path) -> None:
        """Move what a step reads (step.reads()) to where it runs: nothing to
        do when stages see the host's run directory; a runtime on another
        machine copies them there."""
        return None  # nothing to do by default

    def stage_out(self, step: Step, run_dir: Path) -> None:
        """Bring what a step wrote (its WORK folder) back into run_dir."""
        return None  # nothing to do by default

    def close(self) -> None:
        """Release what the runtime holds (connections, workers)."""
        return None  # nothing to do by default


def write_request(run_dir: Path, work: str, request: dict) -> None:
    """WORK/request.json, folders made as needed (a container's stage user is
    given them by the runtime), never written through a link a stage left."""
    safefs.write_atomic(run_dir, f"{work}/request.json", json.dumps(request, indent=2, sort_keys=True))


def read_result(run_dir: Path, work: str) -> dict:
    """WORK/result.json as a dict; {} when there is none. A link or special
    file there is a failed step that says so, never followed."""
    try:
        data = json.loads(safefs.read_bytes(run_dir, f"{work}/result.json"))
    except safefs.Unsafe as exc:
        return {"status": "failed", "error": f"the stage left {exc.strerror}"}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class LogTail:
    """What a stage prints: a full copy in the run directory, its last lines
    kept to quote when it fails, and its "[stage]" lines passed on as
    progress."""

    def __init__(self, run_dir: Path, step: Step, say: Say, keep: int = 15):
        self.stage, self.say = step.stage, say
        self.lines: deque = deque(maxlen=keep)
        self._opened = safefs.open_write(run_dir, f"{step.work}/stage.log", append=True)
        self.handle = self._opened.__enter__()

    def add(self, line: str) -> None:
        self.handle.write((line if line.endswith("\n") else line + "\n").encode("utf-8", "replace"))
        if line.strip():
            self.lines.append(line.rstrip())
        if line.startswith("[stage]"):
            self.say(f"{self.stage}: {line[len('[stage]') :].strip()}")

    def close(self) -> list:
        self._opened.__exit__(None, None, None)
        return list(self.lines)


def stage_environ() -> dict:
    """A clean environment for a stage process: nothing of the host's Python
    setup leaks in, and TensorFlow is kept quiet and off any GPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA"))}
    env.update(
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        PYTHONUNBUFFERED="1",
    )
    return env
