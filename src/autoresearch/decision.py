"""Keep, discard or crash: the task's rules applied to one run's metrics.

Values are compared as written to results.tsv (6 decimals), so what a user reads in the
table is exactly what was decided on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from autoresearch.records import CrashReason, Status
from autoresearch.verdict import Reason, Verdict

DECIMALS = 6


@dataclass(frozen=True)
class Rules:
    primary: str
    direction: str  # "minimize" | "maximize"
    tie_breaks: tuple[tuple[str, str], ...] = ()  # (metric, direction)

    @classmethod
    def from_metrics(cls, metrics) -> "Rules":
        ties = tuple((t.name, t.direction or metrics.direction) for t in metrics.tie_break)
        return cls(metrics.primary, metrics.direction, ties)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict

    @property
    def status(self) -> Status:
        return self.verdict.status

    @property
    def reason(self) -> str:
        return self.verdict.render()


def _decided(status: Status, reason: Reason, sentence: str) -> Decision:
    return Decision(Verdict(status, reason, sentence))


def rounded(value) -> float | None:
    """The value as results.tsv shows it, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), DECIMALS)


def _compare(a, b, direction: str) -> int:
    """+1 if a is better than b, -1 if worse, 0 if equal (missing values lose)."""
    ra, rb = rounded(a), rounded(b)
    if ra is None or rb is None:
        return 0 if ra is rb else (-1 if ra is None else 1)
    if ra == rb:
        return 0
    better = ra > rb if direction == "maximize" else ra < rb
    return 1 if better else -1


def check_primary(metrics: Mapping, primary: str) -> str | None:
    """The crash reason when the primary metric is unusable, else None."""
    if primary not in metrics:
        return CrashReason.NO_METRIC.value
    value = metrics[primary]
    if not isinstance(value, float):
        return CrashReason.NO_METRIC.value
    if not math.isfinite(value):
        return CrashReason.NAN.value
    return None


def decide(candidate: Mapping, best: Mapping, rules: Rules, *, simpler: bool = False, floor: float = 0.0) -> Decision:
    """Keep if the primary is strictly better; else if equal, the first differing tie-break
    decides; else if everything is equal, keep a change that simplifies the code.

    With a noise `floor`, "better" means better by more than the floor; a gain within it is
    noise and never a keep."""
    c = _compare(candidate.get(rules.primary), best.get(rules.primary), rules.direction)
    if c > 0 and floor > 0:
        gain = abs(rounded(candidate[rules.primary]) - rounded(best[rules.primary]))
        if gain <= floor:
            return _decided(Status.DISCARD, Reason.WITHIN_NOISE, f"{rules.primary} gain {gain:.6f} is within the noise floor {floor:.6f}")
    if c > 0:
        return _decided(Status.KEEP, Reason.IMPROVED, f"{rules.primary} improved")
    if c < 0:
        return _decided(Status.DISCARD, Reason.WORSE, f"{rules.primary} worse")
    for name, direction in rules.tie_breaks:
        c = _compare(candidate.get(name), best.get(name), direction)
        if c > 0:
            return _decided(Status.KEEP, Reason.TIE_BREAK_IMPROVED, f"{rules.primary} equal, tie-break {name} improved")
        if c < 0:
            return _decided(Status.DISCARD, Reason.TIE_BREAK_WORSE, f"{rules.primary} equal, tie-break {name} worse")
    if simpler:
        return _decided(Status.KEEP, Reason.SIMPLER, "all metrics equal and the code is simpler")
    return _decided(Status.DISCARD, Reason.NO_IMPROVEMENT, "no improvement")


def code_lines(text: str, suffix: str = ".py") -> int:
    """Non-blank, non-comment lines: the measure of simplicity."""
    comment = "#" if suffix in (".py", ".sh", ".toml", ".yaml", ".yml", "") else "//"
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith(comment))


def total_code_lines(directory: Path, files: Iterable[str]) -> int:
    total = 0
    for name in files:
        p = directory / name
        if p.is_file():
            total += code_lines(p.read_text(encoding="utf-8", errors="replace"), p.suffix)
    return total
