"""The run-to-run noise of the primary metric: one definition, used by the decision and the analysis.

    spread(groups)            pooled standard deviation over groups of runs of the same code
    floor(spread, min_delta)  the smallest gain believed: max(min_delta, 2 x spread)

The decision's groups are the baseline and its repeats (`[metrics] noise_runs`); the analysis
pools every configuration that ran more than once (duplicates, seed-only changes) as well.
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
