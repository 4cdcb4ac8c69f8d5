"""The outer loop through the real loop: crash repair, strategy memo, cost limit, program proposal."""

import json

from autoresearch import outer
from autoresearch.agents.base import Memo, MemoFailed
from autoresearch.api import status_of
from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Proposal, Status

from conftest import git
from helpers import ScriptedAgent, set_x


def configure(task, extra):
    (task / "autoresearch.toml").write_text((task / "autoresearch.toml").read_text() + extra)
    git(task, "commit", "-qam", "configure")


def run(task, agent, n, observers=None, **limits):
    loop = Loop(load_task(task), "o", agent, say=lambda s: None, observers=observers)
    return loop, loop.run(Limits(iterations=n, **limits))


def test_crash_is_sent_back_for_repair_and_the_fix_is_linked(make_task):
    task = make_task()

    def typo(d):
        p = d / "train.py"
        p.write_text(p.read_text().replace("X = 1.0", "X = 3.0") + "print(undefined_name)\n")
        return "X -> 3 (with a typo)"

    seen = {}

    def fix(d):
        seen["code"] = (d / "train.py").read_text()
        p = d / "train.py"
        p.write_text(p.read_text().replace("print(undefined_name)\n", ""))
        return "fix the typo"

    agent = ScriptedAgent(typo, fix)
    loop, records = run(task, agent, 2)
    assert records[1].status is Status.CRASH and records[1].reason.startswith("exit_code")
    assert "undefined_name" in seen["code"]  # the agent repaired the crashed code, not the best
    assert "First: repair the last experiment" in agent.contexts[1].prompt
    assert "NameError" in agent.contexts[1].prompt
    assert records[2].repair_of == 1 and records[2].status is Status.KEEP
    assert records[2].metrics["score"] == 3.0


def test_repairs_stop_after_max_attempts(make_task):
    task = make_task()

    def broken(d):
        p = d / "train.py"
        p.write_text(p.read_text() + "raise SystemExit(4)\n")
        return "still broken"

    def touch(d):
        p = d / "train.py"
        p.write_text(p.read_text() + "# tried again\n")
        return "try again"

    agent = ScriptedAgent(broken, touch, touch, set_x(5.0))
    _, records = run(task, agent, 4)
    assert [r.repair_of for r in records[1:]] == [None, 1, 1, None]
    assert "First: repair" not in agent.contexts[3].prompt


def test_a_crash_from_the_environment_is_not_sent_back_as_fix_your_code(make_task):
    task = make_task()

    def needs_a_package(d):
        p = d / "train.py"
        p.write_text("import a_package_not_installed_here\n" + p.read_text().replace("X = 1.0", "X = 3.0"))
        return "X -> 3 with a new dependency"

    agent = ScriptedAgent(needs_a_package, set_x(2.0))
    _, records = run(task, agent, 2)
    assert records[1].status is Status.CRASH and records[1].reason.startswith("env: ModuleNotFoundError")
    assert "First: repair" not in agent.contexts[1].prompt
    assert records[2].repair_of is None and records[2].status is Status.KEEP
    assert "import a_package_not_installed_here" not in (task / "train.py").read_text()  # the best code again


def test_tuner_like_agents_are_not_asked_to_repair(make_task):
    task = make_task()

    def crash(d):
        (d / "train.py").write_text("X = 2.0\nraise SystemExit(1)\n")
        return "crash"

    agent = ScriptedAgent(crash, set_x(2.0))
    agent.repairs = False
    _, records = run(task, agent, 2)
    assert records[2].repair_of is None and "X = 1.0" not in (task / "train.py").read_text()


def test_memo_refreshes_every_k_and_reaches_the_prompt(make_task):
    task = make_task()
    configure(task, "\n[agent]\nmemo_every = 2\n")
    agent = ScriptedAgent(set_x(2.0), set_x(0.5), set_x(3.0))
    loop, _ = run(task, agent, 3)
    memo = (loop.store.root / "strategy.md").read_text()
    assert "## What works" in memo and "X" in memo
    assert "Strategy memo" in agent.contexts[2].prompt and "## What works" in agent.contexts[2].prompt


def test_plateau_refreshes_the_memo_and_escalates_the_prompt(make_task):
    task = make_task()
    configure(task, "\n[agent]\nmemo_every = 0\nplateau = 2\n")
    agent = ScriptedAgent(set_x(0.5), set_x(0.6), set_x(0.7))
    loop, records = run(task, agent, 3)
    assert [r.status for r in records[1:]] == [Status.DISCARD] * 3
    assert "## Plateau" not in agent.contexts[1].prompt and "Strategy memo" not in agent.contexts[1].prompt
    escalated = agent.contexts[2].prompt  # two iterations without a keep
    assert "## Plateau\n\n2 iterations without a keep" in escalated
    assert "change a different\naxis" in escalated and "structural change" in escalated
    assert "Strategy memo" in escalated and "plateau: 2 iterations without a keep" in escalated


def test_analysis_hints_reach_the_prompt(make_task):
    from autoresearch.analysis.observer import refresh

    task = make_task()
    agent = ScriptedAgent(set_x(2.0), set_x(1.5), set_x(3.0))
    run(task, agent, 3, observers=[refresh])
    hints = agent.contexts[2].prompt.split("## Analysis of all experiments\n\n", 1)[1].split("\n## ", 1)[0]
    # written by the analysis after iteration 2, read for iteration 3
    assert hints.startswith("Frontier: #0 1 (baseline) -> #1 2 (X up, +1)\n1 iterations since the last keep")
    assert "- X up gained +1" in hints


def test_the_offline_tuner_gets_the_rules_memo(make_task):
    from autoresearch.agents import create_agent

    task = make_task()
    configure(task, "\n[agent]\nmemo_every = 2\n")
    loop, records = run(task, create_agent("tuner", load_task(task)), 2)
    memo = (loop.store.root / "strategy.md").read_text()
    assert memo.startswith("## What works\n") and "## What fails" in memo and "## Try next" in memo
    assert "X: " in memo  # per axis: the tuner's changed constant
    assert not outer.memo_calls_path(loop.store).exists()  # no LLM call, nothing spent


def test_llm_agent_writes_the_memo(make_task):
    task = make_task()
    configure(task, "\n[agent]\nmemo_every = 1\n")
    agent = ScriptedAgent(set_x(2.0))
    requests = []
    agent.write_memo = lambda prompt: requests.append(prompt) or "## What works\n- raising X\n## Stop trying\n- nothing"
    loop, _ = run(task, agent, 1)
    assert "research lead" in requests[0] and "What fails and why" in requests[0]
    assert (loop.store.root / "strategy.md").read_text().startswith("## What works\n- raising X")


def test_cost_limit_stops_cleanly(make_task):
    task = make_task()
    paid = lambda v: (lambda d: (set_x(v)(d), Proposal(f"X -> {v}", "costly", cost_usd=0.6, tokens=1000))[1])  # noqa: E731
    loop, records = run(task, ScriptedAgent(paid(2.0), paid(3.0), paid(4.0)), 3, max_cost_usd=1.0)
    assert len(records) == 3  # baseline + 2: the third would start over budget
    assert sum(r.cost_usd for r in loop.store.ledger.records) == 1.2
    assert loop.store.pending() is None


def test_memo_calls_cost_counts_in_totals_and_the_cost_limit(make_task):
    task = make_task()
    configure(task, "\n[agent]\nmemo_every = 1\n")
    agent = ScriptedAgent(set_x(2.0), set_x(3.0), set_x(4.0), set_x(5.0))
    answers = [Memo("## What works\n- raising X", cost_usd=0.4, tokens=100),
               MemoFailed("the model answered nothing useful", cost_usd=0.4, tokens=100),
               Memo("## What works\n- raising X, still", cost_usd=0.4, tokens=100)]

    def write_memo(request):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    agent.write_memo = write_memo
    loop, records = run(task, agent, 4, max_cost_usd=1.0)
    assert len(records) == 4  # baseline + 3: the memos' $1.20 stop the fourth, the iterations cost nothing
    calls = [json.loads(line) for line in outer.memo_calls_path(loop.store).read_text().splitlines()]
    assert [(c["after_iteration"], c["ok"]) for c in calls] == [(1, True), (2, False), (3, True)]
    assert calls[1]["error"] == "the model answered nothing useful"
    totals = status_of(task, "o").totals()
    assert totals["cost_usd"] == 1.2 and totals["tokens"] == 300
    assert totals["memo_cost_usd"] == 1.2 and totals["memo_tokens"] == 300
    assert sum(r.cost_usd for r in loop.store.ledger.records) == 0  # no iteration row is billed for a memo
    from autoresearch.analysis.report import render_report

    html = render_report(loop.task, loop.store)  # the report's cost is the same total, the memo on its own row
    assert '<div class="big">$1.20</div>' in html and "<td>strategy memo</td>" in html


def test_evolve_program_writes_a_proposal_and_leaves_program_md(make_task):
    task = make_task()
    loop, _ = run(task, ScriptedAgent(set_x(2.0)), 1)
    before = (task / "program.md").read_text()
    path = outer.evolve_program(loop.task, loop.store)
    assert (task / "program.md").read_text() == before
    assert "Lessons from run o" in open(path).read()
