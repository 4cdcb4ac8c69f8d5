"""Choices to stop trying (seed 000's Phase 1: "discard m0 and m1"), with their evidence.

For every categorical knob (a model family, an optimizer: a knob whose values are strings or
booleans), the runs are grouped by its value and a value is flagged when, over at least
MIN_RUNS runs of it,

- it overfits: the median train - held-out accuracy gap is above OVERFIT_GAP (m0: ~97 % train,
  ~66 % test), or most of its runs' curves turned (meta-analysis `overfitting`);
- it is unstable: most of its runs' losses spiked or diverged (meta-analysis `stability`);
- it is consistently below the others: its best run is worse than the mean of the best other
  value by more than NOISE_FACTOR x the noise (the median spread within values, or the task's
  noise floor when it is larger).

Evidence is recomputed from every record each time, so new runs of a flagged value that do
well lift the flag ("unless new evidence appears"); the current best's value is never flagged.
Seed 000's two scores are computed for every run that reports the numbers:
`efficiency = test_acc / epochs_trained`, `robustness = test_acc - val_acc`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from autoresearch.records import Experiment, Status

MIN_RUNS = 2
OVERFIT_GAP = 0.15  # train - held-out accuracy, as a fraction (15 points in percent)
NOISE_FACTOR = 2.0
_EPOCH_KEYS = ("epochs_trained", "epochs", "epoch", "n_epochs", "num_epochs")


@dataclass(frozen=True)
class Elimination:
    knob: str
    value: Any
    runs: int
    reasons: tuple[str, ...]  # "overfitting" | "unstable" | "below"
    evidence: tuple[str, ...]  # one sentence per reason, with the numbers

    def to_json(self) -> dict:
        return {"knob": self.knob, "value": self.value, "runs": self.runs, "reasons": list(self.reasons),
                "evidence": list(self.evidence)}


@dataclass
class _Run:
    value: float
    params: Mapping[str, Any]
    gap: float | None
    overfit: bool
    unstable: bool
    scores: dict = field(default_factory=dict)


def metric(metrics: Mapping[str, Any], name: str) -> float | None:
    """`name` or a key ending in it (`final.test_acc`, `m2.test_acc`), as a fraction for accuracies."""
    keys = [name] + sorted(k for k in metrics if k.endswith("." + name) or k.endswith("_" + name) and k != name)
    for key in keys:
        v = metrics.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v) / 100.0 if "acc" in name and v > 1.0 else float(v)
    return None


def seed_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Seed 000's scores, where the run reports the numbers they need."""
    out = {}
    test, val = metric(metrics, "test_acc"), metric(metrics, "val_acc")
    epochs = next((metric(metrics, k) for k in _EPOCH_KEYS if metric(metrics, k)), None)
    if test is not None and epochs:
        out["efficiency"] = round(test / epochs, 6)
    if test is not None and val is not None:
        out["robustness"] = round(test - val, 6)
    return out


def _stored_meta(record: Experiment) -> dict:
    meta = record.agent_data.get("meta") if isinstance(record.agent_data, dict) else None
    return meta if isinstance(meta, dict) else {}


def runs_of(records: Sequence[Experiment], primary: str,
            meta_of: Callable[[Experiment], dict | None] | None = None) -> list[_Run]:
    out = []
    for r in records:
        if r.status is Status.CRASH or r.verdict.untrained or r.verdict.duplicate:
            continue
        value = r.metrics.get(primary)
        params = r.agent_data.get("params") if isinstance(r.agent_data, dict) else None
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not isinstance(params, dict):
            continue
        meta = _stored_meta(r) or (meta_of(r) if meta_of else None) or {}
        train = metric(r.metrics, "train_acc")
        held = metric(r.metrics, "test_acc") or metric(r.metrics, "val_acc")
        gap = train - held if train is not None and held is not None else None
        flags = set(meta.get("flags", ()))
        out.append(_Run(float(value), params, gap, "overfitting" in flags,
                        meta.get("stability") in ("unstable", "diverging"), seed_scores(r.metrics)))
    return out


def categorical_knobs(runs: Sequence[_Run]) -> list[str]:
    names: dict[str, None] = {}
    for run in runs:
        for k, v in run.params.items():
            if isinstance(v, (str, bool)):
                names[k] = None
    return list(names)


def eliminate(records: Sequence[Experiment], primary: str, direction: str, *, best_params: Mapping[str, Any] | None = None,
              noise_floor: float | None = None, meta_of: Callable[[Experiment], dict | None] | None = None,
              knobs: Sequence[str] | None = None) -> list[Elimination]:
    runs = runs_of(records, primary, meta_of)
    sign = 1.0 if direction == "maximize" else -1.0
    out = []
    for knob in (knobs if knobs is not None else categorical_knobs(runs)):
        groups: dict[Any, list[_Run]] = {}
        for run in runs:
            if knob in run.params:
                groups.setdefault(run.params[knob], []).append(run)
        if len(groups) < 2:
            continue
        spreads = [statistics.pstdev([r.value for r in g]) for g in groups.values() if len(g) >= 2]
        noise = max(statistics.median(spreads) if spreads else 0.0, noise_floor or 0.0, 1e-9)
        best_of = {v: max(sign * r.value for r in g) for v, g in groups.items()}
        for value, group in groups.items():
            if (len(group) < MIN_RUNS or best_of[value] == max(best_of.values())
                    or best_params is not None and best_params.get(knob) == value):  # the leader always stays
                continue
            reasons, evidence = [], []
            gaps = [r.gap for r in group if r.gap is not None]
            turned = sum(r.overfit for r in group)
            if gaps and statistics.median(gaps) > OVERFIT_GAP or turned * 2 > len(group):
                reasons.append("overfitting")
                detail = f"median train - held-out accuracy gap {statistics.median(gaps):.3f}" if gaps else ""
                curves = f"val loss turned up in {turned} of {len(group)} runs" if turned else ""
                evidence.append(f"overfitting: {'; '.join(x for x in (detail, curves) if x)} "
                                f"(above {OVERFIT_GAP} counts as overfitting)")
            unstable = sum(r.unstable for r in group)
            if unstable * 2 > len(group):
                values = [r.value for r in group]
                reasons.append("unstable")
                evidence.append(f"unstable: the loss spiked or diverged in {unstable} of {len(group)} runs "
                                f"({primary} from {min(values):.4g} to {max(values):.4g})")
            others = {v: b for v, b in best_of.items() if v != value and len(groups[v]) >= 1}
            if others:
                leader = max(others, key=others.get)
                leader_mean = statistics.fmean(sign * r.value for r in groups[leader])
                if best_of[value] < leader_mean - NOISE_FACTOR * noise:
                    reasons.append("below")
                    evidence.append(f"below: its best {primary} {sign * best_of[value]:.4g} is below the mean "
                                    f"{sign * leader_mean:.4g} of {knob} = {leader!r} by more than "
                                    f"{NOISE_FACTOR:g} x the noise {noise:.3g}")
            if reasons:
                out.append(Elimination(knob, value, len(group), tuple(reasons), tuple(evidence)))
    return out


def scores_table(records: Sequence[Experiment]) -> list[dict]:
    """Seed 000's efficiency and robustness for every run that reports the numbers."""
    rows = []
    for r in records:
        scores = seed_scores(r.metrics)
        if scores and r.status is not Status.CRASH:
            rows.append({"iteration": r.iteration, "description": r.description, "imported": r.verdict.imported, **scores})
    return rows


def summary_sections(records: Sequence[Experiment], primary: str, direction: str, runs_dir=None,
                     best_params: Mapping[str, Any] | None = None, noise_floor: float | None = None) -> dict:
    """`imported`, `eliminated` and `scores` of analysis_summary.json (each empty when there is nothing)."""
    import json
    from pathlib import Path

    def meta_of(record):
        if runs_dir is None or record.iteration < 0:
            return None
        try:
            return json.loads((Path(runs_dir) / f"{record.iteration:04d}" / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    sign = 1.0 if direction == "maximize" else -1.0
    imported = [r for r in records if r.status is Status.IMPORTED]
    with_value = [r for r in imported if isinstance(r.metrics.get(primary), (int, float))]
    best = max(with_value, key=lambda r: sign * r.metrics[primary], default=None)
    by_value: dict[str, dict[str, list[float]]] = {}
    for r in with_value:
        for knob, v in (r.agent_data.get("params") or {}).items():
            if isinstance(v, (str, bool)):
                by_value.setdefault(knob, {}).setdefault(str(v), []).append(float(r.metrics[primary]))
    section = {}
    if imported:
        section = {
            "count": len(imported),
            "best": {"iteration": best.iteration, "value": best.metrics[primary], "params": best.agent_data.get("params", {}),
                     "folder": best.agent_data.get("imported", {}).get("folder", "")} if best else None,
            "choices": {knob: {v: {"runs": len(xs), "mean": round(statistics.fmean(xs), 6), "best": round(sign * max(sign * x for x in xs), 6)}
                               for v, xs in values.items()} for knob, values in by_value.items()},
        }
    found = eliminate(records, primary, direction, best_params=best_params, noise_floor=noise_floor, meta_of=meta_of)
    return {"imported": section, "eliminated": [e.to_json() for e in found], "scores": scores_table(records)}
