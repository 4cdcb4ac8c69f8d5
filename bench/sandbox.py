"""What the sandbox costs per run: a trivial run fresh and inside bubblewrap, through the runner.

Each run is `python -c pass`-like (a script that exits at once) under run_process, so the figure
is the whole per-run overhead: bwrap's namespaces and mounts, and the supervision around it.
Warm starts: a sandboxed run starts fresh today (sandbox.py), so the warm figure is the fresh one.

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
from autoresearch.records import RunSpec


def timed(spec: RunSpec, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = run_process(spec)
        out.append(time.perf_counter() - t0)
        assert result.exit_code == 0, Path(spec.log_path).read_text()
    return out


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
        base = RunSpec(command=f"{sys.executable} -S train.py", cwd=str(task), env=dict(os.environ), timeout=60,
                       log_path=str(Path(tmp) / "log.txt"))
        view = sandbox.run_view(task, task.parent, task / ".autoresearch" / "t", readonly=("prepare.py",))
        boxed = RunSpec(**{**base.__dict__, "sandbox": view})
        timed(base, 3), timed(boxed, 3)  # warm the page cache
        fresh, inside = [], []
        for _ in range(args.runs // 5 or 1):  # interleaved, so load on the machine hits both alike
            fresh += timed(base, 5)
            inside += timed(boxed, 5)
    f, s = statistics.median(fresh), statistics.median(inside)
    print(f"runs: {len(fresh)} each, bwrap: {sandbox.bwrap()}")
    print(f"fresh run, median:      {f * 1000:7.1f} ms")
    print(f"sandboxed run, median:  {s * 1000:7.1f} ms")
    print(f"sandbox cost per run:   {(s - f) * 1000:7.1f} ms (median difference; warm starts run fresh when sandboxed)")


if __name__ == "__main__":
    main()
