"""Parse the metrics footer: `key: value` lines after the last line that is exactly `---`.

A key printed twice after the separator keeps its last value (the latest line is what the run
ended with), and `parse_footer_report` names such keys so the loop can warn: a second
`val_bpb:` line is either a bug or a run trying to overwrite its own result. Output may be any
bytes; invalid UTF-8 is replaced, never fatal.
"""

from __future__ import annotations

from typing import NamedTuple

SEPARATOR = "---"


def _lines(text: str) -> list[str]:
    # A progress bar rewrites its line with `\r`; what the terminal would show is the last part.
    # A CRLF line end is not a rewrite, so strip it before taking the last part.
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]


def _value(raw: str) -> float | str:
    try:
        return float(raw)
    except ValueError:
        return raw  # non-numeric values (arch: cnn) are kept as text


class FooterReport(NamedTuple):
    metrics: dict[str, float | str]
    duplicates: tuple[str, ...]  # keys given more than once, in order of first appearance


def parse_footer(text: str | bytes) -> dict[str, float | str]:
    """The footer's metrics; numbers as floats (nan/inf kept, for the caller to judge).

    Returns {} when there is no `---` line. Keys may be padded with spaces. Lines after the
    separator that are not `key: value` are skipped; a later duplicate key wins.
    """
    return parse_footer_report(text).metrics


def parse_footer_report(text: str | bytes) -> FooterReport:
    """`parse_footer` plus the keys that the footer gives more than once."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    lines = _lines(text)
    last = None
    for i, line in enumerate(lines):
        if line.rstrip() == SEPARATOR:  # exactly `---`; only trailing whitespace is forgiven
            last = i
    if last is None:
        return FooterReport({}, ())
    metrics: dict[str, float | str] = {}
    duplicates: dict[str, None] = {}
    for line in lines[last + 1:]:
        key, sep, raw = line.partition(":")
        key = key.strip()
        if not sep or not key or " " in key:
            continue
        if key in metrics:
            duplicates[key] = None
        metrics[key] = _value(raw.strip())
    return FooterReport(metrics, tuple(duplicates))

