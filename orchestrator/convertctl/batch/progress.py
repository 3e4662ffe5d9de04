"""What the batch shows while it runs: on a terminal, a live table (each
model's state, time and latest line; done/total, elapsed, ETA); elsewhere (CI
logs, pipes) one line per model as it starts and ends."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from convertctl.batch.outcome import ENDED, PASSED, RUNNING, Outcome
from convertctl.batch.summary import model_facts
from convertctl.report.text import term, visible

STYLE = {PASSED: "green", RUNNING: "cyan", "failed": "red", "interrupted": "yellow"}


def eta_seconds(outcomes: list, elapsed: float, workers: int) -> float | None:
    """Time left: the models still to end, at the mean time of those ended, `workers` at a time."""
    ended = [o for o in outcomes if o.state in ENDED and o.seconds]
    left = [o for o in outcomes if o.state not in ENDED]
    if not left:
        return 0.0
    if not ended:
        return None
    mean = sum(o.seconds for o in ended) / len(ended)
    running = [o for o in left if o.state == RUNNING]
    started_ago = sum(min(time.monotonic() - o.started, mean) for o in running if o.started)
    return max((len(left) * mean - started_ago) / max(workers, 1), 0.0)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Display:
    def __init__(self, console: Console, outcomes: list, workers: int, title: str):
        self.console, self.outcomes, self.workers, self.title = console, outcomes, workers, title
        self.started = time.monotonic()
        self.live: Live | None = None
        self.said: dict = {}  # name -> the state last printed (plain mode)

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            self.live = Live(self.render(), console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def note(self, line: str) -> None:
        """A line kept on screen (preparing environments, a warning)."""
        self.console.print(f"[cyan]›[/] {term(line)}", highlight=False, soft_wrap=True)

    def header(self) -> str:
        done = sum(o.state in ENDED for o in self.outcomes)
        elapsed = time.monotonic() - self.started
        eta = eta_seconds(self.outcomes, elapsed, self.workers)
        return f"{done}/{len(self.outcomes)} done, elapsed {clock(elapsed)}, ETA {clock(eta)}"

    def render(self) -> Group:
        table = Table(box=None, pad_edge=False, show_header=False)
        for _ in range(4):
            table.add_column(overflow="ellipsis", no_wrap=True)
        for o in self.outcomes:
            took = o.seconds if o.state in ENDED else (time.monotonic() - o.started if o.started else 0)
            style = STYLE.get(o.state, "dim")
            line = (o.failure or model_facts(o)) if o.state in ENDED else o.last_line
            table.add_row(term(o.name), f"[{style}]{o.state}[/]", clock(took), term(line[:100]))
        return Group(Text(f"{self.title}: {self.header()}", style="bold"), table)

    def update(self) -> None:
        if self.live is not None:
            self.live.update(self.render())
            return
        for o in self.outcomes:
            if self.said.get(o.name) != o.state and o.state in (RUNNING, *ENDED):
                self.said[o.name] = o.state
                self.console.print(self.plain_line(o), highlight=False, soft_wrap=True)

    def plain_line(self, o: Outcome) -> str:
        if o.state == RUNNING:
            return escape(f"[{self.header()}] {visible(o.name)}: started")
        facts = f" in {o.seconds:.0f}s" + (f", peak {o.peak_rss_mb:.0f} MB" if o.peak_rss_mb else "")
        why = f": {visible(o.failure)}" if o.failure else ""
        return escape(f"[{self.header()}] {visible(o.name)}: {o.state}{facts}{why}")
