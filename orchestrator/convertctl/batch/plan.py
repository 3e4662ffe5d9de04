"""The models of a batch and each one's Options, checked before anything runs.

Two sources: model paths and globs with shared flags (each model named by its
file's stem), or one batch file:

    [defaults]                      # any `run` option, spelled as in convertctl.toml
    quant = ["fp32", "fp16"]
    [models.resnet]                 # one table per model; NAME is its output folder
    model = "models/resnet18.pt"    # relative to this file, as every path in it
    input_shape = "1,3,224,224"

Per model, lowest to highest: its own convertctl.toml (next to the model),
[defaults], [models.NAME], the command line's flags: the batch's values
apply over the model's file as `run`'s flags do, and are validated by the
same option table, with messages naming the file and table. Every problem
(an unknown key, a model listed twice, a glob that matches nothing, a bad
value in a model's own convertctl.toml) is one UsageError before any
conversion starts."""

from __future__ import annotations

import glob
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from convertctl.config import settings
from convertctl.config.options import ALIASES, SPECS, Options
from convertctl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Options of the batch as a whole, never of one model.
NOT_PER_MODEL = ("out",)
# A batch file's own key besides the options: models whose conversions use
# alike memory (the pool sizes itself on the first of each family).
FAMILY = "family"
TABLE_KEYS = {*SPECS, *ALIASES} - set(NOT_PER_MODEL)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
GLOB_CHARS = set("*?[")


@dataclass
class Model:
    name: str  # its folder under --out
    options: Options  # merged and checked; options.out is OUT/NAME, options.model absolute
    config: str = ""  # the model's own convertctl.toml, when it has one
    family: str = ""

    @property
    def path(self) -> Path:
        return Path(self.options.model)


@dataclass
class Plan:
    models: list
    out: Path
    source: str  # the batch file, or "command line"


@dataclass
class Entry:
    """A model as the batch gives it, before its own convertctl.toml is read."""

    name: str
    path: Path
    values: dict  # the batch's options for it: [defaults], its table, the flags (paths absolute)
    family: str = ""


def entries(sources: list, flags: dict, trust_config: bool = False) -> tuple[str, list]:
    """(where they come from, [Entry]) of the command line's sources: one
    batch file, or model paths and globs with the flags (what was typed,
    settings-file shaped). Models named in a batch file need not exist yet
    (--emit gha-matrix lists models its jobs make or fetch)."""
    if not sources:
        raise UsageError("give model files, globs (models/*.pt) or one batch file (zoo.toml)")
    tomls = [s for s in sources if str(s).endswith(".toml")]
    if tomls and len(sources) > 1:
        raise UsageError(f"{tomls[0]}: a batch file is given alone, not with other models or files")
    flags = {k: v for k, v in flags.items() if k not in NOT_PER_MODEL}
    if not tomls:
        return "command line", [Entry(p.stem, p, dict(flags)) for p in expand(sources)]
    defaults, tables = read_batch_file(Path(tomls[0]), trust_config)
    found = []
    for name, values in tables.items():
        family = values.pop(FAMILY, None) or defaults.get(FAMILY, "")
        path = Path(values.pop("model"))
        merged = deep_merge(deep_merge({k: v for k, v in defaults.items() if k != FAMILY}, values), flags)
        found.append(Entry(name, path, merged, family))
    return str(tomls[0]), found


def make_plan(sources: list, flags: dict, out: Path, trust_config: bool = False) -> Plan:
    """The batch to run: every model's Options, checked."""
    source, found = entries(sources, flags, trust_config)
    where = (lambda e: f"{source} [models.{e.name}] model = {e.path}") if source != "command line" else None
    models = [
        model_entry(e.name, e.path, e.values, out, trust_config, e.family, where(e) if where else "") for e in found
    ]
    check_unique(models, source)
    return Plan(models, out, source)


def expand(sources: list) -> list:
    """Paths and globs (quoted ones: the shell expands the rest) -> files, in order."""
    found = []
    for source in map(str, sources):
        if GLOB_CHARS & set(source):
            matched = [Path(m) for m in sorted(glob.glob(source, recursive=True)) if Path(m).is_file()]
            if not matched:
                raise UsageError(f"{source}: matches no file")
            found += matched
        else:
            found.append(Path(source))
    return found


def read_batch_file(path: Path, trust_config: bool) -> tuple[dict, dict]:
    """([defaults], {name: table}) of a batch file, every key and value checked;
    paths made absolute (relative to the file)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such batch file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"defaults", "models"})
    if unknown:
        raise UsageError(
            f"{path}: unknown table(s) {', '.join(unknown)} (a batch file has [defaults] and [models.NAME])"
        )
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise UsageError(f'{path}: no models (add a [models.NAME] table with model = "path" for each)')
    defaults = table_values(data.get("defaults", {}), path, "[defaults]", trust_config)
    if "model" in defaults:
        raise UsageError(f"{path}: [defaults] model: a model belongs in its own [models.NAME] table")
    tables = {}
    for name, table in models.items():
        where = f"[models.{name}]"
        if not NAME.match(name):
            raise UsageError(f"{path}: {where}: a model's name is its output folder: letters, digits, . _ - only")
        values = table_values(table, path, where, trust_config)
        if not values.get("model"):
            raise UsageError(f'{path}: {where}: no model = "path" (the model file, relative to {path.name})')
        tables[name] = values
    return defaults, tables


def table_values(table, path: Path, where: str, trust_config: bool) -> dict:
    """One table's options, as convertctl.toml spells them, validated by the option table."""
    if not isinstance(table, dict):
        raise UsageError(f"{path}: {where} is not a table")
    unknown = sorted(set(table) - TABLE_KEYS - {FAMILY}, key=str)
    if unknown:
        known = ", ".join(sorted(TABLE_KEYS | {FAMILY}))
        raise UsageError(f"{path}: {where}: unknown key(s) {', '.join(map(str, unknown))} (known: {known})")
    values = dict(table)
    for alias, name in ALIASES.items():
        if alias in values:
            values.setdefault(name, values.pop(alias))
    family = values.pop(FAMILY, None)
    if family is not None and not (isinstance(family, str) and family):
        raise UsageError(f"{path}: {where} family: expected a name (a string)")
    if not trust_config:
        settings.refuse_code(values, f"{path} {where}")
    settings.validate(values, f"{path} {where}")
    for name, spec in SPECS.items():
        if spec.path and isinstance(values.get(name), str):
            values[name] = str((path.parent / values[name]).resolve())
    return {**values, **({FAMILY: family} if family else {})}


def model_entry(name: str, path: Path, values: dict, out: Path, trust_config: bool, family, where: str = "") -> Model:
    """One model: its own convertctl.toml under the batch's values, checked as `run` checks them."""
    from convertctl.api.run import check_before_work

    if not NAME.match(name):
        raise UsageError(f"{path}: {name!r} cannot name an output folder (letters, digits, . _ - only)")
    if not path.is_file():
        raise UsageError(
            f"{where or path}: no such model file" if not path.exists() else f"{where or path}: not a file"
        )
    raw, config = settings.read_file(path)
    if config is not None and not trust_config:
        settings.refuse_code(raw, config)
    values = {**values, "model": str(path.resolve()), "out": str(out / name)}
    try:
        opts = settings.merge(raw, values, config)
        check_before_work(opts)
    except UsageError as exc:
        raise UsageError(f"model {name} ({path}): {exc.message}", exc.hint) from None
    return Model(name, opts, str(config or ""), family or default_family(path))


def default_family(path: Path) -> str:
    """Models alike in memory, by default: the same file type, sizes within a factor of two."""
    size_mb = max(path.stat().st_size / 2**20, 1.0)
    return f"{path.suffix.lstrip('.') or 'model'}-{2 ** math.ceil(math.log2(size_mb))}MB"


def check_unique(models: list, source: str) -> None:
    """No model twice (the same file with the same options), no two sharing an output folder."""
    seen_runs: dict = {}
    for m in models:
        key = repr(sorted({**m.options.__dict__, "out": ""}.items()))
        if key in seen_runs:
            raise UsageError(f"{source}: {m.path} is listed twice ({seen_runs[key]}, {m.name}) with the same options")
        seen_runs[key] = m.name
    seen_names: dict = {}
    for m in models:
        if m.name in seen_names:
            raise UsageError(
                f"{source}: two models named {m.name} ({seen_names[m.name]}, {m.path}): each needs its own "
                "output folder; name them in a batch file"
            )
        seen_names[m.name] = m.path


def deep_merge(low: dict, high: dict) -> dict:
    """high over low; tables (tolerance, max_accuracy_drop) merged key by key."""
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
