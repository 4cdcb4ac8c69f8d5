"""Learning curves of one run: `metrics.jsonl` records, or `epoch N ... loss X ... acc Y` log lines.

A curve is a list of points, each a dict of finite numbers (`epoch`, `train_loss`, `val_acc`, ...),
in the order the run wrote them. Plots, the report, the MLflow export and `consolidate` all read
curves through here, so a run that only prints epoch lines is understood everywhere.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

Curve = list[dict[str, float]]

# Reading a whole multi-GB log for a plot is not worth it; curves are at its start anyway
# for a run that logs per epoch, and a capped read still finds hundreds of epochs.
_MAX_READ_BYTES = 20 * 1024 * 1024
_EPOCH_LINE = re.compile(r"\bepoch\b\s*[:=#]?\s*(\d+)", re.IGNORECASE)
# `name value`, `name: value`, `name=value`; the name may hold '/', '.', '-' (`val/loss`).
_PAIR = re.compile(r"([A-Za-z_][\w./-]*)\s*[:=]?\s*(-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)(?![\w.])")
_STEP_KEYS = ("epoch", "step", "iteration", "iter")


def load_curve(run_dir: str | Path) -> Curve:
    """The learning curve a run left in `run_dir`: metrics.jsonl first, else its log.txt."""
    run_dir = Path(run_dir)
    jsonl = run_dir / "metrics.jsonl"
    if jsonl.is_file():
        curve = parse_jsonl(_read(jsonl))
        if curve:
            return curve
    log = run_dir / "log.txt"
    if log.is_file():
        return parse_log(_read(log))
    return []


def parse_jsonl(text: str) -> Curve:
    """One point per JSON object line; non-numeric fields and malformed lines are skipped."""
    points = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill mid-write: the rest of the curve is still good
        if isinstance(record, dict):
            point = numeric_fields(record)
            if point:
                points.append(point)
    return points


def parse_log(text: str) -> Curve:
    """Points from lines like `epoch 3 | loss 0.512 | train_acc 0.81 | val_acc 0.70`."""
    points = []
    for line in text.splitlines():
        match = _EPOCH_LINE.search(line)
        if not match:
            continue
        point = {"epoch": float(match.group(1))}
        rest = line[: match.start()] + " " + line[match.end():]
        for name, value in _PAIR.findall(rest):
            name = name.strip("./-").lower()
            if name and name not in point:
                number = float(value)
                if math.isfinite(number):
                    point[name] = number
        if len(point) > 1:
            points.append(point)
    return points


def x_key(curve: Curve) -> str | None:
    """The field that counts progress (epoch, step, ...), or None to use the point index."""
    for key in _STEP_KEYS:
        if curve and all(key in p for p in curve):
            return key
    return None


def series_names(curve: Curve) -> list[str]:
    """Plottable fields: everything but the progress counter and wall-clock bookkeeping."""
    skip = {x_key(curve), "seconds", "train_seconds", "elapsed", "time", "wall_seconds", "lr", "learning_rate"}
    names: dict[str, None] = {}
    for point in curve:
        for name in point:
            if name not in skip:
                names[name] = None
    return list(names)


def numeric_fields(record: dict, prefix: str = "") -> dict[str, float]:
    """Every finite number in a (nested) record, keyed `a.b.c`; booleans are not numbers here."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(numeric_fields(value, f"{name}."))
    return out


def _read(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.read(_MAX_READ_BYTES).decode("utf-8", errors="replace")
