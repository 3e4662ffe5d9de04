"""Which checks belong to a mode's file: one rung may make a mode's file with
two quantizers (TF 2.x's "dynamic" file of a small model keeps float weights,
so LiteRT Quantizer makes another). The summary, the HTML page and the batch
table read the file's own checks, not the first quantizer's."""

from __future__ import annotations

import copy

from convertctl.batch.outcome import mode_rows
from convertctl.config.catalog import load_catalog
from convertctl.report import html as report_html
from convertctl.report.summary import file_checks, mode_files
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file


def two_quantizers(tmp_path):
    """A passing fake run of dynamic, with the first quantizer's failed file's check before the kept file's."""
    model = torchscript_file(tmp_path / "n.pt")
    runtime = FakeRuntime()
    runtime.name = "local"
    opts = options(model=model, shapes=[(1, 3, 8, 8)], modes=["dynamic"], out=tmp_path / "o", latency_runs=0)
    report = Pipeline(opts, runtime, load_catalog(), lambda _: None).run()
    assert report.status == "passed"
    (art,) = report.artifacts
    (kept,) = [c for c in report.checks if c["stage"] == "tflite"]
    assert kept["file"] == art["file"], "a tflite check names the file it checked"
    first = copy.deepcopy(kept)
    first.update(status="failed", failures=["kept float weights"], file=art["file"].replace("dynamic", "dynamic-tf"))
    report.checks.insert(report.checks.index(kept), first)
    return report, art, kept


def test_a_modes_file_is_judged_by_its_own_checks(tmp_path):
    report, art, kept = two_quantizers(tmp_path)
    assert file_checks(report.checks, art) == [kept]
    (summary,) = mode_files(report)
    assert summary.passed and summary.problem == ""
    assert mode_rows(report.to_dict())["dynamic"]["status"] == "passed"
    assert "kept float weights" not in report_html.render(report)


def test_a_report_whose_checks_name_no_file_matches_by_rung_and_mode(tmp_path):
    report, art, kept = two_quantizers(tmp_path)
    for check in report.checks:
        check.pop("file", None)
    assert len(file_checks(report.checks, art)) == 2  # as a report written before checks named their file is read
