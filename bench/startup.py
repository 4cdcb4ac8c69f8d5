"""Per-run startup of a script that imports torch: a fresh process against a warm start.

Startup is the time from the executor's run() call to the moment the script has `torch` and
`numpy` imported and can start training (the script prints a monotonic timestamp there; the
clock is the same in every process). Fresh runs go through LocalExecutor, warm runs through
WarmExecutor(["torch", "numpy"]); the warm server's own start (once per night) is shown apart.

    python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.execution import LocalExecutor
from autoresearch.records import RunSpec
from autoresearch.execution.warm import WarmExecutor

SCRIPT = """\
import time
import torch
import numpy
print(f"ready {time.monotonic()!r}", flush=True)
x = torch.ones(64, 64)
print(f"sum: {float((x @ x).sum())}")
"""


def one(executor, directory: Path, n: int) -> tuple[float, float | None]:
    spec = RunSpec(command="python train.py", cwd=str(directory),
                   env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
                   timeout=120, log_path=str(directory / f"run{n}.log"))
    t0 = time.monotonic()
    result = executor.run(spec)
    text = Path(spec.log_path).read_text()
    if result.exit_code != 0 or "ready " not in text:
        raise SystemExit(f"run failed (exit {result.exit_code}):\n{text}")
    ready = float(text.split("ready ", 1)[1].split()[0])
    return ready - t0, result.startup_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "train.py").write_text(SCRIPT)
        fresh = [one(LocalExecutor(), d, i)[0] for i in range(args.runs)]
        with WarmExecutor(["torch", "numpy"]) as warm:
            t0 = time.monotonic()
            first, _ = one(warm, d, 100)  # starts the server: paid once per night
            server = time.monotonic() - t0
            runs = [one(warm, d, 200 + i) for i in range(args.runs)]
    hot = [r[0] for r in runs]
    recorded = [r[1] for r in runs if r[1] is not None]

    def show(xs):
        return f"median {statistics.median(xs):.3f} s  (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})"

    print(f"fresh process, until torch+numpy are imported: {show(fresh)}")
    print(f"warm start,    until torch+numpy are imported: {show(hot)}")
    print(f"warm start, RunResult.startup_seconds:          {show(recorded)}")
    print(f"warm server start with the first run:           {server:.3f} s (once)")
    print(f"saving per run: {statistics.median(fresh) - statistics.median(hot):.3f} s")


if __name__ == "__main__":
    main()
