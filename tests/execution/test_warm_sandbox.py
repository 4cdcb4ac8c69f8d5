"""Warm starts inside the sandbox: a forked run keeps every promise a fresh sandboxed run keeps.

The server runs in the runs' bubblewrap view and serves one run at a time: the store and the
credentials are invisible, there is no network, everything the run started dies with it (the
sandbox's init adopts escapees; they are killed and their memory counted), the sandbox's /tmp is
emptied between runs, and no run can reach into the server that forks the next one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from autoresearch.execution.warm import WarmExecutor
from autoresearch.records import RunSpec

from helpers import needs_sandbox, start_daemon, survivors, wait_no_survivors
from sandbox_helpers import _listener, repo, view_for  # noqa: F401 (a fixture)

pytestmark = needs_sandbox


def spec_for(task: Path, body: str, *, name: str = "attack.py", view=None, **kw) -> RunSpec:
    (task / name).write_text(textwrap.dedent(body))
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    return RunSpec(command=f"python {name}", cwd=str(task), env=env, timeout=kw.pop("timeout", 20.0),
                   log_path=str(task.parent.parent / f"log-{uuid.uuid4().hex[:6]}.txt"),
                   sandbox=view or view_for(task), **kw)


@pytest.fixture
def warm():
    ex = WarmExecutor(["json"], say=pytest.fail, grace=0.5)
    yield ex
    ex.close()


def log(result) -> str:
    return Path(result.log_path).read_text()


def test_a_warm_run_sees_the_sandbox_a_fresh_one_sees(repo, warm):
    home = repo.parent.parent / "home"
    body = f"""
    import os
    print("pid", os.getpid())
    print("store", sorted(os.listdir(".autoresearch")))
    for path in ({str(home / '.netrc')!r}, {str(home / '.ssh' / 'id_ed25519')!r}):
        try:
            print(repr(open(path).read()))
        except OSError as exc:
            print("refused", exc.errno)
    for name, path in (("ledger", ".autoresearch/t/ledger.jsonl"), ("readonly", "prepare.py"), ("git", "../.git/config")):
        try:
            open(path, "a").write("tampered")
            print(name, "written")
        except OSError as exc:
            print(name, "refused", exc.errno)
    open("train.py", "a").write("Y = 2\\n")
    """
    results = [warm.run(spec_for(repo, body)) for _ in range(2)]
    assert len(warm.server_pids) == 1  # both forked from one server
    for result in results:
        out = log(result)
        assert result.exit_code == 0 and result.warm and result.sandboxed, out
        assert "store []" in out and "PRIVATE KEY" not in out and "password" not in out
        assert "written" not in out and out.count("refused") == 5, out
        assert int(out.split()[1]) < 100  # a pid of the sandbox's own namespace
    assert (repo / ".autoresearch" / "t" / "ledger.jsonl").read_text() == '{"status": "keep"}\n'
    assert (repo / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert (repo / "train.py").read_text() == "X = 1\nY = 2\nY = 2\n"  # the editable file is writable


def test_no_network_for_a_warm_run_by_default(repo, warm):
    server = _listener()
    body = f"""
    import socket
    try:
        socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2).close()
        print("connected")
    except OSError as exc:
        print("refused", exc.errno)
    """
    try:
        result = warm.run(spec_for(repo, body))
        assert result.warm and log(result).startswith("refused")
        with WarmExecutor(["json"], say=pytest.fail) as open_net:
            result = open_net.run(spec_for(repo, body, view=view_for(repo, network=True)))
        assert result.warm and log(result).strip() == "connected"
    finally:
        server.close()


def test_a_daemon_that_clears_its_environment_dies_with_the_warm_run(repo, warm):
    mark = f"sandbox-mark-{uuid.uuid4().hex}"
    body = f"""
    import subprocess, sys, time
    {start_daemon(mark)}
    time.sleep(0.3)
    print("parent exits")
    """
    result = warm.run(spec_for(repo, body))
    assert result.warm and result.exit_code == 0 and "parent exits" in log(result)
    assert wait_no_survivors(mark) == []
    assert warm.run(spec_for(repo, "print('next')")).warm  # the server lives on for the next run


def test_an_escaped_daemons_memory_counts_against_the_warm_runs_limit(repo, warm):
    mark = f"sandbox-mark-{uuid.uuid4().hex}"
    body = f"""
    import subprocess, sys, time
    {start_daemon(mark, hold_mb=300)}
    time.sleep(1000)
    """
    result = warm.run(spec_for(repo, body, memory_limit_mb=150, timeout=30))
    assert result.warm and not result.timed_out and "the limit is 150 MB" in result.output_tail
    assert wait_no_survivors(mark) == []


def test_one_warm_run_cannot_reach_the_next(repo, warm):
    """Its /tmp is emptied, and the server (which forks the next run) is out of its reach."""
    body = """
    import os, signal
    print("tmp", sorted(n for n in os.listdir("/tmp") if n.startswith("planted")))
    open("/tmp/planted-" + str(os.getpid()), "w").write("poison")
    os.makedirs("/tmp/planted-dir/deeper", exist_ok=True)
    server = os.getppid()
    for name in ("mem", "maps", "environ"):
        try:
            open(f"/proc/{server}/{name}", "rb").read(16)
            print(name, "read")
        except OSError as exc:
            print(name, "refused", exc.errno)
    """
    first, second = (warm.run(spec_for(repo, body)) for _ in range(2))
    for result in (first, second):
        assert result.warm, log(result)
        assert "tmp []" in log(result) and " read" not in log(result), log(result)
        assert log(result).count("refused") == 3


def test_a_second_run_while_the_sandbox_is_busy_gets_a_fresh_sandbox(repo, warm):
    gate = repo / "gate"
    body = f"""
    import os, time
    print("waiting", flush=True)
    while not os.path.exists({str(gate)!r}):
        time.sleep(0.05)
    print("pid", os.getpid())
    """
    out = {}
    spec = spec_for(repo, body, name="a.py")
    first = threading.Thread(target=lambda: out.setdefault("first", warm.run(spec)))
    first.start()
    _wait_for(spec.log_path, "waiting")
    second = warm.run(spec_for(repo, "print('second')", name="b.py"))
    gate.write_text("")
    first.join(20)
    assert out["first"].warm and out["first"].sandboxed
    assert not second.warm and second.sandboxed and second.exit_code == 0


@pytest.mark.parametrize("warm_start", [True, False], ids=["warm", "fresh"])
def test_a_stopped_sandboxed_run_gets_its_grace_period(repo, warm_start):
    body = """
    import signal, sys, time
    def term(*_):
        print("cleaning up after SIGTERM", flush=True)
        time.sleep(0.2)
        print("clean", flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, term)
    print("ready", flush=True)
    time.sleep(1000)
    """
    spec = spec_for(repo, body)
    stop = threading.Event()
    with WarmExecutor(["json"] if warm_start else [], say=pytest.fail, grace=5.0) as ex:
        if not warm_start:
            ex.off_reason = "fresh processes only"  # the same executor, its fallback path
        threading.Thread(target=lambda: (_wait_for(spec.log_path, "ready"), stop.set()), daemon=True).start()
        t0 = time.monotonic()
        result = ex.run(spec, stop_event=stop)
    assert result.warm is warm_start and result.sandboxed
    assert "clean" in log(result).split(), log(result)
    assert time.monotonic() - t0 < 4.5  # it exited in the grace; nothing waited for the whole of it


def _wait_for(path: str, word: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path) and word in Path(path).read_text():
            return
        time.sleep(0.05)


def test_the_warm_sandbox_dies_with_the_orchestrator(repo):
    mark = f"sandbox-mark-{uuid.uuid4().hex}"
    (repo / "attack.py").write_text(textwrap.dedent(f"""
    import subprocess, sys, time
    subprocess.Popen(["/usr/bin/env", "-i", sys.executable, "-c", "import time; time.sleep(1000)", {mark!r}],
                     start_new_session=True)
    time.sleep(1000)
    """))
    view = view_for(repo)
    script = f"""
import os, sys
from autoresearch.execution.sandbox import View
from autoresearch.execution.warm import WarmExecutor
from autoresearch.records import RunSpec
view = View(**{view.__dict__!r})
spec = RunSpec(command={f'{sys.executable} attack.py'!r}, cwd={str(repo)!r}, env=dict(os.environ),
               timeout=60, log_path={str(repo.parent.parent / 'orch.log')!r}, sandbox=view)
WarmExecutor(["json"]).run(spec)
"""
    orchestrator = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while not survivors(mark):
        assert time.monotonic() < deadline and orchestrator.poll() is None, "the run never started"
        time.sleep(0.05)
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    assert wait_no_survivors(mark, 5.0) == []


@pytest.mark.parametrize("warm_start", [True, False], ids=["warm", "fresh"])
def test_tool_caches_are_private_and_writable(repo, warm_start):
    """uv and Triton write caches in the home directory, which runs may not change: each sandbox
    gets its own under its private /tmp, unless the run's environment names one."""
    body = """
    import os
    for name in ("UV_CACHE_DIR", "TRITON_CACHE_DIR"):
        path = os.environ[name]
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "probe"), "w").write("x")
        print(name, path)
    """
    with WarmExecutor(["json"] if warm_start else [], say=pytest.fail) as ex:
        if not warm_start:
            ex.off_reason = "fresh processes only"
        result = ex.run(spec_for(repo, body))
        spec = spec_for(repo, body)
        mine = ex.run(RunSpec(**{**spec.__dict__, "env": {**spec.env, "UV_CACHE_DIR": str(repo / "uv")}}))
    assert result.warm is warm_start and result.exit_code == 0, log(result)
    assert "UV_CACHE_DIR /tmp/" in log(result) and "TRITON_CACHE_DIR /tmp/" in log(result)
    assert mine.exit_code == 0 and f"UV_CACHE_DIR {repo / 'uv'}" in log(mine), log(mine)
    assert (repo / "uv" / "probe").exists()  # the task directory is writable, so the cache is kept there
