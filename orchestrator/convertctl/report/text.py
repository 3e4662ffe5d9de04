"""Strings from outside (model paths, file, tensor and layer names, stage
errors) shown to people: control characters made visible, then escaped for
where they go (HTML here; rich markup with rich's own escape)."""

from __future__ import annotations

import html
import re

# C0 and C1 controls and DEL, but not the newline and tab a message may hold.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: object, keep_newlines: bool = True) -> str:
    """'a\\x1b[2Jb' -> 'a\\\\x1b[2Jb': an ESC, a bell or a carriage return from a
    file name cannot move the cursor, clear the screen or hide text."""
    out = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return out if keep_newlines else out.replace("\n", "\\n").replace("\t", "\\t")


def esc(text: object) -> str:
    """For HTML text and attribute values (quotes escaped too)."""
    return html.escape(visible(text), quote=True)
