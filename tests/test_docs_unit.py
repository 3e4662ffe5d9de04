"""The docs cannot drift from the code: the reference pages are what the
declarations render (python -m convertctl.cli.docs docs), the README stays
a short front page whose modes table and exit codes are the code's, and
every link, flag, environment variable and catalog variant a page names
exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from convertctl import errors
from convertctl.cli import docs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
# .ci/run reads the second line of the README's first code block as CI's test
# command; the first is the front page's promise. Neither may change by accident.
FIRST_BLOCK = [
    "python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && .venv/bin/convertctl example "
    "examples/mobilenetv2.pt && .venv/bin/convertctl run examples/mobilenetv2.pt --input-shape 1,3,256,256 "
    "--quant fp16 --out out",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest",
]
# Written in other branches at the same time as this one (batch and Ray, the
# Python API, report.html): linked already, allowed to be missing until their
# work lands. Once a page exists it is checked like any other.
PENDING = {ROOT / "docs" / "batch.md", ROOT / "docs" / "api.md", ROOT / "docs" / "report.md"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose(text: str) -> str:
    """The text outside fenced code blocks (whose lines are commands, YAML, output)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def cells(line: str) -> list[str]:
    """A Markdown table row's cells (an escaped \\| stays in its cell)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def table(text: str, header: str) -> list[list[str]]:
    """The rows of the table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


# -- the generated reference ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_a_reference_page_is_what_the_declarations_render(name):
    path = ROOT / "docs" / "reference" / name
    assert path.is_file(), f"{path} is missing: run `python -m convertctl.cli.docs docs`"
    assert path.read_text() == docs.PAGES[name](), f"{path} is stale: run `python -m convertctl.cli.docs docs`"


def test_every_option_and_mode_is_in_the_reference():
    from convertctl.config import modes
    from convertctl.config.options import SPECS

    options = (ROOT / "docs" / "reference" / "options.md").read_text()
    assert all(f"`{name}`" in options for name in SPECS if name != "model")
    table = (ROOT / "docs" / "reference" / "modes.md").read_text()
    assert all(f"| `{m}` |" in table for m in modes.NAMES)


# -- the README -----------------------------------------------------------------------
def test_the_readme_is_a_short_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/"


def test_the_readmes_first_code_block_is_unchanged():
    text = README.read_text()
    block = re.search(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    assert block is not None, "README.md has no ```bash block"
    assert block.group(1).splitlines() == FIRST_BLOCK
    assert text.index(block.group(0)) == text.index("```"), "it must stay the README's first code block"


def _number(cell: str) -> float | None:
    return None if cell in ("—", "-", "") else float(cell)


def test_the_readmes_modes_table_is_the_registry():
    from convertctl.config import modes

    rows = table(README.read_text(), "| mode | what | cosine ≥ | top-1 ≥ | atol + rtol")
    names = [r[0].strip("`") for r in rows]
    assert names == list(modes.NAMES), "one row per mode, in the registry's order"
    for name, _what, cosine, top1, bound, budget in rows:
        mode = modes.get(name.strip("`"))
        t = mode.tolerance
        assert _number(cosine) == t.cosine, (mode.name, "cosine", cosine)
        if t.top1 is None:
            assert _number(top1) is None, (mode.name, "top-1", top1)
        else:
            assert top1.endswith("%") and float(top1.rstrip(" %")) == pytest.approx(t.top1 * 100), (mode.name, top1)
        if t.atol is None:
            assert _number(bound) is None, (mode.name, "atol + rtol", bound)
        else:
            atol, rtol = (float(p) for p in bound.split("+"))
            assert (atol, rtol) == (t.atol, t.rtol), (mode.name, "atol + rtol", bound)
        assert float(budget) == mode.max_drop, (mode.name, "budget", budget)


def test_the_readmes_exit_codes_are_errors_py():
    from convertctl.cli.ui import EXIT_INTERRUPTED

    rows = {int(code): meaning.lower() for code, meaning in table(README.read_text(), "| code | meaning |")}
    declared = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    assert set(rows) == set(declared.values()) | {EXIT_INTERRUPTED}
    for name, code in declared.items():
        word = "passed" if name == "EXIT_OK" else name.removeprefix("EXIT_").lower()
        assert word in rows[code], f"exit code {code} ({name}) is described as {rows[code]!r}"
    assert "interrupted" in rows[EXIT_INTERRUPTED]


def said(path: Path, pattern: str) -> tuple:
    """The numbers a page states where `pattern` (a regex, any whitespace between words) matches."""
    text = " ".join(prose(path.read_text()).split())
    found = re.search(pattern, text)
    assert found, f"{rel(path)} no longer says {pattern!r}"
    return tuple(float(g) for g in found.groups())


def test_what_the_readme_and_the_guide_say_of_the_checks_is_the_code():
    """The sample count, the element bound's share and cap, the worst-sample cosine, the step
    and the runtime that judges the files, as the README and the guide state them."""
    from convertctl.checks import validate
    from convertctl.config.catalog import load_catalog
    from convertctl.config.options import Options
    from convertctl.config.runtimes import KINDS
    from convertctl.config.tolerance import Tolerance
    from convertctl.run import converts, inputsets

    guide = ROOT / "docs" / "guide.md"
    samples = Options(model="m.pt", out="o").samples
    assert said(README, r"on (\d+) seeded samples") == (samples,)
    assert said(guide, r"instead of the (\d+) seeded random ones") == (samples,)
    assert said(guide, r"run on (\d+) seeded samples by default, and on at least (\d+) with real data") == (
        samples,
        inputsets.MIN_REAL_SAMPLES,
    )
    assert said(guide, r"one sample: 100 / samples points, ([\d.]+) on (\d+)\)") == (round(100 / samples, 2), samples)
    tol = Tolerance()
    for page in (README, guide):
        share, cap = said(
            page, r"for ([\d.]+) % of the (?:elements|\S+ elements), (?:and )?(?:none|no element) beyond (\d+)×"
        )
        assert (share, cap) == (tol.quantile * 100, tol.cap), rel(page)
    # The cosine: each sample's, the worst judged, as the check computes and says it.
    assert validate.method(tol, samples)["cosine"].startswith("the worst sample's")
    assert "the cosine is each sample's, the worst one judged" in " ".join(README.read_text().split())
    assert "the worst sample's held to the mode's bound" in " ".join(guide.read_text().split())
    # LiteRT judges: the judge script runs in the measure environment the guide names, on every runtime.
    assert converts.JUDGE == "measure/judge.py"
    major, minor = said(guide, r"by LiteRT \(`ai-edge-litert` in the `measure-litert(\d+)\.(\d+)` environment")
    for kind in KINDS:
        measure = load_catalog().ladder(kind.name, "measure")[0]
        assert measure.name == f"measure-litert{major:g}.{minor:g}" and "ai-edge-litert" in measure.pins, kind.name


# -- every page ------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", prose(path.read_text()), flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_points_into_the_checkout(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if path in PENDING and not path.exists():
            continue
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor in {rel(path)}")
    assert not broken, f"{rel(page)}: " + "; ".join(broken)


def cli_flags() -> set[str]:
    """Every flag of every convertctl command, as the command line declares it."""
    import typer.main
    from convertctl.cli.app import app

    def walk(command) -> set[str]:
        found = {"--help"}
        for param in command.params:
            found |= {o for o in [*param.opts, *getattr(param, "secondary_opts", [])] if o.startswith("-")}
        for sub in getattr(command, "commands", {}).values():
            found |= walk(sub)
        return found

    return walk(typer.main.get_command(app))


def bench_flags() -> set[str]:
    return {
        f for p in (ROOT / "bench").glob("*.py") for f in re.findall(r"add_argument\(\s*\"(--[\w-]+)", p.read_text())
    }


# Flags of other tools the pages name: uv and pip (locks, installs), images/lock.py, and
# Model Explorer (`model-explorer FILE --node_data_paths=...`, the regex reads its `--node`).
OTHER_TOOLS = {
    "--head",  # `ray start` (docs/batch.md)
    "--port",
    "--num-cpus",
    "--include-dashboard",
    "--node",
    "--generate-hashes",
    "--require-hashes",
    "--no-deps",
    "--resolution",
    "--python",
    "--python-version",
    "--check",
}


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_flag_a_page_names_exists(page):
    known = cli_flags() | bench_flags() | OTHER_TOOLS
    text = re.sub(r"\]\([^)]*\)", "]", page.read_text())  # not link targets: an anchor is no flag
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*[a-z0-9])", text))
    assert not named - known, f"{rel(page)} names flags convertctl does not have: {sorted(named - known)}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_environment_variable_a_page_names_is_read_by_the_code(page):
    code = "".join(
        p.read_text(errors="replace")
        for folder in ("orchestrator", "images", "tests", ".ci", ".github")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and p.suffix in (".py", ".sh", ".yml", "")
    )
    named = set(re.findall(r"CONVERTCTL_[A-Z_]+", page.read_text()))
    assert not {v for v in named if v not in code}, f"{rel(page)}: {sorted(v for v in named if v not in code)}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_catalog_variant_a_page_names_exists(page):
    from convertctl.config.catalog import load_catalog

    variants = set(load_catalog().variants)
    stages = ("export", "convert", "quantize", "measure", "reference", "onnx2tf", "litert-torch")
    named = {
        name
        for name in re.findall(r"`([a-z0-9.-]+)`", page.read_text())
        if name.startswith(tuple(s + "-" for s in stages) + ("litert-torch0",)) and re.search(r"\d", name)
    }
    assert named <= variants, f"{rel(page)} names variants the catalog lacks: {sorted(named - variants)}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_repository_path_a_page_names_exists(page):
    tops = ("orchestrator/", "images/", "tests/", "bench/", ".github/", ".ci/", "docs/")
    named = {p for p in re.findall(r"`([\w./-]+)`", page.read_text()) if p.startswith(tops)}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{rel(page)} names paths the checkout lacks: {missing}"
