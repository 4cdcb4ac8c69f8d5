"""The loop end to end with real git and real processes, driven by scripted agents."""

import threading

import pytest

from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError
from autoresearch.loop import Limits, Loop
from autoresearch.records import Proposal, Status

from conftest import git, tiny_config
from helpers import ScriptedAgent, run, set_consts, set_x, tsv


def test_keep_discard_and_branch_moves(make_task):
    task = make_task()
    agent = ScriptedAgent(set_x(2.0), set_x(1.5), set_x(3.0))
    loop, records = run(task, agent, 3)
    assert [r.status for r in records] == [Status.KEEP, Status.KEEP, Status.DISCARD, Status.KEEP]
    rows = tsv(task)
    assert rows[0] == ["commit", "score", "memory_gb", "status", "description"]
    assert [r[1] for r in rows[1:]] == ["1.000000", "2.000000", "1.500000", "3.000000"]
    assert [r[2] for r in rows[1:]] == ["0.5"] * 4
    assert git(task, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/t1"
    assert git(task, "rev-parse", "HEAD").strip() == records[-1].commit
    # discarded commits stay reachable
    assert "X = 1.5" in git(task, "show", records[2].commit[:7] + ":train.py")
    assert (loop.store.run_dir(2) / "diff.patch").read_text().count("X = 1.5") == 1
    # results.tsv and the store are never committed nor shown as untracked
    assert git(task, "status", "--porcelain").strip() == ""


def test_agent_sees_history_and_prompt(make_task):
    task = make_task()
    agent = ScriptedAgent(set_x(2.0), set_x(0.5))
    run(task, agent, 2)
    second = agent.contexts[1]
    assert [e.iteration for e in second.history] == [0, 1]
    assert second.best.iteration == 1
    assert "Tiny task" in second.prompt and "X -> 2.0" in second.prompt
    assert second.prompt_file.read_text() == second.prompt


def writing_too(description: str, name: str, text: str):
    """An edit: X -> 9.0, and the file `name` of the task written with `text`."""
    def edit(d):
        (d / name).write_text(text)
        set_x(9.0)(d)
        return description
    return edit


def test_guard_reverts_readonly_edit_and_records_crash(make_task):
    task = make_task()
    loop, records = run(task, ScriptedAgent(writing_too("cheat", "prepare.py", "DATA = 'leaked'\n")), 1)
    r = records[-1]
    assert r.status is Status.CRASH and r.reason.startswith("guard") and "prepare.py" in r.reason
    assert (task / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert "X = 1.0" in (task / "train.py").read_text()
    assert not (loop.store.run_dir(1) / "log.txt").exists()  # never trained
    assert "leaked" in git(task, "show", r.commit + ":prepare.py")  # the attempt is inspectable
    assert tsv(task)[2][1:4] == ["0.000000", "0.0", "crash"]


def test_new_file_outside_scope_is_removed(make_task):
    task = make_task()
    _, records = run(task, ScriptedAgent(writing_too("sneak", "helper.py", "print('hi')\n")), 1)
    assert records[-1].status is Status.CRASH and "helper.py" in records[-1].reason
    assert not (task / "helper.py").exists()


def test_editable_file_turned_into_a_symlink_out_of_the_task_is_refused(make_task, tmp_path):
    task = make_task()
    outside = tmp_path / "elsewhere.py"
    outside.write_text("print('---')\nprint('score: 99.0')\n")

    def link_out(d):
        (d / "train.py").unlink()
        (d / "train.py").symlink_to(outside)
        return "train.py now lives elsewhere"

    loop, records = run(task, ScriptedAgent(link_out), 1)
    r = records[-1]
    assert r.status is Status.CRASH and r.reason.startswith("guard") and "outside the task directory" in r.reason
    assert not (loop.store.run_dir(1) / "log.txt").exists()  # never trained
    assert not (task / "train.py").is_symlink() and "X = 1.0" in (task / "train.py").read_text()
    assert outside.read_text().endswith("score: 99.0')\n")


@pytest.mark.parametrize("mode", ["off", "auto"])
def test_run_that_modifies_readonly_file_is_a_crash(make_task, mode):
    """Unsandboxed the write happens and the guard catches it; sandboxed the write is refused."""
    from autoresearch.execution import sandbox
    from conftest import TINY_CONFIG

    # "auto" runs sandboxed where bwrap works (CI), else unsandboxed with a warning: the guard's case.
    sandboxed = mode == "auto" and not sandbox.probe()
    train = '''\
        X = 1.0
        import sys
        if X > 1:
            open("prepare.py", "w").write("DATA = 'tampered'\\n")
        print("---")
        print(f"score: {X}")
    '''
    task = make_task(train=train, config=TINY_CONFIG + f'\n[sandbox]\nmode = "{mode}"\n')
    _, records = run(task, ScriptedAgent(set_x(5.0)), 1)
    assert records[-1].status is Status.CRASH and records[-1].sandboxed is sandboxed
    if not sandboxed:
        assert records[-1].reason.startswith("guard") and "read-only" in records[-1].reason
    else:
        assert "Read-only file system: 'prepare.py'" in records[-1].reason, records[-1].reason
    assert (task / "prepare.py").read_text() == "DATA = 'fixed'\n"


@pytest.mark.parametrize("body, reason", [
    ("import sys\nprint('---')\nprint('score: 1')\nsys.exit(3)\n", "exit_code: 3"),
    ("print('---')\nprint('score: nan')\n", "nan"),
    ("print('no footer at all')\n", "no_metric"),
    ("print('---')\nprint('other: 1.0')\n", "no_metric"),
    ("print('half way', flush=True)\nraise RuntimeError('boom')\n", "exit_code: 1"),
])
def test_crash_reasons(make_task, body, reason):
    task = make_task()

    def edit(d):
        (d / "train.py").write_text("X = 2.0\n" + body)
        return "breaks"

    loop, records = run(task, ScriptedAgent(edit), 1)
    r = records[-1]
    assert r.status is Status.CRASH and r.reason.startswith(reason)
    assert (task / "train.py").read_text().startswith("X = 1.0")
    assert (loop.store.run_dir(1) / "log.txt").exists()


def test_timeout_is_a_crash(make_task):
    task = make_task(config='''\
        [task]
        run = "python train.py"
        editable = ["train.py"]
        time_budget = 1
        timeout = 1.5
        [metrics]
        primary = "score"
        direction = "maximize"
        deterministic = true
    ''')

    def hang(d):
        (d / "train.py").write_text("import time\ntime.sleep(60)\n")
        return "hang"

    _, records = run(task, ScriptedAgent(hang), 1)
    assert records[-1].status is Status.CRASH and records[-1].reason.startswith("timeout")
    assert records[-1].wall_seconds < 10


def test_agent_without_change_and_failing_agent_do_not_train(make_task):
    task = make_task()
    nothing = lambda d: "thought about it"  # noqa: E731
    failing = lambda d: Proposal("x", "", ok=False, error="exit 1")  # noqa: E731
    loop, records = run(task, ScriptedAgent(nothing, failing), 2)
    assert [r.status for r in records[1:]] == [Status.CRASH, Status.CRASH]
    assert "no change" in records[1].reason and "exit 1" in records[2].reason
    assert not (loop.store.run_dir(1) / "log.txt").exists()


def test_a_footer_with_duplicate_keys_is_judged_on_the_last_and_named(make_task):
    task = make_task(train="X = 1.0\nprint('---')\nprint('score: 0.5')\nprint(f'score: {X}')\n")
    said = []
    loop = Loop(load_task(task), "t1", ScriptedAgent(), say=said.append)
    records = loop.run(Limits(iterations=0))
    assert records[0].metrics["score"] == 1.0
    log = loop.store.run_dir(0) / "log.txt"
    assert any(str(log) in s and "score more than once" in s and "print each key once" in s
               and "train.py" in s for s in said), said


def test_duplicate_change_is_not_run_again(make_task):
    # Issue 12: a duplicate is no row either; the agent is asked again (tests/loop/test_repeats.py).
    task = make_task()
    agent = ScriptedAgent(set_x(0.5), set_x(0.5), set_x(0.25))
    loop, records = run(task, agent, 2)
    assert [r.metrics["score"] for r in records] == [1.0, 0.5, 0.25]
    assert agent.contexts[2].repeats[0].iteration == 1
    assert len(list((loop.store.root / "runs").glob("*/log.txt"))) == 3  # the repeat never ran


def test_simplicity_rule_keeps_equal_but_shorter_code(make_task):
    task = make_task(train='''\
        X = 1.0
        unused = 1
        print("---")
        print(f"score: {X}")
    ''')

    def simplify(d):
        p = d / "train.py"
        p.write_text(p.read_text().replace("unused = 1\n", ""))
        return "remove dead line"

    _, records = run(task, ScriptedAgent(simplify), 1)
    assert records[-1].status is Status.KEEP and "simpler" in records[-1].reason


def test_resume_continues_numbering_and_rows(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    _, more = run(task, ScriptedAgent(set_x(3.0), set_x(2.5)), 2)
    assert [r.iteration for r in more] == [2, 3]
    assert len(tsv(task)) == 1 + 4


def test_results_tsv_edited_by_hand_is_backed_up_and_rebuilt(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    good = (task / "results.tsv").read_text()
    (task / "results.tsv").write_text(good.splitlines()[0] + "\nmy own notes\n")  # rows lost by hand
    said = []
    loop = Loop(load_task(task), "t1", ScriptedAgent(set_x(3.0)), say=said.append)
    loop.run(Limits(iterations=1))
    rows = tsv(task)
    assert len(rows) == 1 + 3 and ["\t".join(r) for r in rows[1:3]] == good.splitlines()[1:]
    backups = list((task / ".autoresearch/t1").glob("results.tsv.bak-*"))
    assert len(backups) == 1 and "my own notes" in backups[0].read_text()
    assert any("did not match the ledger" in s and str(backups[0]) in s for s in said), said


def test_another_tags_table_in_the_task_directory_is_not_damage(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    git(task, "checkout", "-q", "main")
    loop = Loop(load_task(task), "t2", ScriptedAgent(set_x(3.0)), say=lambda s: None)
    loop.run(Limits(iterations=1))  # t2 shows its own rows now
    said = []
    Loop(load_task(task), "t1", ScriptedAgent(), say=said.append).run(Limits(iterations=0))
    assert not list(task.glob(".autoresearch/*/results.tsv.bak-*")) and not any("ledger" in s for s in said)
    assert len(tsv(task)) == 1 + 2  # t1's own table is back
    # what a writer killed mid-write leaves is never an untracked change the agent is blamed for
    (task / ".results.tsv.tmp.4242").write_text("torn")
    (task / ".results.tsv.link.4242").write_text("torn")
    assert git(task, "status", "--porcelain").strip() == ""


def test_task_in_a_subdirectory(make_task):
    task = make_task(subdir="tasks/tiny")
    _, records = run(task, ScriptedAgent(set_x(4.0), set_x(0.1)), 2)
    assert [r.status for r in records] == [Status.KEEP, Status.KEEP, Status.DISCARD]
    assert "X = 4.0" in (task / "train.py").read_text()


def test_dirty_tree_and_existing_branch_without_ledger(make_task):
    task = make_task()
    (task / "train.py").write_text("X = 7\n")
    with pytest.raises(AutoresearchError, match="uncommitted changes"):
        run(task, ScriptedAgent(), 0)
    git(task, "checkout", "train.py")
    git(task, "branch", "autoresearch/t1")
    with pytest.raises(AutoresearchError, match="no ledger"):
        run(task, ScriptedAgent(), 0)


def test_stop_event_rolls_back_cleanly(make_task):
    task = make_task()
    stop = threading.Event()

    def edit_then_stop(d):
        set_x(5.0)(d)
        stop.set()
        return "interrupted"

    loop, records = run(task, ScriptedAgent(edit_then_stop), 3, stop_event=stop)
    assert len(records) == 1  # only the baseline
    assert "X = 1.0" in (task / "train.py").read_text()
    assert loop.store.pending() is None
    assert len(tsv(task)) == 2


def test_seed_004_layout_with_tie_break(make_task):
    train = '''\
        BIN = 0.8
        MC = 0.5
        print("---")
        print(f"mc_acc: {MC:.6f}")
        print(f"bin_acc: {BIN:.6f}")
        print("train_seconds: 300.2")
        print("train_stopped_budget: true")
        print("peak_vram_mb: 1234.5")
        print("arch: baseline")
    '''
    config = tiny_config(time_budget=300, timeout=None, primary="bin_acc",
                         metrics='tie_break = ["mc_acc"]\ncolumns = ["mc_acc", "bin_acc"]\n')
    task = make_task(train=train, config=config)

    _, records = run(task, ScriptedAgent(set_consts("mc 0.6", MC=0.6), set_consts("mc 0.4", MC=0.4)), 2)
    assert [r.status for r in records] == [Status.KEEP, Status.KEEP, Status.DISCARD]
    rows = tsv(task)
    assert rows[0] == ["commit", "mc_acc", "bin_acc", "memory_gb", "status", "description"]
    assert rows[1][1:5] == ["0.500000", "0.800000", "1.2", "keep"]


def test_preload_runs_are_warm_and_recorded(make_task):
    task = make_task(config=tiny_config(timeout=30, task='preload = ["json"]\n'))
    loop, records = run(task, ScriptedAgent(set_x(2.0)), 1)
    assert all(r.warm for r in records) and all(r.startup_seconds is not None for r in records)
    assert records[-1].status is Status.KEEP
