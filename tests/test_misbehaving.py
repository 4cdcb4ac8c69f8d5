"""Training runs that misbehave, through the loop with real processes: each ends as a crash with the
right reason (or, when it did produce a metric, is judged), and nothing it started survives it."""

import os
import time
from pathlib import Path

import pytest

from autoresearch import crash
from autoresearch.config import load_task
from autoresearch.crash import CrashKind
from autoresearch.executor import LocalExecutor
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status
from autoresearch.runner import run_process

from conftest import tiny_config
from helpers import PID_EXPR, ScriptedAgent, pid_expr, process_named

def quick_config(timeout: float) -> str:
    return tiny_config(time_budget=1, timeout=timeout) + '\n[sandbox]\nwritable = ["../pids"]\n'


# The baseline (X = 1.0) behaves; the agent's version (X = 2.0) misbehaves.
PREAMBLE = "import os, sys, time\nX = 1.0\nBAD = X > 1\n"
FOOTER = "print('---')\nprint(f'score: {X}')\n"


class RecordingExecutor:
    """The default executor, keeping each RunResult; optionally with a memory limit."""

    def __init__(self, memory_limit_mb=None):
        self.results = []
        self.memory_limit_mb = memory_limit_mb

    def run(self, spec, *, on_start=None, stop_event=None):
        if self.memory_limit_mb is None:
            result = LocalExecutor().run(spec, on_start=on_start, stop_event=stop_event)
        else:
            result = run_process(spec, on_start=on_start, stop_event=stop_event, memory_limit_mb=self.memory_limit_mb)
        self.results.append(result)
        return result


def misbehave(make_task, body: str, *, timeout: float = 20, memory_limit_mb=None):
    """Baseline, then one iteration whose train.py runs `body` (with BAD true); returns (record, result, task)."""
    task_dir = make_task(train=PREAMBLE + body, config=quick_config(timeout))
    (task_dir.parent / "pids").mkdir()

    def edit(d: Path):
        p = d / "train.py"
        p.write_text(p.read_text().replace("X = 1.0", "X = 2.0"))
        return "X -> 2.0"

    executor = RecordingExecutor(memory_limit_mb)
    task = load_task(task_dir)
    loop = Loop(task, "m", ScriptedAgent(edit), executor=executor, say=lambda s: None)
    records = loop.run(Limits(iterations=1))
    assert records[0].status is Status.KEEP, records[0].reason  # the baseline behaved
    return records[-1], executor.results[-1], task


def classified(result, record, task):
    return crash.classify_run(result, record.metrics, primary="score", editable=task.editable,
                              task_dir=task.dir, timeout=task.timeout)


def assert_crash(record, result, task, kind: CrashKind):
    """The real run's log classifies as `kind`, and the ledger's reason says so word for word."""
    assert record.status is Status.CRASH
    found = classified(result, record, task)
    assert found is not None and found.kind is kind, (found, result.output_tail[-2000:])
    if kind is not CrashKind.OOM or "limit is" not in found.detail:  # the loop knows the limit; `classified` does not
        assert record.reason == found.reason, (record.reason, found.reason)
    assert record.reason.startswith(kind.value + ":"), record.reason
    return found


def assert_gone(pid_file: Path, wait: float = 5.0):
    """The process whose pid the run wrote is dead (a zombie that init has not reaped counts as dead).

    The pid files go beside the repository, in ../pids (opened to the sandbox by quick_config): what a
    run creates in the task directory is removed after it."""
    assert pid_file.exists(), f"{pid_file} was never written"
    text = pid_file.read_text()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process_named(text) is None:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {text} from {pid_file.name} survived the run")


def test_hang_is_a_timeout(make_task):
    record, result, task = misbehave(make_task, "if BAD:\n    time.sleep(600)\n" + FOOTER, timeout=1.5)
    found = assert_crash(record, result, task, CrashKind.TIMEOUT)
    assert "1.5 s" in found.detail and result.wall_seconds < 10


def test_ignoring_sigterm_still_ends_at_the_timeout(make_task):
    body = ("import signal\nif BAD:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"    open('../pids/pid', 'w').write({PID_EXPR})\n    while True:\n        time.sleep(0.05)\n" + FOOTER)
    record, result, task = misbehave(make_task, body, timeout=1.0)
    assert_crash(record, result, task, CrashKind.TIMEOUT)
    assert result.wall_seconds < 1.0 + 2.0 + 5.0  # the timeout, the SIGTERM grace, then SIGKILL
    assert_gone(task.dir.parent / "pids" / "pid")


GRANDCHILD = pid_expr("subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']).pid")


def test_grandchildren_are_killed_and_the_run_still_judged(make_task):
    body = ('if BAD:\n    import subprocess\n'
            '    child = subprocess.Popen([sys.executable, "-c", "import os, subprocess, sys, time; '
            f"open('../pids/grandchild', 'w').write({GRANDCHILD}); "
            f"open('../pids/child', 'w').write({PID_EXPR}); time.sleep(600)\"])\n"
            "    while not os.path.exists('../pids/grandchild'):\n        time.sleep(0.02)\n" + FOOTER)
    record, result, task = misbehave(make_task, body)
    assert record.status is Status.KEEP and record.metrics["score"] == 2.0  # it printed a good footer and exited 0
    assert_gone(task.dir.parent / "pids" / "child")
    assert_gone(task.dir.parent / "pids" / "grandchild")


@pytest.mark.parametrize("leave", [
    pytest.param('    import subprocess\n'
                 '    subprocess.Popen([sys.executable, "-c", "import os, time; '
                 f"open('../pids/daemon', 'w').write({PID_EXPR}); time.sleep(600)\"], start_new_session=True)\n",
                 id="a-process-in-its-own-session-found-by-the-run-token"),
    pytest.param("    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
                 f"            open('../pids/daemon', 'w').write({PID_EXPR})\n            time.sleep(600)\n"
                 "        os._exit(0)\n",
                 id="a-double-forked-daemon-that-outlives-its-parent"),
])
def test_a_process_a_run_leaves_is_killed_with_it(make_task, leave):
    body = "if BAD:\n" + leave + "    while not os.path.exists('../pids/daemon'):\n        time.sleep(0.02)\n" + FOOTER
    record, result, task = misbehave(make_task, body)
    assert record.status is Status.KEEP
    assert_gone(task.dir.parent / "pids" / "daemon")


def test_output_flood_is_capped_and_the_run_still_judged(make_task):
    # 200 MB of output against the default 50 MB cap: the log is capped, the footer at the end survives.
    body = ("if BAD:\n    line = b'x' * 1023 + b'\\n'\n    block = line * 1024\n"
            "    for _ in range(200):\n        sys.stdout.buffer.write(block)\n    sys.stdout.flush()\n" + FOOTER)
    record, result, task = misbehave(make_task, body, timeout=60)
    assert record.status is Status.KEEP and record.metrics["score"] == 2.0
    log = Path(result.log_path)
    assert result.log_truncated and log.stat().st_size < 52 * 1024 * 1024
    assert b"[autoresearch: log truncated" in log.read_bytes()[-2 * 1024 * 1024:]


@pytest.mark.slow
def test_gigabytes_of_output(make_task):
    body = ("if BAD:\n    block = (b'y' * 1023 + b'\\n') * 1024\n"
            "    for _ in range(2048):\n        sys.stdout.buffer.write(block)\n    sys.stdout.flush()\n" + FOOTER)
    record, result, task = misbehave(make_task, body, timeout=300)
    assert record.status is Status.KEEP and result.log_truncated
    assert Path(result.log_path).stat().st_size < 52 * 1024 * 1024


def test_memory_exhaustion_under_a_limit_is_oom(make_task):
    body = ("if BAD:\n    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))\n"
            "        time.sleep(0.005)\n" + FOOTER)
    record, result, task = misbehave(make_task, body, memory_limit_mb=200)
    found = assert_crash(record, result, task, CrashKind.OOM)
    assert "the limit is 200 MB" in found.detail
    assert "memory limit exceeded" in Path(result.log_path).read_text()


def test_allocation_failure_is_oom(make_task):
    record, result, task = misbehave(make_task, "if BAD:\n    big = bytearray(1 << 62)\n" + FOOTER)
    found = assert_crash(record, result, task, CrashKind.OOM)
    assert "MemoryError" in found.detail and "train.py:5" in found.detail


def test_full_disk_is_a_disk_crash(make_task):
    # /dev/full fails every write with ENOSPC; where there is none, the write's error is raised as the kernel would
    write = ("with open('/dev/full', 'w') as f:\n        f.write('checkpoint' * 100000)" if os.path.exists("/dev/full")
             else "raise OSError(28, 'No space left on device')")
    body = f"if BAD:\n    {write}\n" + FOOTER
    record, result, task = misbehave(make_task, body)
    found = assert_crash(record, result, task, CrashKind.DISK)
    assert "No space left on device" in found.detail and crash.is_environment(found.kind)


def test_syntax_error_and_missing_package(make_task):
    record, result, task = misbehave(make_task, "if BAD:\n    import package_that_is_not_installed\n" + FOOTER)
    found = assert_crash(record, result, task, CrashKind.ENV)
    assert "package_that_is_not_installed" in found.detail and "train.py:5" in found.detail


def test_crash_half_way_after_a_fake_footer(make_task):
    body = "if BAD:\n    print('---')\n    print('score: 99.0', flush=True)\n    raise RuntimeError('diverged')\n" + FOOTER
    record, result, task = misbehave(make_task, body)
    found = assert_crash(record, result, task, CrashKind.EXIT_CODE)
    assert "RuntimeError: diverged" in found.detail


# -- agents that misbehave: whatever they do, the work tree ends at the last keep ------------------
import re  # noqa: E402
import subprocess  # noqa: E402

from conftest import git  # noqa: E402


def set_x(d: Path, value: str = "2.0"):
    p = d / "train.py"
    p.write_text(re.sub(r"X = [0-9.]+", f"X = {value}", p.read_text(), count=1))


def run_agent(make_task, *edits, iterations=None):
    task_dir = make_task(train=PREAMBLE + FOOTER, config=quick_config(20))
    loop = Loop(load_task(task_dir), "a", ScriptedAgent(*edits), say=lambda s: None)
    records = loop.run(Limits(iterations=iterations or len(edits)))
    return task_dir, records


def assert_at_last_keep(task_dir: Path, records):
    keep = [r for r in records if r.status is Status.KEEP][-1]
    assert git(task_dir, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/a"
    assert git(task_dir, "rev-parse", "HEAD").strip() == keep.commit
    assert git(task_dir, "rev-parse", "refs/heads/autoresearch/a").strip() == keep.commit
    assert git(task_dir, "status", "--porcelain", "--untracked-files=all").strip() == ""


def test_agent_that_edits_then_fails(make_task):
    from autoresearch.records import Proposal

    def half_done(d):
        set_x(d, "5.0")
        (d / "notes.txt").write_text("scratch")
        return Proposal("x", "", ok=False, error="exit 1")

    task_dir, records = run_agent(make_task, half_done)
    assert records[-1].status is Status.CRASH and "exit 1" in records[-1].reason
    assert_at_last_keep(task_dir, records)


def test_agent_that_commits_itself(make_task):
    def commits(d):
        set_x(d, "3.0")
        subprocess.run(["git", "commit", "-qam", "agent's own commit"], cwd=d, check=True)
        return "committed it myself"

    task_dir, records = run_agent(make_task, commits)
    # the loop puts the branch back and commits the change itself: the idea is judged, not lost
    assert records[-1].status is Status.KEEP and records[-1].metrics["score"] == 3.0
    assert_at_last_keep(task_dir, records)


def test_agent_that_moves_the_branch_back(make_task):
    def keep(d):
        set_x(d, "3.0")
        return "x -> 3"

    def rewinds(d):
        subprocess.run(["git", "reset", "-q", "--soft", "HEAD~1"], cwd=d, check=True)
        set_x(d, "4.0")
        return "x -> 4 after rewinding the branch"

    task_dir, records = run_agent(make_task, keep, rewinds)
    assert [r.status for r in records] == [Status.KEEP, Status.KEEP, Status.KEEP]
    assert_at_last_keep(task_dir, records)
    # one commit per kept idea: the last keep's parent is the keep before it
    assert git(task_dir, "rev-parse", f"{records[2].commit}^").strip() == records[1].commit


def test_agent_that_resets_the_branch_back(make_task):
    def goes_back(d):
        subprocess.run(["git", "reset", "-q", "--hard", "HEAD~0"], cwd=d, check=True)
        (d / ".git" / "refs" / "heads" / "stray").write_text(git(d, "rev-parse", "HEAD"))
        set_x(d, "4.0")
        return "x -> 4"

    task_dir, records = run_agent(make_task, goes_back)
    assert records[-1].status is Status.KEEP
    assert_at_last_keep(task_dir, records)


def test_agent_that_switches_branch(make_task):
    def switches(d):
        subprocess.run(["git", "checkout", "-q", "-b", "sneaky"], cwd=d, check=True)
        set_x(d, "3.0")
        return "x -> 3 on another branch"

    task_dir, records = run_agent(make_task, switches, lambda d: set_x(d, "6.0") or "x -> 6")
    assert_at_last_keep(task_dir, records)
    assert records[-1].status is Status.KEEP


def test_agent_that_deletes_the_index(make_task):
    def breaks_index(d):
        (d / ".git" / "index").unlink()
        set_x(d, "3.0")
        return "x -> 3, index gone"

    task_dir, records = run_agent(make_task, breaks_index, lambda d: set_x(d, "7.0") or "x -> 7")
    assert_at_last_keep(task_dir, records)
    assert records[-1].metrics.get("score") == 7.0


def _garbage_head(d):
    (d / ".git" / "HEAD").write_text("garbage\n")


def _broken_config(d):
    (d / ".git" / "config").write_text("[core\n")


def _lock_left_behind(d):  # a git of the agent's, killed mid-command
    (d / ".git" / "index.lock").write_text("")


def _branch_ref_deleted(d):
    (d / ".git" / "refs" / "heads" / "autoresearch" / "a").unlink()


@pytest.mark.parametrize("vandalise", [_garbage_head, _broken_config, _lock_left_behind, _branch_ref_deleted])
def test_agent_that_rewrites_git_files(make_task, vandalise):
    def breaks_git(d):
        set_x(d, "3.0")
        vandalise(d)
        return "x -> 3, and git's files broken"

    task_dir, records = run_agent(make_task, breaks_git, lambda d: set_x(d, "7.0") or "x -> 7")
    if vandalise is _broken_config:  # shared by every worktree, and where fsmonitor hides: a guard crash (issue 11)
        assert records[1].status is Status.CRASH and "git's config" in records[1].reason, records[1].reason
        assert (task_dir / ".git" / "config").read_text() != "[core\n"
        assert [r.status for r in records[::2]] == [Status.KEEP, Status.KEEP], [r.reason for r in records]
    else:
        assert [r.status for r in records] == [Status.KEEP, Status.KEEP, Status.KEEP]  # its edit was judged
    assert records[-1].metrics.get("score") == 7.0
    assert_at_last_keep(task_dir, records)
