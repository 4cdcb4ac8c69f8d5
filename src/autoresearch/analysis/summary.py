"""The analysis summary: what a night of experiments says, for the agent and for people.

`summarize` is one pass over the ledger (plus the cached axes of change), so it costs
milliseconds per thousand experiments and runs after every iteration:

- the best and the frontier (every keep, its gain over the previous keep);
- near misses: discards within `tolerance` of the best they were compared with, or better
  than it on a tie-break metric;
- axes of change with tried / kept / crashed / mean and best gain; losing regions;
- plateau state, noise floor, cross-run warnings, the latest per-run meta-analysis, hints.

A gain is always oriented: positive means better in the task's direction, so one reading
works for accuracies and losses alike. Gains are measured against the best the experiment
was derived from (its parent keep), the only fair baseline for the change it made; a
change that touched several axes credits its gain to each of them.
"""

from __future__ import annotations

import gc
import heapq
import json
import math
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

from autoresearch.analysis.axes import axes_of, ensure_axes, labels_of, moves_of, untrained
from autoresearch.analysis.eliminate import summary_sections
from autoresearch.analysis.hints import SEED, hints
from autoresearch.atomic import mirror, write_text
from autoresearch.decision import rounded
from autoresearch.memo import DEFAULT_PLATEAU, plateau_reached
from autoresearch.noise import spread as noise_spread
from autoresearch.ledger import baseline_of, best_of
from autoresearch.records import Experiment, Status

SCHEMA_VERSION = 1
SUMMARY_JSON = "analysis_summary.json"
SUMMARY_MD = "analysis_summary.md"
PLATEAU_AFTER = DEFAULT_PLATEAU  # earlier import path: the threshold is `[agent] plateau` (memo.py)
WINDOWS = (5, 10, 20)
LOSING_AFTER = 3  # tries since the axis last gained a keep
NEAR_MISS_SHARE = 0.25  # of the typical keep gain
LISTED = 10
RECENT = 20
_SCORE_NAME = re.compile(r"acc|top|f1|auc|score|precision|recall", re.IGNORECASE)


class _Stats:
    """Outcomes of the experiments that touched one axis (or one move)."""

    __slots__ = ("tried", "kept", "crashed", "gain_sum", "gain_n", "best_gain", "best_kept_gain",
                 "best_kept_iteration", "since_keep", "last_iteration")

    def __init__(self) -> None:
        self.tried = self.kept = self.crashed = self.gain_n = self.since_keep = 0
        self.gain_sum = 0.0
        self.best_gain = self.best_kept_gain = None
        self.best_kept_iteration = self.last_iteration = None

    def add(self, iteration: int, status: Status, gain: float | None) -> None:
        self.tried += 1
        self.last_iteration = iteration
        if status is Status.KEEP:
            self.kept += 1
            self.since_keep = 0
            if gain is not None and (self.best_kept_gain is None or gain > self.best_kept_gain):
                self.best_kept_gain, self.best_kept_iteration = gain, iteration
        else:
            self.since_keep += 1
            self.crashed += status is Status.CRASH
        if gain is not None:
            self.gain_sum += gain
            self.gain_n += 1
            self.best_gain = gain if self.best_gain is None else max(self.best_gain, gain)

    def to_json(self, name: str, key: str) -> dict:
        return {key: name, "tried": self.tried, "kept": self.kept, "crashed": self.crashed,
                "mean_gain": _r(self.gain_sum / self.gain_n) if self.gain_n else None,
                "best_gain": _r(self.best_gain), "tried_since_keep": self.since_keep,
                "last_iteration": self.last_iteration}


def _r(value):
    return rounded(value) if value is not None else None


def _num(value) -> float | None:
    """`decision.rounded` for the hot loop: the same result, a fraction of the calls."""
    if type(value) is float:
        return round(value, 6) if value - value == 0.0 else None  # inf - inf and nan - nan are nan
    return rounded(value)


def _brief(record: Experiment, primary: str, entry: dict | None = None) -> dict:
    out = {"iteration": record.iteration, "commit": record.commit[:7], "value": rounded(record.metrics.get(primary)),
           "description": record.description}
    if entry is not None:
        out["changes"] = labels_of(entry)
    return out


def summarize(task, store, records: Sequence[Experiment] | None = None) -> dict:
    """The summary of a tag's experiments as plain JSON-able data (schema_version 1)."""
    # The pass allocates a few small objects per experiment and no reference cycles; left on,
    # the cyclic collector rescans every ledger record again and again as they pile up
    # (measured: 1.5x the time at 100,000 experiments).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _summarize(task, store, records)
    finally:
        if enabled:
            gc.enable()


def _summarize(task, store, records: Sequence[Experiment] | None) -> dict:
    every = list(store.ledger.records if records is None else records)
    # Imported runs (`autoresearch import`) have no commit or parent: they stay out of the frontier
    # and the axes of change, and come in through the imported / eliminated sections below.
    records = [r for r in every if r.status is not Status.IMPORTED]
    metrics = task.metrics
    primary, direction = metrics.primary, metrics.direction
    ties = [(t.name, t.direction or direction) for t in metrics.tie_break]
    sign = 1.0 if direction == "maximize" else -1.0
    entries = ensure_axes(task, store, records)

    value_by_commit: dict[str, float] = {}
    metrics_by_commit: dict[str, dict] = {}
    best: Experiment | None = None
    best_value: float | None = None
    running_best: list[float | None] = []
    frontier: list[dict] = []
    axes: dict[str, _Stats] = {}
    moves: dict[str, _Stats] = {}
    moved: set[str] = set()
    groups: dict[str, list[float]] = {}
    candidates: list[tuple[Experiment, float, float | None, dict]] = []
    score_names = {primary, *(n for n, _ in ties), *(c for c in task.columns if _SCORE_NAME.search(c))}
    counts = Counter()
    last_keep_index = -1

    scores = {name: Counter() for name in score_names}
    keep, crash, discard = Status.KEEP, Status.CRASH, Status.DISCARD  # locals: this loop runs 100,000 times
    for index, r in enumerate(records):
        status = r.status
        counts[status] += 1
        if untrained(r):
            counts["untrained"] += 1
            running_best.append(best_value)
            continue
        value = _num(r.metrics.get(primary)) if status is not crash else None
        parent_value = value_by_commit.get(r.parent, best_value)
        # Rounded like the values, so equal-looking gaps are equal (0.59 - 0.60 is not -0.01).
        gain = round(sign * (value - parent_value), 6) if value is not None and parent_value is not None else None
        entry = entries[r.iteration]
        for table, names in ((axes, axes_of(entry)), (moves, moves_of(entry))):
            for name in names:
                stats = table.get(name)
                if stats is None:
                    stats = table[name] = _Stats()
                stats.add(r.iteration, status, gain)
        for c in entry.get("constants", ()):
            moved.add(c["name"])
        if value is not None:
            _group(groups, r, value, entry, value_by_commit)
            for name, counter in scores.items():
                v = _num(r.metrics.get(name))
                if v is not None:
                    counter[v] += 1
            if status is keep:
                frontier.append({**_brief(r, primary, entry),
                                 "gain": _r(sign * (value - best_value)) if best_value is not None else None})
                best, best_value, last_keep_index = r, value, index
                value_by_commit[r.commit] = value
                metrics_by_commit[r.commit] = r.metrics
            elif status is discard:
                candidates.append((r, value, gain, metrics_by_commit.get(r.parent) or (best.metrics if best else {})))
        running_best.append(best_value)

    noise = noise_floor(groups)
    keep_gains = [f["gain"] for f in frontier[1:] if f["gain"] is not None and f["gain"] > 0]
    tolerance = max(noise["std"] if noise else 0.0, NEAR_MISS_SHARE * statistics.median(keep_gains) if keep_gains else 0.0)
    if tolerance == 0.0 and best_value:
        tolerance = 1e-3 * abs(best_value)  # nothing measured yet: a relative hair
    near = near_misses(candidates, entries, primary, ties, tolerance)
    axis_rows = sorted((s.to_json(n, "axis") for n, s in axes.items()), key=lambda a: (-a["tried"], a["axis"]))
    move_rows = sorted((s.to_json(n, "move") for n, s in moves.items()), key=lambda a: (-a["tried"], a["move"]))
    losing = losing_regions(axes, moves)
    since = len(records) - 1 - last_keep_index if last_keep_index >= 0 else len(records)
    plateau = {
        "iterations_since_keep": since,
        "last_keep_iteration": best.iteration if best else None,
        "on_plateau": plateau_reached(since, task.agent.plateau),
        "windows": windows(running_best, records, sign),
    }
    best = best_of(every, store.ledger) or best  # re-judged where the run adopted new rules (tag_config.py)
    snapshot = entries[best.iteration].get("snapshot", {}) if best else {}
    untried = [name for name in snapshot if name not in moved and not SEED.search(name)]
    baseline = baseline_of(every, store.ledger)  # a new one where an adopted config needed it
    summary = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tag": store.tag, "branch": store.branch, "primary": primary, "direction": direction,
        "tie_breaks": [{"name": n, "direction": d} for n, d in ties],
        "counts": {"experiments": len(records), "keep": counts[Status.KEEP], "discard": counts[Status.DISCARD],
                   "crash": counts[Status.CRASH], "untrained": counts["untrained"]},
        "best": {**_brief(best, primary, entries[best.iteration]), "metrics": _numbers(best.metrics)} if best else None,
        "baseline": _brief(baseline, primary) if baseline else None,
        "frontier": frontier,
        "near_misses": near,
        "near_miss_tolerance": _r(tolerance),
        "axes": axis_rows,
        "moves": move_rows,
        "losing_regions": losing,
        "untried_constants": untried,
        "plateau": plateau,
        "noise_floor": noise,
        "warnings": score_warnings(scores),
        "recent": [_recent(r, entries[r.iteration], primary) for r in records[-RECENT:]],
        "meta": {"best": _meta(store, best), "latest": _meta(store, _last_trained(records))},
        "axes_index": str(store.root / "axes.jsonl"),
    }
    best_params = best.agent_data.get("params") if best is not None and isinstance(best.agent_data, dict) else None
    summary.update(summary_sections(every, primary, direction, store.root / "runs", best_params,
                                    noise["std"] if noise else None))
    if summary["imported"]:
        summary["counts"]["imported"] = summary["imported"]["count"]
    summary["hints"] = hints(summary, snapshot)
    return summary


def _group(groups: dict, r: Experiment, value: float, entry: dict, value_by_commit: dict) -> None:
    """Repeated runs of one configuration: the same code, or the parent with only a SEED moved."""
    if r.content_hash:
        group = groups.get(r.content_hash)
        if group is None:
            groups[r.content_hash] = [value]
        else:
            group.append(value)
    constants = entry.get("constants")
    if (constants and "SEED" in constants[0]["name"] and "code" not in entry
            and all("SEED" in c["name"] for c in constants) and r.parent in value_by_commit):
        groups.setdefault(("seed", r.parent), [value_by_commit[r.parent]]).append(value)


def noise_floor(groups: dict[str, list[float]]) -> dict | None:
    """Pooled standard deviation of the primary over repeated configurations, if any (noise.spread)."""
    measured = noise_spread(groups.values())
    if measured is None:
        return None
    return {"std": _r(measured.std), "groups": measured.groups, "runs": measured.runs}


def near_misses(candidates, entries, primary: str, ties, tolerance: float) -> list[dict]:
    """Discards within `tolerance` of their parent best, or better than it on a tie-break.

    Ranked: close on the primary first (smallest gap, then newest), then better on a
    tie-break. Only the LISTED shown are turned into dicts: there may be thousands.
    """
    ranked = []
    for position, (r, value, gap, parent_metrics) in enumerate(candidates):
        close = gap is not None and gap >= -tolerance
        better = close or any(_tie_gain(r.metrics, parent_metrics, name, direction) for name, direction in ties)
        if better:
            ranked.append((not close, -(gap if gap is not None else -math.inf), -r.iteration, position))
    found = []
    for *_, position in heapq.nsmallest(LISTED, ranked):
        r, value, gap, parent_metrics = candidates[position]
        why = [f"{primary} within {tolerance:.6g} of the best"] if gap is not None and gap >= -tolerance else []
        for name, direction in ties:
            gain = _tie_gain(r.metrics, parent_metrics, name, direction)
            if gain:
                why.append(f"{name} {gain:+.6g} vs the best")  # oriented (+ is better), as every gain here
        found.append({**_brief(r, primary, entries[r.iteration]), "gap": _r(gap), "why": why})
    return found


def _tie_gain(metrics: dict, parent_metrics: dict, name: str, direction: str) -> float | None:
    """The oriented gain on a tie-break metric when positive, else None."""
    a, b = _num(metrics.get(name)), _num(parent_metrics.get(name))
    if a is None or b is None:
        return None
    gain = (a - b) if direction == "maximize" else (b - a)
    return gain if gain > 0 else None


def losing_regions(axes: dict[str, _Stats], moves: dict[str, _Stats]) -> list[dict]:
    """Regions tried LOSING_AFTER times or more since they last gained a keep.

    A constant is judged per direction (`LR up` can lose while `LR down` keeps gaining),
    and named as a whole only when every direction tried on it is losing; code regions
    and description topics have no direction and are judged as they are.
    """
    by_constant: dict[str, list[str]] = {}
    for name in moves:
        by_constant.setdefault(name.split(" ", 1)[0], []).append(name)
    losing = []
    for name, stats in axes.items():
        directions = by_constant.get(name)
        if directions is None:
            if stats.since_keep >= LOSING_AFTER:
                losing.append((name, stats))
        elif len(directions) > 1 and all(moves[m].since_keep >= LOSING_AFTER for m in directions):
            losing.append((name, stats))
        else:
            losing.extend((m, moves[m]) for m in directions if moves[m].since_keep >= LOSING_AFTER)
    rows = [{**s.to_json(n, "axis"), "ever_kept": s.kept > 0} for n, s in losing]
    rows.sort(key=lambda row: (-row["tried_since_keep"], row["axis"]))
    return rows[:LISTED]


def windows(running_best: list, records: Sequence[Experiment], sign: float) -> list[dict]:
    """Gain of the best over the last N iterations, per iteration: the improvement rate.
    A window longer than the history covers all of it, measured from the first keep."""
    n = len(running_best)
    out, seen = [], set()
    for size in WINDOWS:
        start = max(0, n - size)
        if n - start in seen or n == start:
            continue
        seen.add(n - start)
        before = running_best[start - 1] if start > 0 else None
        if before is None:
            before = next((v for v in running_best[start:] if v is not None), None)
        after = running_best[-1]
        gain = sign * (after - before) if before is not None and after is not None else None
        keeps = sum(1 for r in records[start:] if r.status is Status.KEEP)
        out.append({"size": size, "iterations": n - start, "gain": _r(gain),
                    "rate": _r(gain / (n - start)) if gain is not None else None, "keeps": keeps})
    return out


def score_warnings(scores: dict[str, Counter]) -> list[str]:
    """Seed 003: a score identical across many runs with different code means the changes do
    not reach the predictions, often a model that predicts one class."""
    warnings = []
    for name, counter in sorted(scores.items()):
        if not counter:
            continue
        total = sum(counter.values())
        value, count = counter.most_common(1)[0]
        if count >= 5 and count >= total / 2:
            warnings.append(f"{name} = {value:g} in {count} of {total} runs with different code: the changes do not "
                            "move it; check for a constant predictor (compare it with the majority-class rate)")
    return warnings


def _recent(r: Experiment, entry: dict, primary: str) -> dict:
    return {"iteration": r.iteration, "status": r.status.value,
            "value": rounded(r.metrics.get(primary)) if r.status is not Status.CRASH else None,
            "changes": labels_of(entry), "description": r.description}


def _last_trained(records: Sequence[Experiment]) -> Experiment | None:
    return next((r for r in reversed(records) if not untrained(r)), None)


def _meta(store, record: Experiment | None) -> dict | None:
    """The per-run meta-analysis in brief (flags and suggestions), when the run has one."""
    if record is None:
        return None
    path = store.run_path(record.iteration) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {"iteration": record.iteration, "flags": meta.get("flags", []),
            "suggestions": [s.get("text", "") for s in meta.get("suggestions", [])],
            "warnings": meta.get("warnings", [])}


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def write_summary(task, store, summary: dict | None = None) -> tuple[Path, Path]:
    """Write analysis_summary.json and .md to the store and show them in the task directory
    (like results.tsv, the task directory holds the summary of the tag run last)."""
    from autoresearch.analysis.brief import render_markdown

    summary = summary if summary is not None else summarize(task, store)
    store.root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in ((SUMMARY_JSON, to_json_text(summary)), (SUMMARY_MD, render_markdown(summary))):
        # Derived from the ledger and rewritten every iteration: no fsync needed.
        write_text(store.root / name, text, durable=False)
        mirror(store.root / name, task.dir / name)
        paths.append(task.dir / name)
    # What the next prompt shows, as text: the loop reads this file and never imports the analysis.
    write_text(store.hints_path, summary_hints(summary), durable=False)
    return paths[0], paths[1]


def to_json_text(summary: dict) -> str:
    """One top-level key per line: readable at a glance, and each value goes through json's
    C encoder (`indent` would switch to the pure-Python one, ten times slower)."""
    body = ",\n".join(f" {json.dumps(key)}: {json.dumps(value)}" for key, value in summary.items())
    return "{\n" + body + "\n}\n"


def summary_hints(summary: dict) -> str:
    """The summary as a few lines for the agent's prompt."""
    from autoresearch.analysis.brief import render_hints

    return render_hints(summary)

