"""Integrity of the metric: trusted eval, noise floor, seed-only changes, confirmation, held-out check."""

import re

from autoresearch import integrity
from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import tiny_config
from helpers import ScriptedAgent

def config(task_extra="", metrics_extra=""):
    return tiny_config(timeout=30, task=task_extra, metrics=metrics_extra + "\n")


def set_const(name, value):
    def edit(d):
        p = d / "train.py"
        p.write_text(re.sub(rf"{name} = [-0-9.]+", f"{name} = {value}", p.read_text()))
        return f"{name} -> {value}"
    return edit


def run(task, agent, n):
    loop = Loop(load_task(task), "i", agent, say=lambda s: None)
    return loop, loop.run(Limits(iterations=n))


def test_trusted_eval_decides_and_flags_a_lying_footer(make_task):
    train = '''\
        X = 1.0
        LIE = 0.0
        open("prediction.txt", "w").write(str(X))
        print("---")
        print(f"score: {X + LIE:.6f}")
    '''
    prepare = 'import sys\nDATA = "fixed"\nif "--evaluate" in sys.argv:\n    print("---")\n    print(f"score: {float(open(\'prediction.txt\').read()):.6f}")\n'
    task = make_task(train=train, config=config('eval = "python prepare.py --evaluate"\noutputs = ["prediction.txt"]'))
    (task / "prepare.py").write_text(prepare)
    from conftest import git
    git(task, "commit", "-qam", "evaluation harness")
    _, records = run(task, ScriptedAgent(set_const("LIE", 5.0), set_const("X", 2.0)), 2)
    lie, honest = records[1], records[2]
    assert lie.status is Status.DISCARD and lie.metrics["score"] == 1.0 and lie.metrics["reported_score"] == 6.0
    assert "flagged" in lie.reason and "trusted eval says 1.000000" in lie.reason
    assert honest.status is Status.KEEP and honest.metrics["score"] == 2.0


def test_failing_trusted_eval_is_a_crash(make_task):
    task = make_task(config=config('eval = "python -c \'raise SystemExit(2)\'"'))
    loop = Loop(load_task(task), "i", ScriptedAgent(), say=lambda s: None)
    try:
        loop.run(Limits(iterations=0))
    except Exception as exc:
        assert "eval:" in str(exc) and "exited with 2" in str(exc)
    else:
        raise AssertionError("the baseline should have crashed")


NOISY = '''\
    import os
    X = 1.0
    SEED = 0
    seed = int(os.environ.get("AUTORESEARCH_SEED", SEED))
    print("---")
    print(f"score: {X + 0.01 * (seed % 3):.6f}")
'''


def test_noise_runs_set_a_floor_that_small_gains_do_not_clear(make_task):
    task = make_task(train=NOISY, config=config(metrics_extra="noise_runs = 3"))
    _, records = run(task, ScriptedAgent(set_const("X", 1.005), set_const("X", 1.1)), 2)
    assert [r.reason.startswith(integrity.NOISE_REASON) for r in records[:3]] == [False, True, True]
    assert [r.metrics["score"] for r in records[:3]] == [1.0, 1.01, 1.02]
    floor = integrity.noise_floor(records, "score", 0.0)
    assert abs(floor - 0.02) < 1e-9
    assert records[3].status is Status.DISCARD and "noise floor" in records[3].reason
    assert records[4].status is Status.KEEP
    rows = (task / "results.tsv").read_text().splitlines()
    assert len(rows) == 1 + 5 and "noise estimate" in rows[2]


def test_seed_change_alone_is_never_a_keep_once_the_floor_is_known(make_task):
    task = make_task(train=NOISY, config=config(metrics_extra="min_delta = 0.001\ndeterministic = true"))
    _, records = run(task, ScriptedAgent(set_const("SEED", 2)), 1)
    assert records[1].metrics["score"] == 1.02  # luckier...
    assert records[1].status is Status.DISCARD and "seed change alone" in records[1].reason  # ...but not a keep


def test_min_delta(make_task):
    task = make_task(config=config(metrics_extra="min_delta = 0.5\ndeterministic = true"))
    _, records = run(task, ScriptedAgent(set_const("X", 1.4), set_const("X", 1.6)), 2)
    assert [r.status for r in records[1:]] == [Status.DISCARD, Status.KEEP]


def test_confirmation_run_rejects_a_lucky_seed(make_task):
    train = '''\
        import os
        X = 1.0
        LUCK = 0.0
        lucky = "AUTORESEARCH_SEED" not in os.environ
        print("---")
        print(f"score: {X + (LUCK if lucky else 0.0):.6f}")
    '''
    task = make_task(train=train, config=config(metrics_extra="confirm = true\ndeterministic = true"))
    loop, _ = run(task, ScriptedAgent(set_const("LUCK", 0.5), set_const("X", 2.0)), 2)
    ledger = sorted(loop.store.ledger.records, key=lambda r: r.iteration)
    assert [r.iteration for r in ledger] == [0, 1, 2, 3, 4]
    lucky, its_check, real, real_check = ledger[1], ledger[2], ledger[3], ledger[4]
    assert lucky.status is Status.DISCARD and "not confirmed by iteration 2" in lucky.reason
    assert its_check.reason == f"{integrity.CONFIRM_REASON} 1" and its_check.metrics["score"] == 1.0
    assert real.status is Status.KEEP and "confirmed by iteration 4" in real.reason
    assert real_check.status is Status.DISCARD and real_check.commit == real.commit


def test_final_eval_reports_the_gap_on_the_best_commits(make_task):
    train = '''\
        import sys
        X = 1.0
        held_out = "--held-out" in sys.argv
        print("---")
        print(f"score: {X - (0.25 if held_out else 0.0):.6f}")
    '''
    task = make_task(train=train, config=config('final_eval = "python train.py --held-out"'))
    loop, _ = run(task, ScriptedAgent(set_const("X", 2.0)), 1)
    rows = integrity.final_eval(loop.task, loop.store, say=lambda s: None)
    assert [(r["iteration"], r["search"], r["held_out"], r["gap"]) for r in rows] == [(1, 2.0, 1.75, -0.25), (0, 1.0, 0.75, -0.25)]
    assert (loop.store.root / "final_eval.json").is_file()
    from conftest import git
    assert "autoresearch-final" not in git(task, "worktree", "list")
    from helpers import cli
    shown = cli("confirm", str(task), "--tag", "i", "--top", "1")  # the same check from the command line
    assert shown.returncode == 0 and "final eval #1" in shown.stdout and "held-out 1.75 (gap -0.250000)" in shown.stdout, \
        shown.stdout + shown.stderr


class Killed(BaseException):
    """Stands in for a SIGKILL: nothing after the raise runs, no handler cleans up."""


def test_killed_between_a_keep_and_its_confirmation_record(make_task, monkeypatch):
    task = make_task(train="X = 1.0\nprint('---')\nprint(f'score: {X:.6f}')\n",
                     config=config(metrics_extra="confirm = true\ndeterministic = true"))
    real_finish = Loop._finish

    def finish_then_die(self, record, last=True, **kw):
        out = real_finish(self, record, last, **kw)
        if not last:  # the keep is in the ledger; its confirmation is not yet
            raise Killed()
        return out

    monkeypatch.setattr(Loop, "_finish", finish_then_die)
    try:
        run(task, ScriptedAgent(set_const("X", 2.0)), 1)
    except Killed:
        pass
    else:
        raise AssertionError("the keep was never recorded with a confirmation to follow")
    monkeypatch.setattr(Loop, "_finish", real_finish)
    loop, _ = run(task, ScriptedAgent(set_const("X", 3.0)), 0)  # resume only
    ledger = sorted(loop.store.ledger.records, key=lambda r: r.iteration)
    assert [r.iteration for r in ledger] == [0, 1, 2]
    assert "confirmed by iteration 2" in ledger[1].reason
    assert ledger[2].reason == f"{integrity.CONFIRM_REASON} 1" and ledger[2].commit == ledger[1].commit
    for name in ("explanation.md", "log.txt"):  # the confirmation's run folder is whole, as if never killed
        assert (loop.store.run_dir(2) / name).is_file(), name
    rows = (task / "results.tsv").read_text().splitlines()
    assert len(rows) == 4 and rows[-1].split("\t")[3] == "discard"
