"""A run's last step, placing its files in --out, shielded from Ctrl-C.

Once the files start moving into --out the run has passed: a Ctrl-C then
(one second too late, or the batch stopping its workers) used to break off
the placing, so --out held the run's report.json saying "passed" while the
run itself ended with 130 and the batch called the model interrupted. The
first Ctrl-C in this window is held until the files are placed (a second
one is obeyed at once: placing may wait for another run's lock on --out)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def held_interrupt() -> Iterator[list]:
    """Hold the first SIGINT; yields the list of those held (empty when none came)."""
    held: list = []
    if threading.current_thread() is not threading.main_thread():
        yield held  # only the main thread may set handlers; an embedding program keeps its own
        return

    def on_sigint(signum, frame):
        held.append(signum)
        if len(held) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
