"""Workers share git's hooks, config and info/exclude (one common git directory): a change one
worker's agent makes is blamed on that worker, not only on whichever worker looked first
(git_guard.py). Worker 1 is hostile; worker 0 is not, and its agent call is open meanwhile."""

import os
import re
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoresearch.agents.command import CommandAgent
from autoresearch.config import load_task
from autoresearch.execution import sandbox
from autoresearch.loop import Limits
from autoresearch.records import Proposal, Status
from autoresearch.workers import parse_slots, run_workers

from conftest import TINY_CONFIG

TRAIN = '''\
X = 1.0
print("---")
print(f"score: {X:.6f}")
'''


def common_dir(task_dir: Path) -> Path:
    out = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=task_dir, capture_output=True, text=True).stdout
    path = Path(out.strip())
    return path if path.is_absolute() else (task_dir / path).resolve()


def set_x(task_dir: Path, value: float) -> None:
    p = task_dir / "train.py"
    p.write_text(re.sub(r"X = [0-9.]+", f"X = {value}", p.read_text()))


class Innocent:
    """Worker 0: its call stays open until `release` says so, then a fair edit."""

    name = "innocent"

    def __init__(self, release: threading.Event):
        self.release = release

    def propose(self, context):
        self.release.wait(20)
        set_x(context.task_dir, 2.0)
        return Proposal("X -> 2.0", "Fair.")


class Hostile:
    """Worker 1 (in-process, so never sandboxed): plants a hook and an fsmonitor, lets worker 0's
    call end first (its window sees the change and puts it back), then makes its own edit."""

    name = "hostile"

    def __init__(self, planted: threading.Event):
        self.planted = planted

    def propose(self, context):
        common = common_dir(context.task_dir)
        hook = common / "hooks" / "post-commit"
        hook.write_text("#!/bin/sh\necho planted\n")
        hook.chmod(0o755)
        subprocess.run(["git", "config", "core.fsmonitor", "true"], cwd=context.task_dir, check=True)
        self.planted.set()
        deadline = time.monotonic() + 20
        while hook.exists() and time.monotonic() < deadline:  # worker 0's window put it back
            time.sleep(0.02)
        set_x(context.task_dir, 3.0)
        return Proposal("X -> 3.0", "Also planted a hook.")


def by_worker(records):
    return {r.worker: r for r in records if r.iteration > 0}


def test_the_worker_that_tampered_is_blamed_even_when_another_looked_first(make_task):
    task_dir = make_task(train=TRAIN)
    task = load_task(task_dir)
    planted = threading.Event()
    agents = {0: Innocent(planted), 1: Hostile(planted)}
    records = run_workers(task, "b", lambda i: agents[i], parse_slots(None, 2), Limits(iterations=2), say=lambda s: None)
    mine = by_worker(records)
    hostile, innocent = mine[1], mine[0]
    # The old guard blamed the worker that looked first and kept the one that did it.
    assert hostile.status is Status.CRASH and hostile.reason.startswith("guard:"), hostile.reason
    assert "hooks/post-commit" in hostile.reason and "config" in hostile.reason
    # Worker 0's call was open when it happened: without the sandbox, it cannot be cleared, and says why.
    assert innocent.status is not Status.KEEP
    assert "w1's agent" in innocent.reason and "without the sandbox" in innocent.reason, innocent.reason
    common = common_dir(task_dir)
    assert not (common / "hooks" / "post-commit").exists()
    assert "fsmonitor" not in (common / "config").read_text()


def test_a_worker_whose_calls_were_closed_is_never_blamed(make_task):
    """Worker 0 finishes its one iteration before worker 1 tampers: only worker 1 is blamed."""
    task_dir = make_task(train=TRAIN)
    task = load_task(task_dir)
    done = threading.Event()

    class Quick:
        name = "quick"

        def propose(self, context):
            set_x(context.task_dir, 2.0)
            return Proposal("X -> 2.0", "Fair.")

    class Late(Hostile):
        def propose(self, context):
            ledger = Path(task_dir) / ".autoresearch" / "b" / "ledger.jsonl"
            deadline = time.monotonic() + 20
            while '"worker": 0' not in ledger.read_text() and time.monotonic() < deadline:
                time.sleep(0.02)  # worker 0's iteration is recorded: its windows are closed
            hook = common_dir(context.task_dir) / "hooks" / "post-commit"
            hook.write_text("#!/bin/sh\necho planted\n")
            set_x(context.task_dir, 3.0)
            return Proposal("X -> 3.0", "Planted a hook.")

    agents = {0: Quick(), 1: Late(done)}
    records = run_workers(task, "b", lambda i: agents[i], parse_slots(None, 2), Limits(iterations=2), say=lambda s: None)
    mine = by_worker(records)
    assert mine[0].status is Status.KEEP, mine[0].reason
    assert mine[1].status is Status.CRASH and "hooks/post-commit" in mine[1].reason
    assert "ran too" not in mine[1].reason, mine[1].reason


@pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")
def test_sandboxed_a_hostile_workers_attempt_changes_nothing_and_blames_nobody(make_task):
    attack = textwrap.dedent('''\
        import subprocess, os, re
        common = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True).stdout.strip()
        for name, act in (("hook", lambda: open(os.path.join(common, "hooks", "post-commit"), "w").write("#!/bin/sh\\n")),
                          ("exclude", lambda: open(os.path.join(common, "info", "exclude"), "a").write("x\\n")),
                          ("config", lambda: subprocess.run(["git", "config", "core.fsmonitor", "true"], check=True,
                                                            capture_output=True))):
            try:
                act()
                print("ATTACK-OK", name)
            except Exception as exc:
                print("ATTACK-FAILED", name, type(exc).__name__)
        code = open("train.py").read()
        open("train.py", "w").write(re.sub(r"X = [0-9.]+", "X = 3.0", code))
        print("X -> 3.0")
    ''')
    config = TINY_CONFIG + '\n[agent]\nkind = "command"\ncommand = "python hostile.py"\n\n[sandbox]\nmode = "required"\n'
    task_dir = make_task(train=TRAIN, config=config, extra={"hostile.py": attack})
    task = load_task(task_dir)
    release = threading.Event()
    threading.Timer(3.0, release.set).start()  # worker 0's call stays open while worker 1 attacks
    agents = {0: Innocent(release), 1: CommandAgent.from_task(task)}
    records = run_workers(task, "b", lambda i: agents[i], parse_slots(None, 2), Limits(iterations=2), say=lambda s: None)
    mine = by_worker(records)
    assert mine[0].status is not Status.CRASH, mine[0].reason  # never blamed for worker 1's attempt
    assert mine[1].status is not Status.CRASH, mine[1].reason  # nothing changed: its edit is judged
    log = (Path(task_dir) / ".autoresearch" / "b" / "runs" / f"{mine[1].iteration:04d}" / "agent.log").read_text()
    assert "ATTACK-OK" not in log and log.count("ATTACK-FAILED") == 3, log
    common = common_dir(task_dir)
    assert not (common / "hooks" / "post-commit").exists() and "fsmonitor" not in (common / "config").read_text()
    assert all(r.sandboxed for r in records if r.exit_code is not None)


def test_a_window_opened_just_after_a_change_was_put_back_is_not_blamed_for_it(tmp_path):
    """The agent's next call opened within the file-time slack of the change the last call made,
    and was blamed too: the experiment after a guard crash crashed as well (seen in CI)."""
    from autoresearch.git_guard import GitGuard
    from autoresearch.gitrepo import Git

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    git, guard = Git(tmp_path), GitGuard()
    config = common_dir(tmp_path) / "config"
    good = config.read_bytes()
    with guard.window(git, "agent (iteration 1)") as first:
        config.write_text("[core\n")
    assert first and config.read_bytes() == good
    with guard.window(git, "agent (iteration 2)") as second:  # at once: well inside the slack
        pass
    assert second == []
    # A change made while the second window is open is still its own.
    with guard.window(git, "agent (iteration 3)") as third:
        config.write_text("[core\n")
    assert third and config.read_bytes() == good
