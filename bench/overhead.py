"""Orchestrator overhead per iteration: everything except the agent's and the training's time.

Builds a throwaway task in a temporary git repository, pre-fills its ledger with N rows,
then runs real iterations (git commit, reset, ledger append, results.tsv rewrite, prompt
rendering, guards) with an instant scripted agent and an instant executor, and prints the
median and p90 of the time left once the agent's and the run's own time are subtracted.

    python bench/overhead.py [--rows 10 1000] [--iterations 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Experiment, Proposal, RunResult, Status

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import KARPATHY_CONFIG  # noqa: E402 (the tests' karpathy-sized task config)



class InstantAgent:
    name = "bench"

    def __init__(self):
        self.seconds = 0.0
        self.n = 0

    def propose(self, context):
        t = time.perf_counter()
        self.n += 1
        p = context.task_dir / "train.py"
        p.write_text(p.read_text().replace(p.read_text().splitlines()[0], f"LR = {self.n}e-4"))
        self.seconds += time.perf_counter() - t
        return Proposal(f"LR -> {self.n}e-4", "Scan the learning rate.")


class InstantExecutor:
    def __init__(self):
        self.seconds = 0.0
        self.n = 0

    def run(self, spec, *, on_start=None, stop_event=None):
        t = time.perf_counter()
        self.n += 1
        value = 1.0 - self.n * 1e-3 if self.n % 3 == 0 else 2.0  # every third run is a keep
        Path(spec.log_path).write_text(f"step 1\n---\nval_bpb: {value:.6f}\npeak_vram_mb: 100.0\n")
        self.seconds += time.perf_counter() - t
        return RunResult(exit_code=0, timed_out=False, wall_seconds=0.0, peak_rss_mb=0.0, log_path=spec.log_path)


def make_task(root: Path) -> Path:
    root.mkdir()
    (root / "train.py").write_text("LR = 1e-4\nprint('---')\n" + "x = 1\n" * 300)
    (root / "prepare.py").write_text("DATA = 1\n")
    (root / "program.md").write_text("# bench\n")
    (root / "autoresearch.toml").write_text(KARPATHY_CONFIG)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(git + ["add", "-A"], cwd=root, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "init"], cwd=root, check=True)
    return root


def prefill(loop: Loop, rows: int) -> None:
    """Fill the ledger with `rows` records whose last keep is the current HEAD."""
    loop.prepare()
    head = loop.git.head()
    for i in range(rows):
        keep = i == 0 or i == rows - 1
        loop.store.ledger.append(Experiment(
            iteration=i, commit=head if keep else f"{i:040x}", parent=head,
            status=Status.KEEP if keep else Status.DISCARD, description=f"synthetic experiment {i}",
            explanation="A synthetic row. " * 5, metrics={"val_bpb": 1.5 if keep else 2.0},
            content_hash=f"{i:064x}",
        ))


def measure(rows: int, iterations: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        task_dir = make_task(Path(tmp) / "task")
        agent, executor = InstantAgent(), InstantExecutor()
        marks = []  # (time, agent seconds, executor seconds) as each iteration is reported
        say = lambda _: marks.append((time.perf_counter(), agent.seconds, executor.seconds))  # noqa: E731
        loop = Loop(load_task(task_dir), "bench", agent, executor=executor, say=say)
        prefill(loop, rows)
        marks.append((time.perf_counter(), 0.0, 0.0))
        loop.run(Limits(iterations=iterations))  # one run: start-up (resume checks) happens once, as in use
        marks = marks[1:]  # the first iteration also paid for start-up (resume checks): leave it out
        return [(t1 - t0) - (a1 - a0) - (e1 - e0) for (t0, a0, e0), (t1, a1, e1) in zip(marks, marks[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    print(f"{'ledger rows':>12} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for rows in args.rows:
        times = sorted(measure(rows, args.iterations))
        p90 = times[int(0.9 * (len(times) - 1))]
        print(f"{rows:>12} {statistics.median(times) * 1e3:>10.1f} {p90 * 1e3:>8.1f} {times[-1] * 1e3:>8.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
