"""Issue 11's run-side attacks 1, 2 and 9 again, by a *warm-started* run through the real loop
(`[task] preload`: the run is a fork of a server that lives in the sandbox), and what status
and the report say of the night's sandbox.
"""

from __future__ import annotations

import uuid

import pytest

from autoresearch.analysis.report import render_report
from autoresearch.config import load_task
from autoresearch.execution import sandbox
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status
from autoresearch.store import RunStore

from helpers import ScriptedAgent, cli, ledger_lines, needs_sandbox, start_daemon, wait_no_survivors
from hostile_helpers import FOOTER, FORGE_RECORDS, PREAMBLE, hostile_config, night, to


def warm_config(mode: str = "required", task: str = "") -> str:
    return hostile_config(mode, task='preload = ["json"]\n' + task)


def warm_night(make_task, body: str, mode: str = "required"):
    return night(make_task, body, warm_config(mode))


def status_of_night(task_dir) -> str:
    shown = cli("status", str(task_dir), "--tag", "h")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


@needs_sandbox
def test_1_2_a_warm_run_cannot_fake_or_delete_records(make_task):
    task_dir, records = warm_night(make_task, FORGE_RECORDS)
    lines = ledger_lines(task_dir, "h")
    assert [r["iteration"] for r in lines] == [0, 1] and all(r["commit"] != "f" * 40 for r in lines)
    assert [(r["warm"], r["sandboxed"]) for r in lines] == [(True, True), (True, True)]
    assert (task_dir / ".autoresearch" / "h" / "runs" / "0000").is_dir()
    assert "store visible: []" in (task_dir / ".autoresearch" / "h" / "runs" / "0001" / "log.txt").read_text()
    assert records[-1].metrics.get("score") == 99.0  # its own score, fairly printed: nothing faked
    Loop(load_task(task_dir), "h", ScriptedAgent(), say=lambda s: None).prepare()  # the chain still holds on resume
    assert "sandbox: 2 of 2 runs ran sandboxed (bubblewrap)" in status_of_night(task_dir)


@needs_sandbox
def test_9_a_warm_runs_daemon_without_environment_dies_with_it_and_its_memory_counts(make_task):
    mark = f"hostile-{uuid.uuid4().hex}"
    body = f'''
if BAD:
    {start_daemon(mark, hold_mb=300)}
    time.sleep(2)
'''
    config = warm_config("required", task="memory_limit_mb = 200\n")
    task_dir = make_task(train=PREAMBLE + body + FOOTER, config=config)
    records = Loop(load_task(task_dir), "h", ScriptedAgent(to(2.0)), say=lambda s: None).run(Limits(iterations=1))
    assert records[0].status is Status.KEEP and records[0].warm and records[0].sandboxed
    assert records[-1].status is Status.CRASH and records[-1].warm, records[-1].reason
    assert "oom" in records[-1].reason and "200 MB" in records[-1].reason, records[-1].reason
    assert (alive := wait_no_survivors(mark)) == [], f"the daemon survived the run: {alive}"


@needs_sandbox
def test_the_report_and_status_say_the_night_ran_sandboxed(make_task):
    task_dir, _ = warm_night(make_task, "", mode="auto")
    html = render_report(load_task(task_dir), RunStore(task_dir, "h"))
    assert 'id="sandbox" class="small">Sandbox: 2 of 2 runs ran sandboxed (bubblewrap)' in html
    assert "the run store, the home&#39;s credentials and the network out of their reach" in html


def test_the_report_and_status_say_loudly_when_a_night_ran_unsandboxed(make_task):
    task_dir, _ = warm_night(make_task, "", mode="off")
    assert [r["sandboxed"] for r in ledger_lines(task_dir, "h")] == [False, False]
    said = 'sandbox: 0 of 2 runs ran sandboxed (bubblewrap); NOT sandboxed: [sandbox] mode = "off"'
    assert said in status_of_night(task_dir)
    html = render_report(load_task(task_dir), RunStore(task_dir, "h"))
    assert 'id="sandbox" class="banner">Sandbox: 0 of 2 runs ran sandboxed (bubblewrap); NOT sandboxed: [sandbox] mode = &#34;off&#34;.' in html


def test_where_the_sandbox_cannot_work_auto_says_why_once_and_status_repeats_it(make_task, monkeypatch):
    why = "bwrap failed (setting up uid map: Permission denied); enable unprivileged user namespaces (test)"
    monkeypatch.setattr(sandbox, "probe", lambda network=False: why)
    monkeypatch.setattr(sandbox, "_WARNED", set())
    task_dir = make_task(train=PREAMBLE + FOOTER, config=warm_config("auto"))
    said: list[str] = []
    records = Loop(load_task(task_dir), "h", ScriptedAgent(to(2.0)), say=said.append).run(Limits(iterations=1))
    assert [r.sandboxed for r in records] == [False, False]
    warnings = [s for s in said if "NOT sandboxed" in s]
    assert warnings == [f"warning: runs are NOT sandboxed: {why}"]
    from autoresearch.api import status_of

    t = status_of(task_dir, "h").totals()
    assert sandbox.runs_line(t["sandboxed_runs"], t["runs"], t["sandbox_mode"]).endswith(f"NOT sandboxed: {why}")
    with pytest.raises(sandbox.SandboxUnavailable, match="uid map"):
        Loop(load_task(make_task(train=PREAMBLE + FOOTER, config=warm_config("required"), subdir="r")), "h",
             ScriptedAgent(to(2.0)), say=said.append).run(Limits(iterations=1))
