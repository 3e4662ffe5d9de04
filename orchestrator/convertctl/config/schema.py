"""A small strict validator for convertctl.toml, the flags (settings.py) and
the image catalog (catalog_schema.py). It replaces pydantic, whose import
and model building cost ~90 ms on every convertctl command.

A rule is a function (value, loc, problems) -> the checked value, or BAD
after appending each problem it found to `problems`. Rules are built once,
at import, from the helpers below, and nest the way the types do: a list of
texts is `list_of(text(min_length=1))`.

Strict on purpose, as pydantic's strict mode was: no coercion, so a TOML
string "no" is not false, "7" is not 7, true is not 1. The one widening is
an int where a float is expected (a TOML `atol = 1`), which pydantic's
strict mode accepts too.

A problem is a dict with pydantic's keys and wording (type, loc, msg,
input), because settings.py builds its user-facing messages from exactly
those, and they must not change with the validator. Only the types and
messages these schemas can produce are here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

BAD: Any = object()  # what a rule returns when it failed; its problems are already listed

Rule = Callable[[Any, tuple, list], Any]


class Invalid(Exception):
    """Raised by a `before` function: the value cannot be read. `kind` becomes
    the problem's type (settings.py names "shape" and "floats" problems)."""

    def __init__(self, kind: str, msg: str):
        super().__init__(msg)
        self.kind, self.msg = kind, msg


def fail(problems: list, kind: str, loc: tuple, msg: str, value: Any) -> Any:
    problems.append({"type": kind, "loc": loc, "msg": msg, "input": value})
    return BAD


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _bounds(value: Any, loc: tuple, problems: list, gt=None, ge=None, le=None) -> Any:
    # The limits print as written in the schema ("0", not "0.0"): the messages pydantic made.
    if gt is not None and not value > gt:
        return fail(problems, "greater_than", loc, f"Input should be greater than {gt}", value)
    if ge is not None and not value >= ge:
        return fail(problems, "greater_than_equal", loc, f"Input should be greater than or equal to {ge}", value)
    if le is not None and not value <= le:
        return fail(problems, "less_than_equal", loc, f"Input should be less than or equal to {le}", value)
    return value


def integer(ge: int | None = None, le: int | None = None) -> Rule:
    """An int; a bool is not one (True is 1 to Python, not to a user), nor is 7.0."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return fail(problems, "int_type", loc, "Input should be a valid integer", value)
        return _bounds(value, loc, problems, ge=ge, le=le)

    return check


def number(gt: float | None = None, ge: float | None = None, le: float | None = None) -> Rule:
    """A finite float; an int is taken (as a float), a bool or a string never."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return fail(problems, "float_type", loc, "Input should be a valid number", value)
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond any float is not a number either
            return fail(problems, "float_type", loc, "Input should be a valid number", value)
        if not math.isfinite(as_float):  # inf and nan would pass every range check below, wrongly
            return fail(problems, "finite_number", loc, "Input should be a finite number", value)
        # A problem quotes the value as given (-2, not -2.0); what passes is a float.
        return as_float if _bounds(value, loc, problems, gt=gt, ge=ge, le=le) is not BAD else BAD

    return check


def boolean(value: Any, loc: tuple, problems: list) -> Any:
    """true or false; not "no", not 0."""
    if not isinstance(value, bool):
        return fail(problems, "bool_type", loc, "Input should be a valid boolean", value)
    return value


def anything(value: Any, loc: tuple, problems: list) -> Any:
    return value


def text(min_length: int = 0, pattern: str | None = None) -> Rule:
    """A str. The pattern must match the whole text: "3.8\\n" is not "3.8"
    (re.fullmatch, as pydantic's regex engine did with ^...$)."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not isinstance(value, str):
            return fail(problems, "string_type", loc, "Input should be a valid string", value)
        if len(value) < min_length:
            msg = f"String should have at least {_plural(min_length, 'character')}"
            return fail(problems, "string_too_short", loc, msg, value)
        if compiled is not None and not compiled.fullmatch(value):
            return fail(problems, "string_pattern_mismatch", loc, f"String should match pattern '{pattern}'", value)
        return value

    return check


def one_of(*choices: str) -> Rule:
    """One of a few strings (a Literal)."""
    listed = ", ".join(map(repr, choices[:-1])) + " or " if len(choices) > 1 else ""
    msg = f"Input should be {listed}{choices[-1]!r}"

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not (isinstance(value, str) and value in choices):
            return fail(problems, "literal_error", loc, msg, value)
        return value

    return check


def optional(rule: Rule) -> Rule:
    """None, or what `rule` takes."""
    return lambda value, loc, problems: None if value is None else rule(value, loc, problems)


def before(read: Callable[[Any], Any], rule: Rule) -> Rule:
    """`read` the value first (a "1,3,8,8" into a shape), then check what it
    gave with `rule`. `read` refuses with Invalid; a ValueError it lets out
    (int("²")) is a problem too, as pydantic made it, not a crash."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        try:
            value = read(value)
        except Invalid as exc:
            return fail(problems, exc.kind, loc, exc.msg, value)
        except ValueError as exc:
            return fail(problems, "value_error", loc, f"Value error, {exc}", value)
        return rule(value, loc, problems)

    return check


def list_of(item: Rule, min_length: int = 0, max_length: int | None = None) -> Rule:
    """A list (not a tuple), every item checked; each bad item is its own
    problem at loc + (index,). Too long is refused before the items are
    looked at, too short only once they are all good (pydantic's order)."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not isinstance(value, list):
            return fail(problems, "list_type", loc, "Input should be a valid list", value)
        if max_length is not None and len(value) > max_length:
            msg = f"List should have at most {_plural(max_length, 'item')} after validation, not {len(value)}"
            return fail(problems, "too_long", loc, msg, value)
        out = [item(v, (*loc, i), problems) for i, v in enumerate(value)]
        if any(v is BAD for v in out):
            return BAD
        if len(out) < min_length:
            msg = f"List should have at least {_plural(min_length, 'item')} after validation, not {len(out)}"
            return fail(problems, "too_short", loc, msg, value)
        return out

    return check


def at_least(n: int, rule: Rule) -> Rule:
    """`rule`'s value (a list), with at least n items. Around a `before`, so
    the problem quotes what was given ("" for mean), not what it was read as."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        out = rule(value, loc, problems)
        if out is not BAD and len(out) < n:
            msg = f"Value should have at least {_plural(n, 'item')} after validation, not {len(out)}"
            return fail(problems, "too_short", loc, msg, value)
        return out

    return check


def dict_of(key: Rule, item: Rule) -> Rule:
    """A table: a bad key is a problem at loc + (key, "[key]"), a bad value
    one at loc + (key,); both are looked at."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not isinstance(value, dict):
            return fail(problems, "dict_type", loc, "Input should be a valid dictionary", value)
        out, ok = {}, True
        for k, v in value.items():
            checked_key = key(k, (*loc, k, "[key]"), problems)
            checked = item(v, (*loc, k), problems)
            if checked_key is BAD or checked is BAD:
                ok = False
            else:
                out[checked_key] = checked
        return out if ok else BAD

    return check


def either(*members: tuple[str, Rule]) -> Rule:
    """The first member that takes the value (the members here take disjoint
    types, so the first is the only). When none does, every member's
    problems, each under loc + (its tag,): the tags are pydantic's names of
    the types ("constrained-str"), which settings.py's file messages show."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        found: list = []
        for tag, rule in members:
            mine: list = []
            out = rule(value, (*loc, tag), mine)
            if out is not BAD:
                return out
            found += mine
        problems += found
        return BAD

    return check


def table(
    name: str, fields: dict[str, Rule], required: tuple = (), extra: str = "forbid", make: Callable | None = None
) -> Rule:
    """A table of named fields -> a dict of the checked fields it gave, or
    make(**that dict) (a Settings). Problems come in field order, then the
    unknown keys in the order given (extra="forbid"; extra="allow" keeps
    them unchecked). `name` is for the message about a value that is not a
    table at all."""

    def check(value: Any, loc: tuple, problems: list) -> Any:
        if not isinstance(value, dict):
            return fail(problems, "model_type", loc, f"Input should be a valid dictionary or instance of {name}", value)
        out: dict = {}
        for field, rule in fields.items():
            if field in value:
                out[field] = rule(value[field], (*loc, field), problems)
            elif field in required:
                out[field] = fail(problems, "missing", (*loc, field), "Field required", value)
        for k, v in value.items():
            if k in fields:
                continue
            if not isinstance(k, str):
                out[k] = fail(problems, "invalid_key", (*loc, k), "Keys should be strings", k)
            elif extra == "forbid":
                out[k] = fail(problems, "extra_forbidden", (*loc, k), "Extra inputs are not permitted", v)
            else:
                out[k] = v
        if any(v is BAD for v in out.values()):
            return BAD
        return make(**out) if make else out

    return check


def checked(rule: Rule, value: Any) -> tuple[Any, list[dict]]:
    """The checked value and no problems, or BAD and every problem found."""
    problems: list[dict] = []
    out = rule(value, (), problems)
    return out, problems
