"""Picking a runtime: Docker when a daemon answers, else local venvs."""

from __future__ import annotations

from convertctl.errors import UsageError
from convertctl.runtimes.base import Runtime, Say
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import IndexSettings

RUNTIMES = ("auto", "local", "docker")

UNSANDBOXED = (
    "no Docker daemon answers ({why}), so the stages run in local virtualenvs WITHOUT the container "
    "sandbox: a .pt file is a pickle and loading it can run code with your rights. Convert only models "
    "you trust this way, or start Docker; --runtime local says you mean it (and silences this)."
)


def select_runtime(name: str, settings: IndexSettings, say: Say, build_options: dict | None = None) -> Runtime:
    if name not in RUNTIMES:
        raise UsageError(f"--runtime {name!r}: choose from {', '.join(RUNTIMES)}")
    from convertctl.runtimes import docker as docker_rt
    from convertctl.runtimes.local import LocalRuntime

    if name == "docker":
        client = docker_rt.require_client("--runtime docker: ")
        return docker_rt.DockerRuntime(client, settings, say=say, **(build_options or {}))
    if name == "auto":
        client, why = docker_rt.connect()
        if client is not None:
            return docker_rt.DockerRuntime(client, settings, say=say, **(build_options or {}))
        runtime = LocalRuntime(EnvStore(settings=settings))
        # Said once, on the terminal and in the report: the user asked for
        # nothing in particular and gets no sandbox.
        runtime.notices.append(UNSANDBOXED.format(why=why))
        say("WARNING: " + UNSANDBOXED.format(why=why))
        return runtime
    return LocalRuntime(EnvStore(settings=settings))
