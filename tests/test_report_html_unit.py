"""report.html, the Model Explorer overlays and the terminal table, from
runs of the fake runtime: what the page holds, that it names nothing
outside itself, and that hostile names from model and file names, layer
names, errors and notices stay text everywhere."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import convertctl
from convertctl.config.catalog import load_catalog
from convertctl.report import html as report_html
from convertctl.report.model import Report, load_report
from convertctl.report.overlay import THRESHOLDS, node_data
from convertctl.report.render import print_report
from convertctl.report.summary import mode_files
from convertctl.run import selective
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file
from fakes import model as fake_model
from rich.console import Console

ALL = ["fp32", "dynamic", "int8", "fp16"]
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>[/][bold red]boom\x1b[2J\x07\r'
GAIN = {0: 1.0, 1: 0.6, 2: 0.3, 4: 0.0, 8: 0.0}


class Page(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list = []
        self.text: list = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def outside_references(text: str) -> list:
    """What in a page could make a browser fetch something: a script, a
    link, an image, a frame, any src/href, CSS url() or @import."""
    page = Page(text)
    found = [t for t, _ in page.tags if t in ("script", "link", "img", "iframe", "object", "embed", "video", "audio")]
    found += [f"{t} {k}" for t, a in page.tags for k in a if k in ("src", "href", "xlink:href", "action", "srcset")]
    found += re.findall(r"url\(|@import", text)
    return found


def four_mode_run(tmp_path: Path, model: Path | None = None, **kw) -> Report:
    """All four modes, int8 with --int8-float-layers auto on labelled data, latency timed."""
    model = model or torchscript_file(tmp_path / "net.pt")
    x = np.random.default_rng(3).standard_normal((96, 1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x, y=fake_model(x).reshape(96, -1).argmax(1))
    opts = options(
        model=model, shapes=[(1, 3, 8, 8)], modes=ALL, out=tmp_path / "out", eval_data=tmp_path / "eval.npz",
        max_drop={"int8": 1.0}, int8=selective.Int8Options(float_layers="auto"), latency_runs=3,
        tolerances={"int8": {"cosine": -1.0, "top1": 0.0}, "dynamic": {"cosine": -1.0, "top1": 0.0}}, **kw,
    )  # fmt: skip
    fake = FakeRuntime(noise={"int8": 0.2}, float_layer_gain=GAIN, latency={0: 1.0, 1: 1.2, 2: 1.3, 4: 1.5})
    fake.name = "local"
    return Pipeline(opts, fake, load_catalog(), lambda _: None).run()


def test_a_four_mode_run_writes_report_html_with_every_chart(tmp_path):
    report = four_mode_run(tmp_path)
    assert report.exit_code == 0, report.failure
    out = tmp_path / "out"
    text = (out / "report.html").read_text()
    assert text == report_html.render(load_report(out / "report.json")), "the page is the saved report, rendered"
    page = Page(text)
    charts = {a["data-chart"]: a for t, a in page.tags if t == "svg"}
    assert set(charts) == {"parity", "scatter", "curve", "layers"}
    cards = [a["data-mode"] for t, a in page.tags if t == "div" and "data-mode" in a]
    assert cards == ALL
    # Marks carry their numbers: one parity point per stage a mode went through.
    values = [a["data-v"] for t, a in page.tags if "data-v" in a]
    assert len(values) >= 4 * 3 + 4 + 8, values
    chosen = [a for t, a in page.tags if t == "circle" and "chosen" in a.get("class", "")]
    int8 = next(a for a in report.artifacts if a["mode"] == "int8")
    assert len(chosen) == 3, "the chosen point ringed on accuracy, size and latency"
    assert chosen[0]["data-v"] == f"{int8['selective']['chosen']['accuracy']:.3g}"
    assert outside_references(text) == []
    assert len(text.encode()) < 1_000_000
    # Same report, same bytes.
    assert report_html.render(load_report(out / "report.json")) == text


def test_the_summary_reads_the_files_as_the_report_describes_them(tmp_path):
    report = four_mode_run(tmp_path)
    files = mode_files(report)
    assert [f.mode for f in files] == ALL and all(f.passed for f in files)
    for f, art in zip(files, report.artifacts):
        assert Path(f.path) == tmp_path / "out" / f"net_{f.mode}.tflite"
        assert f.size_bytes == art["size_bytes"] and f.sha256 == art["sha256"]
        assert f.latency_ms == next(
            c["median_ms"] for c in art["latency"]["configs"] if c["xnnpack"] and c["threads"] == 1
        )
    int8 = files[2]
    assert int8.accuracy == report.accuracy["modes"]["int8"]["accuracy"] and int8.float_layers


def test_the_overlay_is_model_explorer_node_data_for_one_graph(tmp_path):
    report = four_mode_run(tmp_path)
    path = tmp_path / "out" / "net_int8.layer_errors.json"
    data = json.loads(path.read_text())
    # Model Explorer's GraphNodeData: a file whose `results` holds no `results` is one graph's data.
    assert set(data) == {"name", "results", "thresholds"} and "results" not in data["results"]
    int8 = next(a for a in report.artifacts if a["mode"] == "int8")
    assert data["results"] == {r["name"]: {"value": r["rmse_scale"]} for r in int8["layer_errors"]["layers"]}
    limits = [t["value"] for t in data["thresholds"]]
    assert limits == sorted(limits) and all(re.fullmatch(r"#[0-9a-f]{6}", t["bgColor"]) for t in data["thresholds"])
    assert max(v["value"] for v in data["results"].values()) <= limits[-1], "every value gets a colour"
    assert not list((tmp_path / "out").glob("*_fp16.layer_errors.json")), "only files with layer errors"
    assert node_data({"mode": "int8", "layer_errors": {"layers": [{"name": "a", "rmse_scale": float("nan")}]}}) is None
    assert len(THRESHOLDS) >= 3


def test_report_show_html_prints_the_page(tmp_path):
    four_mode_run(tmp_path)
    proc = convertctl("report", "show", "--html", tmp_path / "out" / "report.json")
    assert proc.returncode == 0 and proc.stdout == (tmp_path / "out" / "report.html").read_text()
    proc = convertctl("report", "show", "--html", "--markdown", tmp_path / "out" / "report.json")
    assert proc.returncode == 2 and "choose one" in proc.stderr


def hostile_report(tmp_path: Path) -> Report:
    """A real run whose model sits under hostile folder names, then every
    other outside string made hostile too."""
    folder = tmp_path / '"><img src=x onerror=alert(2)>' / "[" / "]" / "<script>alert(1)<" / "script>\x1b[2J"
    folder.mkdir(parents=True)
    model = torchscript_file(folder / "net[bold red].pt")
    report = four_mode_run(tmp_path, model=model)
    report.notices.append("notice " + HOSTILE)
    report.failure = "failure " + HOSTILE
    for art in report.artifacts:
        for layer in (art.get("layer_errors") or {}).get("layers", []):
            layer["name"] = "layer " + HOSTILE
        art["variant"] = "variant " + HOSTILE
        art["path"] = str(folder / ("file " + HOSTILE.replace("/", "|")))
    report.ladder.append({"stage": "convert", "variant": "v" + HOSTILE, "status": "failed", "error": HOSTILE})
    report.environments.append(
        {"variant": HOSTILE, "stage": "convert", "location": HOSTILE, "created": True, "seconds": 1.0}
    )
    report.manifest.setdefault("environments", {})[HOSTILE] = {"pip_freeze": [HOSTILE]}
    report.stages.append(
        {
            "stage": "convert",
            "variant": HOSTILE,
            "work": "convert/x",
            "status": "failed",
            "log_tail": [HOSTILE],
            "mode": None,
        }
    )
    return report


def test_hostile_strings_stay_text_in_the_page(tmp_path):
    report = hostile_report(tmp_path)
    text = report_html.render(report)
    page = Page(text)
    assert {t for t, _ in page.tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "div", "p", "code", "span", "dl", "dt",
        "dd", "table", "tr", "th", "td", "details", "summary", "pre", "svg", "g", "text", "rect", "line",
        "polyline", "circle",
    }  # fmt: skip
    assert outside_references(text) == []
    assert not any(k.startswith("on") for _, a in page.tags for k in a), "no event handler attribute"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), "no raw control character"
    shown = "".join(page.text)
    assert "<script>alert(1)</script>" in shown and "onerror=alert(2)>" in shown, "shown as text"
    assert "\\x1b[2J" in shown and "[/][bold red]boom" in shown
    fragment = Page(report_html.fragment(report))
    assert "<script>alert(1)</script>" in "".join(fragment.text)
    assert {t for t, _ in fragment.tags} <= {"div", "style", "h1", "h3", "code", "span", "p", "dl", "dt", "dd"}


def test_hostile_strings_stay_text_in_the_terminal(tmp_path):
    report = hostile_report(tmp_path)
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, force_terminal=True, color_system="truecolor")
    print_report(report, console)
    said = buffer.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", said)  # rich's own styles
    assert "\x1b[2J" not in said and "\x07" not in said, "no control character from a name reaches the terminal"
    assert "[/][bold red]boom" in plain, "markup from a notice is shown, not applied"
    assert "net[bold red].pt" in plain, "the model path in the title is shown as typed"
    assert "\\x1b[2J" in plain


@pytest.mark.parametrize("case", ["failed", "no-latency"])
def test_a_failed_or_untimed_run_renders_too(tmp_path, case):
    model = torchscript_file(tmp_path / "net.pt")
    opts = options(model=model, shapes=[(1, 3, 8, 8)], modes=["fp32", "fp16"], out=tmp_path / "out", latency_runs=0)
    fake = FakeRuntime(noise={"fp16": 0.5} if case == "failed" else {})
    fake.name = "local"
    report = Pipeline(opts, fake, load_catalog(), lambda _: None).run()
    text = report_html.render(report)
    charts = {a["data-chart"] for t, a in Page(text).tags if t == "svg"}
    assert "parity" in charts and "sizes" in charts, charts
    if case == "failed":
        assert report.status == "failed" and (Path(report.run_dir) / "report.html").is_file()
        assert '<div class="card failed" data-mode="fp16">' in text and "outside tolerance" in text
        assert not (tmp_path / "out" / "report.html").exists(), "a failed run leaves --out alone"
