"""--runtime auto says, in one line, which runtime it picked and why: on the
terminal (say) and in the report (the runtime's notices). The Docker
daemon's answer is the one thing stood in for: connect() as the Docker
runtime calls it, and FakeRuntime in place of a DockerRuntime, so no daemon
is needed; the local runtime is the real one."""

from __future__ import annotations

from convertctl.runtimes import docker as docker_rt
from convertctl.runtimes import select_runtime
from convertctl.store.pipconfig import IndexSettings
from fakes import FakeRuntime


def pick(monkeypatch, answer):
    said: list[str] = []
    monkeypatch.setattr(docker_rt, "connect", lambda timeout=10: answer)
    monkeypatch.setattr(docker_rt, "DockerRuntime", lambda client, settings, say=None, **options: FakeRuntime())
    runtime = select_runtime("auto", IndexSettings(), said.append)
    return runtime, said


def test_auto_says_it_picked_docker_because_a_daemon_answers(monkeypatch):
    runtime, said = pick(monkeypatch, (object(), None))
    assert isinstance(runtime, FakeRuntime)  # what DockerRuntime(...) gave
    (line,) = said
    assert "\n" not in line
    assert line.startswith("runtime: docker (--runtime auto, and a Docker daemon answers)")
    assert "--runtime local" in line  # and how to choose the other
    assert runtime.notices == [line]  # the report says it too


def test_auto_says_it_picked_local_and_why_when_no_daemon_answers(monkeypatch):
    runtime, said = pick(monkeypatch, (None, "nothing at unix:///nonexistent.sock: FileNotFoundError"))
    assert runtime.name == "local"
    (line,) = said
    assert "\n" not in line
    assert line.startswith("WARNING: no Docker daemon answers (nothing at unix:///nonexistent.sock")
    assert "local virtualenvs" in line and "--runtime local" in line
    assert runtime.notices == [line.removeprefix("WARNING: ")]


def test_a_named_runtime_says_nothing(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(docker_rt, "connect", lambda timeout=10: (_ for _ in ()).throw(AssertionError("probed")))
    runtime = select_runtime("local", IndexSettings(), said.append)
    assert runtime.name == "local" and said == [] and runtime.notices == []
