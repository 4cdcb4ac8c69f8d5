"""What the dashboard page shows, as JSON, read from the same store as `autoresearch status`.

The ledger is re-read only when it changed (size and mtime), so a page polling every two
seconds costs a stat call between experiments. Nothing here writes to the store except the
stop request, which only the loop acts on.
"""

from __future__ import annotations

import math
from pathlib import Path

from autoresearch.curves import load_curve
from autoresearch.analysis.knobs import knob_table, reproduce_commands
from autoresearch.gains import current_floor, gains as judged_gains
from autoresearch.gpu import TRAIN_KEYS
from autoresearch.ledger import Ledger, baseline_of, best_of
from autoresearch.live.state import eta_seconds, read_states, stop_requested
from autoresearch.records import Experiment, Status

MAX_TEXT = 200_000  # a diff or log bigger than this is cut (the page shows where to find it)


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


class Snapshot:
    def __init__(self, task, store):
        self.task, self.store = task, store
        self._key = None
        self._records: list[Experiment] = []
        self._ledger: Ledger | None = None
        self._static: dict = {}

    def records(self) -> list[Experiment]:
        path = self.store.ledger.path
        try:
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = None
        if key != self._key:
            self._ledger = Ledger(path) if key else None
            self._records = list(self._ledger.records) if self._ledger else []
            self._key = key
            self._static = {}
        return self._records

    def state(self) -> dict:
        records = self.records()
        primary, direction = self.task.metrics.primary, self.task.metrics.direction
        if not self._static:
            self._static = self._from_records(records, primary, direction)
        live = read_states(self.store.root)
        return {**self._static, "live": live, "eta_seconds": eta_seconds(live),
                "stop_requested": stop_requested(self.store.root),
                "running": any(s.get("alive") for s in live)}

    def _from_records(self, records, primary, direction) -> dict:
        maximize = direction == "maximize"
        rows, best_value = [], None
        gains = judged_gains(records, self.task.metrics, self._ledger)  # each gain beside the noise floor it was held to
        for r in records:
            value = _num(r.metrics.get(primary)) if r.status is not Status.CRASH else None
            if r.status is Status.KEEP and value is not None:
                best_value = value if best_value is None or (value > best_value) == maximize else best_value
            train = next((_num(r.metrics.get(k)) for k in TRAIN_KEYS if _num(r.metrics.get(k)) is not None), None)
            rows.append({"iteration": r.iteration, "commit": r.commit[:12], "status": r.status.value, "value": value,
                         "best_so_far": best_value, "description": r.description, "reason": r.reason,
                         "worker": r.worker, "node": r.node, "wall_seconds": r.wall_seconds,
                         "train_seconds": train, "finished_at": r.finished_at,
                         "gain": gains[r.iteration].value if r.iteration in gains else None,
                         "floor": _floor(gains[r.iteration].floor) if r.iteration in gains else None,
                         "columns": {c: _num(r.metrics.get(c)) for c in self.task.columns}})
        baseline = baseline_of(records, self._ledger)
        best = best_of(records, self._ledger)  # re-judged after an adopted config
        out = {"tag": self.store.tag, "branch": self.store.branch, "primary": primary, "direction": direction,
               "columns": list(self.task.columns), "budget": self.task.time_budget, "experiments": rows,
               "counts": {s.value: sum(1 for r in records if r.status is s) for s in Status},
               "baseline": _brief(baseline, primary), "best": _brief(best, primary),
               "noise_floor": _floor(current_floor(records, self.task.metrics))}
        try:
            out["knobs"] = knob_table(self.task, baseline, best)
        except Exception:  # git gone or busy: the page still shows the rest
            out["knobs"] = []
        out["reproduce"] = reproduce_commands(self.task, self.store, best)
        return out

    def experiment(self, iteration: int) -> dict | None:
        record = next((r for r in self.records() if r.iteration == iteration), None)
        if record is None:
            return None
        run_dir = self.store.run_path(iteration)
        return {"iteration": iteration, "description": record.description, "explanation": record.explanation,
                "reason": record.reason, "status": record.status.value, "commit": record.commit,
                "metrics": {k: _num(v) for k, v in record.metrics.items()},
                "diff": _text(run_dir / "diff.patch"), "log_tail": _text(run_dir / "log.txt", tail=True),
                "curve": load_curve(run_dir) if run_dir.is_dir() else []}


def _floor(floor) -> float | None:
    """The floor's value, None where it is unknown (one baseline run)."""
    return round(floor.value, 6) if floor.known else None


def _brief(r: Experiment | None, primary: str):
    if r is None:
        return None
    return {"iteration": r.iteration, "commit": r.commit[:12], "value": _num(r.metrics.get(primary)),
            "description": r.description}


def _text(path: Path, tail: bool = False) -> str:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if tail and size > 8192:
                fh.seek(size - 8192)
                return "…" + fh.read().decode("utf-8", errors="replace")
            data = fh.read(MAX_TEXT)
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text + (f"\n… cut at {MAX_TEXT} bytes; the whole file is {path}" if size > MAX_TEXT else "")
