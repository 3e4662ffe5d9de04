"""What convertctl.convert() returns: a typed view of the run's report
(status, exit code, per-mode files with their checks, sizes, latency and
accuracy, the ladder), raise_for_status(), and displays for rich
(`rich.print(result)`) and Jupyter (the HTML report's summary cards)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convertctl.errors import (
    EXIT_CONVERSION,
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VALIDATION,
    ConversionError,
    ConvertError,
    EnvironmentProblem,
    UsageError,
    ValidationFailed,
)
from convertctl.report.model import Report
from convertctl.report.summary import ModeFile, mode_files

ERRORS: dict[int, type[ConvertError]] = {
    EXIT_USAGE: UsageError,
    EXIT_CONVERSION: ConversionError,
    EXIT_VALIDATION: ValidationFailed,
    EXIT_ENVIRONMENT: EnvironmentProblem,
}


@dataclass(frozen=True)
class Rung:
    """One rung of the export or convert ladder, as tried."""

    stage: str
    variant: str
    family: str
    status: str  # used | failed | skipped
    seconds: float
    note: str  # why it failed or was skipped, or what it was used for
    modes: dict  # {mode: "ok" or why not}


class Result:
    """A finished run. `files` maps each mode asked for to its ModeFile."""

    def __init__(self, report: Report):
        self.report = report
        self.files: dict[str, ModeFile] = {f.mode: f for f in mode_files(report)}
        self.ladder = [
            Rung(
                stage=e.get("stage", ""),
                variant=e.get("variant", ""),
                family=e.get("family", ""),
                status=e.get("status", ""),
                seconds=float(e.get("seconds") or 0.0),
                note=str(e.get("error") or e.get("reason") or e.get("purpose") or ""),
                modes=dict(e.get("modes") or {}),
            )
            for e in report.ladder
        ]

    status = property(lambda self: self.report.status, doc="passed or failed")
    exit_code = property(lambda self: self.report.exit_code, doc="what `convertctl run` would exit with")
    failure = property(lambda self: self.report.failure, doc="the first failure of the most serious kind")
    notices = property(lambda self: list(self.report.notices))

    @property
    def ok(self) -> bool:
        return self.report.status == "passed" and self.report.exit_code == EXIT_OK

    @property
    def out_dir(self) -> Path:
        return Path(self.report.out_dir)

    @property
    def run_dir(self) -> Path | None:
        """Where a failed run kept everything (None once a run passed)."""
        return Path(self.report.run_dir) if self.report.run_dir else None

    @property
    def report_path(self) -> Path:
        return (self.out_dir if self.ok else Path(self.report.run_dir)) / "report.json"

    def __getitem__(self, mode: str) -> ModeFile:
        return self.files[mode]

    def raise_for_status(self) -> Result:
        """The run's error when it failed (ValidationFailed for a check that
        missed, ConversionError, ...), carrying this result and its report;
        else the result itself."""
        if self.ok:
            return self
        cls = ERRORS.get(self.exit_code, ConvertError)
        where = f"; everything is kept in {self.report.run_dir}" if self.report.run_dir else ""
        error = cls(self.failure or f"the run failed (exit {self.exit_code})", hint=where.lstrip("; "))
        error.report = self.report  # type: ignore[attr-defined]
        error.result = self  # type: ignore[attr-defined]
        raise error

    def __repr__(self) -> str:
        files = ", ".join(f"{m}={'ok' if f.passed else 'failed'}" for m, f in self.files.items())
        return f"<convertctl.Result {self.status} exit {self.exit_code}: {files or 'no files'}>"

    def _repr_html_(self) -> str:
        from convertctl.report.html import fragment

        return fragment(self.report)

    def __rich__(self):
        """A table per mode; every string from the report shown as text."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from convertctl.report.html import _quality, _size
        from convertctl.report.render import summary_line
        from convertctl.report.text import visible

        table = Table(title=Text(f"convertctl: {visible(self.report.model.get('path', ''))}"), title_justify="left")
        for head in ("mode", "", "file", "size", "latency", "quality", "made by"):
            table.add_column(head, overflow="fold")
        for f in self.files.values():
            table.add_row(
                Text(f.mode),
                Text("✓", style="green") if f.passed else Text("✗", style="red"),
                Text(visible(f.name or "-")),
                Text(_size(f.size_bytes) if f.size_bytes else "-"),
                Text(f"{f.latency_ms:.3g} ms" if f.latency_ms is not None else "-"),
                Text(visible(_quality(f) if f.passed else f.problem)),
                Text(visible(f.variant)),
            )
        style = "bold green" if self.ok else "bold red"
        return Group(table, Text(visible(summary_line(self.report)), style=style))
