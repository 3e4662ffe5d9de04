"""Property tests (hypothesis) of what crosses a boundary as text: the
settings file and flags, the request a stage reads, the result the host
reads back, the saved report. Whatever arrives, each parser answers with a
value or with its one error type; never a crash, never a silent coercion."""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import pytest
from convertctl.config import settings
from convertctl.config.options import MAX_INPUT_VALUES
from convertctl.errors import UsageError
from convertctl.report.model import SCHEMA_NAME, SCHEMA_VERSION, Report, load_report
from convertctl.runtimes.base import StageRun, crash_signal, read_result, write_request
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FAST = hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
modes = st.sampled_from(settings.MODES)


# -- settings: file and flags --------------------------------------------------
@FAST
@given(st.dictionaries(st.sampled_from(sorted(settings.FILE_KEYS)), toml_values, min_size=1, max_size=4))
def test_any_file_values_validate_or_name_the_key_and_file(values):
    source = Path("/models/convertctl.toml")
    try:
        parsed = settings.validate(values, source)
    except UsageError as exc:
        assert str(source) in exc.message
        assert any(key in exc.message for key in values), exc.message
        return
    # What passed is what the schema promises: no coerced strings, no NaN.
    if parsed.get("allow_flex") is not None:
        assert isinstance(values["allow_flex"], bool)
    for number in (parsed.get("mean") or []) + (parsed.get("std") or []):
        assert math.isfinite(number)
    if parsed.get("opset") is not None:
        assert type(values["opset"]) is int and 7 <= parsed["opset"] <= 20
    for shape in parsed.get("input_shape") or []:
        assert all(d > 0 for d in shape) and math.prod(shape) <= MAX_INPUT_VALUES


@FAST
@given(st.text(max_size=200))
def test_any_settings_file_text_loads_or_is_one_usage_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "m.pt"
        (Path(tmp) / "convertctl.toml").write_text(text)
        try:
            settings.load(model, None, {})
        except UsageError as exc:
            assert "convertctl.toml" in exc.message


@FAST
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=5))
def test_a_shape_reads_the_same_as_text_or_as_a_list(dims):
    if math.prod(dims) > MAX_INPUT_VALUES:  # too big either way
        for spelling in (",".join(map(str, dims)), dims):
            with pytest.raises(UsageError, match="values per sample"):
                settings.validate({"input_shape": spelling})
        return
    as_text = settings.validate({"input_shape": ",".join(map(str, dims))})
    as_list = settings.validate({"input_shape": dims})
    assert as_text["input_shape"] == as_list["input_shape"] == [tuple(dims)]


@FAST
@given(st.lists(st.text(max_size=12), max_size=4))
def test_mode_values_flags_parse_or_refuse(items):
    try:
        out = settings.mode_values(items, "--atol")
    except UsageError as exc:
        assert exc.message.startswith("--atol ")
        return
    assert set(out) <= set(settings.MODES) and all(math.isfinite(v) for v in out.values())


@FAST
@given(
    st.dictionaries(
        modes,
        st.fixed_dictionaries(
            {},
            optional={
                "atol": st.floats(min_value=0, max_value=1e3),
                "rtol": st.floats(min_value=0, max_value=1e3),
                "cosine": st.floats(min_value=-1, max_value=1),
                "top1": st.floats(min_value=0, max_value=1),
            },
        ),
        max_size=4,
    ),
    st.dictionaries(modes, st.floats(min_value=0, max_value=1e3), max_size=4),
)
def test_flags_win_and_an_atol_alone_is_the_whole_bound(file_tolerance, flag_atol):
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "m.pt"
        lines = []
        for mode, table in file_tolerance.items():
            lines.append(f"[tolerance.{mode}]")
            lines += [f"{k} = {v!r}" for k, v in table.items()]
        (Path(tmp) / "convertctl.toml").write_text("\n".join(lines) + "\n")
        flags = {"atol": dict(flag_atol) or None}
        merged, _ = settings.load(model, None, flags)
    for mode in settings.MODES:
        got = merged.tolerance.get(mode)
        from_file, from_flag = file_tolerance.get(mode, {}), flag_atol.get(mode)
        if not from_file and from_flag is None:
            assert not got, "nothing set: the defaults"
            continue
        if from_flag is not None:  # --atol without --rtol: exactly that bound, whatever the file said
            assert (got.get("atol"), got.get("rtol")) == (from_flag, 0.0)
        elif "atol" in from_file:
            assert (got.get("atol"), got.get("rtol")) == (from_file["atol"], from_file.get("rtol", 0.0))
        elif "rtol" in from_file:
            assert got.get("rtol") == from_file["rtol"]
        for key in ("cosine", "top1"):
            assert got.get(key) == from_file.get(key)


# -- the run-directory contract: request in, result out -------------------------
@FAST
@given(st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=6))
def test_a_request_reaches_the_stage_as_written(tmp_path, req):
    work = "stage/step"
    write_request(tmp_path, work, req)
    assert json.loads((tmp_path / work / "request.json").read_text()) == req


@FAST
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_result_file_reads_as_a_dict(tmp_path, raw):
    (tmp_path / "w").mkdir(exist_ok=True)
    (tmp_path / "w" / "result.json").write_bytes(raw)
    assert isinstance(read_result(tmp_path, "w"), dict)


@FAST
@given(st.integers(min_value=-300, max_value=300), st.lists(st.text(max_size=40), max_size=20), json_values)
def test_a_stage_run_always_explains_itself(code, tail, result):
    run = StageRun("convert", None, code, result if isinstance(result, dict) else {}, 0.0, tail)
    assert isinstance(crash_signal(code), str)
    message = run.error
    assert isinstance(message, str)
    if code != 0 and not run.result.get("error"):
        assert message, "a failed stage is never silent"


@pytest.fixture(scope="module")
def contract():
    sys.path.insert(0, str(ROOT / "images" / "common"))
    import contract as module

    yield module
    sys.path.remove(str(ROOT / "images" / "common"))


@FAST
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_the_stage_side_answers_any_request_file_with_a_result(contract, tmp_path, raw, monkeypatch):
    """The stage's request parser: garbage in, a failed result.json out
    (never a stage that dies without saying why)."""
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    (work / "result.json").unlink(missing_ok=True)
    (work / "request.json").write_bytes(raw)
    monkeypatch.setattr(sys, "argv", ["stage.py", str(tmp_path), "w"])
    seen = []
    code = contract.run_stage("convert", lambda run_dir, request, result: seen.append(request))
    result = json.loads((work / "result.json").read_text())
    if seen:
        assert code == 0 and result["status"] == "ok" and isinstance(seen[0], dict)
    else:
        assert code != 0 and result["status"] == "failed" and result["error"]


# -- the saved report ---------------------------------------------------------------
@FAST
@given(st.dictionaries(st.sampled_from(sorted(Report.__dataclass_fields__)), json_values, max_size=8))
def test_any_report_json_loads_or_is_refused_with_its_path(tmp_path, fields):
    fields = {**fields, "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(fields))
    try:
        report = load_report(path)
    except UsageError as exc:
        assert str(path) in exc.message
        return
    assert isinstance(report, Report)


@FAST
@given(
    st.sampled_from(["local", "docker"]),
    st.lists(modes, unique=True, min_size=1),
    st.lists(st.text(max_size=30), max_size=3),
    st.sampled_from([0, 2, 3, 4, 5, 130]),
)
def test_a_saved_report_loads_back_the_same(tmp_path, runtime, report_modes, notices, code):
    report = Report(model={"path": "m.pt"}, runtime=runtime, modes=report_modes, notices=notices)
    if code:
        report.fail(code, "why")
    report.finish()
    report.save(tmp_path / "report.json")
    again = load_report(tmp_path / "report.json")
    assert again.to_dict() == report.to_dict()


def test_the_report_schema_names_the_modes_of_the_registry():
    from convertctl.config import modes
    from convertctl.report.model import SCHEMA_FILE

    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$defs"]["mode"]["enum"] == list(modes.NAMES)
    assert settings.MODES == modes.NAMES
