"""What every command shares on the terminal: the consoles, the progress
line, and the one place where a ConvertError becomes a message and an exit
code (tracebacks only under --debug)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from convertctl.errors import EXIT_INTERNAL, ConvertError

console = Console(stderr=False)
err = Console(stderr=True)
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
    """Map domain errors to a message and an exit code; tracebacks only under --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConvertError as exc:
            if STATE["debug"]:
                err.print_exception()
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            if exc.hint:
                err.print(f"[dim]{exc.hint}[/]", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: say so plainly
            if STATE["debug"]:
                raise
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (rerun with --debug for a traceback)")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


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
        if line.startswith(
            ("creating ", "export:", "convert:", "quantize:", "no Docker", "building ", "could not pull")
        ):
            console.print(f"[cyan]›[/] {line}", highlight=False)
        self.status.update(line[:110])
