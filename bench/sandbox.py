"""What the sandbox costs per run, fresh and warm: a trivial run with and without bubblewrap.

Each run is a script that exits at once, so the figure is the whole per-run overhead. Fresh:
run_process, where a sandboxed run is a new bwrap (namespaces, mounts) around a new process.
Warm: WarmExecutor, where a sandboxed run is a fork of a server that lives in its sandbox; the
sandbox adds the host-pid lookup, the namespace sweep at the end and emptying /tmp between runs.
Sandboxed and unsandboxed runs alternate in blocks, so load on the machine hits both alike.

    python bench/sandbox.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.execution import sandbox
from autoresearch.execution.runner import run_process
from autoresearch.execution.warm import WarmExecutor
from autoresearch.records import RunSpec


def timed(run, spec: RunSpec, runs: int, warm: bool = False) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = run(spec)
        out.append(time.perf_counter() - t0)
        assert result.exit_code == 0, Path(spec.log_path).read_text()
        assert result.warm is warm and result.sandboxed is (spec.sandbox is not None), result
    return out


def compare(run, plain: RunSpec, boxed: RunSpec, runs: int, warm: bool = False) -> tuple[float, float]:
    timed(run, plain, 3, warm), timed(run, boxed, 3, warm)  # the page cache, and the warm servers
    outside, inside = [], []
    for _ in range(runs // 5 or 1):
        outside += timed(run, plain, 5, warm)
        inside += timed(run, boxed, 5, warm)
    return statistics.median(outside), statistics.median(inside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    why = sandbox.probe()
    if why:
        sys.exit(f"no sandbox here: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp) / "repo" / "task"
        (task / ".autoresearch" / "t").mkdir(parents=True)
        (task / "train.py").write_text("pass\n")
        (task / "prepare.py").write_text("pass\n")
        plain = RunSpec(command=f"{sys.executable} train.py", cwd=str(task), env=dict(os.environ), timeout=60,
                        log_path=str(Path(tmp) / "log.txt"))
        view = sandbox.run_view(task, task.parent, task / ".autoresearch" / "t", readonly=("prepare.py",))
        boxed = RunSpec(**{**plain.__dict__, "sandbox": view})
        fresh = compare(run_process, plain, boxed, args.runs)
        with WarmExecutor(["json"], say=print) as ex:
            warm = compare(ex.run, plain, boxed, args.runs, warm=True)
    print(f"runs: {args.runs} of each kind, bwrap: {sandbox.bwrap()}")
    for name, (outside, inside) in (("fresh", fresh), ("warm", warm)):
        print(f"{name:5s} start, median: {outside * 1000:7.1f} ms unsandboxed, {inside * 1000:7.1f} ms sandboxed: "
              f"the sandbox costs {(inside - outside) * 1000:5.1f} ms per run")


if __name__ == "__main__":
    main()
