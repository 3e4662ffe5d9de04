"""The docs cannot drift from the code: the reference pages are what the
declarations render (python -m convertctl.cli.docs docs), and the README
stays a short front page linking them."""

from __future__ import annotations

from pathlib import Path

import pytest
from convertctl.cli import docs

ROOT = Path(__file__).resolve().parent.parent


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
