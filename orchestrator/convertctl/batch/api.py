"""`convertctl.batch(...)`: the batch command as a Python function.

    import convertctl
    result = convertctl.batch(["models/*.pt"], out="out", input_shape=["1,3,224,224"], quant=["fp16"])
    result["exit_code"], result["models"][0]["modes"]["fp16"]["status"]

Options are the option table's, spelled as in convertctl.toml (keyword
arguments, validated by the same rules as the flags); the batch's own
choices (executor, address, shared_dir, jobs, fail_fast) as in the command.
Returns the batch report's data (what batch-report.json holds); raises
ConvertError (with its exit_code) for bad input, as the command exits 2 or 5."""

from __future__ import annotations

from pathlib import Path

from convertctl.batch.driver import EXECUTORS, Choices, run_batch
from convertctl.batch.plan import make_plan
from convertctl.errors import UsageError


class _Quiet:
    """No progress display: a caller's program prints what it wants."""

    def __init__(self, *_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self) -> None:
        return None

    def note(self, line: str) -> None:
        return None


def batch(
    sources,
    *,
    out: str | Path = "convertctl-out",
    executor: str = "local",
    address: str = "auto",
    shared_dir: str = "",
    jobs: int | None = None,
    fail_fast: bool = False,
    trust_config: bool = False,
    say=None,
    **options,
) -> dict:
    """Convert every model of `sources` (paths, globs, or one batch file)."""
    if executor not in EXECUTORS:
        raise UsageError(f"executor={executor!r}: choose from {', '.join(EXECUTORS)}")
    sources = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    plan = make_plan(sources, options, Path(out), trust_config)
    choices = Choices(executor, jobs, fail_fast, address, shared_dir)
    _, data = run_batch(plan, choices, _Quiet, say or (lambda _line: None))
    return data
