"""The option table (config/options.py) as typer options: each command
lists the options it takes by name, and gets them with their flags, help,
topic (a `--help` panel each) and types; what the user typed comes back in
the shape a settings file gives (MODE=N flags as tables, JSON as objects),
for settings.py to validate with the same rules as a file."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from convertctl.config.options import SPECS, Spec
from convertctl.config.settings import mode_values
from convertctl.errors import UsageError

# Every option of the table that has a flag: what run, quantize and batch take.
RUN_OPTIONS = [name for name, spec in SPECS.items() if spec.flags]


def _annotation(name: str, spec: Spec) -> tuple[Any, Any]:
    """(annotation, default) of one option's typer parameter. A value not
    given is None (False for a switch): only what was typed overrides a file."""
    info = typer.Option(
        *spec.flags,
        help=spec.help,
        rich_help_panel=spec.group,
        envvar=spec.envvar,
        metavar=spec.metavar,
        show_default=False,
    )
    if spec.cli is bool:
        return Annotated[bool, info], False
    kind = list[spec.cli] if spec.repeat else spec.cli  # type: ignore[name-defined]
    return Annotated[kind | None, info], None


def parameters(names: list[str]) -> list[inspect.Parameter]:
    out = []
    for name in names:
        annotation, default = _annotation(name, SPECS[name])
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return out


def with_options(*names: str) -> Callable:
    """Give a command the table's options `names` (besides its own
    parameters); they reach it as keyword arguments."""

    def wrap(fn: Callable) -> Callable:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]

        @functools.wraps(fn)
        def command(*args, **kwargs):
            return fn(*args, **kwargs)

        # The command's arguments, then the table's options (topic by topic), then its own options.
        first = [p for p in own if p.default is inspect.Parameter.empty]
        rest = [p for p in own if p.default is not inspect.Parameter.empty]
        signature = inspect.Signature([*first, *parameters(list(names)), *rest])
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return wrap


def given(values: dict) -> dict:
    """What was typed, in a settings file's shape: {option: value} for the
    options given, None for the rest."""
    out: dict = {}
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is None or value is None or (spec.cli is bool and value is False) or value == []:
            continue
        if spec.per_mode:
            value = mode_values(list(value), spec.flags[0]) or None
        elif spec.json:
            value = json_object(value, spec.flags[0])
        out[name] = value
    return out


def json_object(text: str, flag: str) -> dict:
    shown = text if len(text) < 200 else text[:200] + "..."
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {shown!r}: not valid JSON ({exc})") from None
    except RecursionError:
        raise UsageError(f"{flag} {shown!r}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} {text!r}: expected a JSON object, e.g. '{{\"num_classes\": 10}}'")
    return value
