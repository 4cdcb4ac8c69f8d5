"""warm.py and forkserver.py against real processes: a forked run must behave like a fresh one.

What every executor does (exit codes, timeout, stop, escapees, the log cap, the run token) is in
test_executor_contract.py, which runs over WarmExecutor too; here is what is warm's own.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from autoresearch.execution.executor import LocalExecutor
from autoresearch.execution.supervise import processes_with_token
from autoresearch.execution.warm import WarmExecutor, parse_command
from autoresearch.records import RunSpec

from process_helpers import SPAWN, dead, log_of, run_at_once, run_env, wait_dead

PY = shlex.quote(sys.executable)


def env(**extra) -> dict[str, str]:
    return run_env(**extra)


def make_spec(tmp_path: Path, body: str, *, args: str = "", timeout: float = 20.0, name: str = "train.py",
              command: str | None = None, run_env: dict | None = None, max_log_bytes: int = 10**6,
              log: str = "run.log") -> RunSpec:
    (tmp_path / name).write_text(SPAWN + textwrap.dedent(body))
    return RunSpec(command=command or f"python {name} {args}".strip(), cwd=str(tmp_path),
                   env=run_env or env(), timeout=timeout, log_path=str(tmp_path / "logs" / log),
                   max_log_bytes=max_log_bytes)


@pytest.fixture
def warm():
    messages: list[str] = []
    ex = WarmExecutor(["json", "decimal"], say=messages.append)
    ex.messages = messages
    yield ex
    ex.close()


# -- which commands run warm ----------------------------------------------------------------
@pytest.mark.parametrize("command, argv, unbuffered", [
    ("python train.py", ("train.py",), False),
    ("python3 train.py --lr 0.1", ("train.py", "--lr", "0.1"), False),
    (f"{PY} -u train.py 'a b' --x=1", ("train.py", "a b", "--x=1"), True),
    ("python -uB ./train.py", ("./train.py",), True),
])
def test_plain_python_commands_are_recognised(tmp_path, command, argv, unbuffered):
    (tmp_path / "train.py").write_text("")
    plain = parse_command(command, str(tmp_path), env())
    assert plain is not None and plain.argv == argv and plain.unbuffered == unbuffered


@pytest.mark.parametrize("command", [
    "python train.py | tee out", "python train.py && echo ok", "python train.py > out.txt",
    "FOO=1 python train.py", "python -m train", "python -c 'print(1)'", "python -O train.py",
    "python", "python missing.py", "sh train.py", "/usr/bin/env python train.py", "python $SCRIPT",
    "python train.py; rm -rf x", "python 'unterminated", "python sub",
])
def test_anything_else_runs_fresh(tmp_path, command):
    (tmp_path / "train.py").write_text("")
    (tmp_path / "sub").mkdir()
    assert parse_command(command, str(tmp_path), env()) is None


def test_another_interpreter_runs_fresh(tmp_path):
    (tmp_path / "train.py").write_text("")
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert parse_command("python train.py", str(tmp_path), env(PATH=str(fake.parent))) is None
    assert parse_command(f"{fake} train.py", str(tmp_path), env()) is None


# -- a warm run behaves like a fresh one ------------------------------------------------------
def test_uncaught_exception_traceback_reads_like_a_fresh_one(tmp_path, warm):
    spec = make_spec(tmp_path, "def f():\n    raise ValueError('boom')\nf()")
    fresh = LocalExecutor().run(spec)
    hot = warm.run(spec)
    assert hot.warm and hot.exit_code == fresh.exit_code == 1
    assert log_of(hot) == log_of(fresh)


def test_argv_cwd_env_and_main_are_exactly_a_fresh_runs(tmp_path, warm):
    body = """
    import json, __main__
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ), "name": __name__,
                      "file": __file__, "path0": sys.path[0], "main": __main__.__file__,
                      "stdin": sys.stdin.read(), "token_in_proc": os.environ.get("AUTORESEARCH_RUN_TOKEN")}))
    """
    run_env = env(AUTORESEARCH_RUN_TOKEN="t" * 32, ODD="a b=c")
    spec = make_spec(tmp_path, body, args="'x y' --lr=0.1", run_env=run_env)
    seen = {}
    for name, ex in (("fresh", LocalExecutor()), ("warm", warm)):
        result = ex.run(spec)
        assert result.exit_code == 0 and result.warm == (name == "warm")
        seen[name] = json.loads(log_of(result))
    hot = seen["warm"]
    assert hot["argv"] == ["train.py", "x y", "--lr=0.1"]
    assert hot["cwd"] == str(tmp_path) and hot["name"] == "__main__"
    assert hot["file"] == hot["main"] == str(tmp_path / "train.py")
    assert hot["env"] == run_env  # exactly: nothing of the server's environment is left
    assert hot["stdin"] == ""
    for key in ("argv", "cwd", "name", "file", "path0", "main", "stdin"):
        assert hot[key] == seen["fresh"][key], key


def test_startup_is_recorded(tmp_path, warm):
    result = warm.run(make_spec(tmp_path, "pass"))
    assert result.warm and result.startup_seconds is not None
    assert 0 < result.startup_seconds <= result.wall_seconds
    fresh = LocalExecutor().run(make_spec(tmp_path, "pass"))
    assert not fresh.warm and fresh.startup_seconds is None


def test_each_warm_run_saves_a_fresh_start_less_its_own_fork_never_the_preload_data(tmp_path):
    """A preload that takes 1 s to import and preload data that takes 3 s to load: a fresh run
    would pay the interpreter's start and the 1 s again, never the 3 s (its script loads the data
    once, as the server did). Each run's saving is that less its own fork's start."""
    from autoresearch.execution.warm import PreloadData

    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(1.0)\n")
    (tmp_path / "prep.py").write_text("import time\ndef load():\n    time.sleep(3.0)\n    return [1]\n")
    run_env = env(PYTHONPATH=str(tmp_path))
    with WarmExecutor(["slow_import"], say=pytest.fail, data=PreloadData(str(tmp_path), ("prep:load",))) as ex:
        results = [ex.run(make_spec(tmp_path, "pass", run_env=run_env, log=f"{i}.log")) for i in range(3)]
    fresh = []
    for r in results:
        assert r.warm and r.exit_code == 0 and r.startup_seconds is not None, log_of(r)
        fresh.append(r.startup_saved_seconds + r.startup_seconds)  # what a fresh start would have cost
    assert max(fresh) - min(fresh) < 1e-9  # one figure per server; the runs differ by their own fork
    assert 1.0 <= fresh[0] < 2.5  # the import and the interpreter's start; the data's 3 s are no part of it
    assert sum(r.startup_saved_seconds for r in results) < 3 * 1.5


# -- the guarantees of process control ----------------------------------------------------------
def test_the_server_never_carries_a_run_token(tmp_path, warm):
    # The contract suite checks that the token finds a warm child; the server it forks from must
    # not look like part of any run, or a resume killing by token would kill it too.
    token = "r" * 32
    result = warm.run(make_spec(tmp_path, "print(os.environ['AUTORESEARCH_RUN_TOKEN'])",
                                run_env=env(AUTORESEARCH_RUN_TOKEN=token)))
    assert result.warm and log_of(result).strip() == token
    (server,) = warm.server_pids
    assert psutil.Process(server).environ().get("AUTORESEARCH_RUN_TOKEN") != token
    assert processes_with_token(token) == []


def test_concurrent_runs_share_one_server(tmp_path, warm):
    specs = []
    for i in range(3):
        d = tmp_path / f"w{i}"
        d.mkdir()
        specs.append(make_spec(d, f"time.sleep(0.3)\nprint('worker {i}')\n"))
    results = run_at_once(warm.run, specs, 30)
    assert all(r is not None and r.warm and r.exit_code == 0 for r in results)
    assert [log_of(r).strip() for r in results] == ["worker 0", "worker 1", "worker 2"]
    assert len(warm.server_pids) == 1


def test_per_run_variables_share_a_server_other_changes_get_their_own(tmp_path, warm):
    warm.run(make_spec(tmp_path, "pass", run_env=env(AUTORESEARCH_ITERATION="1")))
    first = warm.server_pids
    warm.run(make_spec(tmp_path, "pass", run_env=env(AUTORESEARCH_ITERATION="2")))
    assert warm.server_pids == first
    result = warm.run(make_spec(tmp_path, "print(os.environ['OMP_NUM_THREADS'])",
                                run_env=env(OMP_NUM_THREADS="1")))
    assert result.warm and log_of(result).strip() == "1"
    assert len(warm.server_pids) == 2


# -- isolation: each run is a fresh fork of a pristine server ----------------------------------
def test_module_globals_do_not_leak_into_the_next_run(tmp_path, warm):
    first = """
    import json, decimal
    json.leaked = 1
    decimal.getcontext().prec = 5
    sys.modules["planted"] = json
    os.environ["LEAKED"] = "1"
    """
    second = """
    import json, decimal
    print(hasattr(json, "leaked"), decimal.getcontext().prec, "planted" in sys.modules, "LEAKED" in os.environ)
    """
    assert warm.run(make_spec(tmp_path, first, name="a.py")).exit_code == 0
    result = warm.run(make_spec(tmp_path, second, name="b.py"))
    assert result.warm and log_of(result).strip() == "False 28 False False"


def test_threads_of_a_run_do_not_survive_into_the_next(tmp_path, warm):
    first = """
    import threading
    for _ in range(3):
        threading.Thread(target=time.sleep, args=(0.2,)).start()
    threading.Thread(target=time.sleep, args=(1000,), daemon=True).start()
    """
    second = """
    import threading
    print(threading.active_count(), len(os.listdir("/proc/self/task")))
    """
    assert warm.run(make_spec(tmp_path, first, name="a.py")).exit_code == 0
    result = warm.run(make_spec(tmp_path, second, name="b.py"))
    assert log_of(result).strip() == "1 1"


def test_numpy_state_is_fresh_and_reseeded_in_every_run(tmp_path):
    pytest.importorskip("numpy")
    body = """
    import numpy as np
    print(np.get_printoptions()["precision"], np.random.random(), float((np.ones((200, 200)) @ np.ones((200, 200)))[0, 0]))
    np.set_printoptions(precision=2)
    np.random.seed(0)
    """
    with WarmExecutor(["numpy"]) as ex:
        outs = [log_of(ex.run(make_spec(tmp_path, body, log=f"{i}.log"))).split() for i in range(2)]
    assert outs[0][0] == outs[1][0] == "8"  # the first run's printoptions did not leak
    assert outs[0][1] != outs[1][1]  # seeded from the OS in each run, as a fresh process is
    assert outs[0][2] == outs[1][2] == "200.0"  # BLAS works in a fork (its pool was stopped)


@pytest.mark.slow
def test_cuda_and_torch_state_do_not_leak_and_the_server_never_initialises_cuda(tmp_path):
    pytest.importorskip("torch")
    first = """
    import torch
    print("preloaded" if "torch" in sys.modules else "cold", torch.get_num_threads(), flush=True)
    torch.cuda.is_available()
    try:
        torch.cuda.init()  # raises on a CPU build; initialises CUDA where there is one
    except Exception:
        pass
    torch.set_num_threads(1)
    torch.manual_seed(1)
    """
    second = """
    import torch
    print(torch.cuda.is_initialized(), torch.get_num_threads(), torch.initial_seed() != 1)
    """
    with WarmExecutor(["torch"]) as ex:
        one = ex.run(make_spec(tmp_path, first, name="a.py", log="a.log"))
        two = ex.run(make_spec(tmp_path, second, name="b.py", log="b.log"))
    assert one.exit_code == 0 and two.exit_code == 0, log_of(one) + log_of(two)
    mark, threads = log_of(one).split()
    assert mark == "preloaded"
    # The second run starts from the server's state: CUDA never initialised there, threads as before.
    assert log_of(two).split() == ["False", threads, "True"]


# -- fallbacks and the server's life ---------------------------------------------------------
def test_non_plain_commands_run_fresh(tmp_path, warm):
    spec = make_spec(tmp_path, "print(os.environ.get('FOO'))", command="FOO=bar python train.py | cat")
    result = warm.run(spec)
    assert not result.warm and result.exit_code == 0 and log_of(result).strip() == "bar"
    assert warm.server_pids == []  # never started for nothing


def test_a_missing_preload_module_warns_once_and_runs_fresh(tmp_path):
    said: list[str] = []
    with WarmExecutor(["json", "no_such_module_xyz"], say=said.append) as ex:
        results = [ex.run(make_spec(tmp_path, "print('ok')", log=f"{i}.log")) for i in range(2)]
    assert [r.warm for r in results] == [False, False]
    assert all(r.exit_code == 0 and log_of(r).strip() == "ok" for r in results)
    assert len(said) == 1 and "no_such_module_xyz" in said[0] and "fresh" in said[0]


def test_a_bad_module_name_is_refused_up_front():
    with pytest.raises(ValueError, match="not a module name"):
        WarmExecutor(["torch; rm -rf /"])


def test_close_stops_the_server(tmp_path, warm):
    assert warm.run(make_spec(tmp_path, "pass")).warm
    (pid,) = warm.server_pids
    warm.close()
    assert wait_dead(pid)
    assert warm.run(make_spec(tmp_path, "pass")).warm  # a later run starts a new one


def test_the_server_dies_with_the_orchestrator(tmp_path):
    (tmp_path / "train.py").write_text("pass\n")
    script = f"""
import os, sys
from autoresearch.records import RunSpec
from autoresearch.warm import WarmExecutor  # the old import path, from a fresh process
ex = WarmExecutor(["json"])
spec = RunSpec(command={f'{sys.executable} train.py'!r}, cwd={str(tmp_path)!r}, env=dict(os.environ),
               timeout=20, log_path={str(tmp_path / 'run.log')!r})
assert ex.run(spec).warm
print(ex.server_pids[0], flush=True)
os.read(0, 1)  # wait to be killed
"""
    orchestrator = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
    server = int(orchestrator.stdout.readline())
    assert not dead(server)
    orchestrator.kill()
    orchestrator.wait()
    assert wait_dead(server)


def test_a_server_dying_mid_run_loses_that_run_only(tmp_path, warm):
    spec = make_spec(tmp_path, 'write_pid("main.pid", os.getpid())\ntime.sleep(1.0)\nprint("finished")\n')
    assert warm.run(spec).exit_code == 0
    (server,) = warm.server_pids
    result = warm.run(spec, on_start=lambda pid: os.kill(server, signal.SIGKILL))
    assert result.warm and result.exit_code is None and not result.timed_out
    assert "warm-start server died (exit code -9) during the run" in log_of(result)
    assert "finished" in log_of(result)  # the child itself ran to its end
    again = warm.run(spec)
    assert again.warm and again.exit_code == 0 and warm.server_pids != [server]
    assert warm.messages == []  # one failure is not enough to give up


# -- with the loop and the config -------------------------------------------------------------
def test_the_loop_runs_warm_with_an_executor_it_is_given(make_task):
    from autoresearch.config import load_task
    from autoresearch.loop import Limits, Loop
    from autoresearch.records import Status

    task = make_task()
    with WarmExecutor(["json"], say=pytest.fail) as ex:
        seen = []
        real = ex.run
        ex.run = lambda spec, **kw: seen.append(real(spec, **kw)) or seen[-1]
        loop = Loop(load_task(task), "t1", object(), executor=ex, say=lambda s: None)
        records = loop.run(Limits(iterations=0))  # the baseline only
    assert [r.status for r in records] == [Status.KEEP] and records[0].metrics["score"] == 1.0
    assert [r.warm for r in seen] == [True] and seen[0].startup_seconds > 0


def test_preload_is_read_from_the_task_config(make_task):
    from autoresearch.config import load_task

    config = textwrap.dedent('''\
        [task]
        run = "python train.py"
        editable = ["train.py"]
        time_budget = 5
        preload = ["torch", "numpy"]

        [metrics]
        primary = "score"
        direction = "maximize"
        deterministic = true
    ''')
    assert load_task(make_task(config=config)).config.task.preload == ("torch", "numpy")


# -- data loaded once in the server ([task] preload_data) ---------------------------------------
PREP = '''\
import os
BUDGET = os.environ.get("AUTORESEARCH_TIME_BUDGET")  # read at import: each run's own value
def load():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.log"), "a") as f:
        f.write(f"{os.getpid()}\\n")
    return {"rows": [1, 2, 3]}
def fail():
    raise OSError("no data here")
def stream():
    return (row for row in [1, 2, 3])  # a generator: no copy of it for each run
'''
USE = """
import json, prep
a = prep.load()
a["rows"].append(99)  # the run changes what it got: a later call, and the next run, never see it
b = prep.load()
print(json.dumps({"a": a, "b": b, "budget": prep.BUDGET, "pid": os.getpid()}))
"""


def data_task(tmp_path: Path) -> Path:
    (tmp_path / "prep.py").write_text(PREP)
    return tmp_path


def calls(tmp_path: Path) -> list[int]:
    path = tmp_path / "calls.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_preload_data_is_loaded_once_and_each_call_gets_its_own_copy(tmp_path):
    from autoresearch.execution.warm import PreloadData

    task = data_task(tmp_path)
    seen = []
    with WarmExecutor(["json"], say=pytest.fail, data=PreloadData(str(task), ("prep:load",))) as ex:
        for budget in ("3", "7"):
            result = ex.run(make_spec(task, USE, run_env=env(AUTORESEARCH_TIME_BUDGET=budget), log=f"{budget}.log"))
            assert result.warm and result.exit_code == 0, log_of(result)
            seen.append(json.loads(log_of(result)))
        (server,) = ex.server_pids
    assert calls(task) == [server]  # called once, in the server; never by a run
    for out, budget in zip(seen, ("3", "7")):
        assert out["a"] == {"rows": [1, 2, 3, 99]} and out["b"] == {"rows": [1, 2, 3]}
        assert out["budget"] == budget  # the module itself was imported afresh, with the run's environment


def test_preload_data_called_with_arguments_runs_the_function(tmp_path):
    from autoresearch.execution.warm import PreloadData

    task = data_task(tmp_path)
    (task / "prep.py").write_text(PREP.replace("def load():", "def load(fresh=False):"))
    with WarmExecutor([], say=pytest.fail, data=PreloadData(str(task), ("prep:load",))) as ex:
        result = ex.run(make_spec(task, "import prep\nprint(prep.load(fresh=True))\n"))
        (server,) = ex.server_pids
    assert result.warm and result.exit_code == 0
    assert calls(task)[0] == server and len(calls(task)) == 2  # the run's call with an argument ran it


def test_preload_data_of_a_changed_file_is_not_used(tmp_path):
    from autoresearch.execution.warm import PreloadData

    task = data_task(tmp_path)
    with WarmExecutor([], say=pytest.fail, data=PreloadData(str(task), ("prep:load",))) as ex:
        assert ex.run(make_spec(task, USE, log="0.log")).warm
        (task / "prep.py").write_text(PREP.replace("[1, 2, 3]", "[4]"))  # not the file the server loaded
        result = ex.run(make_spec(task, USE, log="1.log"))
    out = json.loads(log_of(result))
    assert result.warm and out["b"] == {"rows": [4]}
    assert len(calls(task)) == 1 + 2  # the server's call, then the run's own two


def test_preload_data_that_fails_warns_once_naming_it_and_runs_fresh(tmp_path):
    from autoresearch.execution.warm import PreloadData

    said: list[str] = []
    task = data_task(tmp_path)
    with WarmExecutor(["json"], say=said.append, data=PreloadData(str(task), ("prep:fail",))) as ex:
        results = [ex.run(make_spec(task, USE, log=f"{i}.log")) for i in range(2)]
        assert ex.server_pids == []
    assert [r.warm for r in results] == [False, False] and all(r.exit_code == 0 for r in results)
    assert len(said) == 1 and "prep:fail" in said[0] and "no data here" in said[0] and "fresh" in said[0]


def test_preload_data_whose_result_cannot_be_copied_is_refused_in_the_server(tmp_path):
    from autoresearch.execution.warm import PreloadData

    said: list[str] = []
    task = data_task(tmp_path)
    with WarmExecutor([], say=said.append, data=PreloadData(str(task), ("prep:stream",))) as ex:
        result = ex.run(make_spec(task, "print('ran')"))
    assert not result.warm and log_of(result).strip() == "ran"
    assert len(said) == 1 and "prep:stream" in said[0] and "cannot be copied" in said[0]


def test_preload_data_must_be_module_function():
    from autoresearch.execution.warm import PreloadData

    with pytest.raises(ValueError, match="module:function"):
        PreloadData("/tmp", ("prep.load",))


def test_preload_data_in_the_config_must_name_a_readonly_file(make_task):
    from autoresearch.config import load_task
    from autoresearch.errors import ConfigError
    from conftest import TINY_CONFIG

    ok = make_task(config=TINY_CONFIG.replace("[task]\n", '[task]\npreload_data = ["prepare:load"]\n'))
    assert load_task(ok).config.task.preload_data == ("prepare:load",)
    for line, words in (('preload_data = ["train:load"]', "train.py must be listed in readonly"),
                        ('preload_data = ["prepare.load"]', "module:function")):
        bad = ok / "autoresearch.toml"
        bad.write_text(TINY_CONFIG.replace("[task]\n", f"[task]\n{line}\n"))
        with pytest.raises(ConfigError, match=words) as err:
            load_task(ok)
        assert "preload_data" in str(err.value)
