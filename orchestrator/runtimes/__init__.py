"""Picking a runtime: Docker when a daemon answers, else local venvs."""
from __future__ import annotations

from orchestrator.envstore import EnvStore
from orchestrator.errors import EnvironmentProblem, UsageError
from orchestrator.pipconfig import IndexSettings
from orchestrator.runtimes.base import Runtime, Say

RUNTIMES = ("auto", "local", "docker")


def select_runtime(name: str, settings: IndexSettings, say: Say, build_options: dict | None = None) -> Runtime:
    if name not in RUNTIMES:
        raise UsageError(f"--runtime {name!r}: choose from {', '.join(RUNTIMES)}")
    if name == "local":
        from orchestrator.runtimes.local import LocalRuntime

        return LocalRuntime(EnvStore(settings=settings))
    from orchestrator.runtimes import docker as docker_rt

    client, why = docker_rt.connect()
    if client is not None:
        return docker_rt.DockerRuntime(client, settings, **(build_options or {}))
    if name == "docker":
        raise EnvironmentProblem(f"--runtime docker: no Docker daemon answers ({why})",
                                 hint="start one (e.g. `sudo systemctl start docker`, or `dockerd &` as root), "
                                      "or use --runtime local")
    say(f"no Docker daemon answers ({why}); using the local runtime (virtualenvs)")
    from orchestrator.runtimes.local import LocalRuntime

    return LocalRuntime(EnvStore(settings=settings))
