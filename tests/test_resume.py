"""SIGKILL of the orchestrator mid-iteration, then resume: nothing lost, nothing half-written."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import psutil

from autoresearch.execution import sandbox
from conftest import git, tiny_config
from helpers import process_named

SANDBOXED = not sandbox.probe()  # [sandbox] mode = "auto" (the default) puts runs in bubblewrap here

AGENT = '''\
import os, pathlib, re, time
n = int(os.environ["AUTORESEARCH_ITERATION"])
p = pathlib.Path("train.py")
p.write_text(re.sub(r"X = [0-9.]+", f"X = {n + 1}.0", p.read_text()))
if pathlib.Path("hold_agent").exists():
    pathlib.Path("../held/agent_started").write_text(str(os.getpid()) + " " + os.readlink("/proc/self/ns/pid"))
    time.sleep(60)
print(f"X -> {n + 1}")
print("Raise X because a larger X scores higher.")
'''

TRAIN = '''\
import os, pathlib, time
X = 1.0
if pathlib.Path("hold_run").exists() and X > 1:
    pathlib.Path("run_started").write_text(str(os.getpid()) + " " + os.readlink("/proc/self/ns/pid"))
    time.sleep(60)
print("---")
print(f"score: {X:.6f}")
'''

# The agent script, and the folder it says it started in, live outside the repository under
# tmp_path: the agent's sandbox (its /tmp is private) sees them only where opened up.
AGENT_CONFIG = '''
[agent]
kind = "command"
command = "python ../agent.py"

[sandbox]
agent_writable = ["../agent.py", "../held"]
'''
CONFIG = tiny_config(timeout=90) + AGENT_CONFIG


def start(task, n, env=None):
    return subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(task), "--tag", "k", "--iterations", str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True,
                            env=env)


def wait_for(path: Path, timeout=30):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    time.sleep(0.2)
    return path.read_text()  # "PID pid:[namespace]": inside the sandbox the pid is the sandbox's own


def gone(pid_text: str, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while process_named(pid_text) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def rows(task):
    return (task / "results.tsv").read_text().splitlines()


@pytest.mark.parametrize("stage", ["hold_run", "hold_agent"])
def test_sigkill_mid_iteration_then_resume(make_task, stage, tmp_path):
    task = make_task(train=TRAIN, config=CONFIG, extra={"../agent.py": AGENT})
    (task.parent / "held").mkdir()
    # the agent script lives outside the task dir so it is not an out-of-scope change
    proc = start(task, 1)
    assert proc.wait(60) == 0, proc.stdout.read()
    assert len(rows(task)) == 3

    (task / stage).write_text("")
    proc = start(task, 1)
    child = wait_for(task / "run_started" if stage == "hold_run" else task.parent / "held" / "agent_started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = (task / "results.tsv").read_text()
    assert len(before.splitlines()) == 3  # no half-done row
    if stage == "hold_run" and SANDBOXED:
        assert gone(child)  # the sandbox dies with the orchestrator (bwrap --die-with-parent)
    elif stage == "hold_run":
        assert process_named(child) is not None  # the training group outlived the orchestrator...

    (task / stage).unlink()
    proc = start(task, 1)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "interrupted" in out
    assert process_named(child) is None  # ...until resume
    lines = rows(task)
    assert len(lines) == 4, lines
    assert [line.split("\t")[3] for line in lines[1:]] == ["keep", "keep", "keep"]
    assert lines[-1].split("\t")[1] == "3.000000"
    ledger = (task / ".autoresearch/k/ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 3
    assert git(task, "rev-parse", "HEAD").strip().startswith(lines[-1].split("\t")[0])
    assert git(task, "status", "--porcelain", "--untracked-files=no").strip() == ""
    assert (task / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert list((task / ".autoresearch/k/runs").glob("0002.interrupted-*"))


# TRAIN, holding in the baseline's run too.
BASELINE_HOLD = TRAIN.replace('pathlib.Path("hold_run").exists() and X > 1', 'pathlib.Path("hold_baseline").exists()')


def test_sigkill_during_the_baseline_then_resume(make_task):
    """A tag killed in its very first run (no record yet) resumes: it does not refuse the tag."""
    task = make_task(train=BASELINE_HOLD, config=CONFIG, extra={"../agent.py": AGENT})
    (task / "hold_baseline").write_text("")
    git(task, "add", "-A")
    git(task, "commit", "-qm", "hold")
    proc = start(task, 1)
    child = wait_for(task / "run_started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not (task / ".autoresearch/k/ledger.jsonl").read_text()  # begun, nothing recorded

    git(task, "rm", "-q", "hold_baseline")
    git(task, "commit", "-qm", "release")  # on the tag's branch: the baseline runs from here
    (task / "run_started").unlink()
    proc = start(task, 1)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "interrupted" in out
    assert process_named(child) is None
    lines = rows(task)
    assert [line.split("\t")[3] for line in lines[1:]] == ["keep", "keep"], lines
    assert "baseline" in lines[1]


# A run that plants a sourceless json.pyc (ignored by the stock Python .gitignore): every later
# `import json` in the task directory would load it. Then the orchestrator is SIGKILLed mid-run.
PLANTING = '''\
import json, os, pathlib, py_compile, time
X = 1.0
if not os.path.exists("data.cache"):  # the committed code's data cache: the night's, kept
    pathlib.Path("data.cache").write_text("data")
if pathlib.Path("hold_run").exists() and X > 1:
    pathlib.Path("evil.py").write_text("def dumps(o):\\n    return '99'\\n")
    py_compile.compile("evil.py", cfile="json.pyc")
    os.remove("evil.py")
    pathlib.Path("planted.txt").write_text("untracked, not ignored")
    pathlib.Path("run_started").write_text(str(os.getpid()) + " " + os.readlink("/proc/self/ns/pid"))
    time.sleep(60)
print("---")
print(f"score: {float(json.dumps(X)):.6f}")
'''


def test_files_a_killed_run_planted_are_gone_after_resume(make_task):
    task = make_task(train=PLANTING, config=CONFIG, extra={"../agent.py": AGENT, ".gitignore": "*.py[cod]\n__pycache__/\n*.cache\n"})
    (task.parent / "held").mkdir()
    (task / "notes.pyc").write_text("the user's own ignored file, there before the night")
    proc = start(task, 1)
    assert proc.wait(60) == 0, proc.stdout.read()
    cache = (task / "data.cache").stat()

    (task / "hold_run").write_text("")
    proc = start(task, 1)
    wait_for(task / "run_started")
    assert (task / "json.pyc").exists() and (task / "planted.txt").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    (task / "hold_run").unlink()
    proc = start(task, 1)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert not (task / "json.pyc").exists()
    assert not (task / "planted.txt").exists()
    assert (task / "notes.pyc").exists()  # the user's ignored file is never the run's
    assert (task / "data.cache").stat().st_ino == cache.st_ino  # nor the baseline's cache
    assert "removed what the interrupted run left in the task directory: json.pyc" in out
    lines = rows(task)
    assert [line.split("\t")[1] for line in lines[1:]] == ["1.000000", "2.000000", "3.000000"], lines  # not 99
    assert len((task / ".autoresearch/k/ledger.jsonl").read_text().splitlines()) == 3


def test_the_evaluation_checkout_a_killed_night_left_goes_at_the_next_start(make_task, tmp_path):
    """The pristine copy the trusted eval runs on lives in the temporary directory all night; a
    SIGKILL runs no finalizer, so the next start removes it: only it, never another's folder."""
    task = make_task(train=TRAIN, config=tiny_config(timeout=90, task='eval = "python train.py"') + AGENT_CONFIG,
                     extra={"../agent.py": AGENT})
    (task.parent / "held").mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    me = psutil.Process()
    others = {"autoresearch-eval-unmarked": None,  # another program's, or an older version's: no mark
              "autoresearch-eval-live": {"pid": me.pid, "create_time": me.create_time(), "host": socket.gethostname()},
              "autoresearch-eval-elsewhere": {"pid": 1 << 22, "create_time": 0.0, "host": "another-host"}}
    for name, owner in others.items():
        (tmp / name).mkdir()
        if owner:
            (tmp / name / ".owner").write_text(json.dumps(owner))
    env = {**os.environ, "TMPDIR": str(tmp)}

    (task / "hold_run").write_text("")
    proc = start(task, 1, env)
    wait_for(task / "run_started")  # iteration 1: the baseline's eval made the checkout
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = sorted(p.name for p in tmp.iterdir() if p.name not in others)
    assert len(left) == 1 and left[0].startswith("autoresearch-eval-"), left
    assert (tmp / left[0] / "repo" / "train.py").exists()

    (task / "hold_run").unlink()
    proc = start(task, 1, env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"removed {tmp / left[0]}" in out
    assert sorted(p.name for p in tmp.iterdir()) == sorted(others)  # and this night's own went at its end
    assert [line.split("\t")[3] for line in rows(task)[1:]] == ["keep", "keep"]
