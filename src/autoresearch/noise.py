"""The run-to-run noise of the primary metric: one definition, used by the decision and the analysis.

    spread(groups)            pooled standard deviation over groups of runs of the same code
    floor(spread, min_delta)  the smallest gain believed: max(min_delta, 2 x spread)
    Floor                     that number with where it came from, for reasons, status and report

The decision's groups are runs of the same commit: the baseline with its repeats
(`[metrics] noise_runs`, 2 by default) and every confirmed candidate with its confirmation run,
so the estimate sharpens as the night goes on. The analysis pools every configuration that ran
more than once (duplicates, seed-only changes) as well.

With two baselines a and b the spread is |a - b| / sqrt(2), so the floor is sqrt(2) x |a - b|.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence


class Spread(NamedTuple):
    std: float  # pooled standard deviation
    groups: int  # how many configurations ran more than once
    runs: int  # how many runs those groups hold


def spread(groups: Iterable[Sequence[float]]) -> Spread | None:
    """Pooled standard deviation over the groups with two or more runs, or None without any."""
    repeated = [list(g) for g in groups if len(g) >= 2]
    if not repeated:
        return None
    squares = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in repeated)
    dof = sum(len(g) - 1 for g in repeated)
    return Spread(math.sqrt(squares / dof), len(repeated), sum(len(g) for g in repeated))


def floor(measured: Spread | None, min_delta: float) -> float:
    """A gain must be larger than this to count: the configured minimum, or twice the spread."""
    return max(min_delta, 2 * measured.std) if measured is not None else min_delta


class Floor(NamedTuple):
    """The decision's noise floor and its source: measured, declared deterministic, or unknown."""

    value: float  # a gain must be larger than this
    measured: Spread | None
    min_delta: float = 0.0
    deterministic: bool = False  # `[metrics] deterministic = true`: the same code gives the same number

    @classmethod
    def of(cls, groups: Iterable[Sequence[float]], min_delta: float = 0.0, deterministic: bool = False) -> "Floor":
        measured = spread(groups)
        return cls(floor(measured, min_delta), measured, min_delta, deterministic)

    @property
    def known(self) -> bool:
        """Measured, or declared unnecessary (deterministic training)."""
        return self.measured is not None or self.deterministic

    def source(self) -> str:
        """Where the number comes from, in words: the tail of a reason, a line of status."""
        if self.measured is not None and self.value > self.min_delta:
            m = self.measured
            where = f"{m.runs} runs of the same code" if m.groups == 1 else f"{m.runs} runs of {m.groups} commits"
            return f"2 x the spread (std {m.std:.6f}) of {where}"
        if self.measured is not None or self.deterministic:
            why = (f"twice the measured spread, {2 * self.measured.std:.6f}, is no larger" if self.measured is not None
                   else "deterministic = true")
            return f"[metrics] min_delta ({why})"
        return "[metrics] min_delta; the spread is unknown (noise_runs = 1)"

    def shown(self) -> str:
        """The floor as status and the report print it next to a gain."""
        if not self.known:
            return f"noise floor unknown (min_delta {self.min_delta:g})" if self.min_delta else "noise floor unknown"
        return f"noise floor {self.value:.6f}" + (" (deterministic)" if self.measured is None else "")
