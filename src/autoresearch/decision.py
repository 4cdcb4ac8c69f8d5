"""Keep, discard or crash: the task's rules applied to one run's metrics.

Values are compared as written to results.tsv (6 decimals), so what a user reads in the
table is exactly what was decided on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from autoresearch.memory_cost import MemoryRule
from autoresearch.records import CrashReason, Status
from autoresearch.verdict import Reason, Verdict

DECIMALS = 6


@dataclass(frozen=True)
class Rules:
    primary: str
    direction: str  # "minimize" | "maximize"
    tie_breaks: tuple[tuple[str, str], ...] = ()  # (metric, direction)
    memory: MemoryRule | None = None  # memory as a soft constraint (memory_cost.py)

    @classmethod
    def from_metrics(cls, metrics) -> "Rules":
        ties = tuple((t.name, t.direction or metrics.direction) for t in metrics.tie_break)
        memory = None
        if metrics.memory_soft_limit_mb is not None:
            memory = MemoryRule(metrics.memory_key, metrics.memory_soft_limit_mb, metrics.memory_gain_per_gb)
        return cls(metrics.primary, metrics.direction, ties, memory)


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


def decide(candidate: Mapping, best: Mapping, rules: Rules, *, simpler: bool = False, floor: float = 0.0,
           floor_source: str = "") -> Decision:
    """Keep if the primary is strictly better; else if equal, the first differing tie-break
    decides; else if everything is equal, keep a change that simplifies the code.

    With a noise `floor`, "better" means better by more than the floor; a gain within it is
    noise and never a keep (`floor_source`, where the floor comes from, ends the reason). With a memory rule, a keep whose memory grows past the soft limit
    must also gain at least what that growth costs."""
    decision = _decide(candidate, best, rules, simpler=simpler, floor=floor, floor_source=floor_source)
    if rules.memory is None or decision.status is not Status.KEEP:
        return decision
    m = rules.memory
    need = m.required_gain(candidate.get(m.key), best.get(m.key))
    if need <= 0:
        return decision
    c, b = rounded(candidate.get(rules.primary)), rounded(best.get(rules.primary))
    gain = abs(c - b) if c is not None and b is not None and c != b else 0.0
    if gain >= need:
        return decision
    growth = m.growth_mb(candidate.get(m.key), best.get(m.key))
    return _decided(Status.DISCARD, Reason.MEMORY_COST,
                    f"{rules.primary} gain {gain:.6f} does not pay for {growth:.0f} MB of {m.key} above "
                    f"the soft limit {m.soft_limit_mb:g} MB (needs {need:.6f})")


def within_noise(primary: str, gain: float, floor: float, source: str = "") -> str:
    """The WITHIN_NOISE sentence: "val_acc gain 0.010000 is within the noise floor 0.014142: 2 x the spread ..."."""
    return f"{primary} gain {gain:.6f} is within the noise floor {floor:.6f}" + (f": {source}" if source else "")


def _decide(candidate: Mapping, best: Mapping, rules: Rules, *, simpler: bool, floor: float,
            floor_source: str = "") -> Decision:
    c = _compare(candidate.get(rules.primary), best.get(rules.primary), rules.direction)
    if c > 0 and floor > 0:
        gain = abs(rounded(candidate[rules.primary]) - rounded(best[rules.primary]))
        if gain <= floor:
            return _decided(Status.DISCARD, Reason.WITHIN_NOISE, within_noise(rules.primary, gain, floor, floor_source))
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
