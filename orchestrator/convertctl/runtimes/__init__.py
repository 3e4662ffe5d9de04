"""Picking a runtime: Docker when a daemon answers, else local venvs."""

from __future__ import annotations

from convertctl.envstore import EnvStore
from convertctl.errors import UsageError
from convertctl.pipconfig import IndexSettings
from convertctl.runtimes.base import Runtime, Say

RUNTIMES = ("auto", "local", "docker")


def select_runtime(name: str, settings: IndexSettings, say: Say, build_options: dict | None = None) -> Runtime:
    if name not in RUNTIMES:
        raise UsageError(f"--runtime {name!r}: choose from {', '.join(RUNTIMES)}")
    from convertctl.runtimes import docker as docker_rt
    from convertctl.runtimes.local import LocalRuntime

    if name == "docker":
        return docker_rt.DockerRuntime(
            docker_rt.require_client("--runtime docker: "), settings, **(build_options or {})
        )
    if name == "auto":
        client, why = docker_rt.connect()
        if client is not None:
            return docker_rt.DockerRuntime(client, settings, **(build_options or {}))
        say(f"no Docker daemon answers ({why}); using the local runtime (virtualenvs)")
    return LocalRuntime(EnvStore(settings=settings))
