"""Early stopping: a run whose learning curve is hopelessly behind is stopped before its budget ends.

    watcher = CurveWatcher(rules, primary, direction, budget, earlier, best_value, sources)
    with watcher.watching(stop_event) as run_stop:    # pass run_stop to Executor.run
        result = executor.run(spec, stop_event=run_stop)
    watcher.decision                                  # a Stop, or None: the run finished

The rule is Optuna's percentile pruner applied at equal elapsed training time: once `warmup`
of the budget has passed and at least `min_curves` earlier runs reached the same time, a run
whose best value so far is worse than `percentile`% of theirs at that time is stopped (50:
the median pruner; the default 10 leaves only the front-runners alone) -- unless its curve,
extrapolated optimistically, could still end above what a keep must reach. The forecast is
the deciding part: from the earlier curves most like the run at that time that trained to the
end, the largest late gain any of them made, or the run's own recent gain scaled as theirs went
on, whichever is larger (optimistic_final). Stopping a run that would have won costs more than
training a loser; a median alone, on a night where most runs end a few hundredths below the
best, leaves most of the losers training (bench/early_stop.py).

Time is the fraction of the budget: a curve point's own training clock (`seconds`,
`train_seconds`, `time`, `elapsed`) when it has one, else the wall time since the run started
at which the watcher first saw the point. The watcher saves what it saw (`early_stop.json` in
the run folder), so later runs compare against the same clock. A run that writes no curve is
never stopped. Everything above the watcher is pure and tested without processes.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

TRACE_NAME = "early_stop.json"
CLOCK_KEYS = ("seconds", "train_seconds", "time", "elapsed", "elapsed_seconds")
ANALOGS = 5  # earlier curves nearest a run's value whose later gains forecast its own (optimistic_final)
FINISHED = 0.9  # a curve that reached this fraction of the budget trained to its end
READ_LIMIT = 8 * 1024 * 1024  # bytes of a curve file read per look; a curve sits at its start

Trace = list[tuple[float, float]]  # (fraction of the budget, value of the primary), in time order


@dataclass(frozen=True)
class Rules:
    """The `[early_stop]` section."""

    enabled: bool = True
    percentile: float = 10.0  # stop a run worse than this share (%) of earlier runs at the same time
    warmup: float = 0.2  # fraction of the budget that every run may train before any stop
    min_curves: int = 3  # earlier curves needed at that time before a run is judged
    interval: float = 0.5  # seconds between two looks at the curve

    @classmethod
    def from_config(cls, section) -> "Rules":
        if section is None:
            return cls()
        return cls(enabled=section.enabled, percentile=section.percentile, warmup=section.warmup,
                   min_curves=section.min_curves, interval=section.interval)


@dataclass(frozen=True)
class Stop:
    """Why a run was stopped: at `at` of the budget its best was `value`, the earlier runs' `bar`."""

    at: float
    value: float
    bar: float
    compared: int
    primary: str

    @property
    def reason(self) -> str:
        return (f"stopped at {self.at:.0%} of the budget: {self.primary} {_fmt(self.value)} "
                f"while earlier runs had {_fmt(self.bar)} at that time")


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


# -- curves to traces ----------------------------------------------------------------------
def trace_from_points(points: Sequence[dict], primary: str, budget: float,
                      seen_at: Sequence[float] | None = None) -> Trace:
    """(fraction of budget, value) for every point that has the primary.

    The point's own clock counts when every point has one; else `seen_at` (wall seconds since
    the run started, one per point); else there is no time axis and the trace is empty."""
    if budget <= 0:
        return []
    clock = next((k for k in CLOCK_KEYS if points and all(k in p for p in points)), None)
    out: Trace = []
    for i, point in enumerate(points):
        value = point.get(primary)
        if value is None or not math.isfinite(value):
            continue
        if clock is not None:
            t = point[clock]
        elif seen_at is not None and i < len(seen_at):
            t = seen_at[i]
        else:
            continue
        if math.isfinite(t) and t >= 0:
            out.append((t / budget, float(value)))
    out.sort(key=lambda p: p[0])
    return out


def best_until(trace: Trace, t: float, direction: str) -> float | None:
    """The best value a trace had reached by time t (None before its first point)."""
    values = [v for at, v in trace if at <= t]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (as numpy's default), q in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def optimistic_final(trace: Trace, earlier: Sequence[Trace], direction: str) -> float:
    """Where the run could still end, judged by how the earlier curves most like it went on.

    The analogs are the ANALOGS earlier curves nearest the run's value at this time that
    trained to the end (a curve stopped early says nothing of what follows). Two forecasts
    from them, the larger counts. By level: the largest gain any analog made from this time
    to its end. By pace: the run's own gain over the last half of its elapsed time, times the
    largest ratio of an analog's later gain to its gain over that same stretch, the ratio at
    most a straight line's (the recent pace carried on to the end of the budget), so a run
    climbing faster than its analogs is credited with more than their gains.

    Only analogs, in both. On nights of the example, the largest late gain of any earlier
    curve, however far above or below, held back a fifth of what stopping saved; the largest
    pace ratio of any earlier curve (a baseline far below, still climbing where the others had
    flattened) forecast val_acc 1.2 to 2.8 for runs at 0.9 at a quarter of the budget, so runs
    that ended two hundredths below what a keep needed trained to the end (bench/early_stop.py).
    Not the straight line itself: the steep start of a saturating curve, carried on linearly,
    promised val_acc 6.5 at 15% of the budget. Nor a ratio over a stretch where an analog was
    flat: that is a division by ~0 (bounds of 10^4 to 10^8 came up at half the looks)."""
    t, sign = trace[-1][0], 1 if direction == "maximize" else -1
    now = best_until(trace, t, direction)
    then = best_until(trace, t / 2, direction)
    recent = max(0.0, sign * (now - then)) if then is not None else 0.0
    analogs = []  # (distance from the run's value now, gain from now to the end, later-to-recent ratio)
    for other in earlier:
        at_t, final = best_until(other, t, direction), best_until(other, math.inf, direction)
        if at_t is None or final is None or other[-1][0] < FINISHED:
            continue
        gain = max(0.0, sign * (final - at_t))
        before = best_until(other, t / 2, direction)
        ratio = gain / max(sign * (at_t - before), 1e-9) if before is not None and gain > 0 else 0.0
        analogs.append((abs(at_t - now), gain, ratio))
    nearest = sorted(analogs)[:ANALOGS]
    late = max((gain for _, gain, _ in nearest), default=0.0)
    ratio = max((ratio for _, _, ratio in nearest), default=0.0)
    linear = (1.0 - t) / (t / 2) if t > 0 else math.inf  # the rest of the budget over the stretch
    return now + sign * max(late, recent * min(ratio, linear))


def judge(trace: Trace, earlier: Sequence[Trace], best_value: float | None, rules: Rules,
          primary: str, direction: str) -> Stop | None:
    """The pruning rule: a Stop when the run is hopelessly behind at its latest time, else None."""
    if not rules.enabled or not trace:
        return None
    t = trace[-1][0]
    if t < rules.warmup or t >= 1.0:
        return None
    # Comparison curves: earlier runs that reached this time (as Optuna: values at the same step).
    at_t = [best_until(o, t, direction) for o in earlier if o and o[-1][0] >= t]
    at_t = [v for v in at_t if v is not None]
    if len(at_t) < max(1, rules.min_curves):
        return None
    now = best_until(trace, t, direction)
    q = 100 - rules.percentile if direction == "maximize" else rules.percentile
    bar = _percentile(at_t, min(100.0, max(0.0, q)))
    if not _better(bar, now, direction):
        return None
    if best_value is not None and not _better(best_value, optimistic_final(trace, earlier, direction), direction):
        return None  # it could still end at or above the best: let it train
    return Stop(at=t, value=now, bar=bar, compared=len(at_t), primary=primary)


# -- what earlier runs left ----------------------------------------------------------------
def load_trace(run_dir: Path, primary: str, budget: float) -> Trace:
    """The trace a finished run left: the watcher's record, else its curve's own clock."""
    run_dir = Path(run_dir)
    saved = run_dir / TRACE_NAME
    if saved.is_file():
        try:
            data = json.loads(saved.read_text(encoding="utf-8"))
            if data.get("primary") == primary and data.get("budget") == budget:
                return [(float(t), float(v)) for t, v in data.get("trace", [])
                        if math.isfinite(float(t)) and math.isfinite(float(v))]
        except (ValueError, TypeError, AttributeError, OSError):
            pass  # a torn or foreign file: fall back to the curve itself
    from autoresearch.curves import load_curve
    return trace_from_points(load_curve(run_dir), primary, budget)


def save_trace(run_dir: Path, trace: Trace, primary: str, budget: float, stop: Stop | None) -> None:
    from autoresearch.atomic import write_json
    write_json(Path(run_dir) / TRACE_NAME, {
        "primary": primary, "budget": budget, "trace": [[round(t, 6), v] for t, v in trace],
        "stopped": None if stop is None else {"at": stop.at, "value": stop.value, "bar": stop.bar,
                                              "compared": stop.compared, "reason": stop.reason},
    }, durable=False)


# -- the watcher ---------------------------------------------------------------------------
class CurveWatcher:
    """Reads a run's curve while it trains and sets the run's stop event once `judge` says so.

    `sources`: the files the run's curve appears in, first found first used (the task's
    metrics.jsonl, then the run's log.txt for `epoch ... val_acc ...` lines). A metrics.jsonl
    older than the run, or one whose `store.file_stamp` is still the one in `before` (taken
    before the run started), is an earlier run's and is ignored."""

    def __init__(self, rules: Rules, primary: str, direction: str, budget: float,
                 earlier: Sequence[Trace], best_value: float | None, sources: Sequence[Path],
                 clock=time.monotonic, may_stop: bool = True, before: dict | None = None):
        self.may_stop = may_stop  # False: the curve is recorded, never judged (a baseline)
        self.rules, self.primary, self.direction, self.budget = rules, primary, direction, budget
        self.earlier = [t for t in earlier if t]
        self.best_value = best_value
        self.sources = [Path(s) for s in sources]
        self.clock = clock
        self.decision: Stop | None = None
        self.trace: Trace = []
        self._seen_at: list[float] = []
        self._started = clock()
        self._wall_started = time.time()
        # store.file_stamp of each source before the run: a file still like that is an earlier run's.
        self._before = {Path(k): v for k, v in (before or {}).items() if v is not None}

    def look(self) -> Stop | None:
        """One look at the curve: extend the trace, judge it. Safe to call at any moment."""
        points = self._points()
        elapsed = self.clock() - self._started
        while len(self._seen_at) < len(points):
            self._seen_at.append(elapsed)  # when this point was first seen
        self.trace = trace_from_points(points, self.primary, self.budget, self._seen_at)
        if self.decision is None and self.may_stop:
            self.decision = judge(self.trace, self.earlier, self.best_value, self.rules, self.primary, self.direction)
        return self.decision

    def _points(self) -> list[dict]:
        from autoresearch.store import file_stamp

        for source in self.sources:
            try:
                if not source.is_file() or source.stat().st_mtime + 1.0 < self._wall_started:
                    continue
                if source in self._before and file_stamp(source) == self._before[source]:
                    continue  # untouched since before the run (the last one, stopped a moment ago, wrote it)
                with open(source, "rb") as fh:
                    text = fh.read(READ_LIMIT).decode("utf-8", errors="replace")
            except OSError:
                continue
            lines = text.splitlines()
            if lines and not text.endswith("\n"):
                lines = lines[:-1]  # a line being written: read it next time
            text = "\n".join(lines)
            from autoresearch.curves import parse_jsonl, parse_log

            points = parse_jsonl(text) if source.suffix == ".jsonl" else parse_log(text)
            if points:
                return points
        return []

    @contextlib.contextmanager
    def watching(self, outer: threading.Event | None = None) -> Iterator[threading.Event]:
        """The run's own stop event: set by a stop of the whole loop (`outer`) or by the rule."""
        run_stop, done = threading.Event(), threading.Event()

        def watch():
            while not done.is_set():
                if outer is not None and outer.is_set():
                    run_stop.set()
                    return
                try:
                    if self.look() is not None:
                        run_stop.set()
                        return
                except Exception:  # a curve we cannot read never ends a run
                    pass
                deadline = time.monotonic() + self.rules.interval
                while not done.is_set() and not (outer is not None and outer.is_set()) and time.monotonic() < deadline:
                    done.wait(0.1)  # short steps: a Ctrl-C reaches the run at once

        thread = threading.Thread(target=watch, name="early-stop", daemon=True)
        if self.rules.enabled:
            thread.start()
        try:
            yield run_stop if self.rules.enabled else (outer or run_stop)
        finally:
            done.set()
            if thread.is_alive():
                thread.join(timeout=5)


# -- for the loop ----------------------------------------------------------------------------
def watcher_for(task, store, history, run_dir: Path, *, may_stop: bool,
                cache: dict[int, Trace] | None = None) -> CurveWatcher | None:
    """The watcher of one run of `task`, or None when `[early_stop]` is off.

    Every run is watched, so that its curve is on record with the watcher's clock; only those
    with `may_stop` (never a baseline, a noise repeat or a confirmation) are judged."""
    from autoresearch.ledger import best_of
    from autoresearch.verdict import Status

    rules = Rules.from_config(getattr(task.config, "early_stop", None))
    if not rules.enabled:
        return None
    primary, budget = task.metrics.primary, task.time_budget
    cache = cache if cache is not None else {}
    earlier = []
    for record in history:
        if record.status is Status.CRASH:
            continue
        if record.iteration not in cache:
            cache[record.iteration] = load_trace(store.run_dir(record.iteration), primary, budget)
        earlier.append(cache[record.iteration])
    best = best_of(history, store.ledger)  # re-judged where the run adopted new rules
    best_value = best.metrics.get(primary) if best is not None else None
    if not isinstance(best_value, (int, float)) or isinstance(best_value, bool) or not math.isfinite(best_value):
        best_value = None
    if best_value is not None and not task.metrics.confirm:
        # What a run must end above to be kept: the best and the noise floor over it. A run
        # whose optimistic final stays inside the floor would be a discard at its end anyway.
        # (With confirm, a run just above the best is confirmed: the best alone is the bar.)
        from autoresearch.integrity import decision_floor

        floor = decision_floor(history, task.metrics).value
        best_value += floor if task.metrics.direction == "maximize" else -floor
    from autoresearch.store import file_stamp

    sources = [Path(task.dir) / "metrics.jsonl", Path(run_dir) / "log.txt"]
    # Made just before the run starts: what the sources are now is what an earlier run left.
    return CurveWatcher(rules, primary, task.metrics.direction, budget, earlier, best_value, sources,
                        may_stop=may_stop, before={s: file_stamp(s) for s in sources})
