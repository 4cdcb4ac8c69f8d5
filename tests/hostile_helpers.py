"""What the hostile-night tests share (test_hostile*.py): the tiny task's config with a sandbox
mode, a train.py whose baseline behaves while the agent's change attacks, the edit that changes X,
and the check that an attack won nothing."""

from __future__ import annotations

from pathlib import Path

from autoresearch.records import Status

from conftest import git, tiny_config
from helpers import ScriptedAgent, ledger_lines, run, set_consts

# The baseline (X = 1.0) behaves; a changed X makes BAD true, and a body guarded by it attacks.
PREAMBLE = "import os, sys, time, json, subprocess\nX = 1.0\nBAD = X > 1\n"
FOOTER = "print('---')\nprint(f'score: {X}')\n"
# A run's attack on the night's records: append a faked keep to the ledger, delete the run store,
# and score 99 (fairly printed: its own score, which may stand; nothing faked may).
FORGE_RECORDS = '''
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


def hostile_config(mode: str = "required", *, timeout: float = 20, task: str = "", sections: str = "") -> str:
    """The tiny task's config, its runs a second long, under `[sandbox] mode`; `task` adds lines to
    [task], `sections` whole sections before [sandbox]."""
    return tiny_config(time_budget=1, timeout=timeout, task=task) + f'\n{sections}[sandbox]\nmode = "{mode}"\n'


def to(value, extra=None):
    """An edit: `X = value` in train.py, then `extra(task_dir)` (the agent's own attack) where given."""
    def edit(d: Path):
        description = set_consts(f"X -> {value}", X=value)(d)
        if extra:
            extra(d)
        return description
    return edit


def assert_no_wrong_keep(task_dir: Path, records, tag: str):
    """Only the baseline is kept: the ledger holds each record once, the branch stays at the baseline."""
    assert records[0].status is Status.KEEP, records[0].reason
    assert all(r.status is not Status.KEEP for r in records[1:]), [r.reason for r in records]
    lines = ledger_lines(task_dir, tag)
    assert [r["iteration"] for r in lines] == list(range(len(records)))
    assert lines[0]["status"] == "keep"
    assert git(task_dir, "rev-parse", f"autoresearch/{tag}").strip() == records[0].commit


def night(make_task, body: str, config: str, *, agent=None, subdir: str = "", extra=None):
    """A night of one iteration (tag h) on a train.py of PREAMBLE + body + FOOTER: the baseline,
    kept, then the agent's change (X -> 2.0 unless `agent` says otherwise). (task_dir, records)"""
    task_dir = make_task(train=PREAMBLE + body + FOOTER, config=config, subdir=subdir, extra=extra)
    _, records = run(task_dir, agent or ScriptedAgent(to(2.0)), 1, tag="h")
    assert records[0].status is Status.KEEP, records[0].reason
    return task_dir, records
