"""What every command shares on the terminal: the consoles, the progress
line, and the one place where a ConvertError becomes a message and an exit
code (tracebacks only under --debug)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from convertctl.errors import EXIT_INTERNAL, ConvertError
from convertctl.store.rundir import os_error

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# Width when output is not a terminal (CI logs, pipes, files) and COLUMNS is
# unset: rich would assume 80 and wrap table cells mid-word ("not built" as
# "no|t |bu|il|t"); a log has no width, so lines may be long.
PLAIN_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PLAIN_WIDTH
    return console


console = make_console()
err = make_console(stderr=True)
STATE = {"debug": False}

# Options more than one command takes, spelled and explained once.
Runtime = Annotated[
    str, typer.Option("--runtime", help="auto (Docker if a daemon answers, else local), local or docker.")
]
CaBundle = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        help="CA bundle for the package index (TLS-intercepting proxies). "
        "Default: pip's cert setting, then SSL_CERT_FILE.",
    ),
]
IndexUrl = Annotated[
    str, typer.Option("--pip-index-url", help="Package index for building environments. Default: pip's configuration.")
]
Wheelhouse = Annotated[
    Path | None,
    typer.Option(
        "--wheelhouse",
        help="Folder of wheels to install from first (air-gapped machines; the CPU torch wheel). "
        "Docker builds copy in only the files the lock names. Default: pip's find-links.",
    ),
]
BaseImage = Annotated[
    str, typer.Option("--base-image", help="FROM image for stage image builds (a local base; Docker).")
]


def handled(fn):
    """Map domain errors to a message and an exit code; tracebacks only under --debug.
    OS errors (a full disk, a permission) are domain errors too, with exit
    code 5 or 3; a run that was under way says where its files are kept."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt as exc:
            err.print("[bold red]interrupted[/]")
            _kept(exc)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: say so plainly
            mapped = os_error(exc, getattr(exc, "run_dir", None))
            if isinstance(mapped, ConvertError):
                if STATE["debug"]:
                    err.print_exception()
                err.print(f"[bold red]error:[/] {escape(mapped.message)}", highlight=False, soft_wrap=True)
                if mapped.hint:
                    err.print(f"[dim]{escape(mapped.hint)}[/]", highlight=False, soft_wrap=True)
                _kept(exc)
                raise typer.Exit(mapped.exit_code) from None
            if STATE["debug"]:
                raise
            err.print(
                f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')} "
                "(rerun with --debug for a traceback)",
                soft_wrap=True,
            )
            _kept(exc)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _kept(exc: BaseException) -> None:
    run_dir = getattr(exc, "run_dir", "")
    if run_dir:
        err.print(f"the run directory is kept: {escape(str(run_dir))}", highlight=False, soft_wrap=True)


class Progress:
    """A spinner with the latest line of whatever is happening; stage
    starts and notices are kept on screen above it."""

    def __init__(self):
        self.status = console.status("starting", spinner="dots")

    def __enter__(self):
        self.status.__enter__()
        return self

    def __exit__(self, *exc):
        return self.status.__exit__(*exc)

    def __call__(self, line: str) -> None:
        if line.startswith("WARNING: "):
            err.print(f"[bold yellow]WARNING[/] {escape(line[len('WARNING: ') :])}", highlight=False, soft_wrap=True)
        elif line.startswith(
            ("creating ", "export:", "convert:", "quantize:", "removing ", "removed ", "building ", "could not pull")
        ):
            console.print(f"[cyan]›[/] {escape(line)}", highlight=False)
        self.status.update(line[:110])
