"""Experiments per minute with 1, 2 and 4 workers on a fake 2-second training.

    python bench/throughput.py [--workers 1 2 4] [--mode sleep|cpu] [--per-worker 6] [--executor local|ray]

`sleep` training waits 2 s (what a GPU-bound run looks like to this machine's CPUs);
`cpu` training spins a core for 2 s (on 2 cores, 4 such workers cannot scale). The figure
to read is the speed-up over one worker: the goal is at least 0.9 x N.

`--executor ray` starts a local Ray cluster of N one-slot nodes for N workers (loopback only,
custom resource `slot`), so each run is a Ray task on its own node (ray_executor.py).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from autoresearch.config import load_task
from autoresearch.loop import Limits
from autoresearch.records import Proposal
from autoresearch.workers import parse_slots, run_workers

TRAIN = {
    "sleep": "import time\nX = 1\ntime.sleep(2.0)\nprint('---')\nprint(f'score: {X}')\n",
    "cpu": "import time\nX = 1\nend = time.time() + 2.0\nwhile time.time() < end:\n    pass\nprint('---')\nprint(f'score: {X}')\n",
}
CONFIG = """\
[task]
run = "python train.py"
editable = ["train.py"]
time_budget = 2
timeout = 60

[metrics]
primary = "score"
direction = "maximize"
"""


class CountingAgent:
    """Every proposal is new code (X counts up), so every iteration trains."""

    name = "bench"

    def __init__(self, counter, lock):
        self.counter, self.lock = counter, lock

    def propose(self, context):
        with self.lock:
            x = next(self.counter)
        p = context.task_dir / "train.py"
        p.write_text(re.sub(r"X = \d+", f"X = {x}", p.read_text()))
        return Proposal(f"X -> {x}", "Count up.")


def measure(workers: int, mode: str, per_worker: int, executor: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        task_dir = Path(tmp) / "task"
        task_dir.mkdir()
        (task_dir / "train.py").write_text(TRAIN[mode])
        (task_dir / "autoresearch.toml").write_text(CONFIG)
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=task_dir, check=True)
        subprocess.run(git + ["add", "-A"], cwd=task_dir, check=True)
        subprocess.run(git + ["commit", "-q", "-m", "init"], cwd=task_dir, check=True)
        counter, lock = itertools.count(2), threading.Lock()
        task = load_task(task_dir)
        make_agent = lambda i: CountingAgent(counter, lock)  # noqa: E731
        with _executor_factory(executor, workers) as make_executor:
            # The baseline and the worktrees are set up first, outside the timed part.
            run_workers(task, "b", make_agent, parse_slots(None, workers), Limits(iterations=0), say=lambda s: None,
                        make_executor=make_executor)
            n = workers * per_worker
            t = time.perf_counter()
            run_workers(task, "b", make_agent, parse_slots(None, workers), Limits(iterations=n), say=lambda s: None,
                        make_executor=make_executor)
            return n / (time.perf_counter() - t) * 60


@contextlib.contextmanager
def _executor_factory(name: str, workers: int):
    if name == "local":
        yield lambda i: None
    elif name == "ray":
        with _ray_cluster(workers):
            from autoresearch.execution.ray_executor import RayExecutor

            executor = RayExecutor(None, {"num_cpus": 0, "resources": {"slot": 1}})
            yield lambda i: executor
    else:
        raise SystemExit(f"--executor {name}: not available in this build")


@contextlib.contextmanager
def _ray_cluster(nodes: int):
    """`nodes` one-slot Ray nodes on loopback, each with a started worker (a night's steady state)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when Ray is imported: keeps it on 127.0.0.1
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "resources": {"slot": 1}}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(wait=False, **node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        warm = ray.remote(num_cpus=0, resources={"slot": 1})(_warm_up)
        ray.get([warm.remote() for _ in range(nodes)])
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


def _warm_up() -> None:
    import time

    import autoresearch.ray_executor  # noqa: F401

    time.sleep(1.0)  # holds the node's slot, so the next warm-up goes to another node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--mode", choices=sorted(TRAIN), default="sleep")
    parser.add_argument("--per-worker", type=int, default=6, help="experiments each worker runs")
    parser.add_argument("--executor", default="local")
    args = parser.parse_args()
    print(f"fake 2 s training ({args.mode}), executor {args.executor}")
    print(f"{'workers':>8} {'exp/min':>8} {'speed-up':>9} {'goal':>6}")
    base = None
    for w in args.workers:
        rate = measure(w, args.mode, args.per_worker, args.executor)
        base = base or rate / w
        print(f"{w:>8} {rate:>8.1f} {rate / base:>8.2f}x {0.9 * w:>5.1f}x", flush=True)


if __name__ == "__main__":
    main()
