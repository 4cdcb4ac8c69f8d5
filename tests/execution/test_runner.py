"""runner.py and supervise.py's kill helpers against real processes.

What every executor must do (exits, timeouts, stop, escapes, floods, memory, the run token) is
in test_executor_contract.py; here is what only a fresh process or the helpers a resume uses do.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from autoresearch.execution.runner import run_process
from autoresearch.execution.supervise import RUN_TOKEN_ENV, kill_process_group, kill_tree_if_alive, kill_token
from autoresearch.records import RunSpec

from process_helpers import SPAWN, dead, read_pid

PY = shlex.quote(sys.executable)


def make_spec(tmp_path: Path, body: str, *, timeout: float = 20.0, command: str | None = None) -> RunSpec:
    script = tmp_path / "train.py"
    script.write_text(SPAWN + textwrap.dedent(body))
    return RunSpec(command=command or f"{PY} -u {shlex.quote(str(script))}", cwd=str(tmp_path),
                   env={**os.environ, "PID_DIR": str(tmp_path)}, timeout=timeout,
                   log_path=str(tmp_path / "logs" / "run.log"))


def test_shell_syntax_runs_through_the_shell(tmp_path):
    spec = make_spec(tmp_path, 'print("through", os.environ["FOO"])\n',
                     command=f"FOO=bar {PY} train.py | tr a-z A-Z && echo done")
    result = run_process(spec)
    assert result.exit_code == 0 and not result.warm
    assert Path(result.log_path).read_text() == "THROUGH BAR\ndone\n"


def test_the_memory_limit_argument_overrides_the_spec(tmp_path):
    body = """
    hog = "b = b'\\\\x01' * (300 * 1024 * 1024); import time; time.sleep(1000)"
    subprocess.run([sys.executable, "-c", hog])
    """
    result = run_process(make_spec(tmp_path, body), memory_limit_mb=100, grace=0.5)
    assert result.exit_code is not None and "the limit is 100 MB" in result.output_tail


def test_a_missing_cwd_raises_and_starts_nothing(tmp_path):
    spec = make_spec(tmp_path, "pass\n")
    with pytest.raises(OSError):
        run_process(replace(spec, cwd=str(tmp_path / "nowhere")))


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
    env = {**os.environ, RUN_TOKEN_ENV: token, "PID_DIR": str(tmp_path)}
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


def test_kill_token_kills_a_run_whose_pid_was_never_known(tmp_path):
    token = "never-knew-the-pid"
    proc = sleeper(start_new_session=True, env={**os.environ, RUN_TOKEN_ENV: token})
    try:
        deadline = time.monotonic() + 5
        while not kill_token(token, grace=0.5):
            assert time.monotonic() < deadline
        assert proc.wait(timeout=2) is not None
        assert not kill_token(token)
    finally:
        proc.kill()
        proc.wait()


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


def test_old_import_paths_still_work():
    from autoresearch import executor, ray_executor, ray_node, runner, warm
    from autoresearch.execution import executor as new_executor, warm as new_warm

    assert runner.run_process is run_process and runner.kill_tree_if_alive is kill_tree_if_alive
    assert executor.LocalExecutor is new_executor.LocalExecutor and warm.WarmExecutor is new_warm.WarmExecutor
    assert ray_executor.RayExecutor.__module__ == "autoresearch.execution.ray_executor"
    assert ray_node.run_on_node.__module__ == "autoresearch.execution.ray_node"
