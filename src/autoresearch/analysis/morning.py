"""The first screen of the morning report: what is best, by how much, what changed, how to get it.

    a = answer(task, store, records)
    a["gain"]        # + is better in the metric's direction, always
    a["noise"]       # {"floor": 0.004, "runs": 3, "source": "2 x the spread ..."} when known, else None
    a["binomial"]    # sqrt(p (1 - p) / n) of an accuracy whose footer printed its validation size
    a["knobs"]       # baseline -> best, knob by knob (knobs.py)
    a["diff"]        # one diff: baseline -> best, the editable files only
    a["patterns"]    # each curve pattern once, with the runs it applies to
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

from autoresearch import integrity
from autoresearch.analysis.knobs import knob_table, reproduce_commands
from autoresearch.memory_cost import MemoryRule
from autoresearch.ledger import baseline_of, best_of
from autoresearch.records import Experiment
from autoresearch.verdict import Reason, Verdict

# Footer keys that say how many examples the primary was measured on (the uncertainty's other half).
VALIDATION_SIZE_KEYS = ("val_size", "val_samples", "n_val", "num_val", "val_examples", "eval_samples",
                        "validation_size", "test_size", "val_tokens")
MAX_DIFF_CHARS = 30_000

PATTERN_TITLES = {
    "regularize": "Overfitting or its forecast: more regularization (dropout, weight decay) or augmentation",
    "faster": "Still improving when the budget ended: faster epochs (larger batch, smaller model) or a higher LR",
    "lower_lr": "The loss diverged: lower the LR, add warmup or a decay schedule, clip gradients",
    "schedule": "The loss spikes repeatedly: lower the LR or add a decay schedule",
    "degenerate": "The model looks degenerate: check labels and loss, class weights or balanced sampling",
    "capacity": "Converged with almost no train-val gap: a bigger model, or an LR schedule that ends later",
}


def oriented(value: float | None, reference: float | None, maximize: bool) -> float | None:
    """value - reference, signed so that + is better in the metric's direction."""
    if value is None or reference is None:
        return None
    return value - reference if maximize else reference - value


def _value(r: Experiment | None, primary: str) -> float | None:
    v = r.metrics.get(primary) if r is not None else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _memory(task, records: list[Experiment]) -> dict | None:
    """The memory soft constraint, when configured: its rule and the keeps it turned into discards."""
    m = task.metrics
    if m.memory_soft_limit_mb is None:
        return None
    rule = MemoryRule(m.memory_key, m.memory_soft_limit_mb, m.memory_gain_per_gb)
    decided = [r.iteration for r in records if Verdict.of_record(r).reason is Reason.MEMORY_COST]
    return {"rule": rule.describe(), "decided": decided}


def binomial_error(primary: str, value: float | None, size) -> float | None:
    """The standard error of an accuracy measured on `size` examples, sqrt(p (1 - p) / n): the
    uncertainty the validation set alone puts on it. None for a metric that is not an accuracy."""
    if value is None or not isinstance(size, (int, float)) or size < 1 or not 0 <= value <= 1:
        return None
    if "acc" not in primary.lower():
        return None
    return math.sqrt(value * (1 - value) / size)


def answer(task, store, records: list[Experiment]) -> dict:
    primary, maximize = task.metrics.primary, task.metrics.direction == "maximize"
    base, best = baseline_of(records, store.ledger), best_of(records, store.ledger)  # re-judged after an adopt
    base_v, best_v = _value(base, primary), _value(best, primary)
    gain = oriented(best_v, base_v, maximize)
    floor = integrity.decision_floor(records, task.metrics)
    noise = None
    if floor.known:
        m = floor.measured
        noise = {"floor": floor.value, "std": m.std if m else 0.0, "runs": m.runs if m else 1, "groups": m.groups if m else 0,
                 "source": floor.source(), "deterministic": floor.measured is None}
    size = next((best.metrics[k] for k in VALIDATION_SIZE_KEYS if best is not None
                 and isinstance(best.metrics.get(k), (int, float))), None)
    binomial = binomial_error(primary, best_v, size)
    if gain is None:
        verdict = ""
    elif noise is None and binomial is None:
        verdict = ("noise floor unknown: set [metrics] noise_runs = 2 to run the baseline twice and measure it")
    elif noise is None:
        verdict = (f"above twice the binomial error ({gain / (2 * binomial):.1f} x)" if gain > 2 * binomial
                   else "within twice the binomial error: not a reliable gain")
    elif gain > noise["floor"]:
        verdict = f"above the noise floor ({gain / noise['floor']:.1f} x)" if noise["floor"] else "above the noise floor"
    else:
        verdict = "within the noise floor: not a reliable gain"
    try:
        knobs = knob_table(task, base, best) if best is not None and best is not base else []
    except Exception:
        knobs = []
    return {"base": base, "best": best, "improved": best is not None and best is not base, "base_value": base_v, "best_value": best_v, "gain": gain,
            "gain_pct": 100 * gain / abs(base_v) if gain is not None and base_v else None,
            "noise": noise, "validation_size": size, "binomial": binomial, "verdict": verdict, "memory": _memory(task, records),
            "knobs": [k for k in knobs if k["changed"]], "unchanged_knobs": sum(1 for k in knobs if not k["changed"]),
            "diff": _diff(task, base, best) if best is not None and best is not base else [],
            "reproduce": reproduce_commands(task, store, best)}


def _diff(task, base: Experiment, best: Experiment) -> list[tuple[str, str]]:
    try:
        proc = subprocess.run(["git", "diff", base.commit, best.commit, "--", *task.editable], cwd=task.dir,
                              capture_output=True, text=True, timeout=60, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return []
    text = proc.stdout if proc.returncode == 0 else ""
    lines = []
    for line in text[:MAX_DIFF_CHARS].splitlines():
        kind = "hunk" if line.startswith("@@") else "file" if line.startswith(("diff ", "+++", "---", "index ")) \
            else "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append((kind, line))
    if len(text) > MAX_DIFF_CHARS:
        lines.append(("hunk", f"... cut at {MAX_DIFF_CHARS:,} characters: git diff {base.commit[:7]} {best.commit[:7]}"))
    return lines


def patterns(store, records: list[Experiment]) -> list[dict]:
    """The curve suggestions of every run, each kind once with the runs it applies to."""
    found: dict[str, dict] = {}
    for r in records:
        try:
            meta = json.loads((store.run_path(r.iteration) / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        for s in meta.get("suggestions") or () if isinstance(meta, dict) else ():
            if not isinstance(s, dict):
                continue
            kind = str(s.get("kind") or s.get("text") or "")
            entry = found.setdefault(kind, {"kind": kind, "title": PATTERN_TITLES.get(kind) or _generic(s.get("text", "")),
                                            "runs": [], "example": s.get("text", "")})
            entry["runs"].append(r.iteration)
            entry["example"] = s.get("text", "")  # the latest run's wording, with its numbers
    return sorted(found.values(), key=lambda p: -len(p["runs"]))


def _generic(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()
