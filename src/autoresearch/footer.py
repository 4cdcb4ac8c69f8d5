"""Parse the metrics footer: `key: value` lines after the last line that is exactly `---`."""

from __future__ import annotations

import math

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


def parse_footer(text: str) -> dict[str, float | str]:
    """The footer's metrics; numbers as floats (nan/inf kept, for the caller to judge).

    Returns {} when there is no `---` line. Keys may be padded with spaces. Lines after the
    separator that are not `key: value` are skipped; a later duplicate key wins.
    """
    lines = _lines(text)
    last = None
    for i, line in enumerate(lines):
        if line.rstrip() == SEPARATOR:  # exactly `---`; only trailing whitespace is forgiven
            last = i
    if last is None:
        return {}
    metrics: dict[str, float | str] = {}
    for line in lines[last + 1:]:
        key, sep, raw = line.partition(":")
        key = key.strip()
        if not sep or not key or " " in key:
            continue
        metrics[key] = _value(raw.strip())
    return metrics


def is_finite_number(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)
