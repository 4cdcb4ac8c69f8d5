"""Memory as a soft constraint (seed 004: "some increase is acceptable for meaningful accuracy
gains, but it should not blow up dramatically").

`[metrics] memory_soft_limit_mb` and `memory_gain_per_gb`: peak memory (`memory_key`) up to the
limit is free; every GB (1024 MB) a candidate grows beyond max(limit, the best's memory) must buy
`memory_gain_per_gb` of primary gain, or the keep becomes a discard that says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MB_PER_GB = 1024.0


@dataclass(frozen=True)
class MemoryRule:
    key: str  # the metric holding peak memory in MB (`[metrics] memory_key`)
    soft_limit_mb: float
    gain_per_gb: float

    def required_gain(self, candidate_mb, best_mb) -> float:
        """The primary gain the candidate's memory growth must buy (0.0: nothing to pay)."""
        if not _number(candidate_mb):
            return 0.0
        free_up_to = max(self.soft_limit_mb, best_mb if _number(best_mb) else 0.0)
        over = candidate_mb - free_up_to
        return over / MB_PER_GB * self.gain_per_gb if over > 0 else 0.0

    def growth_mb(self, candidate_mb, best_mb) -> float:
        """How many MB the candidate holds beyond what is free."""
        free_up_to = max(self.soft_limit_mb, best_mb if _number(best_mb) else 0.0)
        return max(0.0, candidate_mb - free_up_to) if _number(candidate_mb) else 0.0

    def describe(self) -> str:
        return (f"{self.key} above {self.soft_limit_mb:g} MB must buy {self.gain_per_gb:g} "
                f"of the primary per GB")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
