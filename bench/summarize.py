"""Time to summarize a tag of N experiments: one pass over the ledger, both files written.

Builds a synthetic ledger (a random walk of single- and two-axis constant moves and code
edits, ~20% keeps, ~5% crashes, a few repeated configurations) with its axes index
precomputed, as the loop leaves it, then times `summarize` + `write_summary`:

- cold: what `autoresearch summarize` does: the ledger and the axes index read from disk;
- warm: what the observer does after each iteration: the ledger already in memory, the
  axes index already parsed but for the new line.

Goal: under 1 s at 10,000, growing linearly.

    python bench/summarize.py [--sizes 100 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from autoresearch.analysis import axes
from autoresearch.analysis.axes import AXES_VERSION, INDEX_NAME
from autoresearch.analysis.summary import summarize, write_summary
from autoresearch.config import load_task
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

CONFIG = """\
[task]
run = "python train.py"
editable = ["train.py"]
time_budget = 300

[metrics]
primary = "val_acc"
direction = "maximize"
tie_break = ["mc_acc"]
"""
CONSTANTS = ["LR", "WIDTH", "DEPTH", "DROPOUT", "WEIGHT_DECAY", "BATCH_SIZE", "WARMUP", "EPOCHS", "ARCH", "SEED"]
REGIONS = ["def Model.forward", "def Model.__init__", "class Block", "def train", "top-level code"]


def build(task_dir: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    (task_dir / "train.py").write_text("\n".join(f"{c} = 1" for c in CONSTANTS) + "\n")
    (task_dir / "autoresearch.toml").write_text(CONFIG)
    store = RunStore(task_dir, "bench")
    store.create()
    best_value, best_commit, ledger, index = 0.5, "c0", [], []
    for i in range(n):
        commit = f"c{i}"
        r = rng.random()
        status = Status.KEEP if i == 0 or r < 0.2 else Status.CRASH if r > 0.95 else Status.DISCARD
        value = best_value + (rng.uniform(1e-5, 1e-3) if status is Status.KEEP and i else -rng.uniform(0, 0.02))
        metrics = {} if status is Status.CRASH else {"val_acc": round(value, 6), "mc_acc": round(rng.random(), 6)}
        moved = rng.sample(CONSTANTS, rng.choice((1, 1, 2)))
        entry = {"v": AXES_VERSION, "iteration": i, "commit": commit, "source": "diff",
                 "constants": [{"name": c, "old": 1, "new": rng.choice((0.5, 2)), "move": rng.choice(("up", "down"))}
                               for c in moved] if i else []}
        if i and rng.random() < 0.3:
            entry["code"] = [rng.choice(REGIONS)]
        if status is Status.KEEP:
            entry["snapshot"] = {c: 1 for c in CONSTANTS}
        index.append(json.dumps(entry, sort_keys=True))
        record = Experiment(iteration=i, commit=commit, parent=best_commit if i else commit, status=status,
                            description=", ".join(f"{c} 1 -> 2" for c in moved) if i else "baseline",
                            reason="exit_code: 1" if status is Status.CRASH else "", metrics=metrics,
                            content_hash=f"h{i % (n // 50 + 1) if rng.random() < 0.02 else i}")
        ledger.append(json.dumps(record.to_json(), sort_keys=True))
        if status is Status.KEEP:
            best_value, best_commit = value, commit
    (store.root / "ledger.jsonl").write_text("\n".join(ledger) + "\n")
    (store.root / INDEX_NAME).write_text("\n".join(index) + "\n")


def time_cold(task_dir: Path) -> tuple[float, float]:
    """(wall, cpu) seconds: CPU time shows the cost even on a machine busy with other work."""
    task = load_task(task_dir)
    axes._loaded.clear()  # as in a new process
    wall, cpu = time.perf_counter(), time.process_time()
    store = RunStore(task.dir, "bench")  # fresh: the ledger is read from disk inside the timing
    write_summary(task, store, summarize(task, store))
    return time.perf_counter() - wall, time.process_time() - cpu


def time_warm(task_dir: Path) -> tuple[float, float]:
    task = load_task(task_dir)
    store = RunStore(task.dir, "bench")
    write_summary(task, store, summarize(task, store))  # the loop has run before: all is loaded
    wall, cpu = time.perf_counter(), time.process_time()
    write_summary(task, store, summarize(task, store))
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"best of {args.repeat}; wall (cpu) seconds")
    print(f"{'experiments':>12} {'cold':>16} {'per 1k':>8} {'warm':>16} {'per 1k':>8}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), n)
            cold = min(time_cold(Path(tmp)) for _ in range(args.repeat))
            warm = min(time_warm(Path(tmp)) for _ in range(args.repeat))
        print(f"{n:>12,} {cold[0]:>7.3f} ({cold[1]:>6.3f}) {cold[0] / n * 1000:>8.4f} "
              f"{warm[0]:>7.3f} ({warm[1]:>6.3f}) {warm[0] / n * 1000:>8.4f}")


if __name__ == "__main__":
    main()
