"""The kinds of runtime a stage can run in, as data, like tox's registered
environment types: a name, what it is, whether it sandboxes stages, and
where its implementation lives (imported only when chosen, so that
`convertctl --help` and the settings rules never load the Docker SDK).
The --runtime choices, the settings rule, the catalog's ladder keys and the
help text are read from here; runtimes/ registers nothing else.

A new runtime is a row here plus its Runtime subclass (runtimes/base.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    summary: str
    sandboxed: bool  # stages cannot reach the network or the host's files beyond their run directory
    implementation: str  # "module:Class"


KINDS = (
    Kind(
        "local",
        "a pinned virtualenv per stage on this machine (no sandbox)",
        False,
        "convertctl.runtimes.local:LocalRuntime",
    ),
    Kind(
        "docker",
        "a pinned image per stage; containers without network, read-only, unprivileged",
        True,
        "convertctl.runtimes.docker:DockerRuntime",
    ),
)
BY_NAME = {k.name: k for k in KINDS}
AUTO = "auto"  # Docker when a daemon answers, else local
CHOICES = (AUTO, *BY_NAME)
