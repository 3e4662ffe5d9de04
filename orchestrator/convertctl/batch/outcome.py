"""What one model of a batch came to: its state while the batch runs, and,
once it ended, one row of the combined report read from its own report.json
(per mode: passed or not, the rung that made the file, size, latency,
accuracy, the one-line reason of a failure) plus what the batch measured
(wall time, peak memory, the node it ran on).

The batch's exit code summarises the models': 130 when it was interrupted;
else 0 when every requested file of every model passed; else the most severe
of the models' codes, in the order a single report ranks its failures
(report/model.py SEVERITY: internal 1 > usage 2 > environment 5 >
conversion 3 > validation 4)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convertctl.errors import EXIT_INTERNAL, EXIT_OK
from convertctl.report.model import SEVERITY
from convertctl.report.summary import file_checks, sample_check

EXIT_INTERRUPTED = 130
# A model's states, in the order it goes through them.
WAITING, RUNNING, PASSED, FAILED, INTERRUPTED, NOT_RUN = (
    "waiting",
    "running",
    "passed",
    "failed",
    "interrupted",
    "not run",
)
ENDED = (PASSED, FAILED, INTERRUPTED, NOT_RUN)
REASON_CHARS = 240


@dataclass
class Outcome:
    name: str
    model: str
    out_dir: str
    family: str = ""
    state: str = WAITING
    exit_code: int | None = None
    failure: str = ""
    seconds: float = 0.0
    peak_rss_mb: float | None = None  # the conversion's process tree (the kernel's count), and its stages
    stage_peak_mb: float | None = None  # the largest stage's, from its report (a container's, on Docker)
    cached: bool = False  # every step came from the stage cache
    report: str = ""
    log: str = ""
    node: str = ""  # Ray: the node that made it
    attempts: list = field(default_factory=list)  # Ray: every try, with the node and how it ended
    modes: dict = field(default_factory=dict)
    last_line: str = ""
    started: float = 0.0  # monotonic, while running

    def start(self) -> None:
        self.state, self.started = RUNNING, time.monotonic()

    def end(self, result: dict, peak_rss_mb: float | None) -> None:
        """Record a finished conversion: the worker's result (exit code,
        failure, report path) and the peak memory measured around it."""
        if self.started:
            self.seconds = round(time.monotonic() - self.started, 1)
        code = int(result.get("exit_code", EXIT_INTERNAL))
        self.exit_code = code
        self.state = PASSED if code == EXIT_OK else INTERRUPTED if code == EXIT_INTERRUPTED else FAILED
        self.failure = one_line(result.get("failure", ""))
        self.report = result.get("report", "")
        self.peak_rss_mb = peak_rss_mb
        self.read_report()

    def read_report(self) -> None:
        data = read_json(Path(self.report)) if self.report else {}
        if not data:
            return
        stages = data.get("stages") or []
        peaks = [s["peak_rss_mb"] for s in stages if isinstance(s.get("peak_rss_mb"), (int, float))]
        self.stage_peak_mb = max(peaks) if peaks else None
        if self.peak_rss_mb is None or (self.stage_peak_mb or 0) > self.peak_rss_mb:  # a container is not our child
            self.peak_rss_mb = self.stage_peak_mb
        self.cached = bool(stages) and all(s.get("cached") for s in stages)
        self.modes = mode_rows(data)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("started")
        out.pop("last_line")
        return out


def mode_rows(report: dict) -> dict:
    """{mode: {status, variant, size_bytes, latency_ms, accuracy, reason}} of one report."""
    rows: dict = {}
    accuracy = ((report.get("accuracy") or {}).get("modes")) or {}
    for mode in report.get("modes") or []:
        art = next((a for a in report.get("artifacts") or [] if a.get("mode") == mode), None)
        if art is None:
            reason = report.get("failure", "") if str(report.get("failure", "")).startswith(f"{mode}:") else ""
            rows[mode] = {"status": "failed", "reason": one_line(reason or ladder_reason(report, mode))}
            continue
        check = sample_check(file_checks(report.get("checks") or [], art))
        acc = accuracy.get(mode)
        ok = (
            art.get("status") == "ok"
            and check is not None
            and check.get("status") != "failed"
            and (acc is None or acc.get("status") == "passed")
            and report.get("status") == "passed"  # a file is placed only when the whole run passed
        )
        reason = ""
        if not ok:
            reason = art.get("error") or next(iter((check or {}).get("failures") or []), "")
            reason = reason or (acc or {}).get("message", "") or report.get("failure", "")
        rows[mode] = {
            "status": "passed" if ok else "failed",
            "variant": art.get("variant", ""),
            "size_bytes": art.get("size_bytes"),
            "latency_ms": latency_ms(art),
            "accuracy": (acc or {}).get("accuracy"),
            "reason": one_line(reason),
        }
    return rows


def ladder_reason(report: dict, mode: str) -> str:
    said = [f"{e['variant']}: {e['modes'][mode]}" for e in report.get("ladder") or [] if mode in (e.get("modes") or {})]
    return "; ".join(said) or report.get("failure", "") or "no file made"


def latency_ms(art: dict) -> float | None:
    """The median with XNNPACK on one thread: what a phone app usually runs."""
    for config in (art.get("latency") or {}).get("configs") or []:
        if config.get("xnnpack") and config.get("threads") == 1:
            return config.get("median_ms")
    return None


def one_line(text) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def exit_code(outcomes: list, interrupted: bool) -> int:
    """The batch's exit code (see the module's docstring)."""
    if interrupted or any(o.state == INTERRUPTED for o in outcomes):
        return EXIT_INTERRUPTED
    codes = [o.exit_code for o in outcomes if o.exit_code not in (None, EXIT_OK)]
    not_passed = [m for o in outcomes for m in o.modes.values() if m.get("status") != "passed"]
    if not codes:
        # Every model ended with 0, and so did every file; a model never run is a failure of the batch.
        return EXIT_INTERNAL if not_passed or any(o.state != PASSED for o in outcomes) else EXIT_OK
    return max(codes, key=lambda c: SEVERITY.index(c) if c in SEVERITY else len(SEVERITY))
