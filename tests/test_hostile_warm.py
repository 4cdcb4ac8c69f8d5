"""Issue 11's run-side attacks 1, 2 and 9 again, by a *warm-started* run through the real loop
(`[task] preload`: the run is a fork of a server that lives in the sandbox), and what status
and the report say of the night's sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from autoresearch.analysis.report import render_report
from autoresearch.config import load_task
from autoresearch.execution import sandbox
from autoresearch.loop import Limits, Loop
from autoresearch.records import Proposal, Status
from autoresearch.store import RunStore

WARM = '''\
[task]
run = "python train.py"
editable = ["train.py"]
readonly = ["prepare.py"]
time_budget = 1
timeout = 20
preload = ["json"]

[metrics]
primary = "score"
direction = "maximize"
deterministic = true

[sandbox]
mode = "{mode}"
'''
# As in test_hostile.py: the baseline (X = 1.0) behaves; the agent's change (X = 2.0) attacks.
PREAMBLE = "import os, sys, time, json, subprocess\nX = 1.0\nBAD = X > 1\n"
FOOTER = "print('---')\nprint(f'score: {X}')\n"
needs_sandbox = pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")


class Edits:
    name = "hostile"

    def __init__(self, *edits):
        self.edits = list(edits)

    def propose(self, context):
        return Proposal(self.edits.pop(0)(context.task_dir) or "edit", "Because.")


def to_x2(d):
    p = d / "train.py"
    p.write_text(p.read_text().replace("X = 1.0", "X = 2.0"))
    return "X -> 2.0"


def ledger_lines(task_dir) -> list[dict]:
    return [json.loads(line) for line in (task_dir / ".autoresearch" / "h" / "ledger.jsonl").read_text().splitlines()]


def warm_night(make_task, body: str, mode: str = "required"):
    task_dir = make_task(train=PREAMBLE + body + FOOTER, config=WARM.format(mode=mode))
    loop = Loop(load_task(task_dir), "h", Edits(to_x2), say=lambda s: None)
    records = loop.run(Limits(iterations=1))
    assert records[0].status is Status.KEEP, records[0].reason
    return task_dir, records


def status_of_night(task_dir) -> str:
    shown = subprocess.run([sys.executable, "-m", "autoresearch", "status", str(task_dir), "--tag", "h"],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


@needs_sandbox
def test_1_2_a_warm_run_cannot_fake_or_delete_records(make_task):
    body = '''
if BAD:
    store = os.path.join(".autoresearch", "h")
    print("store visible:", os.listdir(".autoresearch"))
    try:
        fake = {"iteration": 7, "commit": "f" * 40, "parent": "p", "status": "keep", "description": "fake",
                "metrics": {"score": 99.0}}
        open(os.path.join(store, "ledger.jsonl"), "a").write(json.dumps(fake) + "\\n")
    except OSError as exc:
        print("append refused", exc)
    import shutil
    shutil.rmtree(store, ignore_errors=True)
    X = 99.0
'''
    task_dir, records = warm_night(make_task, body)
    lines = ledger_lines(task_dir)
    assert [r["iteration"] for r in lines] == [0, 1] and all(r["commit"] != "f" * 40 for r in lines)
    assert [(r["warm"], r["sandboxed"]) for r in lines] == [(True, True), (True, True)]
    assert (task_dir / ".autoresearch" / "h" / "runs" / "0000").is_dir()
    assert "store visible: []" in (task_dir / ".autoresearch" / "h" / "runs" / "0001" / "log.txt").read_text()
    assert records[-1].metrics.get("score") == 99.0  # its own score, fairly printed: nothing faked
    Loop(load_task(task_dir), "h", Edits(), say=lambda s: None).prepare()  # the chain still holds on resume
    assert "sandbox: 2 of 2 runs ran sandboxed (bubblewrap)" in status_of_night(task_dir)


@needs_sandbox
def test_9_a_warm_runs_daemon_without_environment_dies_with_it_and_its_memory_counts(make_task):
    mark = f"hostile-{uuid.uuid4().hex}"
    body = f'''
if BAD:
    hog = "import os, time\\nif os.fork(): os._exit(0)\\nos.setsid()\\nif os.fork(): os._exit(0)\\nb = b'x' * (300 * 2**20)\\ntime.sleep(1000)"
    subprocess.Popen(["/usr/bin/env", "-i", sys.executable, "-c", hog, {mark!r}], start_new_session=True).wait()
    time.sleep(2)
'''
    config = WARM.format(mode="required").replace("timeout = 20", "timeout = 20\nmemory_limit_mb = 200")
    task_dir = make_task(train=PREAMBLE + body + FOOTER, config=config)
    records = Loop(load_task(task_dir), "h", Edits(to_x2), say=lambda s: None).run(Limits(iterations=1))
    assert records[0].status is Status.KEEP and records[0].warm and records[0].sandboxed
    assert records[-1].status is Status.CRASH and records[-1].warm, records[-1].reason
    assert "oom" in records[-1].reason and "200 MB" in records[-1].reason, records[-1].reason
    deadline = time.monotonic() + 3
    while (alive := [p for p in psutil.process_iter(["cmdline"]) if mark in " ".join(p.info["cmdline"] or ())]):
        assert time.monotonic() < deadline, f"the daemon survived the run: {alive}"
        time.sleep(0.05)


@needs_sandbox
def test_the_report_and_status_say_the_night_ran_sandboxed(make_task):
    task_dir, _ = warm_night(make_task, "", mode="auto")
    html = render_report(load_task(task_dir), RunStore(task_dir, "h"))
    assert 'id="sandbox" class="small">Sandbox: 2 of 2 runs ran sandboxed (bubblewrap)' in html
    assert "the run store, the home&#39;s credentials and the network out of their reach" in html


def test_the_report_and_status_say_loudly_when_a_night_ran_unsandboxed(make_task):
    task_dir, _ = warm_night(make_task, "", mode="off")
    assert [r["sandboxed"] for r in ledger_lines(task_dir)] == [False, False]
    said = 'sandbox: 0 of 2 runs ran sandboxed (bubblewrap); NOT sandboxed: [sandbox] mode = "off"'
    assert said in status_of_night(task_dir)
    html = render_report(load_task(task_dir), RunStore(task_dir, "h"))
    assert 'id="sandbox" class="banner">Sandbox: 0 of 2 runs ran sandboxed (bubblewrap); NOT sandboxed: [sandbox] mode = &#34;off&#34;.' in html


def test_where_the_sandbox_cannot_work_auto_says_why_once_and_status_repeats_it(make_task, monkeypatch):
    why = "bwrap failed (setting up uid map: Permission denied); enable unprivileged user namespaces (test)"
    monkeypatch.setattr(sandbox, "probe", lambda network=False: why)
    monkeypatch.setattr(sandbox, "_WARNED", set())
    task_dir = make_task(train=PREAMBLE + FOOTER, config=WARM.format(mode="auto"))
    said: list[str] = []
    records = Loop(load_task(task_dir), "h", Edits(to_x2), say=said.append).run(Limits(iterations=1))
    assert [r.sandboxed for r in records] == [False, False]
    warnings = [s for s in said if "NOT sandboxed" in s]
    assert warnings == [f"warning: runs are NOT sandboxed: {why}"]
    from autoresearch.api import status_of

    t = status_of(task_dir, "h").totals()
    assert sandbox.runs_line(t["sandboxed_runs"], t["runs"], t["sandbox_mode"]).endswith(f"NOT sandboxed: {why}")
    with pytest.raises(sandbox.SandboxUnavailable, match="uid map"):
        Loop(load_task(make_task(train=PREAMBLE + FOOTER, config=WARM.format(mode="required"), subdir="r")), "h",
             Edits(to_x2), say=said.append).run(Limits(iterations=1))
