"""Text from agents made safe for git, TSV and the terminal, and otherwise kept verbatim.

A NUL makes git refuse the commit message (and ends the night); an escape sequence recolours
or rewrites the user's terminal from results.tsv or `status`. Both go; everything else stays.
"""

from __future__ import annotations

import re

# ANSI/VT escape sequences (CSI ... final byte, OSC ... BEL/ST, two-byte ESC x), then any other
# C0/C1 control character. Tab and newline are whitespace, handled by the caller's layout.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_text(text: str) -> str:
    """`text` without escape sequences and control characters (tabs and newlines kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\r\n", "\n")))


def safe_line(text: str) -> str:
    """One line for a commit subject, a TSV cell, a terminal row: whitespace runs become one space."""
    return " ".join(safe_text(text).split())
