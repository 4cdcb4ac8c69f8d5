"""A small run of bench/faults.py: SIGKILL the orchestrator at random points, resume, check everything."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "faults.py"


@pytest.mark.slow
def test_ten_faults_all_survived():
    proc = subprocess.run([sys.executable, str(BENCH), "--faults", "10", "--seed", "7"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "faults: 10 injected, 10 survived, 0 rows lost" in proc.stdout
