"""The manifest in report.json: what made a run's files, exactly enough to
make them again. The tool's version and the run's options; per step its
code hash, its environment (identity, and `pip freeze` as seen inside), its
request with every file it names replaced by that file's sha256, the sha256
of everything it wrote and its cache key; the sha256 of every user input
and of every file placed in --out. `convertctl verify` re-runs from it."""

from __future__ import annotations

import os
import platform
from dataclasses import fields
from pathlib import Path

from convertctl import __version__
from convertctl.config.catalog import Variant, images_dir
from convertctl.config.options import SPECS, Options
from convertctl.runtimes.base import Runtime, Step
from convertctl.store import safefs
from convertctl.store.digests import Hasher, sha256_json

MANIFEST_FORMAT = 1
# WORK files about one execution, not what the step made.
NOT_OUTPUTS = {"request.json", "result.json", "stage.log"}
# Options that name the user's files: hashed into the manifest's inputs.
INPUT_OPTIONS = {"model": "model", "calib": "calibration", "eval_data": "eval", "sample_inputs": "sample_inputs"}

_CODE: dict = {}


def new(opts, runtime: str) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "tool": {"name": "convertctl", "version": __version__, "python": platform.python_version()},
        "runtime": runtime,
        "options": options_to_dict(opts),
        "inputs": {},
        "environments": {},
        "stages": [],
        "outputs": {},
    }


# -- what a step is -----------------------------------------------------------
def code_files(step: Step) -> list[Path]:
    """The stage code a step runs: images/common plus the variant's folder
    (and the script, should it live elsewhere), as the image key counts it."""
    root = images_dir()
    files = [p for p in (root / "common").glob("*.py")] + [p for p in step.variant.stage_dir.glob("*.py")]
    files.append(root / step.script_rel)
    return sorted(set(files))


def code_hash(step: Step) -> str:
    memo = (step.variant.name, step.script_rel)
    if memo not in _CODE:
        root = images_dir()
        # A script outside images/ (a catalog of one's own may name one) goes by its full path.
        _CODE[memo] = sha256_json(
            {(p.relative_to(root) if p.is_relative_to(root) else p).as_posix(): p.read_text() for p in code_files(step)}
        )
    return _CODE[memo]


def request_params(request: dict, run_dir: Path, hasher: Hasher) -> dict:
    """The request with every string naming an existing file or folder (the
    model by its absolute path, run-directory files by relative ones)
    replaced by its sha256: the key then follows the bytes, not where they
    sit. A run-directory path is stable and kept; an absolute one is not."""

    def visit(value):
        if isinstance(value, dict):
            return {k: visit(v) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v) for v in value]
        if isinstance(value, str) and "/" in value:
            if os.path.isabs(value):  # the user's files, named by the host
                path = Path(value)
                return {"sha256": hasher.path(path, remember=True)} if path.exists() else value
            try:  # run-directory files, some named by a stage's result: checked, never followed
                there = safefs.kind(run_dir, safefs.rel(value))
            except safefs.Unsafe:
                there = ""
            if there:
                return {"path": value, "sha256": hasher.inside(run_dir, value)}
        return value

    return visit(request)


def environment(runtime: Runtime, variant: Variant) -> dict:
    """The environment as seen after it ran a step: identity plus what is
    observed inside (image ID, `pip freeze`)."""
    info = dict(runtime.identity(variant))
    try:
        info.update(runtime.freeze(variant))
    except Exception as exc:  # noqa: BLE001 - a manifest gap, not a failed run
        info["pip_freeze_error"] = f"{type(exc).__name__}: {exc}"
    return info


def work_outputs(work_dir: Path, hasher: Hasher) -> dict:
    return {rel: hasher.file(work_dir / rel) for rel in safefs.walk_files(work_dir) if rel not in NOT_OUTPUTS}


# -- the run's options ------------------------------------------------------------
def options_to_dict(opts: Options) -> dict:
    """The run's Options as the option table spells them (convertctl.toml's
    keys), paths made absolute so that verify can run them from anywhere."""
    out = {}
    for f in fields(opts):
        value = getattr(opts, f.name)
        if SPECS[f.name].path and value:
            value = str(Path(value).resolve())
        out[f.name] = [list(v) for v in value] if f.name == "input_shape" else value
    out["out"] = str(Path(opts.out).resolve())
    return out


def options_from_dict(data: dict, source: Path | str = "report.json") -> Options:
    """Options back from a manifest, validated by the option table's rules like
    any file's values (a report is data); options this version does not know
    are ignored."""
    from convertctl.config import settings

    known = {k: v for k, v in data.items() if k in SPECS}
    return Options(**settings.validate(known, source))


def input_hashes(opts, run_dir: Path, hasher: Hasher) -> dict:
    """sha256 of the user's files (a folder of images: its tree hash) and of
    the arrays the stages were given (inputs/*.npz)."""
    out = {}
    for option, name in INPUT_OPTIONS.items():
        path = getattr(opts, option, None)
        if path:
            path = Path(path)
            out[name] = {"path": str(Path(path).resolve()), "sha256": hasher.path(Path(path), remember=True)}
    if safefs.kind(run_dir, "inputs") == "dir":
        out["arrays"] = {rel: hasher.file(run_dir / rel) for rel in safefs.walk_files(run_dir, "inputs")}
    return out
