"""The strict validator (schema.py) behind convertctl.toml, the flags and the
image catalog. The messages below are the ones the pydantic models made
before schema.py replaced them, word for word: users and scripts see them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from convertctl.config import modes, settings
from convertctl.config.catalog import check_catalog
from convertctl.config.schema import BAD, checked, either, integer, list_of, number, table, text
from convertctl.errors import UsageError

SRC = Path("/models/convertctl.toml")
SHAPE = 'expected a shape such as "1,3,224,224" or [1, 3, 224, 224] (whole numbers > 0), or a list of shapes'
MODES = ", ".join(modes.NAMES)
LAYERS = 'auto, or layer names (a list, or "a,b,c")'


def refused(values: dict, source: Path | None = SRC) -> str:
    with pytest.raises(UsageError) as err:
        settings.validate(values, source)
    return err.value.message


@pytest.mark.parametrize(
    ("values", "source", "message"),
    [
        # a bool is not an int, 7.0 is not 7, "5" is not 5
        ({"opset": True}, SRC, f"{SRC}: opset = true: expected a whole number from 7 to 20"),
        ({"opset": 7.0}, SRC, f"{SRC}: opset = 7.0: expected a whole number from 7 to 20"),
        ({"samples": "5"}, None, "--samples '5': expected a whole number from 1 to 10000"),
        ({"allow_flex": "no"}, SRC, f'{SRC}: allow_flex = "no": expected true or false (a TOML boolean, not a string)'),
        # finite numbers only, however they are spelt
        (
            {"mean": [1, math.inf]},
            SRC,
            f'{SRC}: mean = inf: expected finite numbers, one per channel (a list, or "0.485,0.456,0.406")',
        ),
        (
            {"mean": "0.5,nan"},
            None,
            "--mean '0.5,nan': expected finite numbers, one per channel (a list, or \"0.485,0.456,0.406\")",
        ),
        (
            {"mean": ""},
            SRC,
            f'{SRC}: mean = "": expected finite numbers, one per channel (a list, or "0.485,0.456,0.406")',
        ),
        (
            {"std": "0.2,0"},
            None,
            "--std '0.2,0': expected finite numbers > 0, one per channel (a list, or \"0.229,0.224,0.225\")",
        ),
        (
            {"max_accuracy_drop": {"int8": math.inf}},
            None,
            "--max-accuracy-drop inf: expected a number of percentage points from 0 to 100",
        ),
        # per-mode tables: the mode, the key and the value are each checked
        (
            {"max_accuracy_drop": {"int8": "1", "int4": 2}},
            SRC,
            f'{SRC}: max_accuracy_drop.int8 = "1": expected a number of percentage points from 0 to 100; '
            f"{SRC}: max_accuracy_drop.int4: unknown mode 'int4' (choose from {MODES})",
        ),
        (
            {"tolerance": {"fp16": {"atol": -1.0, "bogus": 1}}},
            SRC,
            f"{SRC}: tolerance.fp16.atol = -1.0: expected a finite number >= 0; "
            f"{SRC}: tolerance.fp16.bogus = 1: unknown key (known: atol, cosine, rtol, top1)",
        ),
        ({"atol": {"fp16": -1.0}}, None, "--atol -1.0: expected a finite number >= 0"),
        (
            {"tolerance": {"fp16": 0.1}},
            SRC,
            f"{SRC}: tolerance.fp16 = 0.1: expected a table with atol, rtol, cosine and/or top1, "
            "e.g. [tolerance.fp16] atol = 0.05",
        ),
        # every bad key in one message, in the schema's order
        (
            {"opset": "7", "allow_flex": "no", "quant": "int4", "input_shape": "1,x"},
            SRC,
            f'{SRC}: input_shape = "1,x": {SHAPE}: not comma-separated whole numbers; '
            f'{SRC}: quant = "int4": unknown mode (choose from {MODES}); '
            f'{SRC}: allow_flex = "no": expected true or false (a TOML boolean, not a string); '
            f'{SRC}: opset = "7": expected a whole number from 7 to 20',
        ),
        (
            {"opset": "7", "allow_flex": "no", "quant": ["fp32", "int4"], "input_shape": ["1,3", "1,x"]},
            None,
            f"--input-shape '1,x': {SHAPE}: not comma-separated whole numbers; "
            f"--quant int4: unknown mode (choose from {MODES}); "
            "--allow-flex 'no': expected true or false (a TOML boolean, not a string); "
            "--opset '7': expected a whole number from 7 to 20",
        ),
        # unions: each member's problem (the file message names pydantic's member types)
        (
            {"max_int8_latency_cost": 500},
            SRC,
            f'{SRC}: max_int8_latency_cost.constrained-str = 500: expected a share such as "10%" or 0.1; '
            f'{SRC}: max_int8_latency_cost.constrained-float = 500: expected a share such as "10%" or 0.1',
        ),
        ({"max_int8_latency_cost": ""}, None, "--max-int8-latency-cost '': expected a share such as \"10%\" or 0.1"),
        (
            {"int8_float_layers": ["a", 5]},
            SRC,
            f"{SRC}: int8_float_layers.constrained-str = ['a', 5]: expected {LAYERS}; "
            f"{SRC}: int8_float_layers.list[constrained-str] = 5: expected {LAYERS}",
        ),
        (
            {"input_shape": "1,3,20000,20000"},
            None,
            f"--input-shape '1,3,20000,20000': {SHAPE}: 1.2e+09 values per sample (4.8 GB as float32); "
            "convertctl takes at most 67108864 values per input",
        ),
        (
            {"runtime": "cloud", "layout": "NCHW"},
            None,
            "--layout NCHW: expected nchw or nhwc; --runtime cloud: expected auto, local or docker",
        ),
        ({"arch_kwargs": [1]}, SRC, f"{SRC}: arch_kwargs = [1]: expected a table of keyword arguments for --arch"),
    ],
)
def test_bad_settings_are_one_message_naming_each_key(values, source, message):
    assert refused(values, source) == message


def test_an_int_is_a_float_where_a_float_is_expected():
    got = settings.validate(
        {"mean": [1, 2], "std": "1,2", "tolerance": {"fp16": {"atol": 1}}, "max_accuracy_drop": {"int8": 2}}
    )
    assert got["mean"] == [1.0, 2.0] and all(type(v) is float for v in got["mean"] + got["std"])
    assert type(got["tolerance"]["fp16"]["atol"]) is float and got["tolerance"]["fp16"] == {"atol": 1.0}
    assert type(got["max_accuracy_drop"]["int8"]) is float
    assert settings.validate({"max_int8_latency_cost": 5})["max_int8_latency_cost"] == 5.0


def test_no_string_is_a_number_and_no_number_a_string():
    for values in ({"opset": "13"}, {"mean": ["0.5"]}, {"seed": "1"}, {"calib": 5}, {"input": [5]}, {"arch": True}):
        assert next(iter(values)) in refused(values)


def test_an_int_too_big_for_a_float_is_no_number():
    assert "max_accuracy_drop.int8 = 1" in refused({"max_accuracy_drop": {"int8": 10**400}})


def test_the_shorthands_read_as_lists():
    got = settings.validate({"quant": "int8", "input": "x:1,3", "input_shape": "1,3,8,8"})
    assert (got["quant"], got["input"], got["input_shape"]) == (["int8"], ["x:1,3"], [(1, 3, 8, 8)])
    assert settings.validate({"input_shape": [[1, 3], "2,4"]})["input_shape"] == [(1, 3), (2, 4)]
    assert "not a shape" in refused({"input_shape": [True, 3]})


def test_a_digit_int_cannot_read_is_a_usage_error_not_a_crash():
    assert refused({"input_shape": "²"}, None).startswith("--input-shape '²': expected a shape")


def test_a_flag_overrides_only_what_it_gave(tmp_path):
    (tmp_path / "convertctl.toml").write_text(
        'quant = "fp16"\nopset = 13\narch_kwargs = {n = 1}\n[tolerance.fp16]\natol = 0.5\ncosine = 0.9\n'
    )
    flags = {"opset": 17, "quant": None, "arch_kwargs": {}, "tolerance": {"fp16": {"rtol": 0.1}}}
    merged, path = settings.load(tmp_path / "m.pt", None, flags, trust_config=True)
    assert path == tmp_path / "convertctl.toml"
    assert (merged.quant, merged.opset, merged.arch_kwargs) == (["fp16"], 17, {})
    assert merged.tolerance["fp16"] == {"atol": 0.5, "rtol": 0.1, "cosine": 0.9}


def test_every_option_has_a_rule_a_topic_and_a_flag_or_file_key():
    from convertctl.config.options import FILE_KEYS, GROUPS, SPECS, Options

    assert [f.name for f in dataclasses.fields(Options)] == list(SPECS)
    for name, spec in SPECS.items():
        assert spec.group in GROUPS and spec.help and spec.expected, name
        assert spec.flags or spec.file or name == "model", f"{name}: neither a flag nor a file key"
        assert (name in FILE_KEYS) == spec.file, name
    assert {name for name, spec in SPECS.items() if spec.code} == {"arch", "arch_kwargs", "code"}


def test_the_rules_alone():
    assert checked(integer(ge=1), 2) == (2, [])
    out, problems = checked(list_of(integer(), min_length=2, max_length=2), [1, "x", False])
    assert out is BAD and [p["type"] for p in problems] == ["too_long"]
    out, problems = checked(list_of(integer(), min_length=2, max_length=2), [1, "x"])
    assert [(p["type"], p["loc"]) for p in problems] == [("int_type", (1,))]
    out, problems = checked(either(("s", text()), ("n", number())), [])
    assert [p["loc"] for p in problems] == [("s",), ("n",)]
    rule = table("T", {"a": integer(), "b": text()}, required=("a",))
    assert checked(rule, {"a": 1}) == ({"a": 1}, [])
    out, problems = checked(rule, {"z": 1, "b": 2})
    assert [(p["type"], p["loc"]) for p in problems] == [
        ("missing", ("a",)),
        ("string_type", ("b",)),
        ("extra_forbidden", ("z",)),
    ]
    assert checked(table("T", {}, extra="allow"), {"z": 1}) == ({"z": 1}, [])


VARIANT = {"stage": "export", "python": "3.8", "requirements": "r", "tag": "t", "base_image": "b"}


def test_the_catalog_names_each_bad_field_and_the_file():
    good = {"variants": {"a": {**VARIANT, "mine": "kept for catalog.py"}}, "ladders": {"docker": {"export": ["a"]}}}
    check_catalog(Path("/c/catalog.toml"), good)
    data = {
        "variants": {"a": {**VARIANT, "python": "3.x", "opsets": [1, 2, 3]}, "b": {"stage": "export"}},
        "ladder": {},
    }
    with pytest.raises(UsageError) as err:
        check_catalog(Path("/c/catalog.toml"), data)
    missing = "Field required (got {'stage': 'export'})"
    assert err.value.message == (
        "/c/catalog.toml: invalid catalog: variants.a.python: String should match pattern '^\\d+\\.\\d+$' "
        '(got "3.x"); variants.a.opsets: List should have at most 2 items after validation, not 3 (got [1, 2, 3]); '
        f"variants.b.python: {missing}; variants.b.requirements: {missing}; variants.b.tag: {missing}; "
        f"variants.b.base_image: {missing}; ladder: Extra inputs are not permitted (got {{}})"
    )


def test_the_catalog_checks_inside_lists_and_ladders():
    data = {
        "variants": {"a": {**VARIANT, "python": "3.8\n", "opsets": [0, 31], "float_layers": 1}},
        "ladders": {"docker": {"export": "a"}, "cloud": {}},
    }
    with pytest.raises(UsageError) as err:
        check_catalog(Path("/c/catalog.toml"), data)
    assert err.value.message == (
        "/c/catalog.toml: invalid catalog: variants.a.python: String should match pattern '^\\d+\\.\\d+$' "
        '(got "3.8\n"); variants.a.opsets.0: Input should be greater than or equal to 1 (got 0); '
        "variants.a.opsets.1: Input should be less than or equal to 30 (got 31); "
        "variants.a.float_layers: Input should be a valid boolean (got 1); "
        'ladders.docker.export: Input should be a valid list (got "a"); '
        "ladders.cloud: Input should be 'local' or 'docker' (got \"cloud\")"
    )


def test_a_shape_beyond_a_floats_range_is_a_usage_error_not_a_crash():
    huge = "9" * 400
    with pytest.raises(UsageError, match=r"about 1e400 values per sample \(more than any disk as float32\)"):
        settings.validate({"input_shape": f"1,3,{huge}"})
