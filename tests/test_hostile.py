"""Hostile experiments through the real loop (issue 11's attacks): none may change a verdict,
lose a record, leave a survivor or plant code the orchestrator would run.

The run-side attacks run with `[sandbox] mode = "required"` (skipped where bwrap cannot work);
the agent-side ones (git hooks, info/exclude, files outside the task) are stopped by the loop
itself, sandbox or not. The baseline (X = 1.0) behaves; the agent's change (X = 2.0) attacks.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import git
from helpers import ScriptedAgent, cli, ledger_lines, needs_sandbox, start_daemon, wait_no_survivors
from hostile_helpers import FOOTER, FORGE_RECORDS, PREAMBLE, assert_no_wrong_keep, hostile_config, night, to


def hostile_night(make_task, body: str, *, mode="required", **kw):
    return night(make_task, body, hostile_config(mode), **kw)


# -- the run's attacks (sandboxed) ------------------------------------------------------------
@needs_sandbox
def test_1_2_a_run_cannot_fake_or_delete_records(make_task):
    task_dir, records = hostile_night(make_task, FORGE_RECORDS)
    lines = ledger_lines(task_dir, "h")
    assert [r["iteration"] for r in lines] == [0, 1] and all(r["commit"] != "f" * 40 for r in lines)
    assert (task_dir / ".autoresearch" / "h" / "runs" / "0000").is_dir()  # the baseline's folder is there
    log = (task_dir / ".autoresearch" / "h" / "runs" / "0001" / "log.txt").read_text()
    assert "store visible: []" in log
    assert records[-1].metrics.get("score") == 99.0 and records[-1].status is Status.KEEP  # its own score, fairly printed
    Loop(load_task(task_dir), "h", ScriptedAgent(), say=lambda s: None).prepare()  # the chain still holds on resume
    assert [r["sandboxed"] for r in lines] == [True, True]  # recorded, and shown by status:
    shown = cli("status", str(task_dir), "--tag", "h")
    assert "sandbox: 2 of 2 runs ran sandboxed" in shown.stdout, shown.stdout + shown.stderr


@needs_sandbox
def test_4_a_run_cannot_rewrite_a_readonly_file_even_if_it_restores_it(make_task):
    body = '''
if BAD:
    try:
        original = open("prepare.py").read()
        open("prepare.py", "w").write("DATA = 'tampered'\\n")
        open("prepare.py", "w").write(original)
        print("rewrote prepare.py")
    except OSError as exc:
        print("refused", exc.errno)
'''
    task_dir, records = hostile_night(make_task, body)
    log = (task_dir / ".autoresearch" / "h" / "runs" / "0001" / "log.txt").read_text()
    assert "refused 30" in log and "rewrote" not in log  # EROFS
    assert (task_dir / "prepare.py").read_text() == "DATA = 'fixed'\n"


@needs_sandbox
def test_5_a_run_cannot_commit_to_the_branch(make_task):
    body = '''
if BAD:
    open("train.py", "a").write("\\n# planted\\n")
    r = subprocess.run("git add -A && git -c user.name=x -c user.email=x@x commit -qm planted && "
                       "git update-index --assume-unchanged prepare.py", shell=True, capture_output=True, text=True)
    print("git exit", r.returncode, r.stderr.strip()[-200:])
'''
    task_dir, records = hostile_night(make_task, body)
    log = (task_dir / ".autoresearch" / "h" / "runs" / "0001" / "log.txt").read_text()
    assert "git exit 0" not in log
    head = git(task_dir, "rev-parse", "autoresearch/h").strip()
    assert head in (records[0].commit, records[-1].commit)
    assert git(task_dir, "log", "--format=%s", "-1", head).strip() != "planted"


@needs_sandbox
def test_9_a_double_forked_daemon_without_environment_dies_with_the_run(make_task):
    mark = f"hostile-{uuid.uuid4().hex}"
    body = f'''
if BAD:
    {start_daemon(mark)}
'''
    hostile_night(make_task, body)
    assert wait_no_survivors(mark) == [], "the daemon survived the run"


# -- the agent's attacks (no sandbox needed) ----------------------------------------------------
def test_6_an_agent_hiding_a_file_through_info_exclude_is_a_guard_crash(make_task):
    def hide(d: Path):
        root = Path(git(d, "rev-parse", "--show-toplevel").strip())
        with open(root / ".git" / "info" / "exclude", "a") as fh:
            fh.write("helper_planted.py\n")
        (d / "helper_planted.py").write_text("X = 99.0\n")
    task_dir, records = hostile_night(make_task, "", mode="off", agent=ScriptedAgent(to(2.0, hide)))
    assert records[-1].status is Status.CRASH and records[-1].reason.startswith("guard:")
    assert "info/exclude" in records[-1].reason
    root = Path(git(task_dir, "rev-parse", "--show-toplevel").strip())
    assert "helper_planted" not in (root / ".git" / "info" / "exclude").read_text()
    assert_no_wrong_keep(task_dir, records, "h")


def test_6_an_agent_editing_a_file_outside_its_task_folder_is_a_guard_crash(make_task):
    def outside(d: Path):
        (d.parent / "shared" / "helper.py").write_text("BONUS = 97.0\n")
    body = "sys.path.insert(0, '../shared')\nfrom helper import BONUS\nX = X + BONUS\n"
    task_dir = make_task(train=PREAMBLE + body + FOOTER, config=hostile_config("off"), subdir="task")
    (task_dir.parent / "shared").mkdir()
    (task_dir.parent / "shared" / "helper.py").write_text("BONUS = 0.0\n")
    git(task_dir.parent, "add", "-A")
    git(task_dir.parent, "commit", "-qm", "shared helper")
    records = Loop(load_task(task_dir), "h", ScriptedAgent(to(2.0, outside)), say=lambda s: None).run(Limits(iterations=1))
    assert records[-1].status is Status.CRASH and "outside the task directory" in records[-1].reason
    assert "shared/helper.py" in records[-1].reason
    assert (task_dir.parent / "shared" / "helper.py").read_text() == "BONUS = 0.0\n"


def test_7_a_planted_hook_and_fsmonitor_never_run(make_task, tmp_path):
    planted = tmp_path / "hook-ran"

    def plant(d: Path):
        root = Path(git(d, "rev-parse", "--show-toplevel").strip())
        hook = root / ".git" / "hooks" / "post-commit"
        hook.write_text(f"#!/bin/sh\nenv > {planted}\n")
        hook.chmod(0o755)
        monitor = tmp_path / "monitor.sh"
        monitor.write_text(f"#!/bin/sh\nenv > {planted}\n")
        monitor.chmod(0o755)
        subprocess.run(["git", "config", "core.fsmonitor", str(monitor)], cwd=d, check=True)
    task_dir, records = hostile_night(make_task, "", mode="off", agent=ScriptedAgent(to(2.0, plant)))
    assert not planted.exists(), "a planted hook or fsmonitor ran with the orchestrator's environment"
    assert records[-1].status is Status.CRASH and "hooks/post-commit" in records[-1].reason
    root = Path(git(task_dir, "rev-parse", "--show-toplevel").strip())
    assert not (root / ".git" / "hooks" / "post-commit").exists()
    assert "fsmonitor" not in (root / ".git" / "config").read_text()
    git(task_dir, "commit", "--allow-empty", "-qm", "the user's own commit")  # the user's git is clean again
    assert not planted.exists()


def test_a_hand_edited_ledger_is_refused_on_resume_naming_the_line(make_task):
    task_dir, records = hostile_night(make_task, "", mode="off")
    path = task_dir / ".autoresearch" / "h" / "ledger.jsonl"
    lines = path.read_text().splitlines()
    fake = json.loads(lines[1])  # the last record: no later line's hash covers it, the head file does
    fake["status"], fake["metrics"]["score"] = "keep", 99.0
    lines[1] = json.dumps(fake, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    with pytest.raises(AutoresearchError, match="line 2 does not match the hash"):
        Loop(load_task(task_dir), "h", ScriptedAgent(), say=lambda s: None).run(Limits(iterations=1))
    assert path.read_bytes() == before  # nothing recorded is lost or rewritten


def test_8_proxy_userinfo_never_reaches_a_file_we_write(make_task, monkeypatch):
    from autoresearch.secrets import MASK, redact, secret_values

    proxy = "http://bob:hunter22secret@proxy.example:3128"
    found = secret_values({"HTTPS_PROXY": proxy, "ALL_PROXY": "socks5://alice:pw@h:1"})
    assert "bob:hunter22secret" in found and "hunter22secret" in found and "alice:pw" in found
    assert redact(f"via {proxy}", found) == f"via http://{MASK}@proxy.example:3128"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    body = "if BAD:\n    print('proxy is', os.environ.get('HTTPS_PROXY'), os.environ.get('HTTPS_PROXY', '').split(':')[2][:14])\n"
    task_dir, records = hostile_night(make_task, body, mode="off")
    store = task_dir / ".autoresearch" / "h"
    log = (store / "runs" / "0001" / "log.txt").read_text()
    assert "proxy is" in log
    for path in [p for p in store.rglob("*") if p.is_file()] + [task_dir / "results.tsv"]:
        assert "hunter22secret" not in path.read_text(errors="replace"), path
