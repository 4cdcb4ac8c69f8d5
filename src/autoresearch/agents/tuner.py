"""The tuner: a hyperparameter agent that edits annotated UPPERCASE constants, no LLM involved.

Why not plain Optuna TPE: TPE changes every knob at once and spends its first ten trials
on random configurations, which is a poor use of a budget of ten to fifty expensive runs
that starts from code someone already tuned by hand. The policy here is a coordinate
search around the current best instead, the way a person tunes:

1. Every axis gets one move before any axis gets a second (file order), so the first
   iterations say which knobs matter. A categorical axis tries its untried choices first.
2. After that an axis is picked by its record: how often a move on it was kept and how
   much it gained, damped when its last move failed recently. Sometimes (two_axis_prob)
   a second axis moves along with it, for couplings such as learning rate and width.
3. A numeric move continues in the direction that last gained (momentum), else goes
   toward the side with more room, then the other side, then at half the step, and so on.
   Once an axis has enough points, Optuna's TPE restricted to that axis (the others fixed
   at the best) proposes the value instead, from the whole history.
4. A value that lost for good (by more than the best has gained since) is a wall too: no
   value past it, seen from the best, is proposed (one axis at a time the metric is taken
   to be unimodal). A crash is a wall: no value at or beyond a crashed one (seen from the best) is
   proposed on that axis again. A run that stopped at an assertion says that value is
   invalid, not too far: only that value is barred, and an integer axis whose invalid value
   was not a power of two while the best is one moves on powers of two from then on.
   No configuration already run is ever proposed again.

`TunerPolicy` is that policy without git or files (the bench reuses it); `TunerAgent`
wires it to the loop: it reads the constants, rebuilds the history from the ledger (and
from `git show` for experiments that did not record params), and rewrites the literals.
"""

from __future__ import annotations

import functools
import math
import os
import random
import subprocess
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from autoresearch.agents.base import Agent, Context
from autoresearch.constants import Constant, Space, find_constants, render, rewrite, round_value, searchable
from autoresearch import knob_sources
from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.records import Proposal, Status
from autoresearch.verdict import UNTRAINED, Reason

if TYPE_CHECKING:
    import optuna

RECENCY_DECAY = 0.6  # weight of an axis's move per later move on the same axis
RETRY_AFTER_KEEPS = 2  # a choice that lost is tried again only once the best has moved this often
# Crashes that say nothing about the configuration: nothing trained, or its node died (Ray).
UNTRAINED_CRASHES = UNTRAINED  # crashes where nothing was trained (Verdict.untrained); earlier import path
NO_SPACE_HINT = "annotate e.g. `LR = 3e-3  # search: log(1e-4, 1e-1)`"


@dataclass(frozen=True)
class Observation:
    """One earlier run as the policy sees it."""

    params: Mapping[str, Any]
    value: float | None  # the primary metric; None when the run crashed
    status: str  # "keep" | "discard" | "crash"
    parent_params: Mapping[str, Any] | None = None  # the best it was derived from, when known
    parent_value: float | None = None
    imported: bool = False  # a foreign run (`autoresearch import`): evidence for TPE, no move of an axis
    invalid: bool = False  # the run stopped at an assertion: the values it changed are invalid, not too far
    pruned: bool = False  # stopped early, hopelessly behind (early_stop.py): `value` is the partial metric


@dataclass(frozen=True)
class Suggestion:
    params: dict[str, Any]
    changed: tuple[str, ...]
    reasons: tuple[str, ...]  # one clause per changed axis, for the explanation


@dataclass
class _AxisRecord:
    outcomes: list = field(default_factory=list)  # (kept, gain) per move on the axis, oldest first
    last_move: int = -1  # index in history
    last_kept_direction: int = 0  # +1 / -1 in unit coordinates; 0 when the last move was not kept
    last_kept_step: float = 0.0
    values_tried: list = field(default_factory=list)
    last_tried_at: dict = field(default_factory=dict)  # value -> history index of its last run
    crash_values: list = field(default_factory=list)
    invalid_values: list = field(default_factory=list)  # values an assertion refused
    # value -> (by how much it lost, the winner's value then): its last duel alone on the axis
    lost_by: dict = field(default_factory=dict)

    @property
    def moves(self) -> int:
        return len(self.outcomes)

    @property
    def last_failed(self) -> bool:
        return bool(self.outcomes) and not self.outcomes[-1][0]


class TunerPolicy:
    """Coordinate search around the best, with TPE per axis once an axis has data."""

    def __init__(
        self,
        spaces: Mapping[str, Space],
        direction: str = "maximize",
        seed: int = 0,
        *,
        first_step: float = 0.25,
        two_axis_prob: float = 0.2,
        tpe_min_points: int = 4,
        tpe_prob: float = 0.5,
        excluded: Mapping[str, Sequence[Any]] | None = None,
        adopt_imported: bool = True,
    ):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', not {direction!r}")
        self.spaces = dict(spaces)
        self.axes = list(self.spaces)
        self.direction = direction
        self.seed = seed
        self.first_step = first_step  # fraction of the axis range (log range for log axes)
        self.two_axis_prob = two_axis_prob
        self.tpe_min_points = tpe_min_points
        self.tpe_prob = tpe_prob
        # Values the analysis eliminated (analysis/eliminate.py): never proposed while flagged.
        self.adopt_imported = adopt_imported  # run an imported configuration that beat the best first
        self._best_value: float | None = None  # the best's primary, set by each `suggest`
        self.excluded = {a: {_hashable(v) for v in vs} for a, vs in (excluded or {}).items()}

    # -- public -------------------------------------------------------------------------

    def suggest(
        self, best_params: Mapping[str, Any], history: Sequence[Observation], iteration: int | None = None,
        pending: Sequence[Mapping[str, Any]] = (), best_value: float | None = None,
    ) -> Suggestion:
        """The next configuration: `best_params` with one (sometimes two) axes moved.

        `pending` are configurations other workers are running now: proposed as if tried.
        `best_value`: the best's primary (the loop's best, which an adopted config may have
        re-judged); None: that of the last keep in `history`."""
        iteration = len(history) if iteration is None else iteration
        rng = random.Random(f"tuner:{self.seed}:{iteration}")
        best = {a: best_params[a] for a in self.axes}
        tried = {self._key(o.params) for o in history} | {self._key(best)}
        tried |= {self._key({**best, **{a: p[a] for a in self.axes if a in p}}) for p in pending}
        records = self._axis_records(history)

        # The bar an imported run must beat and a lost value's deficit is held to.
        self._best_value = best_value if best_value is not None else next(
            (o.value for o in reversed(history) if o.status == Status.KEEP.value and not o.imported and o.value is not None),
            None)
        adopted = self._adopt_imported(best, history, pending) if self.adopt_imported else None
        if adopted is not None:
            return adopted
        for axis in self.axes:  # the best sits on an eliminated value: move off it first
            if self._is_excluded(axis, best[axis]):
                move = self._move(axis, best, records[axis], history, tried, rng, iteration, fresh_axis=True)
                if move is not None:
                    why = f"{axis} = {_shown(best[axis])} is eliminated by the analysis, so it moves first"
                    return self._suggestion(best, [(*move, why)])

        untried = [a for a in self.axes if records[a].moves == 0]
        for axis in untried:
            move = self._move(axis, best, records[axis], history, tried, rng, iteration, fresh_axis=True)
            if move is not None:
                why = f"{axis} had not been changed yet (every knob gets one move first, in file order)"
                return self._suggestion(best, [(*move, why)])

        ranked = self._rank_axes(records, history, rng)
        for i, axis in enumerate(ranked):
            move = self._move(axis, best, records[axis], history, tried, rng, iteration)
            if move is None:
                continue
            moves = [(*move, self._record_text(axis, records[axis]))]
            if rng.random() < self.two_axis_prob:
                for other in ranked[i + 1 :]:
                    candidate = {**best, axis: move[1]}
                    second = self._move(other, candidate, records[other], history, tried, rng, iteration)
                    if second is not None:
                        record_text = self._record_text(other, records[other])
                        why = f"{other} moves along with it, to catch an interaction ({record_text})"
                        moves.append((*second, why))
                        break
            return self._suggestion(best, moves)
        return self._random_fresh(best, tried, rng)

    def _adopt_imported(self, best, history, pending) -> Suggestion | None:
        """An imported run that beat the current best: its configuration, run here, comes first.

        An imported run cannot be kept (there is no commit of it), so its configuration has to
        be run in this branch before the branch can advance to it."""
        best_value = self._best_value
        if best_value is None:
            return None
        native = {self._key(o.params) for o in history if not o.imported} | {self._key(best)}
        native |= {self._key({**best, **{a: p[a] for a in self.axes if a in p}}) for p in pending}
        better = sorted((o for o in history if o.imported and o.value is not None and self.is_better(o.value, best_value)),
                        key=lambda o: o.value, reverse=self.direction == "maximize")
        for obs in better:
            candidate = {**best, **{a: self._snap(a, obs.params[a]) if self.spaces[a].kind != "choice" else obs.params[a]
                                    for a in self.axes if a in obs.params}}
            if self._key(candidate) in native or any(self._is_excluded(a, candidate[a]) for a in self.axes):
                continue
            moves = [(a, candidate[a], f"the imported run with {obs.value:.4g} used it",
                      f"an imported run beat the best ({obs.value:.4g} against {best_value:.4g})")
                     for a in self.axes if candidate[a] != best[a]]
            if moves:
                return self._suggestion(best, moves)
        return None

    def _record_text(self, axis: str, record: _AxisRecord) -> str:
        kept = sum(1 for k, _ in record.outcomes if k)
        gain = sum(g for _, g in record.outcomes)
        text = f"{axis} was picked for its record: {kept} of {record.moves} moves kept"
        if gain > 0:
            text += f", gaining {gain:.3g} in all"
        if record.last_failed:
            text += ", the last one not"
        return text

    def is_better(self, value: float, than: float) -> bool:
        return value > than if self.direction == "maximize" else value < than

    # -- axis bookkeeping ---------------------------------------------------------------

    def _axis_records(self, history: Sequence[Observation]) -> dict[str, _AxisRecord]:
        records = {a: _AxisRecord() for a in self.axes}
        own = [o for o in history if not o.imported]
        base = own[0].params if own else None
        for index, obs in enumerate(history):
            if obs.imported:
                continue  # no parent in this branch: it moved no axis from a best
            parent = obs.parent_params if obs.parent_params is not None else base
            if parent is None or obs is own[0] and obs.parent_params is None:
                continue  # the baseline moved nothing
            changed = [a for a in self.axes if a in obs.params and obs.params[a] != parent.get(a)]
            gain = None
            if obs.value is not None and obs.parent_value is not None:
                gain = obs.value - obs.parent_value if self.direction == "maximize" else obs.parent_value - obs.value
            kept = obs.status == Status.KEEP.value
            for axis in changed:
                rec = records[axis]
                rec.outcomes.append((kept, max(gain or 0.0, 0.0) / len(changed) if kept else 0.0))
                rec.last_move = index
                rec.values_tried.append(obs.params[axis])
                rec.last_tried_at[_hashable(obs.params[axis])] = index
                rec.last_tried_at[_hashable(parent.get(axis))] = index  # the loser of a kept move lost here
                rec.last_kept_direction = 0
                if kept:
                    space = self.spaces[axis]
                    if space.is_numeric and _is_number(parent.get(axis)) and _is_number(obs.params[axis]):
                        delta = self._unit(axis, obs.params[axis]) - self._unit(axis, parent[axis])
                        rec.last_kept_direction = 1 if delta > 0 else -1
                        rec.last_kept_step = abs(delta)
                # The loser, by how much, to which value. Not a run stopped early: its partial value
                # says it could not win, not by how much it lost (at a fifth of the budget it sits
                # far below what it would have ended at, so a near miss read as a rout).
                if len(changed) == 1 and gain is not None and not obs.pruned:
                    loser = parent.get(axis) if kept else obs.params[axis]
                    rec.lost_by[_hashable(loser)] = (abs(gain), obs.value if kept else obs.parent_value)
                if obs.status == Status.CRASH.value and len(changed) == 1:
                    if obs.invalid:
                        rec.invalid_values.append(obs.params[axis])
                    else:
                        rec.crash_values.append((parent.get(axis), obs.params[axis]))
        return records

    def _rank_axes(self, records: dict[str, _AxisRecord], history: Sequence[Observation],
                   rng: random.Random) -> list[str]:
        values = [o.value for o in history if o.value is not None]
        spread = (max(values) - min(values)) if len(values) > 1 else 0.0
        now = len(history)

        def score(axis: str) -> float:
            rec = records[axis]
            # Recent moves count most: an axis that gained early and failed since has had its turn.
            weights = [RECENCY_DECAY ** (rec.moves - 1 - j) for j in range(rec.moves)]
            kept = sum(w for w, (k, _) in zip(weights, rec.outcomes) if k)
            success = (kept + 1) / (sum(weights) + 2)  # Beta(1, 1) posterior mean
            gain = sum(w * g for w, (_, g) in zip(weights, rec.outcomes))
            s = success + (gain / spread if spread > 0 else 0.0)
            if rec.last_failed and now - rec.last_move <= len(self.axes):
                s *= 0.5  # just failed: give the other axes a turn before coming back
            return s

        # Sample without replacement in proportion to score^2: mostly the promising axes,
        # but never starve one (its score is at least a fraction of the best).
        remaining = {a: score(a) ** 2 for a in self.axes}
        ranked = []
        while remaining:
            axes, weights = zip(*remaining.items())
            pick = rng.choices(axes, weights=weights)[0]
            ranked.append(pick)
            del remaining[pick]
        return ranked

    # -- moves --------------------------------------------------------------------------

    def _move(self, axis, best, record, history, tried, rng, iteration, fresh_axis=False):
        """(axis, new value, reason) for a fresh configuration, or None if the axis is exhausted."""
        space = self.spaces[axis]
        current = best[axis]

        def fresh(value) -> bool:
            return (value != current and self._key({**best, axis: value}) not in tried
                    and not self._is_excluded(axis, value)
                    and _hashable(value) not in {_hashable(v) for v in record.invalid_values})

        if space.kind == "choice":
            seen = set(_hashable(v) for o in history for v in [o.params.get(axis)])
            for choice in space.choices:
                if _hashable(choice) not in seen and fresh(choice):
                    return axis, choice, f"{choice!r} is one of its choices not tried yet"
        elif not fresh_axis and len({_hashable(o.params.get(axis)) for o in history}) >= self.tpe_min_points:
            if rng.random() < self.tpe_prob:
                value = self._tpe_value(axis, best, history, iteration)
                if value is not None and fresh(value) and not self._beyond_crash(axis, current, value, record) \
                        and not self._beyond_loser(axis, current, value, record, history):
                    n = sum(1 for o in history if o.value is not None)
                    return axis, value, (f"TPE restricted to {axis} (the other knobs fixed at the best) "
                                         f"proposes it from {n} finished runs")

        if space.kind == "choice":
            # A choice that lost is worth another run only in a changed context.
            keep_indices = [i for i, o in enumerate(history) if o.status == Status.KEEP.value]

            def stale(choice) -> bool:
                at = record.last_tried_at.get(_hashable(choice))
                if at is not None and sum(1 for i in keep_indices if i > at) < RETRY_AFTER_KEEPS:
                    return True
                return self._lost_for_good(record, choice, history)

            value = self._tpe_value(axis, best, history, iteration)
            if value is not None and fresh(value) and not stale(value):
                return axis, value, "all its choices were tried; TPE over the history prefers this one"
            for choice in space.choices:
                if fresh(choice) and not stale(choice):
                    return axis, choice, f"{choice!r} lost before, but the best has changed since"
            return None

        for value, reason in self._local_candidates(axis, current, record, rng):
            if self._beyond_crash(axis, current, value, record) or self._beyond_loser(axis, current, value, record,
                                                                                        history):
                continue
            # Values this axis already had (in another context) come last: new information first.
            if fresh(value) and value not in record.values_tried:
                return axis, value, reason
        for value, reason in self._local_candidates(axis, current, record, rng):
            if fresh(value) and not self._beyond_crash(axis, current, value, record) \
                    and not self._lost_for_good(record, value, history) \
                    and not self._beyond_loser(axis, current, value, record, history):
                return axis, value, reason
        return None

    def _lost_for_good(self, record: _AxisRecord, value, history: Sequence[Observation]) -> bool:
        """The value lost its last duel on this axis by more than the best has gained since: a
        changed context is unlikely to turn that around (on the example, mlp, beaten by cnn by
        0.2-0.4, came back twice in 20 runs; DEPTH 3, 0.3 behind, once)."""
        lost = record.lost_by.get(_hashable(value))
        best_value = self._best_value
        if lost is None or best_value is None:
            return False
        margin, winner_value = lost
        gained = best_value - winner_value if self.direction == "maximize" else winner_value - best_value
        return gained < margin

    def _beyond_loser(self, axis, current, value, record: _AxisRecord, history: Sequence[Observation]) -> bool:
        """`value` lies past a value that lost for good, seen from the best: one axis at a time the
        metric is taken to be unimodal, so farther out on a losing side is worse still (TPE on one
        axis proposed LR 1.5e-4 when 1e-3 and 4e-3 had both lost to 1.7e-2: 0.26 and 0.70 against 0.98)."""
        if not _is_number(value) or not _is_number(current):
            return False
        for loser in record.lost_by:
            kind, loser_value = loser
            if kind != "num" or not self._lost_for_good(record, loser_value, history):
                continue
            if loser_value > current and value > loser_value or loser_value < current and value < loser_value:
                return True
        return False

    def _local_candidates(self, axis, current, record, rng):
        """Values near `current` in preference order: momentum, then outward, then finer."""
        u = self._unit(axis, current)
        roomier = record.last_kept_direction == 0 and abs((1 - u) - u) > 1e-9
        if record.last_kept_direction:
            first_direction = record.last_kept_direction
        elif roomier:
            first_direction = 1 if (1 - u) > u else -1  # the annotated range hints where to look
        else:
            first_direction = rng.choice((1, -1))
        steps = [self.first_step / 2**k for k in range(6)]
        if record.last_kept_direction and record.last_kept_step > 0:
            yield self._from_unit(axis, u + first_direction * record.last_kept_step), (
                "its last kept move went this way, so it goes on by the same step"
            )
        for step in steps:
            for direction in (first_direction, -first_direction):
                value = self._from_unit(axis, u + direction * step)
                side = "up" if direction > 0 else "down"
                scale = "log range" if self.spaces[axis].is_log else "range"
                reason = f"a step {side} by {step:.2g} of its {scale}"
                if step == self.first_step and direction == first_direction and roomier:
                    reason += ", toward the side with more room"
                yield value, reason

    def _beyond_crash(self, axis, current, value, record) -> bool:
        for _, crashed in record.crash_values:
            if not _is_number(crashed):
                continue
            if crashed > current and value >= crashed or crashed < current and value <= crashed:
                return True
        return False

    def _tpe_value(self, axis: str, best: Mapping[str, Any], history: Sequence[Observation], iteration: int):
        optuna = _optuna()
        distributions = self.distributions(best, history)
        fixed = {a: v for a, v in best.items() if a != axis}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.PartialFixedSampler(
                fixed_params=fixed,
                base_sampler=optuna.samplers.TPESampler(seed=self.seed * 7919 + iteration, n_startup_trials=3),
            )
        study = optuna.create_study(direction=self.direction, sampler=sampler)
        for obs in history:
            # A value the space cannot hold (an older file's type, say) is left out, not fatal.
            params = {a: v for a, v in obs.params.items() if a in distributions and _fits(distributions[a], v)}
            dists = {a: distributions[a] for a in params}
            if obs.value is None or not math.isfinite(obs.value):
                trial = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params,
                                                  distributions=dists)
            elif obs.pruned:  # as Optuna's own pruned trials: ranked by the value it had when stopped
                trial = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params=params,
                                                  distributions=dists, intermediate_values={0: obs.value})
            else:
                trial = optuna.trial.create_trial(value=obs.value, params=params, distributions=dists)
            study.add_trial(trial)
        trial = study.ask()
        return self._snap(axis, _suggest(trial, axis, distributions[axis]))

    def distributions(self, best, history=()) -> dict[str, optuna.distributions.BaseDistribution]:
        """The annotated spaces, widened to hold every value seen (the baseline may sit outside)."""
        optuna = _optuna()
        distributions = {}
        for axis, space in self.spaces.items():
            seen = [best[axis]] + [o.params[axis] for o in history if axis in o.params]
            if space.kind == "choice":
                choices = list(space.choices)
                for v in seen:
                    if _hashable(v) not in {_hashable(c) for c in choices}:
                        choices.append(v)
                distributions[axis] = optuna.distributions.CategoricalDistribution(choices)
                continue
            low, high = self._bounds(axis, seen)
            if space.is_int:
                distributions[axis] = optuna.distributions.IntDistribution(int(low), int(high), log=space.is_log)
            else:
                distributions[axis] = optuna.distributions.FloatDistribution(float(low), float(high), log=space.is_log)
        return distributions

    def _random_fresh(self, best, tried, rng) -> Suggestion:
        """Every local move is spent: a uniformly random configuration nobody ran."""
        for _ in range(1000):
            params = {a: self._random_value(a, rng) for a in self.axes}
            if self._key(params) not in tried and not any(self._is_excluded(a, params[a]) for a in self.axes):
                changed = [a for a in self.axes if params[a] != best[a]]
                moves = [(a, params[a], "drawn at random", "every local move was already run") for a in changed]
                return self._suggestion(best, moves)
        raise AutoresearchError("the tuner has run every configuration it can reach; widen the search spaces")

    def _is_excluded(self, axis: str, value) -> bool:
        return _hashable(value) in self.excluded.get(axis, ())

    def _random_value(self, axis: str, rng: random.Random):
        space = self.spaces[axis]
        if space.kind == "choice":
            return rng.choice(space.choices)
        return self._from_unit(axis, rng.random())

    # -- coordinates --------------------------------------------------------------------

    def _bounds(self, axis: str, extra: Sequence[Any] = ()) -> tuple[float, float]:
        space = self.spaces[axis]
        numbers = [v for v in extra if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if space.is_log:
            numbers = [v for v in numbers if v > 0]
        return min([space.low, *numbers]), max([space.high, *numbers])

    def _unit(self, axis: str, value) -> float:
        space = self.spaces[axis]
        low, high = space.low, space.high
        if space.is_log:
            value = max(value, low * 1e-12) if value <= 0 else value
            return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        return (value - low) / (high - low)

    def _from_unit(self, axis: str, u: float):
        space = self.spaces[axis]
        u = min(max(u, 0.0), 1.0)
        low, high = space.low, space.high
        if space.is_log:
            value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            value = low + u * (high - low)
        return self._snap(axis, value)

    def _snap(self, axis: str, value):
        """As it will be written to the file: ints rounded, floats to 3 significant digits."""
        space = self.spaces[axis]
        if space.kind == "choice":
            return value
        if space.is_int:
            return space.snap(value)  # ints rounded; a pow2 axis to the nearest power of two
        return round_value(float(value))

    def _key(self, params: Mapping[str, Any]) -> tuple:
        return tuple(_hashable(params.get(a)) for a in self.axes)

    def _suggestion(self, best, moves) -> Suggestion:
        """`moves` are (axis, value, why this value, why this axis)."""
        params = dict(best)
        for axis, value, _, _ in moves:
            params[axis] = value
        reasons = tuple(f"{why_axis}; {why_value}" for _, _, why_value, why_axis in moves)
        return Suggestion(params, tuple(m[0] for m in moves), reasons)


@functools.cache
def _optuna():
    """Optuna, imported the first time TPE proposes or a space is built: a quarter of a second
    (numpy, sqlite, its samplers) that a night whose axes never reach TPE does not pay."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _suggest(trial: optuna.Trial, name: str, distribution):
    optuna = _optuna()
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def _fits(distribution, value) -> bool:
    optuna = _optuna()
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return _hashable(value) in {_hashable(c) for c in distribution.choices}
    if not _is_number(value) or isinstance(distribution, optuna.distributions.IntDistribution) and value != int(value):
        return False
    return distribution.low <= value <= distribution.high


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _primary_of(exp, primary: str) -> float | None:
    value = exp.metrics.get(primary) if exp is not None else None
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _hashable(value):
    # 1 == 1.0 == True in Python; the type keeps `True` and `1` apart as choices.
    kind = "bool" if isinstance(value, bool) else "num" if isinstance(value, (int, float)) else "other"
    return kind, value


class TunerAgent(Agent):
    """The loop's offline agent: `TunerPolicy` applied to the constants of the editable files."""

    name = "tuner"
    repairs = False  # it only moves constants: a crashed change cannot be repaired, only avoided
    OPTIONS = ("first_step", "two_axis_prob", "tpe_min_points", "tpe_prob")

    def __init__(self, seed: int = 0, *, task=None, **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ConfigError("tuner", unknown[0], f"unknown tuner option; known: {', '.join(self.OPTIONS)}")
        self.seed = seed
        self.task = task  # known from the registry: `check` reads its editable files before the baseline
        self.options = options
        self._params_by_commit: dict[str, dict[str, Any] | None] = {}

    # What every tuner of this process proposed, per repository: workers are threads, each with
    # its own tuner, and without this their first moves are the same and all but one are skipped
    # as duplicates of a run in flight.
    _proposed: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    _proposed_lock = threading.Lock()

    def _others_proposals(self, task_dir: Path) -> tuple[str, list[dict[str, Any]]]:
        out = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=task_dir, capture_output=True, text=True)
        key = os.path.realpath(os.path.join(task_dir, out.stdout.strip())) if out.returncode == 0 else str(task_dir)
        with self._proposed_lock:
            return key, [p for owner, p in self._proposed.get(key, []) if owner != id(self)]

    @classmethod
    def from_task(cls, task, seed: int = 0) -> "TunerAgent":
        """The registry's constructor: the tuner needs nothing from the task but the seed."""
        return cls(seed=seed, task=task)

    def check(self, sandbox=None) -> None:
        """A task with nothing to tune fails now, not after the baseline has trained."""
        if self.task is None:
            return
        files = [f for f in self.task.editable if knob_sources.has_knobs(f)]
        if not self._constants(self.task.dir, files):  # a broken annotation raises its own ConfigError
            raise AutoresearchError(_nothing_to_tune(files))

    def propose(self, context: Context) -> Proposal:
        files = [f for f in context.editable if knob_sources.has_knobs(f)]
        try:
            located = self._constants(context.task_dir, files)
        except ConfigError as e:
            return Proposal("tuner failed", "", ok=False, error=str(e))
        if not located:
            return Proposal("tuner found nothing to tune", "", ok=False, error=_nothing_to_tune(files))
        spaces = {key: const.space for key, (_, const) in located.items()}
        best = {key: const.value for key, (_, const) in located.items()}
        history = self._observations(context, located)
        eliminated = self._eliminated(context, spaces, best)
        excluded: dict[str, list] = {}
        for e in eliminated:
            excluded.setdefault(e.knob, []).append(e.value)
        spaces, learned = learn_from_invalid(spaces, best, history)
        policy = TunerPolicy(spaces, context.direction, seed=self.seed + context.seed, excluded=excluded, **self.options)
        repo, pending = self._others_proposals(context.task_dir)
        # What this iteration proposed already and the loop handed back as a repeat of earlier code.
        pending += [r.data["params"] for r in context.repeats if isinstance(r.data.get("params"), dict)]
        try:
            suggestion = policy.suggest(best, history, context.iteration, pending=pending,
                                        best_value=_primary_of(context.best, context.primary))
        except AutoresearchError as e:
            return Proposal("tuner exhausted", "", ok=False, error=str(e))
        with self._proposed_lock:
            self._proposed.setdefault(repo, []).append((id(self), dict(suggestion.params)))

        by_file: dict[str, dict[str, Any]] = {}
        for key in suggestion.changed:
            path, const = located[key]
            by_file.setdefault(path, {})[const.name] = suggestion.params[key]
        for path, values in by_file.items():
            file = context.task_dir / path
            file.write_text(knob_sources.rewrite(file.read_text(), values, path))

        changes = [f"{key} {_shown(best[key])} -> {_shown(suggestion.params[key])}" for key in suggestion.changed]
        explanation = self._explain(context, suggestion, history, best)
        learned = [note for axis, note in learned.items() if axis in suggestion.changed]
        return Proposal(
            description=", ".join(changes),
            explanation=" ".join([explanation, *learned]) + "".join(
                f" {e.knob} = {_shown(e.value)} is not proposed: {'; '.join(e.evidence)}." for e in eliminated),
            data={"params": suggestion.params, "changed": list(suggestion.changed),
                  **({"eliminated": [e.to_json() for e in eliminated]} if eliminated else {})},
        )

    # -- reading constants ----------------------------------------------------------------

    def _constants(self, task_dir: Path, files: Sequence[str]) -> dict[str, tuple[str, Constant]]:
        """Searchable constants keyed NAME, or `file.py:NAME` where a name is in several files."""
        return _keyed(knob_sources.per_file(task_dir, files))

    def _observations(self, context: Context, located) -> list[Observation]:
        params_by_commit: dict[str, dict[str, Any]] = {}
        value_by_commit: dict[str, float] = {}
        best_iteration = context.best.iteration if context.best is not None else None
        rows = []
        for exp in context.history:
            if exp.verdict.crashed and exp.verdict.untrained:
                continue  # no wall, no failure for TPE: the configuration may be run again
            params = exp.agent_data.get("params") if isinstance(exp.agent_data, dict) else None
            if not isinstance(params, dict):
                params = self._params_at_commit(context.task_dir, exp.commit, located)
            if params is None:
                continue
            params = {k: v for k, v in params.items() if k in located}
            value = _primary_of(exp, context.primary) if exp.status != Status.CRASH else None
            status = exp.status.value if value is not None else Status.CRASH.value
            # The loop's best is a parent too: after an adopted config it may be a run once discarded.
            if (exp.status == Status.KEEP or exp.iteration == best_iteration) and exp.commit:
                params_by_commit[exp.commit] = params
                if value is not None:
                    value_by_commit[exp.commit] = value
            rows.append((exp, params, value, status))
        return [
            Observation(params, value, status, params_by_commit.get(exp.parent), value_by_commit.get(exp.parent),
                        imported=exp.status is Status.IMPORTED,
                        invalid=status == Status.CRASH.value and _stopped_at_assertion(exp),
                        pruned=exp.verdict.stopped_early)
            for exp, params, value, status in rows
        ]

    def _eliminated(self, context: Context, spaces: Mapping[str, Space], best: Mapping[str, Any]):
        """Choices the evidence says to stop trying (analysis/eliminate.py), over the whole history."""
        from autoresearch.analysis.eliminate import eliminate

        knobs = [k for k, space in spaces.items() if space.kind == "choice"]
        return eliminate(context.history, context.primary, context.direction, best_params=best, knobs=knobs,
                         meta_of=_meta_reader(context))

    def _params_at_commit(self, task_dir: Path, commit: str, located) -> dict[str, Any] | None:
        """The constants as they were at `commit`, for runs that did not record params."""
        if not commit:
            return None
        if commit not in self._params_by_commit:
            key_of = {(path, const.name): key for key, (path, const) in located.items()}
            params = {}
            for path in dict.fromkeys(path for path, _ in located.values()):
                source = _git_show(task_dir, commit, path)
                if source is None:
                    continue
                try:
                    constants = knob_sources.find(source, path)
                except ConfigError:
                    continue  # an old revision with a broken annotation: skip that file
                for const in constants:
                    key = key_of.get((path, const.name))
                    if key is not None:
                        params[key] = const.value
            self._params_by_commit[commit] = params or None
        return self._params_by_commit[commit]

    def _explain(self, context: Context, suggestion: Suggestion, history: Sequence[Observation], best) -> str:
        best_value = context.best.metrics.get(context.primary)
        current = f" ({context.primary} {best_value:.4g})" if isinstance(best_value, (int, float)) else ""
        changes = " and ".join(
            f"{key} from {_shown(best[key])} to {_shown(suggestion.params[key])}" for key in suggestion.changed
        )
        sentences = [f"Changes {changes}, everything else as in the current best{current}."]
        sentences += [r[0].upper() + r[1:] + "." for r in suggestion.reasons]
        return " ".join(sentences)


def _meta_reader(context: Context):
    """runs/NNNN/meta.json of the tag's store, found from the prompt file's run directory."""
    runs = context.prompt_file.parent.parent if context.prompt_file is not None else None

    def read(record):
        if runs is None or record.iteration < 0:
            return None
        try:
            import json

            return json.loads((runs / f"{record.iteration:04d}" / "meta.json").read_text())
        except (OSError, ValueError):
            return None
    return read


def learn_from_invalid(spaces: Mapping[str, Space], best: Mapping[str, Any],
                       history: Sequence[Observation]) -> tuple[dict[str, Space], dict[str, str]]:
    """Integer axes that an assertion showed want powers of two, moved onto them.

    A single-axis move to a value that is not a power of two, from a best that is one, which
    stopped at an assertion (`assert B % tokens == 0`), says the code wants powers of two.
    Returns the spaces and, per axis changed, a sentence for the explanation."""
    out, notes = dict(spaces), {}
    for obs in history:
        if not obs.invalid or obs.parent_params is None:
            continue
        changed = [a for a in spaces if a in obs.params and obs.params[a] != obs.parent_params.get(a)]
        if len(changed) != 1:
            continue
        axis = changed[0]
        space, value, current = out[axis], obs.params[axis], best.get(axis)
        if space.kind not in ("int", "int_log") or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                           for v in (value, current)):
            continue
        if value & (value - 1) == 0 or current & (current - 1):
            continue
        low = 2 ** math.ceil(math.log2(max(space.low, 1)))
        high = 2 ** math.floor(math.log2(space.high))
        if low < high:
            out[axis] = Space("pow2", low, high)
            notes[axis] = (f"{axis} moves on powers of two only from now on: {value} stopped at an assertion, "
                           f"{current} did not.")
    return out, notes


def _stopped_at_assertion(exp) -> bool:
    """The run ended in an AssertionError of the code itself: it refused the value."""
    verdict = exp.verdict
    return verdict.crashed and verdict.reason is Reason.EXIT_CODE and "AssertionError" in verdict.detail


def _nothing_to_tune(files: Sequence[str]) -> str:
    where = ", ".join(files) or "the editable files (none is a .py, .yaml, .yml, .json or .toml file)"
    return (f"the tuner found nothing to tune in {where}: it moves module-level UPPERCASE constants "
            "(numbers, strings, tuples; e.g. `LR = 3e-3`) and config keys, with or without a search space "
            f"({NO_SPACE_HINT}, or `lr: 3.0e-3  # search: log(1e-4, 1e-1)` in a YAML file); add one, "
            "or pick another --agent")


def _keyed(per_file: Sequence[tuple[str, Sequence[Constant]]]) -> dict[str, tuple[str, Constant]]:
    counts: dict[str, int] = {}
    for _, constants in per_file:
        for c in constants:
            counts[c.name] = counts.get(c.name, 0) + 1
    return {
        (c.name if counts[c.name] == 1 else f"{path}:{c.name}"): (path, c)
        for path, constants in per_file
        for c in constants
    }


def _shown(value) -> str:
    """A value for a human: strings bare (`ARCH mlp -> cnn`), numbers as written to the file."""
    return value if isinstance(value, str) else render(value)


def _git_show(task_dir: Path, commit: str, path: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "show", f"{commit}:./{path}"], cwd=task_dir, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None
