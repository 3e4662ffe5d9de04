"""What every command shares on the terminal: the consoles, the progress
line, and the one place where a ConvertError becomes a message and an exit
code (tracebacks only under --debug)."""

from __future__ import annotations

import functools
import os
import signal
import time

import typer
from rich.console import Console

from convertctl.errors import EXIT_INTERNAL, ConvertError
from convertctl.report.text import term
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


def options_of(flags: dict):
    """A command's table options (those it takes, as typed) as Options."""
    from convertctl.cli.params import given
    from convertctl.config.settings import merge

    return merge({}, given(flags))


def index_settings(opts):
    from convertctl.api.run import index_settings as make

    return make(opts)


def runtime_for(opts, say, name: str | None = None):
    """The runtime the options name (or `name`): the Python API's runtime_for."""
    from convertctl.api.run import runtime_for as make

    return make(opts, say, name)


class Interrupts:
    """Ctrl-C while a command runs: the first one interrupts it (a
    KeyboardInterrupt, which stops the stage and keeps the run directory);
    those that follow while it cleans up are counted, not obeyed, so the
    cleanup finishes and the process still exits 130 (three presses in a
    row used to kill it by the signal, mid-cleanup)."""

    def __init__(self):
        self.count = 0
        self.previous = None

    def __enter__(self):
        self.count = 0
        try:
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (an embedding program): its own handling stays
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is None:
            return False
        # Interrupted: the process is on its way out with 130; a Ctrl-C now
        # (while typer exits, rich stops its display) would end it by the
        # signal instead. Otherwise the caller's handler comes back.
        signal.signal(signal.SIGINT, signal.SIG_IGN if self.count else self.previous)
        return False

    def _on_sigint(self, signum, frame):
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        if self.count == 2:
            err.print(f"[yellow]still cleaning up (pid {os.getpid()}); it ends with exit code 130[/]")


def handled(fn):
    """Map domain errors to a message and an exit code; tracebacks only under --debug.
    OS errors (a full disk, a permission) are domain errors too, with exit
    code 5 or 3; a run that was under way says where its files are kept.
    Every message may hold names from outside: shown as text (term)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with Interrupts():
            return _mapped(fn, *args, **kwargs)

    return wrapper


def _mapped(fn, *args, **kwargs):
    """fn's result, or its error as a message and an exit code."""
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
            err.print(f"[bold red]error:[/] {term(mapped.message)}", highlight=False, soft_wrap=True)
            if mapped.hint:
                err.print(f"[dim]{term(mapped.hint)}[/]", highlight=False, soft_wrap=True)
            _kept(exc)
            raise typer.Exit(mapped.exit_code) from None
        if STATE["debug"]:
            raise
        err.print(
            f"[bold red]internal error:[/] {term(f'{type(exc).__name__}: {exc}')} (rerun with --debug for a traceback)",
            soft_wrap=True,
        )
        _kept(exc)
        raise typer.Exit(EXIT_INTERNAL) from None


def _kept(exc: BaseException) -> None:
    run_dir = getattr(exc, "run_dir", "")
    if run_dir:
        err.print(f"the run directory is kept: {term(run_dir)}", highlight=False, soft_wrap=True)


class Progress:
    """A spinner with the latest line of whatever is happening; stage
    starts and notices are kept on screen above it. In a log (not a
    terminal) there is no spinner: the latest line is printed when
    HEARTBEAT seconds passed without one, so a long build shows it is alive
    (builds say their status, with the time so far, every few seconds)."""

    HEARTBEAT = 15.0

    def __init__(self, clock=time.monotonic):
        self.status = console.status("starting", spinner="dots")
        self.clock = clock
        self.printed = clock()

    def __enter__(self):
        self.status.__enter__()
        return self

    def __exit__(self, *exc):
        return self.status.__exit__(*exc)

    def __call__(self, line: str) -> None:
        if line.startswith("WARNING: "):
            err.print(f"[bold yellow]WARNING[/] {term(line[len('WARNING: ') :])}", highlight=False, soft_wrap=True)
        elif line.startswith(
            (
                "creating ",
                "export:",
                "convert:",
                "quantize:",
                "removing ",
                "removed ",
                "building ",
                "could not pull",
                "waiting ",
            )
        ):
            console.print(f"[cyan]›[/] {term(line)}", highlight=False)
            self.printed = self.clock()
        elif not console.is_terminal and self.clock() - self.printed >= self.HEARTBEAT:
            console.print(f"  {term(line)}", highlight=False, soft_wrap=True)
            self.printed = self.clock()
        self.status.update(term(line[:110]))  # a stage's own words: never markup
