"""One contract every executor passes: what the loop relies on, however a run is started.

In the style of Optuna's StorageTestCase: the cases are methods of `ExecutorContract`, and each
executor is a subclass that only says how to make the executor and a RunSpec for it. Local
fresh processes and warm starts run in every test run; Ray (a one-node cluster on loopback)
is `slow`. `LocalPidContract` holds the cases that need the run's pid on this machine
(`on_start`, a resume killing by pid and token, blinding the scans in this process); it is
collected only for the executors it applies to, never skipped.

A new executor adds a subclass here and must pass as is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from autoresearch.crash import MEMORY_LIMIT_MARKER
from autoresearch.execution import Executor, LocalExecutor, supervise
from autoresearch.execution.supervise import LOG_TAIL_BYTES, RUN_TOKEN_ENV, kill_tree_if_alive, processes_with_token
from autoresearch.execution.warm import WarmExecutor
from autoresearch.records import RunSpec

from process_helpers import SPAWN, dead, log_of, read_pid, run_env, wait_dead

GRACE = 0.5


class ExecutorContract:
    """The cases; a subclass provides the `executor` fixture (grace GRACE seconds where it can)."""

    warm = False  # whether a plain `python script.py` run is expected to be a warm start
    grace = GRACE  # seconds between SIGTERM and SIGKILL
    stop_within = GRACE + 1.5  # seconds from a stop request to run() returning

    @pytest.fixture
    def pids(self, tmp_path) -> Path:
        d = tmp_path / "pids"
        d.mkdir()
        return d

    def make_spec(self, tmp_path: Path, pids: Path, body: str, *, timeout: float = 20.0,
                  max_log_bytes: int = 10**6, command: str = "python -u train.py", name: str = "run",
                  memory_limit_mb: float | None = None, **env) -> RunSpec:
        task = tmp_path / "task"
        task.mkdir(exist_ok=True)
        (task / "train.py").write_text(SPAWN + textwrap.dedent(body))
        return RunSpec(command=command, cwd=str(task), env=run_env(PID_DIR=str(pids), **env), timeout=timeout,
                       log_path=str(tmp_path / name / "log.txt"), max_log_bytes=max_log_bytes,
                       memory_limit_mb=memory_limit_mb)

    # -- exits ------------------------------------------------------------------------------
    def test_is_an_executor_with_a_name(self, executor):
        assert isinstance(executor, Executor) and executor.name and isinstance(executor.name, str)
        executor.check()

    def test_normal_exit_with_output(self, executor, tmp_path, pids):
        spec = self.make_spec(tmp_path, pids, 'print("hello from training")\nprint("val_loss: 0.5")\n')
        result = executor.run(spec)
        assert result.exit_code == 0 and not result.timed_out
        assert result.warm == self.warm
        log = log_of(result)
        assert "hello from training" in log and "val_loss: 0.5" in log
        assert result.output_tail == log and not result.log_truncated
        assert 0 < result.wall_seconds < 10

    @pytest.mark.parametrize("body, code, text", [
        ("print('fine')", 0, "fine"),
        ("sys.exit(3)", 3, ""),
        ("sys.exit(-1)", 255, ""),
        ("raise SystemExit('bad config')", 1, "bad config"),
        ("def f():\n    raise ValueError('boom')\nf()", 1, "ValueError: boom"),
        ("raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt"),
        ("def broken(:\n    pass", 1, "SyntaxError"),
        ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL, ""),
    ])
    def test_exit_codes_and_errors(self, executor, tmp_path, pids, body, code, text):
        result = executor.run(self.make_spec(tmp_path, pids, body))
        # Death by a signal: -N from the process itself, 128+N from the shell that ran it.
        assert result.exit_code in ({code, 128 - code} if code < 0 else {code}) and not result.timed_out
        log = log_of(result)
        assert text in log
        assert "forkserver" not in log  # a traceback shows the script's frames only

    def test_crash_half_way_keeps_the_lines_before_it(self, executor, tmp_path, pids):
        body = """
        for step in range(5):
            print(f"step {step}")
        raise RuntimeError("diverged")
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 1
        log = log_of(result)
        assert all(f"step {i}" in log for i in range(5))
        assert "RuntimeError: diverged" in log  # stderr goes to the same log

    def test_atexit_handlers_and_non_daemon_threads_finish_before_the_exit(self, executor, tmp_path, pids):
        body = """
        import atexit, threading
        atexit.register(lambda: print("atexit ran", flush=True))
        def work():
            time.sleep(0.3)
            print("thread done", flush=True)
        threading.Thread(target=work).start()
        print("main done", flush=True)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0
        assert log_of(result).splitlines() == ["main done", "thread done", "atexit ran"]

    @pytest.mark.parametrize("method", ["fork", "spawn"])
    def test_multiprocessing_workers(self, executor, tmp_path, pids, method):
        # DataLoader workers: `spawn` re-imports the script through __main__.__file__, `fork` copies it.
        body = f"""
        import multiprocessing as mp
        def square(x):
            return x * x
        if __name__ == "__main__":
            with mp.get_context({method!r}).Pool(2) as pool:
                print(sum(pool.map(square, range(10))))
        """
        result = executor.run(self.make_spec(tmp_path, pids, body, timeout=60))
        assert result.exit_code == 0, log_of(result)
        assert log_of(result).strip() == "285"

    # -- timeout and stop -----------------------------------------------------------------------
    def test_hang_is_killed_at_the_timeout_with_its_output_kept(self, executor, tmp_path, pids):
        spec = self.make_spec(tmp_path, pids, 'print("before the hang")\ntime.sleep(1000)\n', timeout=1.5)
        t0 = time.monotonic()
        result = executor.run(spec)
        assert result.timed_out and result.exit_code is None
        assert 1.5 <= result.wall_seconds < 1.5 + 2.0 + 1.0
        assert time.monotonic() - t0 < 1.5 + 2.0 + 2.0 + self.stop_within
        assert "before the hang" in log_of(result)  # `-u`: written before the kill

    def test_sigterm_proof_run_its_children_and_a_forked_escapee_die_at_the_timeout(self, executor, tmp_path, pids):
        body = """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        spawn("child.pid")
        pid = os.fork()
        if pid == 0:  # leaves the group without exec: found by the scan or the run token
            os.setsid()
            write_pid("forked.pid", os.getpid())
            time.sleep(1000)
            os._exit(0)
        write_pid("main.pid", os.getpid())
        print("ready", flush=True)
        time.sleep(1000)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body, timeout=2.0))
        assert result.timed_out and result.exit_code is None
        assert result.wall_seconds < 2.0 + self.grace + 3.0  # SIGTERM, the grace, then SIGKILL
        for name in ("main.pid", "child.pid", "forked.pid"):
            assert wait_dead(read_pid(pids, name), 2.0), name

    def test_stop_request_ends_the_run_promptly_and_kills_the_group(self, executor, tmp_path, pids):
        spec = self.make_spec(tmp_path, pids, 'spawn("child.pid")\nwrite_pid("main.pid", os.getpid())\ntime.sleep(1000)\n')
        stop = threading.Event()
        asked = []
        threading.Thread(target=lambda: (read_pid(pids, "main.pid", 60), asked.append(time.monotonic()), stop.set()),
                         daemon=True).start()
        result = executor.run(spec, stop_event=stop)
        assert asked and time.monotonic() - asked[0] < self.stop_within
        assert result.exit_code is None and not result.timed_out
        for name in ("main.pid", "child.pid"):
            assert wait_dead(read_pid(pids, name), 5.0), name

    def test_a_stop_requested_before_the_run_runs_nothing_for_long(self, executor, tmp_path, pids):
        stop = threading.Event()
        stop.set()
        t0 = time.monotonic()
        result = executor.run(self.make_spec(tmp_path, pids, "time.sleep(1000)\n"), stop_event=stop)
        assert result.exit_code is None and not result.timed_out
        assert time.monotonic() - t0 < 10

    # -- escaped children -----------------------------------------------------------------------
    def test_child_that_left_the_session_is_killed(self, executor, tmp_path, pids):
        # The main script lives long enough for the descendants scan to see the escaped child.
        body = """
        spawn("child.pid", start_new_session=True)
        time.sleep(0.5)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0
        assert wait_dead(read_pid(pids, "child.pid"), 2.0)

    def test_escaped_child_without_the_token_is_killed_by_the_tree_scan(self, executor, tmp_path, pids):
        # A child that leaves the session and drops the environment is only known from the scans.
        body = f"""
        env = {{k: v for k, v in os.environ.items() if k != {RUN_TOKEN_ENV!r}}}
        spawn("child.pid", start_new_session=True, env=env)
        time.sleep(0.5)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0
        assert wait_dead(read_pid(pids, "child.pid"), 2.0)

    @pytest.mark.parametrize("escape", [False, True], ids=["in-group", "setsid"])
    def test_immediate_exit_leaving_a_background_grandchild(self, executor, tmp_path, pids, escape):
        # The main script exits at once, before any poll can see the grandchild: the process group
        # catches the plain case, the environment token the escaped one.
        result = executor.run(self.make_spec(tmp_path, pids, f'spawn("child.pid", start_new_session={escape})\n'))
        assert result.exit_code == 0
        assert wait_dead(read_pid(pids, "child.pid"), 2.0)

    def test_a_double_forked_daemon_that_outlives_its_parent_is_killed(self, executor, tmp_path, pids):
        body = """
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                write_pid("daemon.pid", os.getpid())
                time.sleep(1000)
            os._exit(0)
        while not os.path.exists(os.path.join(os.environ["PID_DIR"], "daemon.pid")):
            time.sleep(0.01)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0
        assert wait_dead(read_pid(pids, "daemon.pid"), 2.0)

    # -- memory ---------------------------------------------------------------------------------
    def test_peak_memory_counts_descendants(self, executor, tmp_path, pids):
        body = """
        hog = "b = b'\\\\x01' * (200 * 1024 * 1024); import time; time.sleep(1.0)"
        subprocess.run([sys.executable, "-c", hog], check=True)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0, log_of(result)
        assert result.peak_rss_mb >= 150

    def test_memory_limit_kills_the_tree_and_says_so_at_the_end_of_the_log(self, executor, tmp_path, pids):
        body = """
        print("allocating", flush=True)
        hog = "b = b'\\\\x01' * (400 * 1024 * 1024); import time; time.sleep(1000)"
        spawn("sleeper.pid")
        subprocess.run([sys.executable, "-c", hog])
        time.sleep(1000)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body, memory_limit_mb=150))
        assert result.exit_code is not None and result.exit_code < 0  # killed, not exited
        assert not result.timed_out and result.wall_seconds < 15
        log = log_of(result)
        assert "allocating" in log
        assert log.rstrip().splitlines()[-1].startswith(MEMORY_LIMIT_MARKER)
        assert "the limit is 150 MB" in result.output_tail
        assert result.peak_rss_mb > 150
        assert wait_dead(read_pid(pids, "sleeper.pid"), 2.0)

    # -- the log --------------------------------------------------------------------------------
    def test_output_beyond_the_cap_keeps_head_and_footer(self, executor, tmp_path, pids):
        cap = 100_000
        body = """
        line = b"x" * 1023 + b"\\n"
        for _ in range(5 * 1024):
            sys.stdout.buffer.write(line)
        sys.stdout.buffer.write(b"---\\nval_loss: 1.23\\n")
        """
        result = executor.run(self.make_spec(tmp_path, pids, body, max_log_bytes=cap))
        assert result.exit_code == 0 and result.log_truncated
        data = Path(result.log_path).read_bytes()
        assert len(data) <= cap + LOG_TAIL_BYTES + 200
        assert data.startswith(b"x" * 1000)
        omitted = 5 * 1024 * 1024 + len(b"---\nval_loss: 1.23\n") - cap - LOG_TAIL_BYTES
        assert f"[autoresearch: log truncated, {omitted} bytes omitted]".encode() in data
        assert data.endswith(b"---\nval_loss: 1.23\n")
        assert result.output_tail.endswith("---\nval_loss: 1.23\n")
        assert len(result.output_tail) <= 64 * 1024

    def test_output_just_over_the_cap_is_kept_whole(self, executor, tmp_path, pids):
        body = 'sys.stdout.buffer.write(b"a" * 3000 + b"\\nend\\n")\n'
        result = executor.run(self.make_spec(tmp_path, pids, body, max_log_bytes=1000))
        assert not result.log_truncated
        assert Path(result.log_path).read_bytes() == b"a" * 3000 + b"\nend\n"

    def test_non_utf8_output_and_stderr_in_one_log(self, executor, tmp_path, pids):
        body = """
        sys.stdout.buffer.write(b"bad \\xff\\xfe\\x80 bytes\\n")
        sys.stdout.flush()
        print("to stderr", file=sys.stderr, flush=True)
        print("val_loss: 2.0")
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0
        data = Path(result.log_path).read_bytes()
        assert data.startswith(b"bad \xff\xfe\x80 bytes\n") and b"to stderr\n" in data
        assert "\ufffd" in result.output_tail and "val_loss: 2.0" in result.output_tail

    # -- the run token --------------------------------------------------------------------------
    def test_the_run_token_given_in_the_spec_reaches_every_process_of_the_run(self, executor, tmp_path, pids):
        token = "c" * 32
        body = f"""
        print(os.environ[{RUN_TOKEN_ENV!r}])
        out = subprocess.run([sys.executable, "-c", "import os; print(os.environ[{RUN_TOKEN_ENV!r}])"],
                             capture_output=True, text=True).stdout
        print(out.strip())
        """
        result = executor.run(self.make_spec(tmp_path, pids, body, **{RUN_TOKEN_ENV: token}))
        assert result.exit_code == 0
        assert log_of(result).split() == [token, token]
        assert processes_with_token(token) == []  # nothing of the run is left

    def test_each_run_gets_its_own_token_when_none_is_given(self, executor, tmp_path, pids):
        body = f"print(os.environ[{RUN_TOKEN_ENV!r}])\n"
        first = executor.run(self.make_spec(tmp_path, pids, body, name="a"))
        second = executor.run(self.make_spec(tmp_path, pids, body, name="b"))
        tokens = [log_of(r).strip() for r in (first, second)]
        assert all(len(t) >= 32 for t in tokens) and tokens[0] != tokens[1]

    # -- concurrency ----------------------------------------------------------------------------
    def test_concurrent_runs_each_get_their_own_log(self, executor, tmp_path, pids):
        specs = []
        for i in range(3):
            d = tmp_path / f"w{i}"
            d.mkdir()
            specs.append(self.make_spec(d, pids, f"time.sleep(0.3)\nprint('worker {i}')\n"))
        results = [None] * 3
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, executor.run(specs[i]))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert all(r is not None and r.exit_code == 0 and r.warm == self.warm for r in results)
        assert [log_of(r).strip() for r in results] == ["worker 0", "worker 1", "worker 2"]


class LocalPidContract:
    """Cases for executors whose runs are processes on this machine, announced by on_start."""

    def test_on_start_gets_the_pid_of_the_running_script_once(self, executor, tmp_path, pids):
        started: list[int] = []
        spec = self.make_spec(tmp_path, pids, 'write_pid("main.pid", os.getpid())\n', command="exec python -u train.py"
                              if not self.warm else "python -u train.py")
        result = executor.run(spec, on_start=started.append)
        assert result.exit_code == 0
        assert started == [read_pid(pids, "main.pid")]

    def test_on_start_failure_kills_the_run_and_propagates(self, executor, tmp_path, pids):
        seen = []

        def on_start(pid):
            seen.append(pid)
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            executor.run(self.make_spec(tmp_path, pids, "time.sleep(1000)\n"), on_start=on_start)
        assert wait_dead(seen[0], 2.0)

    def test_the_run_token_finds_the_run_so_a_resume_can_kill_it(self, executor, tmp_path, pids):
        token = "r" * 32
        spec = self.make_spec(tmp_path, pids, 'write_pid("main.pid", os.getpid())\ntime.sleep(1000)\n',
                              command="exec python -u train.py" if not self.warm else "python -u train.py",
                              **{RUN_TOKEN_ENV: token})
        started: list[int] = []
        box = {}
        thread = threading.Thread(target=lambda: box.setdefault("r", executor.run(spec, on_start=started.append)))
        thread.start()
        pid = read_pid(pids, "main.pid")
        assert started == [pid]
        assert pid in [p.pid for p in processes_with_token(token)]
        assert kill_tree_if_alive(pid, psutil.Process(pid).create_time(), token=token, grace=GRACE)
        thread.join(10)
        assert box["r"].exit_code == -signal.SIGTERM

    def test_a_forked_escapee_is_found_by_the_run_token_alone(self, executor, tmp_path, pids, monkeypatch):
        # The scans are blinded and the escapee leaves the group without exec: only the token in
        # /proc/PID/environ can find it (a warm child has it there thanks to forkserver._mark_token).
        monkeypatch.setattr(supervise.TreeWatch, "sample", lambda self: None)
        body = """
        if os.fork() == 0:
            os.setsid()
            write_pid("forked.pid", os.getpid())
            time.sleep(1000)
            os._exit(0)
        while not os.path.exists(os.path.join(os.environ["PID_DIR"], "forked.pid")):
            time.sleep(0.01)
        """
        result = executor.run(self.make_spec(tmp_path, pids, body))
        assert result.exit_code == 0
        assert wait_dead(read_pid(pids, "forked.pid"), 2.0)

    def test_an_unkillable_pipe_holder_does_not_hang_the_run(self, executor, tmp_path, pids, monkeypatch):
        # Blind both ways of finding escapees, so the child survives and keeps the pipe open.
        monkeypatch.setattr(supervise, "processes_with_token", lambda token: [])
        monkeypatch.setattr(supervise.TreeWatch, "sample", lambda self: None)
        monkeypatch.setattr(supervise, "READER_JOIN_SECONDS", 0.3)
        body = """
        print("main output", flush=True)
        spawn("child.pid", start_new_session=True)
        """
        t0 = time.monotonic()
        try:
            result = executor.run(self.make_spec(tmp_path, pids, body))
            assert time.monotonic() - t0 < 3.0
            assert result.exit_code == 0
            assert "main output" in log_of(result)
            assert not dead(read_pid(pids, "child.pid"))  # the blinding worked: the test tests something
        finally:
            os.kill(read_pid(pids, "child.pid"), signal.SIGKILL)

    def test_polling_does_not_burn_cpu(self, executor, tmp_path, pids):
        executor.run(self.make_spec(tmp_path, pids, "pass\n", name="first"))  # a warm server starts here
        cpu0 = time.process_time()
        result = executor.run(self.make_spec(tmp_path, pids, "time.sleep(1.5)\n"))
        assert result.exit_code == 0
        assert time.process_time() - cpu0 < 0.3


# -- the executors ----------------------------------------------------------------------------
class _Graceful(LocalExecutor):
    def run(self, spec, *, on_start=None, stop_event=None):
        from autoresearch.execution.runner import run_process

        return run_process(spec, on_start=on_start, stop_event=stop_event, grace=GRACE)


class TestLocal(ExecutorContract, LocalPidContract):
    @pytest.fixture
    def executor(self):
        return _Graceful()


class TestWarm(ExecutorContract, LocalPidContract):
    warm = True

    @pytest.fixture
    def executor(self):
        said: list[str] = []
        with WarmExecutor(["json"], say=said.append, grace=GRACE) as ex:
            yield ex
        assert said == []  # warm starts never gave up in a contract case


@pytest.mark.slow
class TestRay(ExecutorContract):
    """Runs as Ray tasks on a private one-node cluster (the driver is this process)."""

    grace = 2.0  # the node's run_process uses the default
    stop_within = 12.0  # ray.cancel(force=True), then up to STOP_WAIT for the task to end

    @pytest.fixture(scope="class")
    @classmethod
    def executor(cls):
        pytest.importorskip("ray")
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        from autoresearch.execution.ray_executor import RayExecutor

        ex = RayExecutor(address=None, resources={"num_cpus": 0.5})
        try:
            ex.connect()
            yield ex
        finally:
            ex.close()

    def make_spec(self, tmp_path, pids, body, **kw) -> RunSpec:
        spec = super().make_spec(tmp_path, pids, body, **kw)
        task = Path(spec.cwd)
        if not (task / ".git").exists():
            subprocess.run("git init -q -b main", shell=True, cwd=task, check=True)
        subprocess.run("git add -A && git commit -qm run --allow-empty", shell=True, cwd=task, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=task, capture_output=True, text=True).stdout.strip()
        return replace(spec, commit=commit, repo_dir=str(task))
