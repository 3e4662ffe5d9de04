"""Text from outside (file and tensor names, a stage's log lines, a report's
strings) shown as text, never as markup: for the terminal (rich markup
escaped, control characters made visible so that no escape sequence moves
the cursor, recolours or rewrites a line), for Markdown (report.md, also
appended to $GITHUB_STEP_SUMMARY: code spans that cannot be broken out of,
HTML and Markdown punctuation escaped) and for HTML (report.html).

Nothing here imports rich's console: `rich.markup.escape` is the one rule
rich itself documents for putting text into markup."""

from __future__ import annotations

import html
import re
import unicodedata

from rich.markup import escape as _rich_escape

# C0 and C1 controls, DEL, and the format characters that reorder or hide text
# (bidi overrides and isolates, zero-width characters, line/paragraph separators).
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
# What Markdown (CommonMark and GitHub's extensions: tables, strikethrough,
# math) reads as syntax inside a line; < > & become HTML entities instead.
# An underscore between letters or digits never opens or closes emphasis
# (net_int8.tflite stays as written). Block markers (# - + = 1.) matter only
# at a line's start: md_text never starts a line with one unescaped.
_MD_PUNCT = re.compile(r"([\\`*\[\]|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_BLOCK_START = re.compile(r"^(\s*)([#+\-=])|^(\s*\d+)([.)])(?=\s|$)")


def _show(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object, keep_newlines: bool = False) -> str:
    """str(value) with every control or invisible formatting character
    written out (ESC as \\x1b, a newline as \\x0a unless keep_newlines: a
    message's own lines); a backslash that would make such a spelling
    ambiguous is left as it is (names rarely hold one)."""
    text = str(value)
    keep = "\n\t" if keep_newlines else ""
    text = _INVISIBLE.sub(lambda m: m.group() if m.group() in keep else _show(m.group()), text)
    # Unassigned or private-use code points render as anything a font likes.
    return "".join(_show(c) if unicodedata.category(c) in ("Co", "Cn", "Cs") else c for c in text)


def term(value: object) -> str:
    """For rich markup: visible, and no "[...]" taken as a style tag. A
    trailing backslash is spelt \\x5c: rich's escape doubles it (so that it
    cannot escape a tag that follows), which shows two where none follows."""
    shown = visible(value)
    if shown.endswith("\\"):
        shown = shown[:-1] + "\\x5c"
    return _rich_escape(shown)


def md_text(value: object) -> str:
    """For Markdown prose and table cells: visible, HTML escaped, every
    character Markdown reads as syntax backslash-escaped. Renders as the
    same characters, never as a link, image, heading, emphasis or HTML."""
    text = _MD_PUNCT.sub(r"\\\1", visible(value))
    text = _BLOCK_START.sub(lambda m: (m.group(1) or m.group(3) or "") + "\\" + (m.group(2) or m.group(4)), text)
    return html.escape(text, quote=False)


def md_code(value: object, table: bool = True) -> str:
    """A Markdown code span holding value as it is (made visible): fenced by
    a backtick run longer than any inside, so nothing closes it early; in a
    table a "|" is escaped (GitHub splits cells on it even in code spans)."""
    text = visible(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    if table:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def md_lines(lines: list, fence_for: str = "") -> list:
    """A fenced block of lines (a stage's log): made visible, fenced by a
    backtick run longer than any in the lines, so no line ends the block."""
    shown = [visible(line) for line in lines]
    longest = max((len(run) for line in shown for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + fence_for, *shown, fence]


def esc(value: object) -> str:
    """For HTML text and attribute values: visible (a message keeps its
    lines), then escaped, quotes too."""
    return html.escape(visible(value, keep_newlines=True), quote=True)
