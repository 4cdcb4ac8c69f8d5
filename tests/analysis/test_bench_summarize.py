"""bench/summarize.py at a small size: the benchmark of the issue's speed bar keeps running."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_cold_and_warm_times():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "summarize.py"), "--sizes", "300", "--repeat", "1"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = re.search(r"^\s+300\s+([\d.]+) \(\s*[\d.]+\)\s+[\d.]+\s+([\d.]+) \(", proc.stdout, re.MULTILINE)
    assert row, proc.stdout
    assert float(row.group(1)) < 5 and float(row.group(2)) < 5  # seconds; a hang or a blow-up, not a timing test
