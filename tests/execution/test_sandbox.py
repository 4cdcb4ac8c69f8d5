"""The bubblewrap sandbox around a run: what it sees, what it may change, and that nothing survives it.

Pids a sandboxed process reports are its namespace's, so survivors are found on the host by a
marker in their command line instead.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from autoresearch.execution import sandbox
from autoresearch.execution.runner import run_process
from autoresearch.execution.sandbox import View
from autoresearch.execution.supervise import kill_tree_if_alive
from autoresearch.records import RunSpec

from helpers import needs_sandbox, start_daemon, survivors, wait_no_survivors
from sandbox_helpers import _listener, repo, view_for  # noqa: F401 (a fixture)

pytestmark = needs_sandbox


def run_in(task: Path, body: str, view: View | None = None, **kw):
    (task / "attack.py").write_text(textwrap.dedent(body))
    spec = RunSpec(command=f"{sys.executable} -u attack.py", cwd=str(task), env=dict(os.environ),
                   timeout=kw.pop("timeout", 20.0), log_path=str(task.parent.parent / "log.txt"),
                   sandbox=view or view_for(task), **kw)
    return run_process(spec, grace=0.5)


def log(result) -> str:
    return Path(result.log_path).read_text()


def test_what_a_run_may_change_and_what_it_may_not(repo):
    body = """
    import os
    def attempt(name, fn):
        try:
            fn()
            print(name, "done")
        except OSError as exc:
            print(name, "refused", exc.errno)
    attempt("editable", lambda: open("train.py", "a").write("Y = 2\\n"))
    attempt("new-file", lambda: open("data.bin", "w").write("cache"))
    attempt("readonly", lambda: open("prepare.py", "a").write("tampered"))
    attempt("config", lambda: open("autoresearch.toml", "a").write("tampered"))
    attempt("git", lambda: open("../.git/config", "a").write("[core]\\nhooksPath = /tmp\\n"))
    attempt("hook", lambda: open("../.git/hooks/post-commit", "w").write("#!/bin/sh\\n"))
    attempt("outside", lambda: open("../shared.py", "a").write("tampered"))
    attempt("unlink-readonly", lambda: os.unlink("prepare.py"))
    print("store", sorted(os.listdir(".autoresearch")))
    attempt("store-write", lambda: open(".autoresearch/t/ledger.jsonl", "a").write("{}"))
    """
    result = run_in(repo, body)
    assert result.exit_code == 0, log(result)
    lines = log(result).splitlines()
    assert "editable done" in lines and "new-file done" in lines
    for name in ("readonly", "config", "git", "hook", "outside", "unlink-readonly", "store-write"):
        assert any(line.startswith(f"{name} refused") for line in lines), (name, lines)
    assert "store []" in lines  # the run store is not visible at all
    assert (repo / "train.py").read_text() == "X = 1\nY = 2\n"
    assert (repo / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert (repo / ".autoresearch" / "t" / "ledger.jsonl").read_text() == '{"status": "keep"}\n'
    assert not (repo.parent / ".git" / "hooks" / "post-commit").exists()
    assert (repo.parent / "shared.py").read_text() == "HELPER = 1\n"


def test_credentials_in_the_home_directory_are_not_visible(repo):
    home = repo.parent.parent / "home"
    body = f"""
    import os
    for path in ({str(home / '.netrc')!r}, {str(home / '.ssh' / 'id_ed25519')!r}):
        try:
            print(path, repr(open(path).read()))
        except OSError as exc:
            print(path, "refused", exc.errno)
    print(os.listdir({str(home / '.ssh')!r}))
    """
    result = run_in(repo, body)
    out = log(result)
    assert "PRIVATE KEY" not in out and "password" not in out
    assert "[]" in out.splitlines()


def test_no_network_by_default_and_network_when_allowed(repo):
    server = _listener()
    port = server.getsockname()[1]
    body = f"""
    import socket
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        print("connected")
    except OSError as exc:
        print("refused", exc.errno)
    """
    try:
        assert log(run_in(repo, body)).startswith("refused")
        assert log(run_in(repo, body, view=view_for(repo, network=True))).strip() == "connected"
    finally:
        server.close()


def test_a_double_forked_daemon_that_clears_its_environment_dies_with_the_run(repo):
    mark = f"sandbox-mark-{uuid.uuid4().hex}"
    body = f"""
    import os, subprocess, sys, time
    {start_daemon(mark)}
    time.sleep(0.3)
    print("parent exits")
    """
    result = run_in(repo, body)
    assert result.exit_code == 0 and "parent exits" in log(result)
    assert wait_no_survivors(mark) == []


def test_the_memory_of_an_escaped_daemon_counts_against_the_limit(repo):
    mark = f"sandbox-mark-{uuid.uuid4().hex}"
    body = f"""
    import os, subprocess, sys, time
    {start_daemon(mark, hold_mb=300)}
    time.sleep(1000)
    """
    result = run_in(repo, body, memory_limit_mb=150, timeout=30)
    assert not result.timed_out and "the limit is 150 MB" in result.output_tail
    assert wait_no_survivors(mark) == []


def test_a_resume_killing_the_leader_ends_the_whole_sandbox(repo):
    mark = f"sandbox-mark-{uuid.uuid4().hex}"
    body = f"""
    import subprocess, sys, time
    subprocess.Popen(["/usr/bin/env", "-i", sys.executable, "-c", "import time; time.sleep(1000)", {mark!r}],
                     start_new_session=True)
    time.sleep(1000)
    """
    (repo / "attack.py").write_text(textwrap.dedent(body))
    spec = RunSpec(command=f"{sys.executable} attack.py", cwd=str(repo), env=dict(os.environ), timeout=60,
                   log_path=str(repo.parent.parent / "log.txt"), sandbox=view_for(repo))
    started: list[int] = []
    thread = threading.Thread(target=lambda: run_process(spec, on_start=started.append))
    thread.start()
    deadline = time.monotonic() + 10
    while not survivors(mark):
        assert time.monotonic() < deadline, "the sleeper never started"
        time.sleep(0.05)
    # What a resume does with pending.json's entry: the leader's pid and create time, no token.
    assert kill_tree_if_alive(started[0], psutil.Process(started[0]).create_time(), grace=0.5)
    assert wait_no_survivors(mark) == []
    thread.join(10)


def test_required_refuses_where_bwrap_cannot_work_and_auto_warns_once(monkeypatch):
    monkeypatch.setattr(sandbox, "probe", lambda network=False: "no user namespaces (test)")
    with pytest.raises(sandbox.SandboxUnavailable, match="no user namespaces"):
        sandbox.resolve("required", print)
    said: list[str] = []
    from autoresearch.config import SandboxSection

    monkeypatch.setattr(sandbox, "_WARNED", set())
    for _ in range(2):  # two workers' loops
        assert sandbox.Policy(SandboxSection(mode="auto")).start(said.append) is False
    assert len(said) == 1 and "NOT sandboxed" in said[0] and "no user namespaces" in said[0]
    assert sandbox.resolve("off", pytest.fail) is False


def test_the_readme_sandbox_settings_are_what_the_config_reads(make_task):
    import re
    import tomllib

    from autoresearch.config import load_task

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    own = readme[readme.index("### The sandbox"):]
    block = re.search(r"```toml\n(\[sandbox\].*?)```", own, re.S).group(1)
    from conftest import TINY_CONFIG

    task = load_task(make_task(config=TINY_CONFIG + "\n" + block))
    section = task.config.sandbox
    assert (section.mode, section.network, section.writable) == ("auto", True, ("/scratch/ckpt",))
    assert tomllib.loads(block)["sandbox"]["mode"] == "auto"


def test_a_bad_mode_is_a_config_error_naming_the_key(make_task):
    from autoresearch.config import load_task
    from autoresearch.errors import ConfigError
    from conftest import TINY_CONFIG

    with pytest.raises(ConfigError, match="sandbox.mode"):
        load_task(make_task(config=TINY_CONFIG + '\n[sandbox]\nmode = "sometimes"\n'))


def test_agent_keys_the_backends_read_are_never_taken_for_the_sandbox_mode(make_task):
    from autoresearch.agents.cli_agent import COMMON_KEYS
    from autoresearch.config import AgentSection, load_task
    from conftest import TINY_CONFIG

    assert COMMON_KEYS - set(AgentSection.model_fields) <= AgentSection.EXTRAS
    task = load_task(make_task(config=TINY_CONFIG + '\n[agent]\nkind = "claude"\nmodel = "opus"\n'))
    assert task.config.agent.model_extra["model"] == "opus"


def test_a_run_cannot_undo_its_mounts_even_when_the_orchestrator_is_root(repo):
    # Run as root, bwrap keeps every capability unless told otherwise (View.argv drops them).
    body = """
    import subprocess
    for cmd in (["mount", "-o", "remount,rw,bind", "/"], ["umount", "-l", ".autoresearch"],
                ["mount", "-t", "tmpfs", "none", "../.git"]):
        print(cmd[-1], subprocess.run(cmd, capture_output=True).returncode)
    print("caps", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
    print("store", sorted(__import__("os").listdir(".autoresearch")))
    try:
        open("../shared.py", "a").write("tampered")
        print("outside written")
    except OSError as exc:
        print("outside refused", exc.errno)
    """
    out = log(run_in(repo, body))
    assert "caps 0000000000000000" in out and "store []" in out and "outside refused" in out, out
    assert all(line.split()[-1] != "0" for line in out.splitlines()[:3]), out
    assert (repo.parent / "shared.py").read_text() == "HELPER = 1\n"
