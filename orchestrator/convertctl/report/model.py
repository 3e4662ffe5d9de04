"""The report: one data model, saved as versioned JSON, rendered by
render.py for the terminal and as Markdown. Nothing here prints."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convertctl import __version__, userfiles
from convertctl.errors import (
    EXIT_CONVERSION,
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VALIDATION,
    UsageError,
)
from convertctl.store import safefs

SCHEMA_NAME = "convertctl.report"
SCHEMA_VERSION = 3
# Which failure a report names when there are several: the most serious kind.
SEVERITY = [EXIT_VALIDATION, EXIT_CONVERSION, EXIT_ENVIRONMENT, EXIT_USAGE, EXIT_INTERNAL]
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")
MAX_REPORT_BYTES = 256 << 20  # reports run to a few MB (pip freezes, layer lists)


@dataclass
class Report:
    model: dict
    runtime: str
    modes: list
    inputs: dict = field(default_factory=dict)
    environments: list = field(default_factory=list)
    ladder: list = field(default_factory=list)
    stages: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    accuracy: dict | None = None
    notices: list = field(default_factory=list)
    # What made the files, enough to make them again (manifest.py).
    manifest: dict = field(default_factory=dict)
    # Files of an earlier run in --out that this run did not make, and where
    # they were moved (OUT/.convertctl/previous/...).
    stale: list = field(default_factory=list)
    status: str = "running"
    exit_code: int = EXIT_OK
    failure: str = ""
    run_dir: str = ""
    out_dir: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    schema: str = SCHEMA_NAME
    schema_version: int = SCHEMA_VERSION
    convertctl_version: str = __version__

    def fail(self, code: int, message: str) -> None:
        """Keep the most serious failure (a conversion failure outranks a
        validation one); the first message of a kind is the one shown."""
        rank = SEVERITY.index(code) if code in SEVERITY else len(SEVERITY)
        current = SEVERITY.index(self.exit_code) if self.exit_code in SEVERITY else -1
        if self.exit_code == EXIT_OK or rank > current:
            self.exit_code, self.failure = code, message
        self.status = "failed"

    def finish(self) -> None:
        if self.status == "running":
            self.status = "passed"

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        """Whole or not at all, never through a link a stage left in the run directory."""
        safefs.write_atomic(path.parent, path.name, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def load_report(path: Path) -> Report:
    """A report.json from anywhere: a regular file (a FIFO is refused, not
    waited on), JSON, convertctl's schema and version, the top-level fields
    of their types. What is inside them is data the renderers show as text."""
    raw = userfiles.read_bytes(path, "report", MAX_REPORT_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path}: not a readable report ({exc})") from None
    except RecursionError:
        raise UsageError(f"{path}: not a readable report (JSON nested too deeply)") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        raise UsageError(f'{path}: not a convertctl report (no "schema": "{SCHEMA_NAME}")')
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{path}: report schema version {data.get('schema_version')} "
            f"is not the one this convertctl reads ({SCHEMA_VERSION})"
        )
    known = Report.__dataclass_fields__
    fields = {k: v for k, v in data.items() if k in known}
    missing = [k for k in ("model", "runtime", "modes") if k not in fields]
    wrong = [k for k, v in fields.items() if not _of_type(v, str(known[k].type))]
    if missing or wrong:
        what = ", ".join([f"{k} missing" for k in missing] + [f"{k} is not a {known[k].type}" for k in wrong])
        raise UsageError(f"{path}: not a valid convertctl report ({what})")
    return Report(**fields)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "dict": dict,
    "list": list,
    "str": str,
    "int": int,
    "dict | None": (dict, type(None)),
}


def _of_type(value, annotation: str) -> bool:
    wanted = _TYPES.get(annotation, object)
    return isinstance(value, wanted) and not (wanted is int and isinstance(value, bool))
