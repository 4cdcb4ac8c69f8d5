"""What the pristine evaluator and the run cleanup cost per experiment (execution/pristine.py).

For each repository size: the two scans of the task tree around a run with the cleanup after it
(a run that litters 20 files), and the evaluation's copy: the night's first is a checkout of the
base (git read-tree + checkout-index); each later one puts that checkout back to the commit (git
diff-files, ls-files --others), the experiment's editable files and a 1 MB output linked in.

    python bench/pristine.py [--reps 20] [--large]

Sizes: the bundled MNIST-1D example; 2,000 files (8 MB); with --large, 20,000 files (80 MB).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import autoresearch
from autoresearch.config import load_task
from autoresearch.execution import pristine
from autoresearch.loop import Loop
from autoresearch.records import Proposal

GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
EXAMPLE = Path(autoresearch.__file__).parent / "examples" / "mnist1d"


class Idle:
    name = "idle"

    def propose(self, context):
        return Proposal("nothing", "bench")


def repo(root: Path, files: int) -> Path:
    shutil.copytree(EXAMPLE, root)
    toml = root / "autoresearch.toml"
    toml.write_text(toml.read_text().replace('readonly = ["prepare.py"]', 'readonly = ["prepare.py"]\noutputs = ["ckpt.pt"]'))
    for i in range(files):
        path = root / "lib" / f"d{i // 100}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(4096))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=root, check=True)
    return root


def measure(root: Path, reps: int) -> tuple[float, float, int]:
    loop = Loop(load_task(root), "bench", Idle(), say=lambda s: None)
    commit = loop.git.head()
    (root / "ckpt.pt").write_bytes(bytes(1 << 20))
    cleanup, copy = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        before = pristine.before_run(loop)
        for i in range(20):
            (root / f"litter{i}.tmp").write_text("x")
        (root / "ckpt.pt").write_bytes(bytes(1 << 20))
        t1 = time.perf_counter()
        left = pristine.after_run(loop, before, users_code=False)
        t2 = time.perf_counter()
        assert len(left.removed) == 20 and left.outputs == ["ckpt.pt"], left
        c = pristine.make_copy(loop, commit, commit, left.outputs)
        c.close()
        t3 = time.perf_counter()
        cleanup.append((t1 - t0) + (t2 - t1))
        copy.append(t3 - t2)
    files = int(subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.count("\n"))
    return statistics.median(cleanup), copy[0], statistics.median(copy[1:]), files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)  # at least 2
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    sizes = [0, 2000] + ([20000] if args.large else [])
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            root = repo(Path(tmp) / f"r{n}", n)
            cleanup, first, copy, files = measure(root, args.reps)
            print(f"{files:6d} committed files: scans + cleanup {cleanup * 1000:7.1f} ms; pristine copy: the night's "
                  f"first {first * 1000:8.1f} ms, then {copy * 1000:7.1f} ms per experiment (medians of {args.reps})")


if __name__ == "__main__":
    main()
