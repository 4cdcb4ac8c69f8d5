"""The best configuration against the baseline, knob by knob: what a user looks for first.

    table = knob_table(task, baseline, best)
    # [{"file": "train.py", "name": "LR", "baseline": 0.003, "best": 0.01, "changed": True}, ...]

Knobs are the UPPERCASE module-level constants of the editable Python files (constants.py),
read at both commits from git, so the table holds for any agent, not only the tuner.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.analysis.axes import read_blobs
from autoresearch.constants import find_constants


def _values(source: str | None) -> dict:
    if source is None:
        return {}
    try:
        return {c.name: c.value for c in find_constants(source)}
    except Exception:  # unparsable at that commit: no knobs rather than no report
        return {}


def knob_table(task, baseline, best) -> list[dict]:
    """One row per knob of either commit; rows that changed come first, in file order."""
    if baseline is None or best is None:
        return []
    files = [p for p in task.editable if p.endswith(".py")]
    specs = [f"{c}:./{p}" for c in (baseline.commit, best.commit) for p in files]
    blobs = read_blobs(Path(task.dir), specs)
    rows = []
    for path in files:
        before = _values(blobs.get(f"{baseline.commit}:./{path}"))
        after = _values(blobs.get(f"{best.commit}:./{path}"))
        for name in [*before, *(n for n in after if n not in before)]:
            old, new = before.get(name), after.get(name)
            rows.append({"file": path, "name": name, "baseline": old, "best": new, "changed": old != new})
    return sorted(rows, key=lambda r: not r["changed"])


def reproduce_commands(task, store, best) -> list[str]:
    """The shell lines that re-run the best experiment from a clean checkout."""
    if best is None:
        return []
    where = Path(task.dir)
    return [f"cd {where}", f"git checkout {best.commit[:12]}   # or: git checkout {store.branch}",
            f"AUTORESEARCH_TIME_BUDGET={task.time_budget:g} {task.run}"]


MAX_RECORDS = 2000  # the knob plot reads every trained commit's files in one git call


def knob_values(task, records) -> dict[int, dict]:
    """iteration -> {knob: value} for every trained record (the constants at its commit)."""
    files = [p for p in task.editable if p.endswith(".py")]
    chosen = [r for r in records if r.commit][-MAX_RECORDS:]
    commits = list(dict.fromkeys(r.commit for r in chosen))
    blobs = read_blobs(Path(task.dir), [f"{c}:./{p}" for c in commits for p in files]) if files else {}
    by_commit = {}
    for c in commits:
        values: dict = {}
        for p in files:
            values.update(_values(blobs.get(f"{c}:./{p}")))
        by_commit[c] = values
    return {r.iteration: by_commit.get(r.commit, {}) for r in chosen}
