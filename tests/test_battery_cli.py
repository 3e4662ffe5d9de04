"""The battery: several hundred hostile and faulty inputs (tests/battery_cases.py),
each through the CLI, each asserting the documented exit code (never 1), one
message naming the culprit (or a rendering that shows hostile text as text),
no traceback, --out and the world around it untouched, no payload run (no
PWNED file), and nothing left running.

These cases run in-process through typer's CliRunner: every one of them is
answered on the host before any stage starts (a usage error, a refusal, a
rendering), so the process boundary adds nothing but ~1 s of imports per
case; the command, its error mapping (cli/ui.handled) and its exit code are
the same code the installed `convertctl` runs. The cases where the process
boundary matters (signals, hangs, concurrent runs, real stages, the bytes a
terminal receives) are in tests/test_battery_proc.py, through the real CLI."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from battery_cases import MARKER, all_cases

CASES = all_cases()


class Hung(Exception):
    """A case that did not answer in time (a FIFO opened for reading blocks forever)."""


class StageReached(BaseException):  # noqa: N818 - not an error of convertctl's: nothing may catch it
    """Every case here must be answered before any stage environment is
    touched; one that gets that far fails the test (and runs nothing)."""


def _no_stage(*args, **kwargs):
    raise StageReached("the case reached a stage: it was not decided on the host")


def _alarm(signum, frame):
    raise Hung("no answer within the time limit: something blocked")


def children() -> set:
    """Processes whose parent is this one (a stage or guard left behind)."""
    me, found = str(os.getpid()), set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def tree(folder: Path) -> dict:
    """Every path below folder (links not followed) with its bytes or kind."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_file():
                out[rel] = path.read_bytes()
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "special"
    return out


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def build_world(case, world: Path) -> tuple[list, dict]:
    """The case's files, model and settings; (argv, env)."""
    out = world / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    if case.toml is not None:
        text = case.toml
        data = text.encode("utf-8", "surrogateescape")
        (world / "convertctl.toml").write_bytes(data)
    for name, write in case.files.items():
        write(world / name, world)
    model = world / case.model_name
    case.model(model, world)
    args = [a.replace("{w}", str(world)).replace("{o}", str(out)) for a in case.args]
    if case.command == ("run",):
        shape = ["--input-shape", "1,3,8,8"] if case.shape else []
        runtime = [] if "--runtime" in args else ["--runtime", case.runtime]
        args = ["run", str(model), *shape, "--out", str(out), *args, *runtime]
    else:
        args = [*case.command, *args]
    env = {k: v.replace("{w}", str(world)) for k, v in case.env.items()}
    return args, env


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if not c.proc])
def test_battery(case, tmp_path, monkeypatch):
    from convertctl.cli.app import app
    from typer.testing import CliRunner

    world = tmp_path / "world"
    world.mkdir()
    args, env = build_world(case, world)
    env.setdefault("CONVERTCTL_CACHE_DIR", str(tmp_path / "cache"))  # the case's own (failed-runs registry too)
    from convertctl.runtimes.local import LocalRuntime
    from convertctl.store.envstore import EnvStore

    for method in ("run", "prepare"):
        monkeypatch.setattr(LocalRuntime, method, _no_stage)
    monkeypatch.setattr(EnvStore, "ensure", _no_stage)
    monkeypatch.chdir(world)  # a stray relative write would land here, and be seen
    before, running = tree(world), children()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    output = result.stdout + result.stderr
    shown = flat(output)

    assert not isinstance(result.exception, Hung), f"{case.id} hung"
    assert not isinstance(result.exception, StageReached), f"{case.id} reached a stage: {output[-2000:]}"
    assert result.exit_code == case.code, f"exit {result.exit_code}, {result.exception!r}: {output[-3000:]}"
    assert result.exit_code != 1
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    if case.code not in (0, 3, 4):
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 or (not errors and "Try '" in result.stderr), result.stderr
    for needle in case.says:
        assert needle in shown, f"{needle!r} not in: {shown[-2000:]}"
    for raw_text in case.never:
        assert raw_text not in output, f"{raw_text!r} reached the output raw"
    if case.check:
        case.check(result.stdout, world)

    # Nothing outside the case's place changed: --out and the world as they were.
    assert not (world / MARKER).exists() and not (Path.cwd() / MARKER).exists(), "a payload ran"
    unchanged = {k: v for k, v in tree(world).items() if not k.startswith(case.mutable or ("\0",))}
    assert unchanged == {k: v for k, v in before.items() if not k.startswith(case.mutable or ("\0",))}, (
        "the run changed files around it (--out included)"
    )
    assert children() <= running, "a process was left running"
