"""The run store owns its layout: run folders, derived files, pending.json."""

from __future__ import annotations

import json

import pytest

from autoresearch.store import Pending, Process, RunStore

from conftest import git
from helpers import ScriptedAgent, run, set_x

# pending.json as an earlier version wrote it mid-run (the keys appear as the iteration goes on).
OLD_PENDING = {"iteration": 3, "parent": "abc123", "untracked": ["notes.txt"], "started": 1700000000.5,
               "processes": [{"role": "agent", "pid": 4242, "create_time": 1700000001.0, "token": None},
                             {"role": "run", "pid": 0, "create_time": 0.0, "token": "f" * 32}],
               "commit": "def456", "confirming": 4}


def test_an_old_pending_file_reads_typed_and_writes_back_the_same_keys(tmp_path):
    store = RunStore(tmp_path, "t")
    store.root.mkdir(parents=True)
    store.pending_path.write_text(json.dumps(OLD_PENDING))
    pending = store.pending()
    assert pending == Pending(3, "abc123", ("notes.txt",), 1700000000.5, "def456",
                              (Process("agent", 4242, 1700000001.0, None), Process("run", 0, 0.0, "f" * 32)), 4)
    assert pending.to_json() == OLD_PENDING
    store.set_pending(confirmation={"iteration": 4})
    assert json.loads(store.pending_path.read_text()) == {**OLD_PENDING, "confirmation": {"iteration": 4}}


def test_pending_holds_only_the_keys_set_so_far(tmp_path):
    store = RunStore(tmp_path, "t")
    store.root.mkdir(parents=True)
    store.set_pending(iteration=1, parent="p", untracked=(), started=2.0)
    assert json.loads(store.pending_path.read_text()) == {"iteration": 1, "parent": "p", "untracked": [], "started": 2.0}
    store.set_pending(processes=[Process("run", 7, 1.5, "tok")])
    assert json.loads(store.pending_path.read_text())["processes"] == [{"role": "run", "pid": 7, "create_time": 1.5, "token": "tok"}]
    with pytest.raises(TypeError, match="no field"):
        store.set_pending(iteraton=2)


@pytest.mark.parametrize("text", ["not json", "[]", '{"parent": "p"}', '{"iteration": "3"}'])
def test_a_pending_file_that_is_not_one_is_ignored(tmp_path, text):
    store = RunStore(tmp_path, "t")
    store.root.mkdir(parents=True)
    store.pending_path.write_text(text)
    assert store.pending() is None


def test_run_path_creates_nothing_and_run_dir_creates_it(tmp_path):
    store = RunStore(tmp_path, "t")
    assert store.run_path(7) == tmp_path / ".autoresearch" / "t" / "runs" / "0007" and not store.run_path(7).exists()
    assert store.run_dir(7).is_dir() and store.run_dir(7) == store.run_path(7)


def test_every_derived_file_is_excluded_from_git(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    exclude = (task / ".git" / "info" / "exclude").read_text().splitlines()
    for name in RunStore.derived_files():
        assert f"/{name}" in exclude, name
    for name in ("results.tsv", "progress.png", "report.html", "analysis_summary.json"):
        (task / name).write_text("x")
    assert git(task, "status", "--porcelain") == ""
