"""A proposal whose code repeats an earlier experiment is no experiment (issue 12, part 2).

It goes back to the agent with what it repeats (iteration, commit, score), in the Context and in
the prompt, for every kind of agent; only `[agent] max_repeats` of them in a row end the iteration
as an `agent` crash. Every results.tsv row's commit is that experiment's own commit.
"""

from __future__ import annotations

import pytest

from autoresearch.agents import Repeat, create_agent
from autoresearch.agents.base import Context
from autoresearch.config import load_task
from autoresearch.ledger import Ledger
from autoresearch.loop import Limits, Loop
from autoresearch.records import Experiment, Proposal, Status
from autoresearch.verdict import Reason, Verdict

from conftest import TINY_CONFIG, git
from helpers import ScriptedAgent, run, set_x, tsv


def own_code(task, rows):
    """Each results.tsv row against `git show` of its own commit: the X its description names."""
    for commit, *_, description in rows[1:]:
        if commit == "-":
            continue
        shown = git(task, "show", f"{commit}:train.py")
        value = description.split("-> ")[1] if "-> " in description else "1.0"
        assert shown.startswith(f"X = {value}"), (commit, description, shown.splitlines()[0])


def test_a_repeat_goes_back_to_the_agent_and_is_no_row(make_task):
    task = make_task()
    agent = ScriptedAgent(set_x(0.5), set_x(0.5), set_x(0.7))
    loop, records = run(task, agent, 2)
    assert [(r.iteration, r.status, r.description) for r in records] == [
        (0, Status.KEEP, "baseline"), (1, Status.DISCARD, "X -> 0.5"), (2, Status.DISCARD, "X -> 0.7")]
    # The agent was asked three times; the third time it knew what the second repeated.
    assert [c.iteration for c in agent.contexts] == [1, 2, 2]
    assert agent.contexts[1].repeats == ()
    [repeat] = agent.contexts[2].repeats
    assert (repeat.iteration, repeat.commit, repeat.score, repeat.description) == (1, records[1].commit, 0.5, "X -> 0.5")
    prompt = agent.contexts[2].prompt
    assert "## Not run: your proposal repeated an earlier experiment" in prompt
    assert f'"X -> 0.5" gives the same code as iteration 1 (commit {records[1].commit[:7]}, score = 0.5)' in prompt
    assert "1 of 3 repeats in a row" in prompt
    assert agent.contexts[2].prompt_file.read_text() == prompt  # what a CLI agent reads
    # rows = experiments run, each with its own commit
    rows = tsv(task)
    assert [r[0] for r in rows[1:]] == [r.commit[:7] for r in records]
    assert len({r[0] for r in rows[1:]}) == 3
    own_code(task, rows)
    assert (loop.store.run_dir(2) / "log.txt").exists()  # iteration 2 is the run of X = 0.7
    assert records[2].agent_data["repeats"] == [{"description": "X -> 0.5", "of": 1}]
    assert not [r for r in records if r.verdict.duplicate]


def test_repeats_in_a_row_end_the_iteration_as_an_agent_crash(make_task):
    task = make_task(config=TINY_CONFIG + "\n[agent]\nmax_repeats = 2\n")
    said = []
    agent = ScriptedAgent(set_x(0.5), set_x(0.5), set_x(0.5), set_x(3.0))
    loop = Loop(load_task(task), "t1", agent, say=said.append)
    records = loop.run(Limits(iterations=3))
    crash = records[2]
    assert crash.status is Status.CRASH and crash.verdict.reason is Reason.AGENT
    assert crash.reason == "agent: 2 proposals in a row repeated earlier experiments (iterations 1, 1); none was run"
    assert crash.commit == crash.parent and crash.content_hash == ""  # nothing committed, never a duplicate
    assert not (loop.store.run_dir(2) / "log.txt").exists()
    assert any("iteration 2: \"X -> 0.5\" gives the same code as iteration 1" in s and "(1 of 2)" in s for s in said)
    # the crash row shows no commit (it has none); the next iteration runs normally
    rows = tsv(task)
    assert rows[3][0] == "-" and rows[3][-2:] == ["crash", "X -> 0.5"]
    assert records[3].status is Status.KEEP and records[3].metrics["score"] == 3.0
    assert "X = 3.0" in (task / "train.py").read_text()
    assert git(task, "status", "--porcelain").strip() == ""
    own_code(task, rows)


def test_what_the_repeats_cost_still_counts(make_task):
    task = make_task()

    def paid(value):
        def edit(d):
            set_x(value)(d)
            return Proposal(f"X -> {value}", "why", cost_usd=0.25, tokens=100)
        return edit

    _, records = run(task, ScriptedAgent(paid(0.5), paid(0.5), paid(0.5), paid(0.7)), 2)
    assert records[2].description == "X -> 0.7"
    assert records[2].cost_usd == pytest.approx(0.75) and records[2].tokens == 300
    assert [r["of"] for r in records[2].agent_data["repeats"]] == [1, 1]


def test_old_duplicate_rows_still_load_and_mean_the_same(make_task):
    task = make_task()
    loop, records = run(task, ScriptedAgent(set_x(0.5)), 1)
    legacy = Experiment(2, records[0].commit, records[0].commit, Status.DISCARD, "X -> 0.5",
                        reason="duplicate of iteration 1; not run again", metrics=dict(records[1].metrics),
                        content_hash=records[1].content_hash, memory_gb=records[1].memory_gb, agent="scripted")
    loop.store.ledger.append(legacy)
    (task / "results.tsv").write_text((task / "results.tsv").read_text()
                                      + f"{records[0].commit[:7]}\t0.500000\t0.5\tdiscard\tX -> 0.5\n")
    said = []
    loop = Loop(load_task(task), "t1", ScriptedAgent(set_x(0.7)), say=said.append)
    more = loop.run(Limits(iterations=1))
    old = Ledger(loop.store.ledger.path).records[2]
    assert old.verdict == Verdict(Status.DISCARD, Reason.DUPLICATE, of=1) and old.verdict.untrained
    assert old.reason == "duplicate of iteration 1; not run again"
    assert more[-1].iteration == 3 and not [s for s in said if "did not match" in s]
    assert tsv(task)[3][3:] == ["discard", "X -> 0.5"]  # the old row stays as it was


def test_an_older_table_of_agent_crashes_is_no_damage(make_task):
    """Earlier versions showed an agent crash's parent commit; a resume accepts that table as is."""
    task = make_task()
    loop, records = run(task, ScriptedAgent(lambda d: "thought about it"), 1)
    rows = tsv(task)
    assert rows[2][0] == "-" and records[1].commit == records[1].parent
    old = (task / "results.tsv").read_text().replace("\n-\t", f"\n{records[1].commit[:7]}\t")
    (task / "results.tsv").write_text(old)
    said = []
    Loop(load_task(task), "t1", ScriptedAgent(set_x(2.0)), say=said.append).run(Limits(iterations=1))
    assert not [s for s in said if "did not match" in s], said
    assert not list(loop.store.root.glob("results.tsv.bak-*"))
    assert tsv(task)[2][0] == "-"


# -- every kind of agent hears of it ---------------------------------------------------------
def test_the_tuner_proposes_something_else_when_told_of_a_repeat(make_task):
    task_dir = make_task()
    task = load_task(task_dir)
    tuner = create_agent("tuner", task)
    loop, records = run(task_dir, ScriptedAgent(), 0)
    context = Context(task_dir=task_dir, iteration=1, editable=task.editable, readonly=task.readonly,
                      history=tuple(records), best=records[0], primary="score", direction="maximize")
    first = tuner.propose(context)
    first_code = (task_dir / "train.py").read_text()
    git(task_dir, "checkout", "--", "train.py")
    again = tuner.propose(context)  # the same question: the same answer
    assert (task_dir / "train.py").read_text() == first_code
    git(task_dir, "checkout", "--", "train.py")
    repeat = Repeat(0, records[0].commit, 1.0, first.description, first.data)
    other = tuner.propose(Context(**{**context.__dict__, "repeats": (repeat,)}))
    assert other.ok and other.data["params"] != first.data["params"] and again.data["params"] == first.data["params"]
    assert (task_dir / "train.py").read_text() != first_code


def test_the_tuner_in_the_loop_moves_on_from_a_repeat(make_task):
    """A row whose recorded params lie (X = 9.9) hides from the tuner that its code was tried:
    the tuner's move repeats it, hears so, and proposes another one."""
    task_dir = make_task(train="X = 1.0  # search: float(0.0, 10.0)\nprint('---')\n"
                               "print(f'score: {1.0 if X == 1.0 else 0.5}')\n")
    task = load_task(task_dir)
    tuner = create_agent("tuner", task)
    _, base = run(task_dir, ScriptedAgent(), 0)
    lie = {"params": {"X": 9.9}}
    row = Experiment(1, base[0].commit, base[0].commit, Status.DISCARD, "X -> ?", reason="no improvement",
                     metrics={"score": 0.5}, agent_data=lie, agent="scripted")
    tuner.propose(Context(task_dir=task_dir, iteration=2, editable=task.editable, readonly=task.readonly,
                          history=(base[0], row), best=base[0], primary="score", direction="maximize"))
    its_move = (task_dir / "train.py").read_text().splitlines()[0]  # what it will propose at iteration 2
    git(task_dir, "checkout", "--", "train.py")

    def same_code_other_params(d):
        p = d / "train.py"
        p.write_text(its_move + "\n" + p.read_text().split("\n", 1)[1])
        return Proposal(its_move, "why", data=lie)

    run(task_dir, ScriptedAgent(same_code_other_params), 1)
    said = []
    records = Loop(task, "t1", tuner, say=said.append).run(Limits(iterations=1))
    assert any("gives the same code as iteration 1" in s for s in said), said
    last = records[-1]
    assert last.iteration == 2 and last.agent_data["repeats"][0]["of"] == 1 and last.exit_code == 0
    assert (task_dir / ".autoresearch").exists() and its_move not in git(task_dir, "show", f"{last.commit}:train.py")


COMMAND_AGENT = TINY_CONFIG + """
[agent]
kind = "command"
command = '''grep -q "Not run: your proposal repeated" "$AUTORESEARCH_PROMPT_FILE" && v=0.7 || v=0.5; sed -i "1s/.*/X = $v/" train.py; echo "X -> $v"'''
"""


def test_a_command_agent_reads_the_repeat_in_its_prompt(make_task):
    task = make_task(config=COMMAND_AGENT)
    loop = Loop(load_task(task), "t1", create_agent("command", load_task(task)), say=lambda s: None)
    records = loop.run(Limits(iterations=2))
    assert [r.metrics.get("score") for r in records] == [1.0, 0.5, 0.7]
    assert records[2].agent_data["repeats"][0]["of"] == 1
    prompt = (loop.store.run_dir(2) / "prompt.md").read_text()
    assert "gives the same code as iteration 1" in prompt
    own_code(task, [["commit", "d"]] + [[r.commit[:7], f"X -> {r.metrics['score']}" if r.iteration else "baseline"]
                                        for r in records])
