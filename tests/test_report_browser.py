"""report.html in a real browser (Debian's chromium, headless, without
network): it renders without console errors, its charts are there with
their marks, it fits a phone's width, a screenshot is not blank, and it
asks for nothing but itself. The check that it asks for nothing is shown to
catch a page that does. Pages come from runs of the fake runtime (the real
runs' pages are opened in test_api_acceptance.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import Browser, chromium, open_page, pixel_spread
from convertctl.report import html as report_html
from test_report_html_unit import four_mode_run, hostile_report

pytestmark = pytest.mark.skipif(
    chromium() is None and os.environ.get("CONVERTCTL_REQUIRE_BROWSER") != "1",
    reason="no chromium (apt-get install chromium; set CONVERTCTL_REQUIRE_BROWSER=1 to make this an error)",
)


def outside(visit, page: Path) -> list:
    """Requests for anything but the page itself."""
    return [url for url in visit.requests if url != page.resolve().as_uri()]


def assert_renders(visit, dom: dict, page: Path, charts: set) -> None:
    assert visit.requests and visit.requests[0] == page.resolve().as_uri()
    assert outside(visit, page) == [] and dom["resources"] == [], "nothing but the page itself is loaded"
    errors = [(level, text) for level, text in visit.console if level in ("error", "warning", "assert")]
    assert errors == [] and visit.exceptions == []
    assert {c["kind"] for c in dom["charts"]} == charts
    assert all(c["marks"] > 0 and c["width"] > 200 and c["height"] > 50 for c in dom["charts"]), dom["charts"]
    assert dom["overflow"] <= 0, "the page fits a phone's width (390 px) without scrolling sideways"
    assert dom["scripts"] == 0
    assert pixel_spread(visit.screenshot) > 20, "the screenshot is not blank"


def test_a_four_mode_report_renders_in_chromium(tmp_path):
    report = four_mode_run(tmp_path)
    page = tmp_path / "out" / "report.html"
    visit, dom = open_page(page)
    assert_renders(visit, dom, page, {"parity", "scatter", "curve", "layers"})
    assert dom["cards"] == [a["mode"] for a in report.artifacts]
    assert "PASSED: 4 TFLite file(s)" in dom["text"]


def test_hostile_names_render_as_text_in_chromium(tmp_path):
    page = tmp_path / "hostile.html"
    page.write_text(report_html.render(hostile_report(tmp_path)))
    visit, dom = open_page(page)
    assert_renders(visit, dom, page, {"parity", "scatter", "curve", "layers"})
    assert "<script>alert(1)</script>" in dom["text"] and "onerror=alert(2)>" in dom["text"]
    assert "\\x1b[2J" in dom["text"]


def test_the_check_catches_a_page_that_loads_something(tmp_path):
    """The same checks on a page with an outside image and a stylesheet: they must fail."""
    page = tmp_path / "leaky.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/x.css"></head>'
        '<body><img src="http://example.com/pixel.png"><p>hello</p></body></html>'
    )
    with Browser() as browser:
        visit, dom = open_page(page, browser)
    assert "http://example.com/pixel.png" in outside(visit, page)
    assert "https://cdn.example.com/x.css" in outside(visit, page)
    assert any(level == "error" for level, _ in visit.console), "a failed load is a console error"
    with pytest.raises(AssertionError):
        assert_renders(visit, dom, page, set())


def test_the_batch_report_renders_in_chromium(tmp_path):
    """batch-report.html: the models × modes grid, both charts, a hostile model name as text."""
    from convertctl.batch import page as batch_page
    from test_batch_unit import batch_outcomes

    outcomes, meta = batch_outcomes()
    batch_page.save(tmp_path, outcomes, meta)
    path = tmp_path / "batch-report.html"
    visit, dom = open_page(path)
    assert_renders(visit, dom, path, {"wall", "memory"})
    assert "<img src=x onerror=alert(1)>" in dom["text"] and "<script>alert(2)</script>" in dom["text"]
    assert "FAILED (exit 4): 2 of 3 model(s) passed" in dom["text"]
