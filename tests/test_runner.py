"""runner.py against real processes: exits, crashes, hangs, escapes, floods and memory."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from autoresearch.records import RunSpec
from autoresearch.runner import (
    LOG_TAIL_BYTES,
    RUN_TOKEN_ENV,
    kill_process_group,
    kill_tree_if_alive,
    run_process,
)

PY = shlex.quote(sys.executable)

# Starts a sleeping Python that ignores SIGTERM; `spawn(**popen_kwargs)` returns its pid.
SPAWN = """
import os, signal, subprocess, sys, time
SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"
def spawn(name, **kw):
    child = subprocess.Popen([sys.executable, "-c", SLEEPER], **kw)
    with open(name + ".tmp", "w") as f:
        f.write(str(child.pid))
    os.replace(name + ".tmp", name)  # the test never reads a half-written pid
    return child.pid
"""


def make_spec(tmp_path: Path, body: str, *, timeout: float = 20.0, max_log_bytes: int = 10**6) -> RunSpec:
    script = tmp_path / "train.py"
    script.write_text(SPAWN + textwrap.dedent(body))
    return RunSpec(
        command=f"{PY} -u {shlex.quote(str(script))}",
        cwd=str(tmp_path),
        env=dict(os.environ),
        timeout=timeout,
        log_path=str(tmp_path / "logs" / "run.log"),
        max_log_bytes=max_log_bytes,
    )


def dead(pid: int) -> bool:
    # An orphan's zombie stays until init reaps it; it runs nothing, so it counts as dead.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pid(tmp_path: Path, name: str) -> int:
    return int((tmp_path / name).read_text())


def test_normal_exit_with_output(tmp_path):
    started = []
    spec = make_spec(tmp_path, 'print("hello from training")\nprint("val_loss: 0.5")\n')
    result = run_process(spec, on_start=started.append)
    assert result.exit_code == 0 and not result.timed_out
    assert len(started) == 1 and started[0] > 0
    log = Path(result.log_path).read_text()
    assert "hello from training" in log and "val_loss: 0.5" in log
    assert result.output_tail == log
    assert not result.log_truncated
    assert 0 < result.wall_seconds < 5


def test_nonzero_exit_code(tmp_path):
    result = run_process(make_spec(tmp_path, "sys.exit(3)\n"))
    assert result.exit_code == 3 and not result.timed_out


def test_crash_half_way_keeps_the_lines_before_it(tmp_path):
    body = """
    for step in range(5):
        print(f"step {step}")
    raise RuntimeError("diverged")
    """
    result = run_process(make_spec(tmp_path, body))
    assert result.exit_code == 1
    log = Path(result.log_path).read_text()
    assert all(f"step {i}" in log for i in range(5))
    assert "RuntimeError: diverged" in log  # stderr goes to the same log


def test_hang_is_killed_at_the_timeout(tmp_path):
    spec = make_spec(tmp_path, 'print("before the hang")\ntime.sleep(1000)\n', timeout=1.0)
    t0 = time.monotonic()
    result = run_process(spec)
    assert result.timed_out and result.exit_code is None
    assert 1.0 <= result.wall_seconds < 1.0 + 2.0 + 1.0
    assert time.monotonic() - t0 < 1.0 + 2.0 + 2.0
    assert "before the hang" in Path(result.log_path).read_text()


def test_sigterm_ignored_and_forked_child_are_both_killed(tmp_path):
    body = """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spawn("child.pid")
    with open("main.pid", "w") as f:
        f.write(str(os.getpid()))
    print("ready")
    time.sleep(1000)
    """
    spec = make_spec(tmp_path, body, timeout=1.5)
    result = run_process(spec, grace=0.5)
    assert result.timed_out and result.exit_code is None
    assert result.wall_seconds < 1.5 + 0.5 + 1.5
    assert dead(read_pid(tmp_path, "main.pid"))
    assert dead(read_pid(tmp_path, "child.pid"))


def test_child_that_left_the_session_is_killed(tmp_path):
    # The main script lives long enough for the descendants scan to see the escaped child.
    body = """
    spawn("child.pid", start_new_session=True)
    time.sleep(0.5)
    """
    result = run_process(make_spec(tmp_path, body), grace=0.5)
    assert result.exit_code == 0
    assert dead(read_pid(tmp_path, "child.pid"))


def test_escaped_child_without_the_token_is_killed_by_the_tree_scan(tmp_path):
    # A child that leaves the session and drops the environment is only known from the scans.
    body = f"""
    env = {{k: v for k, v in os.environ.items() if k != {RUN_TOKEN_ENV!r}}}
    spawn("child.pid", start_new_session=True, env=env)
    time.sleep(0.5)
    """
    result = run_process(make_spec(tmp_path, body), grace=0.5)
    assert result.exit_code == 0
    assert dead(read_pid(tmp_path, "child.pid"))


@pytest.mark.parametrize("escape", [False, True], ids=["in-group", "setsid"])
def test_immediate_exit_leaving_a_background_grandchild(tmp_path, escape):
    # The main script exits at once, before any poll can see the grandchild: the process group
    # catches the plain case, the environment token the escaped one.
    body = f"""
    spawn("child.pid", start_new_session={escape})
    """
    result = run_process(make_spec(tmp_path, body), grace=0.5)
    assert result.exit_code == 0
    assert dead(read_pid(tmp_path, "child.pid"))


def test_an_unkillable_pipe_holder_does_not_hang_the_run(tmp_path, monkeypatch):
    # Blind both ways of finding escapees, so the child survives and keeps the pipe open.
    from autoresearch import runner

    monkeypatch.setattr(runner, "_processes_with_token", lambda token: [])
    monkeypatch.setattr(runner._TreeWatch, "sample", lambda self: None)
    monkeypatch.setattr(runner, "READER_JOIN_SECONDS", 0.3)
    body = """
    print("main output")
    spawn("child.pid", start_new_session=True)
    """
    t0 = time.monotonic()
    try:
        result = run_process(make_spec(tmp_path, body), grace=0.5)
        assert time.monotonic() - t0 < 3.0
        assert result.exit_code == 0
        assert "main output" in Path(result.log_path).read_text()
    finally:
        os.kill(read_pid(tmp_path, "child.pid"), 9)


def test_output_beyond_the_cap_keeps_head_and_footer(tmp_path):
    cap = 100_000
    body = """
    line = b"x" * 1023 + b"\\n"
    for _ in range(5 * 1024):
        sys.stdout.buffer.write(line)
    sys.stdout.buffer.write(b"---\\nval_loss: 1.23\\n")
    """
    result = run_process(make_spec(tmp_path, body, max_log_bytes=cap))
    assert result.exit_code == 0 and result.log_truncated
    data = Path(result.log_path).read_bytes()
    assert len(data) <= cap + LOG_TAIL_BYTES + 200
    assert data.startswith(b"x" * 1000)
    assert b"[autoresearch: log truncated, " in data
    omitted = 5 * 1024 * 1024 + len(b"---\nval_loss: 1.23\n") - cap - LOG_TAIL_BYTES
    assert f"log truncated, {omitted} bytes omitted]".encode() in data
    assert data.endswith(b"---\nval_loss: 1.23\n")
    assert result.output_tail.endswith("---\nval_loss: 1.23\n")
    assert len(result.output_tail) <= 64 * 1024


def test_output_just_over_the_cap_is_kept_whole(tmp_path):
    body = 'sys.stdout.buffer.write(b"a" * 3000 + b"\\nend\\n")\n'
    result = run_process(make_spec(tmp_path, body, max_log_bytes=1000))
    assert not result.log_truncated
    assert Path(result.log_path).read_bytes() == b"a" * 3000 + b"\nend\n"


def test_non_utf8_output(tmp_path):
    body = 'sys.stdout.buffer.write(b"bad \\xff\\xfe\\x80 bytes\\nval_loss: 2.0\\n")\n'
    result = run_process(make_spec(tmp_path, body))
    assert result.exit_code == 0
    assert b"bad \xff\xfe\x80 bytes" in Path(result.log_path).read_bytes()
    assert "\ufffd" in result.output_tail and "val_loss: 2.0" in result.output_tail


def test_peak_memory_counts_descendants(tmp_path):
    # The allocation is in a child process: the peak is of the whole tree.
    body = """
    hog = "b = b'\\\\x01' * (200 * 1024 * 1024); import time; time.sleep(1.0)"
    subprocess.run([sys.executable, "-c", hog], check=True)
    """
    result = run_process(make_spec(tmp_path, body))
    assert result.exit_code == 0, Path(result.log_path).read_text()
    assert result.peak_rss_mb >= 150


def test_stop_event_returns_promptly_and_kills_the_group(tmp_path):
    body = """
    spawn("child.pid")
    time.sleep(1000)
    """
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    result = run_process(make_spec(tmp_path, body), stop_event=stop, grace=0.5)
    assert time.monotonic() - t0 < 0.5 + 0.5 + 1.5
    assert result.exit_code is None and not result.timed_out
    assert dead(read_pid(tmp_path, "child.pid"))


def test_on_start_failure_kills_the_run(tmp_path):
    pids = []

    def on_start(pid):
        pids.append(pid)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_process(make_spec(tmp_path, "time.sleep(1000)\n"), on_start=on_start, grace=0.5)
    assert dead(pids[0])


def test_polling_does_not_burn_cpu(tmp_path):
    cpu0 = time.process_time()
    result = run_process(make_spec(tmp_path, "time.sleep(1.5)\n"))
    assert result.exit_code == 0
    assert time.process_time() - cpu0 < 0.3


def sleeper(**kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"], **kw)


def test_kill_tree_if_alive_checks_create_time():
    proc = sleeper(start_new_session=True)
    try:
        create_time = psutil.Process(proc.pid).create_time()
        assert not kill_tree_if_alive(proc.pid, create_time + 100)
        time.sleep(0.1)
        assert proc.poll() is None
        assert kill_tree_if_alive(proc.pid, create_time, grace=0.5)
        assert proc.wait(timeout=2) is not None
    finally:
        proc.kill()
        proc.wait()


def test_kill_tree_if_alive_with_token_kills_escapees_of_a_dead_leader(tmp_path):
    # What resume sees after the orchestrator was SIGKILLed: the leader is gone, an escapee runs.
    token = "resume-test-token"
    env = {**os.environ, RUN_TOKEN_ENV: token}
    script = tmp_path / "leader.py"
    script.write_text(SPAWN + 'spawn("child.pid", start_new_session=True)\n')
    leader = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, start_new_session=True)
    create_time = psutil.Process(leader.pid).create_time()
    leader.wait(timeout=10)
    child = read_pid(tmp_path, "child.pid")
    try:
        assert not dead(child)
        assert kill_tree_if_alive(leader.pid, create_time, token=token, grace=0.5)
        assert dead(child)
    finally:
        if not dead(child):
            os.kill(child, 9)


def test_kill_process_group_sigkills_what_ignores_sigterm():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(1000)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        t0 = time.monotonic()
        kill_process_group(proc.pid, grace=0.3)
        assert time.monotonic() - t0 >= 0.3
        assert proc.wait(timeout=2) == -9
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
