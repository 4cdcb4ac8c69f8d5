"""What the execution tests share: a script prelude that starts stubborn processes, and pid checks."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import psutil

BIN = os.path.dirname(sys.executable)

# A prelude for test scripts. `spawn(name, **popen_kwargs)` starts a sleeping Python that ignores
# SIGTERM and writes its pid to PID_DIR/name (PID_DIR: an absolute folder from the environment,
# so that it works wherever the run's tree is, a Ray node's scratch folder included);
# `wait_pid(name)` waits until a process has written PID_DIR/name.
SPAWN = """
import os, signal, subprocess, sys, time
SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"
def write_pid(name, pid):
    path = os.path.join(os.environ.get("PID_DIR", "."), name)
    with open(path + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(path + ".tmp", path)  # the test never reads a half-written pid
def spawn(name, **kw):
    child = subprocess.Popen([sys.executable, "-c", SLEEPER], **kw)
    write_pid(name, child.pid)
    return child.pid
def wait_pid(name):
    while not os.path.exists(os.path.join(os.environ.get("PID_DIR", "."), name)):
        time.sleep(0.01)
"""


def run_env(**extra) -> dict[str, str]:
    """This process's environment, `python` being this interpreter (as the loop sets PATH)."""
    e = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return {**e, **extra}


def dead(pid: int) -> bool:
    # An orphan's zombie stays until init reaps it; it runs nothing, so it counts as dead.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_pid(folder: Path, name: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while not (folder / name).exists():
        assert time.monotonic() < deadline, f"{name} never written"
        time.sleep(0.02)
    return int((folder / name).read_text())


def log_of(result) -> str:
    return Path(result.log_path).read_text(errors="replace")


def run_at_once(run, specs, timeout: float) -> list:
    """run(spec) for every spec, each in a thread of its own, all at once: the results in order
    (None for one that had not returned after `timeout` seconds)."""
    results = [None] * len(specs)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, run(specs[i]))) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results
