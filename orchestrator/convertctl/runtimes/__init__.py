"""Picking a runtime by name from the registry (config/runtimes.py): each
kind's class is imported only when chosen. `auto` is Docker when a daemon
answers, else local venvs, and says which and why in one line."""

from __future__ import annotations

import importlib

from convertctl.config import runtimes as kinds
from convertctl.errors import UsageError
from convertctl.runtimes.base import Runtime, Say
from convertctl.store.pipconfig import IndexSettings

UNSANDBOXED = (
    "no Docker daemon answers ({why}), so the stages run in local virtualenvs WITHOUT the container "
    "sandbox: a .pt file is a pickle and loading it can run code with your rights. Convert only models "
    "you trust this way, or start Docker; --runtime local says you mean it (and silences this)."
)
PICKED_DOCKER = (
    "runtime: docker (--runtime auto, and a Docker daemon answers): every stage runs in its pinned image; "
    "--runtime local uses virtualenvs instead"
)


def runtime_class(name: str) -> type[Runtime]:
    module, _, cls = kinds.BY_NAME[name].implementation.partition(":")
    return getattr(importlib.import_module(module), cls)


def select_runtime(name: str, settings: IndexSettings, say: Say, build_options: dict | None = None) -> Runtime:
    if name not in kinds.CHOICES:
        raise UsageError(f"--runtime {name!r}: choose from {', '.join(kinds.CHOICES)}")
    options = build_options or {}
    if name != kinds.AUTO:
        return runtime_class(name).create(settings, say, options, flag=f"--runtime {name}: ")
    from convertctl.runtimes import docker as docker_rt

    client, why = docker_rt.connect()
    if client is not None:
        runtime: Runtime = docker_rt.DockerRuntime(client, settings, say=say, **options)
        runtime.notices.append(PICKED_DOCKER)
        say(PICKED_DOCKER)
        return runtime
    runtime = runtime_class("local").create(settings, say, options)
    # Said once, on the terminal and in the report: the user asked for
    # nothing in particular and gets no sandbox.
    runtime.notices.append(UNSANDBOXED.format(why=why))
    say("WARNING: " + UNSANDBOXED.format(why=why))
    return runtime
