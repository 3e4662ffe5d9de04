"""Just enough of a GitHub Actions runner to run a workflow job's or a
composite action's steps here, as GitHub would: `run:` steps in bash with the
same GITHUB_OUTPUT / GITHUB_ENV / GITHUB_PATH / GITHUB_STEP_SUMMARY files,
`${{ }}` expressions and `if:` conditions evaluated, local composite actions
run step by step. A `uses:` step of somebody else's action (checkout, cache,
upload-artifact) is handed to a function the test gives, which checks what
GitHub would receive (that the paths to upload exist, say).

Anything this runner does not understand (a context, a function, an action
without a handler) is an error, so a workflow cannot silently skip a check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONTEXTS = ("inputs", "steps", "github", "runner", "matrix", "env", "secrets", "needs", "job", "vars")
TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>().,\[\]*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


class Unsupported(Exception):
    """The workflow uses something this runner cannot evaluate."""


def _truthy(v: Any) -> bool:
    return v not in (None, False, 0, "", -0.0)


def _str(v: Any) -> str:
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return _str(a).lower() == _str(b).lower()
    return a == b


class Expr:
    """Recursive descent over GitHub's expression syntax (no arithmetic in it)."""

    def __init__(self, text: str, ctx: dict, status: dict):
        self.tokens = [m for m in TOKEN.finditer(text)]
        if "".join(m.group(0) for m in self.tokens).strip() != text.strip():
            raise Unsupported(f"cannot tokenize expression: {text!r}")
        self.toks = [(m.lastgroup, m.group(m.lastgroup)) for m in self.tokens]
        self.i, self.ctx, self.status, self.text = 0, ctx, status, text

    def value(self) -> Any:
        v = self._or()
        if self.i != len(self.toks):
            raise Unsupported(f"trailing tokens in {self.text!r}")
        return v

    def _peek(self, *ops: str) -> bool:
        return self.i < len(self.toks) and self.toks[self.i][0] == "op" and self.toks[self.i][1] in ops

    def _take(self, op: str) -> None:
        if not self._peek(op):
            raise Unsupported(f"expected {op!r} in {self.text!r}")
        self.i += 1

    def _or(self) -> Any:
        v = self._and()
        while self._peek("||"):
            self.i += 1
            rhs = self._and()
            v = v if _truthy(v) else rhs
        return v

    def _and(self) -> Any:
        v = self._cmp()
        while self._peek("&&"):
            self.i += 1
            rhs = self._cmp()
            v = rhs if _truthy(v) else v
        return v

    def _cmp(self) -> Any:
        v = self._unary()
        if self._peek("==", "!="):
            op = self.toks[self.i][1]
            self.i += 1
            rhs = self._unary()
            return _eq(v, rhs) if op == "==" else not _eq(v, rhs)
        if self._peek("<", ">", "<=", ">="):
            raise Unsupported("ordering comparisons")
        return v

    def _unary(self) -> Any:
        if self._peek("!"):
            self.i += 1
            return not _truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self.toks[self.i]
        self.i += 1
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "op" and text == "(":
            v = self._or()
            self._take(")")
            return v
        if kind != "name":
            raise Unsupported(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if self._peek("("):
            return self._call(text)
        if text not in CONTEXTS:
            raise Unsupported(f"context {text!r} in {self.text!r}")
        v: Any = self.ctx.get(text, {})
        while self._peek(".", "["):
            if self.toks[self.i][1] == ".":
                self.i += 1
                key = self.toks[self.i][1]
                self.i += 1
            else:
                self.i += 1
                key = self._or()
                self._take("]")
            v = v.get(key) if isinstance(v, dict) else None
        return v

    def _call(self, name: str) -> Any:
        self._take("(")
        args = []
        while not self._peek(")"):
            args.append(self._or())
            if self._peek(","):
                self.i += 1
        self._take(")")
        fn = name.lower()
        if fn in ("always", "success", "failure", "cancelled"):
            return {"always": True, "cancelled": False, **self.status}[fn]
        if fn == "contains":
            hay, needle = args
            if isinstance(hay, list):
                return any(_eq(x, needle) for x in hay)
            return _str(needle).lower() in _str(hay).lower()
        if fn == "startswith":
            return _str(args[0]).lower().startswith(_str(args[1]).lower())
        if fn == "endswith":
            return _str(args[0]).lower().endswith(_str(args[1]).lower())
        if fn == "format":
            return re.sub(r"\{(\d+)\}", lambda m: _str(args[1 + int(m.group(1))]), _str(args[0]))
        if fn == "join":
            return _str(args[1] if len(args) > 1 else ",").join(_str(x) for x in args[0])
        if fn == "tojson":
            return json.dumps(args[0], indent=2)
        if fn == "fromjson":
            return json.loads(_str(args[0]))
        raise Unsupported(f"function {name}()")


def evaluate(text: str, ctx: dict, status: dict | None = None) -> Any:
    return Expr(text, ctx, status or {"success": True, "failure": False}).value()


def interpolate(value: Any, ctx: dict, status: dict | None = None) -> Any:
    """Strings with ${{ }} filled in; a string that is one expression keeps its type."""
    if isinstance(value, dict):
        return {k: interpolate(v, ctx, status) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, ctx, status) for v in value]
    if not isinstance(value, str):
        return value
    whole = re.fullmatch(r"\$\{\{(.*?)\}\}", value.strip(), re.S)
    if whole:
        return evaluate(whole.group(1), ctx, status)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _str(evaluate(m.group(1), ctx, status)), value, flags=re.S)


def condition(step_if: Any, ctx: dict, failed: bool) -> bool:
    """GitHub's `if:`: success() is implied unless a status function is used."""
    status = {"success": not failed, "failure": failed}
    if step_if is None or step_if == "":
        return not failed
    text = step_if if isinstance(step_if, str) else _str(step_if)
    text = re.sub(r"^\s*\$\{\{(.*)\}\}\s*$", r"\1", text, flags=re.S)
    if not re.search(r"\b(always|success|failure|cancelled)\s*\(", text):
        text = f"success() && ({text})"
    return _truthy(evaluate(text, ctx, status))


def read_outputs(path: Path) -> dict:
    """GITHUB_OUTPUT / GITHUB_ENV syntax: name=value, or name<<DELIM ... DELIM."""
    out, lines = {}, path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : j])
            i = j + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        elif line.strip():
            raise AssertionError(f"malformed line in {path.name}: {line!r}")
        i += 1
    return out


@dataclass
class StepResult:
    name: str
    kind: str  # run | uses | skipped
    ok: bool = True
    outputs: dict = field(default_factory=dict)
    log: str = ""
    uses: str = ""
    with_: dict = field(default_factory=dict)


@dataclass
class Run:
    """What running a job or a composite action left behind."""

    steps: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    failed: bool = False

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} ({s.kind}, ok={s.ok})\n{s.log}" for s in self.steps)


class Runner:
    """One job's worth of state: workspace, env, summary file, handlers."""

    def __init__(self, workspace: Path, handlers: dict, github: dict | None = None, env: dict | None = None):
        self.workspace = Path(workspace)
        self.handlers = handlers
        self.temp = Path(tempfile.mkdtemp(prefix="gha-runner-"))
        self.summary = self.temp / "step_summary.md"
        self.summary.touch()
        self.env: dict = dict(env or {})
        self.path_prefix: list = []
        self.github = {
            "workspace": str(self.workspace),
            "repository": "owner/convertctl",
            "repository_owner": "owner",
            "ref": "refs/heads/main",
            "sha": "0" * 40,
            "event_name": "push",
            "action_repository": "",
            **(github or {}),
        }

    def _shell_env(self, step_env: dict, action_path: str = "") -> dict:
        env = {**os.environ, **self.env, **{k: _str(v) for k, v in step_env.items()}}
        if self.path_prefix:
            env["PATH"] = os.pathsep.join([*reversed(self.path_prefix), env["PATH"]])
        env.update(
            CI="true",
            GITHUB_ACTIONS="true",
            GITHUB_REPOSITORY=self.github["repository"],
            GITHUB_REPOSITORY_OWNER=self.github["repository_owner"],
            GITHUB_REF=self.github["ref"],
            GITHUB_SHA=self.github["sha"],
            GITHUB_EVENT_NAME=self.github["event_name"],
            GITHUB_WORKSPACE=str(self.workspace),
            GITHUB_STEP_SUMMARY=str(self.summary),
            RUNNER_OS="Linux",
            RUNNER_TEMP=str(self.temp),
        )
        if action_path:
            env["GITHUB_ACTION_PATH"] = action_path
        return env

    def _run_shell(self, step: dict, ctx: dict, action_path: str, default_shell: str = "") -> StepResult:
        name = step.get("name") or step.get("id") or step["run"].splitlines()[0]
        script = interpolate(step["run"], ctx)
        shell = step.get("shell") or default_shell or "bash -e {0}"
        if shell == "bash":
            shell = "bash --noprofile --norc -eo pipefail {0}"
        if "{0}" not in shell or not shell.startswith("bash"):
            raise Unsupported(f"shell {shell!r}")
        files = {n: self.temp / f"{n}.{len(list(self.temp.iterdir()))}" for n in ("output", "env", "path")}
        for f in files.values():
            f.touch()
        script_file = self.temp / f"step-{len(list(self.temp.iterdir()))}.sh"
        script_file.write_text(script)
        env = self._shell_env(interpolate(step.get("env", {}), ctx), action_path)
        env.update(GITHUB_OUTPUT=str(files["output"]), GITHUB_ENV=str(files["env"]), GITHUB_PATH=str(files["path"]))
        cwd = self.workspace / interpolate(step.get("working-directory", "."), ctx)
        proc = subprocess.run(
            shell.replace("{0}", str(script_file)).split(),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        self.env.update(read_outputs(files["env"]))
        self.path_prefix += [p for p in files["path"].read_text().splitlines() if p.strip()]
        return StepResult(name, "run", proc.returncode == 0, read_outputs(files["output"]), proc.stdout + proc.stderr)

    def run_steps(self, steps: list, ctx: dict, action_path: str = "", default_shell: str = "") -> Run:
        result = Run()
        ctx = {"secrets": {}, **ctx, "steps": {}, "github": {**self.github, **ctx.get("github", {})}}
        ctx["runner"] = {"os": "Linux", "temp": str(self.temp), "arch": "X64"}
        for step in steps:
            name = step.get("name") or step.get("id") or step.get("uses") or step.get("run", "").splitlines()[0]
            ctx["env"] = {**self.env, **interpolate(step.get("env", {}), ctx)}
            if not condition(step.get("if"), ctx, result.failed):
                result.steps.append(StepResult(name, "skipped"))
                if step.get("id"):
                    ctx["steps"][step["id"]] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            if "run" in step:
                res = self._run_shell(step, ctx, action_path, default_shell)
            else:
                res = self._uses(step, ctx)
            res.name = name
            result.steps.append(res)
            if step.get("id"):
                outcome = "success" if res.ok else "failure"
                ctx["steps"][step["id"]] = {"outputs": res.outputs, "outcome": outcome, "conclusion": outcome}
            if not res.ok and not step.get("continue-on-error"):
                result.failed = True
        result.outputs = ctx["steps"]
        return result

    def _uses(self, step: dict, ctx: dict) -> StepResult:
        uses = step["uses"]
        with_ = {k: _str(v) for k, v in interpolate(step.get("with", {}), ctx).items()}
        if uses.startswith("./"):
            sub = self.run_action(self.workspace / uses, with_)
            return StepResult(uses, "uses", not sub.failed, sub.outputs, sub.log, uses, with_)
        action = uses.split("@")[0]
        handler = self.handlers.get(action)
        if handler is None:
            raise Unsupported(f"no handler for uses: {uses}")
        outputs = handler(with_) or {}
        return StepResult(uses, "uses", True, outputs, "", uses, with_)

    def run_action(self, action_dir: Path, with_: dict, only: tuple = ()) -> Run:
        """A composite action: inputs with defaults, its steps, its outputs.
        only: run just the steps with these ids (one step's env and script
        as action.yml has them, without the slow steps around it)."""
        meta = yaml.safe_load((Path(action_dir) / "action.yml").read_text())
        assert meta["runs"]["using"] == "composite"
        inputs = {}
        for name, spec in meta.get("inputs", {}).items():
            if name in with_:
                inputs[name] = with_[name]
            elif spec.get("required"):
                raise AssertionError(f"input {name} is required")
            else:
                inputs[name] = _str(spec.get("default", ""))
        unknown = set(with_) - set(inputs)
        assert not unknown, f"unknown inputs {unknown}"
        ctx = {"inputs": inputs}
        steps = [s for s in meta["runs"]["steps"] if not only or s.get("id") in only]
        assert not only or {s.get("id") for s in steps} == set(only), f"no step with id {only} in the action"
        run = self.run_steps(steps, ctx, action_path=str(Path(action_dir).resolve()))
        steps_ctx = run.outputs
        ctx = {**ctx, "steps": steps_ctx, "github": self.github}
        run.outputs = {name: _str(interpolate(spec["value"], ctx)) for name, spec in meta.get("outputs", {}).items()}
        return run

    def run_job(
        self,
        workflow: Path,
        job: str,
        matrix: dict | None = None,
        inputs: dict | None = None,
        secrets: dict | None = None,
        env: dict | None = None,
    ) -> Run:
        """A workflow job's steps (workflow, job and step env; defaults.run).
        `env` overrides the workflow's and the job's env, as a test needs to
        (a local registry instead of ghcr.io, say)."""
        doc = yaml.safe_load(Path(workflow).read_text())
        spec = doc["jobs"][job]
        ctx = {"matrix": matrix or {}, "inputs": inputs or {}, "secrets": secrets or {}, "needs": {}}
        ctx["env"] = {}
        for level in (doc.get("env", {}), spec.get("env", {})):
            self.env.update({k: _str(v) for k, v in interpolate(level, {**ctx, "github": self.github}).items()})
        self.env.update(env or {})
        shell = ((spec.get("defaults") or doc.get("defaults") or {}).get("run") or {}).get("shell", "")
        return self.run_steps(spec["steps"], ctx, default_shell=shell)


# -- other people's actions, as the tests stand them in ---------------------


def find_python(version: str) -> Path | None:
    """An interpreter for X.Y on this machine (pyenv's, Debian's, PATH's) that runs."""
    candidates = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates += [Path(f"/usr/bin/python{version}"), Path(f"/usr/local/bin/python{version}")]
    found = shutil.which(f"python{version}")
    candidates += [Path(found)] if found else []
    for path in candidates:
        if not path.is_file():
            continue
        probe = subprocess.run([str(path), "-c", "import sys, venv; print(sys.version_info[:2])"], capture_output=True)
        if probe.returncode == 0 and probe.stdout.decode().strip() == str(tuple(map(int, version.split(".")))):
            return path
    return None


class Actions:
    """Stand-ins for checkout, setup-python, cache and upload-artifact that do
    here what the real ones do on a runner (copy the repository; put a fresh
    Python of the asked version first on PATH) or check what they are handed
    (cache paths that exist, artifact paths that exist), recording each call."""

    def __init__(self, repo: Path, pythons: Path):
        self.repo, self.pythons = Path(repo), Path(pythons)
        self.calls: dict[str, list] = {}
        self.runner: Runner | None = None
        self.saved: list[str] = []  # cache keys saved, oldest first (what a repository's cache holds)

    def _record(self, name: str, with_: dict) -> None:
        self.calls.setdefault(name, []).append(with_)

    def checkout(self, with_: dict) -> dict:
        self._record("checkout", with_)
        assert self.runner is not None
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=self.repo,
            capture_output=True,
            check=True,
        ).stdout.decode()
        for rel in filter(None, listed.split("\0")):
            src, dst = self.repo / rel, self.runner.workspace / rel
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        return {}

    def setup_python(self, with_: dict) -> dict:
        """A fresh venv per version (made once per test module): what
        setup-python gives, a Python nothing was installed into yet."""
        self._record("setup-python", with_)
        assert self.runner is not None
        versions = [v for v in with_.get("python-version", "").split() if v]
        assert versions, "setup-python without a python-version"
        full = ""
        for version in versions:  # the last one listed is the default
            venv = self.pythons / f"python{version}"
            if not (venv / "bin" / "python").exists():
                base = find_python(version)
                if base is None:
                    raise Unsupported(f"no Python {version} on this machine")
                subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
            cfg = dict(line.split(" = ", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if " = " in line)
            # The venv first (installs go there, not into this machine's
            # Python), then the real interpreter's folder, as on a runner, for
            # tools like uv that look for a Python that is not a virtualenv.
            self.runner.path_prefix += [cfg["home"], str(venv / "bin")]
            full = subprocess.run(
                [str(venv / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        return {"python-version": full, "cache-hit": "false"}

    def cache_restore(self, with_: dict) -> dict:
        """actions/cache/restore: the key itself, else the newest entry
        under the first restore key that has one."""
        self._record("restore", with_)
        prefixes = with_.get("restore-keys", "").splitlines()
        assert all(with_["key"].startswith(p) for p in prefixes), with_
        assert with_["path"].strip(), "nothing to restore"
        if with_["key"] in self.saved:
            return {"cache-hit": "true", "cache-primary-key": with_["key"], "cache-matched-key": with_["key"]}
        for prefix in prefixes:
            newest = [k for k in self.saved if k.startswith(prefix)][-1:]
            if newest:
                return {"cache-hit": "false", "cache-primary-key": with_["key"], "cache-matched-key": newest[0]}
        return {"cache-hit": "false", "cache-primary-key": with_["key"], "cache-matched-key": ""}

    def cache(self, with_: dict) -> dict:
        """actions/cache: restore now; the save at the job's end is not modelled."""
        self._record("cache", with_)
        for prefix in with_.get("restore-keys", "").splitlines():
            assert with_["key"].startswith(prefix), with_
        return {"cache-hit": "false"}

    def cache_save(self, with_: dict) -> dict:
        """actions/cache/save as actions/toolkit's saveCache does it: a path
        that matches nothing is passed over, none matching at all is an error."""
        self._record("save", with_)
        paths = with_["path"].splitlines()
        assert any(Path(p).is_dir() for p in paths), f"no path to save exists: {paths}"
        # GitHub refuses a key it holds ("Unable to reserve cache"): an entry is never overwritten.
        assert with_["key"] not in self.saved, f"cache key {with_['key']} exists: it would not be saved"
        self.saved.append(with_["key"])
        return {}

    def upload(self, with_: dict) -> dict:
        self._record("upload", with_)
        assert self.runner is not None
        paths = [self.runner.workspace / p for p in with_["path"].splitlines()]  # relative: to the workspace
        assert paths and all(p.exists() for p in paths), paths
        return {"artifact-id": "1"}

    def handlers(self) -> dict:
        return {
            "actions/checkout": self.checkout,
            "actions/setup-python": self.setup_python,
            "actions/cache": self.cache,
            "actions/cache/restore": self.cache_restore,
            "actions/cache/save": self.cache_save,
            "actions/upload-artifact": self.upload,
        }

    def runner_for(self, workspace: Path, **kwargs) -> Runner:
        self.runner = Runner(workspace, self.handlers(), **kwargs)
        return self.runner
