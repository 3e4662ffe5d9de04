"""`convertctl verify report.json`: make the recorded conversion again, with
no cache, and compare each file's sha256 three ways: as the report recorded
it, as it is now in the report's folder, and as the re-run made it. Only
when all three agree for every file is the run reproduced."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from convertctl.config.catalog import load_catalog
from convertctl.errors import UsageError
from convertctl.report.model import Report, load_report
from convertctl.run import manifest
from convertctl.store import safefs
from convertctl.store.digests import Hasher


@dataclass
class FileCheck:
    name: str
    recorded: str
    on_disk: str  # "" when the file is missing
    rebuilt: str  # "" when the re-run did not make it

    @property
    def ok(self) -> bool:
        return self.recorded == self.on_disk == self.rebuilt

    def problem(self) -> str:
        if self.ok:
            return ""
        if not self.recorded:
            return "the report names no such file; the re-run made it"
        if not self.on_disk:
            why = ["missing from the report's folder"]
        elif self.on_disk != self.recorded:
            why = ["changed since the run (its sha256 is not the recorded one)"]
        else:
            why = []
        if not self.rebuilt:
            why.append("the re-run did not make it")
        elif self.rebuilt != self.recorded:
            why.append("the re-run made different bytes")
        return "; ".join(why)


@dataclass
class Verdict:
    files: list  # FileCheck
    inputs: list  # what changed among the inputs, in words
    rerun: Report | None = None

    @property
    def ok(self) -> bool:
        return not self.inputs and bool(self.files) and all(f.ok for f in self.files)


def recorded(path: Path) -> Report:
    report = load_report(path)
    m = report.manifest or {}
    if not m.get("options") or not m.get("outputs"):
        raise UsageError(
            f"{path}: no manifest with the run's options and outputs (a failed run, or one made by "
            "an older convertctl): nothing to verify"
        )
    # A report is data: the files it names stay in its folder, its hashes are text.
    outputs, inputs = m["outputs"], m.get("inputs") or {}
    if not isinstance(m["options"], dict) or not isinstance(outputs, dict) or not isinstance(inputs, dict):
        raise UsageError(f"{path}: not a valid convertctl report (manifest options, inputs or outputs not a table)")
    for name, digest in outputs.items():
        try:
            safefs.rel(name, "an output")
        except safefs.Unsafe as exc:
            raise UsageError(f"{path}: the manifest names {exc}; refused") from None
        if "/" in name or not isinstance(digest, str):
            raise UsageError(f"{path}: the manifest's output {name!r} is not a file name with a sha256")
    return report


def changed_inputs(report: Report) -> list:
    """The user's files whose bytes are not those the run hashed."""
    hasher, problems = Hasher(), []
    for name, info in sorted(report.manifest.get("inputs", {}).items()):
        if not isinstance(info, dict) or "path" not in info:
            continue
        path = Path(str(info["path"]))
        if not path.exists():
            problems.append(f"{name} {path}: missing")
        elif not (path.is_file() or path.is_dir()) or path.is_char_device() or path.is_fifo():
            problems.append(f"{name} {path}: not a regular file or folder (not read)")
        elif hasher.path(path) != info.get("sha256"):
            problems.append(f"{name} {path}: changed since the run (sha256 differs)")
    return problems


def named_code(path: Path, options: dict, trust_config: bool, say) -> None:
    """A report is a file like any other: the code it names (an --arch to
    import, a --code folder, a pickled module to unpickle) runs only when the
    user says so, and is said before it runs."""
    named = {k: options.get(k) for k in ("arch", "code", "trust_model") if options.get(k)}
    if not named:
        return
    listed = ", ".join(f"{k} = {v!r}" for k, v in named.items())
    if not trust_config:
        raise UsageError(f"{path}: the report names code to run ({listed}); verify re-runs it only with --trust-config")
    say(f"WARNING: {path} names code to run (--trust-config): {listed}")


def _on_disk(hasher: Hasher, out: Path, name: str) -> str:
    """The sha256 of a file (or folder) the report placed in out; '' when it is missing or no regular one."""
    try:
        return hasher.inside(out, name) if safefs.kind(out, name) else ""
    except safefs.Unsafe:
        return ""


def verify(path: Path, runtime_for, say, trust_config: bool = False) -> Verdict:
    """runtime_for(name) -> a Runtime: the one the report names, built the
    way the CLI builds it (index settings, base image)."""
    from convertctl.run.pipeline import Pipeline

    report = recorded(path)
    named_code(path, report.manifest["options"], trust_config, say)
    out, hasher = path.resolve().parent, Hasher()
    on_disk = {name: _on_disk(hasher, out, name) for name in report.manifest["outputs"]}
    problems = changed_inputs(report)
    if problems:
        files = [FileCheck(n, h, on_disk[n], "") for n, h in sorted(report.manifest["outputs"].items())]
        return Verdict(files, problems)
    opts = manifest.options_from_dict(report.manifest["options"], path)
    scratch = Path(tempfile.mkdtemp(prefix="convertctl-verify-"))
    try:
        opts = replace(opts, out=str(scratch / "out"), no_cache=True, keep_run=False)
        rerun = Pipeline(opts, runtime_for(report.manifest.get("runtime", report.runtime)), load_catalog(), say).run()
        rebuilt = rerun.manifest.get("outputs", {}) if rerun.status == "passed" else {}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    names = sorted(set(report.manifest["outputs"]) | set(rebuilt))
    files = [FileCheck(n, report.manifest["outputs"].get(n, ""), on_disk.get(n, ""), rebuilt.get(n, "")) for n in names]
    return Verdict(files, [], rerun)
