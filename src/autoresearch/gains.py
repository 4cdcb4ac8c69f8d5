"""Each judged experiment's gain over the best it was compared with, next to the noise floor that
was in force when it was judged: what `status`, the terminal and the report print beside a gain.

    gains(records, metrics)[7] -> Gain(iteration=7, value=0.012, floor=Floor(0.014142, ...))
    str(that)                  -> "+0.012000 (noise floor 0.014142)"

The floor in force for a record is the one computed from the records before it in the ledger
(integrity.decision_floor), so a row shows the bar it was actually held to, and a later
confirmation run that sharpened the estimate changes only the rows after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from autoresearch import integrity, noise
from autoresearch.decision import rounded
from autoresearch.ledger import Ledger, best_of
from autoresearch.records import Experiment, Status
from autoresearch.verdict import Reason


@dataclass(frozen=True)
class Gain:
    iteration: int
    value: float  # + is better in the metric's direction
    floor: noise.Floor

    @property
    def above(self) -> bool | None:
        """Above the floor (None where the floor is unknown)."""
        return self.value > self.floor.value if self.floor.known else None

    def __str__(self) -> str:
        return f"{self.value:+.6f} ({self.floor.shown()})"


def _shapes_floor(e: Experiment) -> bool:
    v = e.verdict
    return v.reason is Reason.BASELINE or v.noise_repeat or v.confirmation


def gains(records: Sequence[Experiment], metrics, ledger: Ledger | None = None) -> dict[int, Gain]:
    """Iteration -> its Gain, for every agent experiment judged on its primary (not crashes,
    duplicates, early stops, the baseline, its repeats or confirmation runs). With the `ledger`
    they are from, a record after an adopted config is held to the best re-judged then."""
    primary, sign = metrics.primary, 1 if metrics.direction == "maximize" else -1
    out: dict[int, Gain] = {}
    best: Experiment | None = None
    rejudged = dict(ledger.adoptions()) if ledger is not None and ledger.holds(records) else {}
    floor = integrity.decision_floor((), metrics)
    for i, e in enumerate(records):
        if i in rejudged:
            best = rejudged[i]
        v = e.verdict
        judged = not (_shapes_floor(e) or v.duplicate or v.stopped_early or v.crashed or v.imported)
        if judged and best is not None:
            c, b = rounded(e.metrics.get(primary)), rounded(best.metrics.get(primary))
            if c is not None and b is not None:
                out[e.iteration] = Gain(e.iteration, round(sign * (c - b), 6), floor)
        if e.status is Status.KEEP:
            best = e
        if _shapes_floor(e):  # only these change the floor (a confirmation brings its candidate in)
            floor = integrity.decision_floor(records[:i + 1], metrics)
    return out


def gain_of(records: Sequence[Experiment], metrics, iteration: int, ledger: Ledger | None = None) -> Gain | None:
    """One record's Gain (what `gains` gives it) without walking the floor through the whole ledger."""
    i = next((k for k in range(len(records) - 1, -1, -1) if records[k].iteration == iteration), None)
    if i is None:
        return None
    e, v = records[i], records[i].verdict
    if _shapes_floor(e) or v.duplicate or v.stopped_early or v.crashed or v.imported:
        return None
    best = best_of(records[:i], ledger)
    c = rounded(e.metrics.get(metrics.primary))
    b = rounded(best.metrics.get(metrics.primary)) if best is not None else None
    if c is None or b is None:
        return None
    sign = 1 if metrics.direction == "maximize" else -1
    return Gain(iteration, round(sign * (c - b), 6), integrity.decision_floor(records[:i], metrics))


def current_floor(records: Sequence[Experiment], metrics) -> noise.Floor:
    """The floor the next keep must clear."""
    return integrity.decision_floor(records, metrics)
