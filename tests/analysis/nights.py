"""Hand-built nights for the report, plot and export tests: a task in git, a ledger, run dirs.

Every experiment is a real commit that changes constants of train.py, so anything that reads
the code at a commit (the MLflow params) has the right answer to find.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import load_task
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

TRAIN = """\
LR = 0.001          # search: log(1e-4, 1.0)
WIDTH = 32          # search: int_log(16, 256)
ARCH = "mlp"        # search: ["mlp", "cnn"]
print("---")
print("val_acc: 0.5")
"""

CONFIG = """\
[task]
run = "python train.py"
editable = ["train.py"]
time_budget = 60

[metrics]
primary = "val_acc"
direction = "maximize"
deterministic = true
"""

XSS = '<script>alert("x")</script> & <b>wider</b>'


@dataclass(frozen=True)
class Step:
    status: Status
    description: str
    changes: dict  # constant name -> new source literal
    val_acc: float | None
    reason: str = ""
    cost: float = 0.0
    tokens: int = 0


# The right answers: keeps 0 -> 1 -> 5 -> 7, val_acc 0.70 -> 0.78 -> 0.91 -> 0.93.
STEPS = [
    Step(Status.KEEP, "baseline", {}, 0.70),
    Step(Status.KEEP, "raise LR to 3e-3", {"LR": "0.003"}, 0.78, cost=0.12, tokens=4100),
    Step(Status.DISCARD, "width 128", {"WIDTH": "128"}, 0.76, cost=0.10, tokens=3900),
    Step(Status.DISCARD, "LR 1.0 (diverged)", {"LR": "1.0"}, 0.10, cost=0.09, tokens=3500),
    Step(Status.CRASH, "typo in ARCH", {"ARCH": '"cnm"'}, None, reason="exit_code: 1", cost=0.11, tokens=4000),
    Step(Status.KEEP, "switch to a CNN", {"ARCH": '"cnn"'}, 0.91, cost=0.15, tokens=5200),
    Step(Status.DISCARD, "CNN, width 64", {"WIDTH": "64"}, 0.905, cost=0.10, tokens=4300),
    Step(Status.KEEP, XSS, {"WIDTH": "48"}, 0.93, cost=0.13, tokens=4800),
]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def build_night(root: Path, steps=STEPS, tag: str = "night", curves: bool = True):
    """A task at `root` with a finished run `tag`; returns (task, store)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN)
    (root / "autoresearch.toml").write_text(CONFIG)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "init")
    task = load_task(root)
    store = RunStore(task.dir, tag)
    store.create()
    store.ledger.records  # load before appending: Ledger.append on an unloaded ledger doubles the first record
    best = _git(root, "rev-parse", "HEAD")
    source_of_best = TRAIN
    t0 = 1_700_000_000.0
    for n, step in enumerate(steps):
        parent, source = best, source_of_best
        for name, literal in step.changes.items():
            source = "\n".join(f"{name} = {literal}" + line[line.index("  "):] if line.startswith(f"{name} =") else line
                               for line in source.splitlines()) + "\n"
        if step.changes:
            (root / "train.py").write_text(source)
            _git(root, "commit", "-q", "-am", step.description)
            commit = _git(root, "rev-parse", "HEAD")
            diff = _git(root, "diff", parent, commit) + "\n"
        else:
            commit, diff = parent, ""
        metrics = {} if step.val_acc is None else {"val_acc": step.val_acc, "train_seconds": 60.0, "num_params": 1000 + n}
        record = Experiment(
            iteration=n, commit=commit, parent=parent, status=step.status, description=step.description,
            explanation=f"Why #{n}: {step.description}.\nSecond line of the explanation.",
            reason=step.reason or ("baseline" if n == 0 else ""), metrics=metrics, memory_gb=0.5,
            wall_seconds=60.0, agent="baseline" if n == 0 else "command", cost_usd=step.cost, tokens=step.tokens,
            changed_files=("train.py",) if step.changes else (), started_at=t0 + 70 * n, finished_at=t0 + 70 * n + 65,
        )
        run_dir = store.run_dir(n)
        (run_dir / "diff.patch").write_text(diff)
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        (run_dir / "explanation.md").write_text(f"# {step.description}\n\n{record.explanation}\n")
        log = [f"epoch {e} | loss {2.0 / e:.3f} | train_acc {0.5 + 0.04 * e:.3f} | val_acc {0.45 + 0.04 * e:.3f}"
               for e in range(1, 6)]
        log += ["Traceback (most recent call last):", "ValueError: unknown ARCH 'cnm'"] if step.status is Status.CRASH \
            else ["---", f"val_acc: {step.val_acc}"]
        (run_dir / "log.txt").write_text("\n".join(log) + "\n")
        if curves and step.status is not Status.CRASH and n % 2 == 1:
            # Odd runs write metrics.jsonl; even ones are left to the log-line fallback.
            with open(run_dir / "metrics.jsonl", "w") as fh:
                for e in range(1, 8):
                    fh.write(json.dumps({"epoch": e, "train_loss": 1.5 / e, "val_loss": 1.6 / e + 0.01 * e,
                                         "val_acc": (step.val_acc or 0) * (1 - 0.5 / e)}) + "\n")
        store.ledger.append(record)
        if step.status is Status.KEEP:
            best, source_of_best = commit, source
        else:
            _git(root, "reset", "-q", "--hard", best)
    return task, store
