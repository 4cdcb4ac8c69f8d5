"""The `openai` agent end to end: the real loop, real git, a fake chat-completions server on 127.0.0.1.

Every scenario checks the ledger (status, reason, tokens, cost) and that the planted API key
is in no file under the task directory.
"""

import json
import time

import pytest

from autoresearch.agents import create_agent
from autoresearch.agents.openai import CONTINUE, OpenAIAgent
from autoresearch.api import status_of
from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import git
from fake_openai_server import FakeOpenAI, Reply
from openai_harness import CONFIG, GOOD, KEY, LINE, Run, answer, run  # noqa: F401 (fixture)


# -- success --------------------------------------------------------------------------------
def test_good_edit_is_kept_with_tokens_and_cost(run):
    r = run([Reply(GOOD, usage={"prompt_tokens": 1000, "completion_tokens": 200})])
    assert [e.status for e in r.records] == [Status.KEEP, Status.KEEP]
    assert r.last.metrics["score"] == 2.0
    assert r.last.description == "Raise X to 2.0"
    assert r.last.explanation.startswith("Raise X to 2.0\nThe score grows")
    assert "<<<<<<<" not in r.last.explanation
    assert r.last.tokens == 1200 and r.last.cost_usd == pytest.approx((1000 * 2 + 200 * 8) / 1e6)
    assert r.last.agent == "openai"
    assert r.last.agent_data["requests"] == 1 and r.last.agent_data["fix_rounds"] == 0
    ledger = r.ledger()[-1]
    assert ledger["tokens"] == 1200 and ledger["cost_usd"] == pytest.approx(0.0036)
    totals = status_of(r.task, "t1").totals()
    assert totals["tokens"] == 1200 and totals["cost_usd"] == pytest.approx(0.0036)
    # What the model saw: the rules, the prompt, the files; the key only in the Authorization header.
    [chat] = r.chats
    assert chat.headers["authorization"] == f"Bearer {KEY}"
    assert chat.body["model"] == "fake-model" and chat.body["stream"] is False
    system, user = chat.messages
    assert system["role"] == "system" and "Edit only these files: train.py" in system["content"]
    assert "Never modify: prepare.py" in system["content"]
    assert "Tiny task" in user["content"] and LINE in user["content"]
    assert "### prepare.py (read-only, for reference)" in user["content"] and "DATA = 'fixed'" in user["content"]
    assert KEY not in json.dumps(chat.body)
    log = (r.loop.store.run_dir(1) / "agent.log").read_text()
    assert "Raise X to 2.0" in log
    assert git(r.task, "status", "--porcelain").strip() == ""


def test_thinking_is_not_the_answer(run):
    draft = answer(replace="X = 9.0  # search: float(0.0, 10.0)\n")
    r = run([f"<think>\nA first idea:\n{draft}\nNo, too far.\n</think>\n{GOOD}"])
    assert r.last.status is Status.KEEP and r.last.metrics["score"] == 2.0
    assert r.last.description == "Raise X to 2.0"


def test_extra_body_reaches_the_server_but_cannot_override_the_protocol(run):
    r = run([GOOD], extra_config='[agent.extra_body]\ntop_p = 0.5\nstream = true\nmodel = "other"\n')
    assert r.last.status is Status.KEEP
    body = r.chats[0].body
    assert body["top_p"] == 0.5 and body["stream"] is False and body["model"] == "fake-model"


def test_local_server_without_price_costs_nothing(make_task, monkeypatch):
    monkeypatch.setenv("LLM_BEARER", KEY)
    with FakeOpenAI([GOOD]) as server:
        task = make_task(config=CONFIG.format(url=server.url, max_retries=0, request_timeout=10, timeout=60)
                         .replace("price_in = 2.0\nprice_out = 8.0\n", ""))
        records = Loop(load_task(task), "t1", create_agent("openai", load_task(task)), say=lambda s: None).run(Limits(1))
    assert records[-1].status is Status.KEEP
    assert records[-1].cost_usd == 0.0 and records[-1].tokens > 0
    assert records[-1].agent_data["priced"] is False


def test_strategy_memo_is_written_by_the_model_and_billed(run):
    usage = {"prompt_tokens": 500, "completion_tokens": 100}
    memo = "## What works\n- raising X\n## Stop trying\n- lowering X"
    r = run([Reply(GOOD, usage=usage), Reply(memo, usage=usage),
             Reply(answer(search="X = 2.0  # search: float(0.0, 10.0)\n", replace="X = 3.0  # search: float(0.0, 10.0)\n"),
                   usage=usage), Reply(memo, usage=usage)],
            iterations=2, extra_config="memo_every = 1\n")
    assert [e.status for e in r.records] == [Status.KEEP] * 3
    assert r.chats[1].messages[0]["content"].startswith("You keep the strategy memo")
    assert (r.loop.store.root / "strategy.md").read_text().startswith("## What works")
    first, second = r.records[1:]
    assert first.tokens == 600 and second.tokens == 600  # an iteration's row holds its own call only
    # Each memo call is recorded beside the ledger, and the totals count it.
    calls = [json.loads(line) for line in (r.loop.store.root / "memo_calls.jsonl").read_text().splitlines()]
    assert [(c["after_iteration"], c["tokens"], c["ok"]) for c in calls] == [(1, 600, True), (2, 600, True)]
    assert calls[0]["cost_usd"] == pytest.approx((500 * 2 + 100 * 8) / 1e6)
    totals = status_of(r.task, "t1").totals()
    assert totals["tokens"] == 4 * 600 and totals["memo_tokens"] == 2 * 600
    assert totals["cost_usd"] == pytest.approx(4 * (500 * 2 + 100 * 8) / 1e6)


def test_a_failed_memo_call_still_counts_and_the_rules_memo_is_used(run):
    usage = {"prompt_tokens": 500, "completion_tokens": 100}
    cut = Reply("## What works\n- raising", finish_reason="length", usage=usage)  # cut off, every time
    r = run([Reply(GOOD, usage=usage), cut, cut, cut], extra_config="memo_every = 1\n")
    assert r.last.status is Status.KEEP
    assert "could not write the strategy memo" in " ".join(r.said)
    assert (r.loop.store.root / "strategy.md").read_text().startswith("## What works\n- Raise: kept 1 of 1")  # the rules
    totals = status_of(r.task, "t1").totals()
    assert totals["memo_tokens"] == 3 * 600 and totals["tokens"] == 4 * 600
    [call] = [json.loads(line) for line in (r.loop.store.root / "memo_calls.jsonl").read_text().splitlines()]
    assert call["ok"] is False and "cut off by the length limit" in call["error"]


# -- edits that go back to the model ---------------------------------------------------------
def test_block_that_does_not_match_goes_back_then_the_fix_is_kept(run):
    wrong = answer(search="X = 1.5  # search: float(0.0, 10.0)\n")
    r = run([Reply(wrong, usage={"prompt_tokens": 100, "completion_tokens": 10}),
             Reply(GOOD, usage={"prompt_tokens": 150, "completion_tokens": 20})])
    assert r.last.status is Status.KEEP and r.last.metrics["score"] == 2.0
    first, second = r.chats
    feedback = second.last_user
    assert "was NOT applied" in feedback and "SEARCH text was not found exactly" in feedback
    assert "closest lines are 1-1" in feedback and LINE.strip() in feedback
    assert second.messages[-2] == {"role": "assistant", "content": wrong}  # it sees its own answer
    assert r.last.tokens == 280 and r.last.agent_data["fix_rounds"] == 1
    assert r.last.cost_usd == pytest.approx((250 * 2 + 30 * 8) / 1e6)


def test_invalid_python_goes_back_then_the_fix_is_kept(run):
    r = run([answer(replace="X = (2.0\n"), GOOD])
    assert r.last.status is Status.KEEP
    assert "train.py would no longer parse as Python: line 1" in r.chats[1].last_user


def test_edits_that_never_apply_fail_cleanly(run):
    wrong = answer(search="NOT IN THE FILE\n")
    r = run([wrong, wrong, wrong])
    assert len(r.chats) == 3  # the first answer and max_fix_rounds = 2 more
    assert r.last.status is Status.CRASH
    assert r.last.reason.startswith("agent: the edit did not apply after 3 answers: edit block 1 (train.py): "
                                    "the SEARCH text was not found exactly")
    assert r.last.tokens > 0 and r.last.cost_usd > 0  # a failed iteration still costs money
    assert (r.task / "train.py").read_text().startswith(LINE)
    assert git(r.task, "status", "--porcelain").strip() == ""


def test_question_without_edit_is_sent_back_then_fails(run):
    question = "Should I raise X or lower it? Please confirm before I edit."
    r = run([question, question, question])
    assert r.last.status is Status.CRASH
    assert r.last.reason == ("agent: the model answered without any SEARCH/REPLACE block 3 times; "
                             "it said: Should I raise X or lower it? Please confirm before I edit.")
    assert all("Nobody will answer questions" in c.last_user for c in r.chats[1:])


def test_question_then_edit_is_kept(run):
    r = run(["Which direction should X go?", GOOD])
    assert r.last.status is Status.KEEP


def test_readonly_and_outside_edits_are_refused_and_reported(run, tmp_path):
    readonly = answer(path="prepare.py", search="DATA = 'fixed'\n", replace="DATA = 'leaked'\n")
    outside = answer(path="../evil.py", search="", replace="import os\n")
    r = run([readonly, outside, GOOD])
    assert r.last.status is Status.KEEP
    assert "prepare.py is read-only" in r.chats[1].last_user
    assert "outside the task directory" in r.chats[2].last_user
    assert (r.task / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert not (r.task.parent / "evil.py").exists()


def test_readonly_edit_only_fails_without_touching_anything(run):
    readonly = answer(path="prepare.py", search="DATA = 'fixed'\n", replace="DATA = 'leaked'\n")
    r = run([readonly] * 3)
    assert r.last.status is Status.CRASH and "prepare.py is read-only" in r.last.reason
    assert (r.task / "prepare.py").read_text() == "DATA = 'fixed'\n"


# -- the protocol: truncation, retries, fatal errors, hangs ----------------------------------
def test_truncated_answer_is_continued_and_joined(run):
    cut = GOOD.index("=======")
    r = run([Reply(GOOD[:cut], finish_reason="length"), Reply(GOOD[cut:])])
    assert r.last.status is Status.KEEP and r.last.agent_data["continuations"] == 1
    follow = r.chats[1].messages
    assert follow[-2] == {"role": "assistant", "content": GOOD[:cut]} and follow[-1]["content"] == CONTINUE


def test_answer_always_truncated_fails_with_the_reason(run):
    r = run([Reply("train.py\n<<<<<<< SEARCH\n", finish_reason="length")] * 3)
    assert r.last.status is Status.CRASH
    assert "cut off by the length limit 3 times" in r.last.reason and "agent.max_tokens" in r.last.reason


def test_rate_limit_honours_retry_after(run):
    r = run([Reply(status=429, headers={"Retry-After": "1"}), GOOD])
    assert r.last.status is Status.KEEP
    first, second = r.chats
    assert second.at - first.at >= 1.0  # retry_base_delay is 0.01: only Retry-After explains the wait
    assert r.last.agent_data["retries"] == 1 and r.last.agent_data["requests"] == 2
    log = (r.loop.store.run_dir(1) / "agent.log").read_text()
    assert "HTTP 429" in log and "Rate limit reached" in log


def test_server_error_then_success(run):
    r = run([Reply(status=500), Reply(status=503), GOOD])
    assert r.last.status is Status.KEEP and len(r.chats) == 3


def test_server_errors_give_up_after_max_retries(run):
    r = run([Reply(status=500)] * 2, max_retries=1)
    assert r.last.status is Status.CRASH and len(r.chats) == 2
    assert "HTTP 500" in r.last.reason and "gave up after 2 attempts" in r.last.reason


def test_bad_key_mid_run_is_fatal_and_clear(run):
    # The server accepted the key at start-up, then revokes it; its message even echoes the key.
    r = run([Reply(status=401, content=f"Incorrect API key provided: {KEY}.")])
    assert len(r.chats) == 1  # not retried
    assert r.last.status is Status.CRASH
    assert "rejected the API key (401 Unauthorized)" in r.last.reason and "$LLM_BEARER" in r.last.reason
    assert KEY not in r.last.reason and "[redacted]" in r.last.reason


def test_unknown_model_is_fatal_and_names_the_setting(run):
    r = run([Reply(status=404)])
    assert len(r.chats) == 1 and r.last.status is Status.CRASH
    assert "model `fake-model` does not exist" in r.last.reason and "agent.model ('fake-model')" in r.last.reason


def test_a_timed_out_request_is_not_sent_again(run):
    # The server may still be computing it: a single-slot server would queue the duplicate behind it.
    r = run([Reply(GOOD, delay=30), GOOD], request_timeout=1)
    assert r.last.status is Status.CRASH and len(r.chats) == 1
    assert "not retried" in r.last.reason and "request_timeout" in r.last.reason
    assert r.elapsed < 10


def test_hang_without_retries_is_a_clear_crash(run):
    r = run([Reply(GOOD, delay=30)], request_timeout=1, max_retries=0)
    assert r.last.status is Status.CRASH and "within 1 s (timed out)" in r.last.reason
    assert r.elapsed < 8


def test_whole_iteration_time_limit(run):
    r = run([Reply(GOOD, delay=30)] * 5, request_timeout=60, timeout=2)
    assert r.last.status is Status.CRASH and "agent.timeout" in r.last.reason
    assert r.elapsed < 10


def test_ctrl_c_during_a_request_stops_at_once(run):
    r = run([Reply(GOOD, delay=60)], stop_after=1.5, request_timeout=120)
    assert r.elapsed < 8
    assert "stopped" in " ".join(r.said)
    assert [e["iteration"] for e in r.ledger()] == [0]  # the interrupted iteration left no record


# -- start-up check: fail in a second, before the baseline trains ----------------------------
def test_start_up_check_bad_key(make_task, monkeypatch):
    with pytest.raises(AutoresearchError, match=r"rejected the API key \(401 Unauthorized\).*\$LLM_BEARER"):
        Run(make_task, monkeypatch, [], key="sk-wrong-key-000000000")


def test_start_up_check_wrong_base_url(make_task, monkeypatch):
    with pytest.raises(AutoresearchError, match="usually ends in /v1"):
        Run(make_task, monkeypatch, [], url_suffix="/v2")


def test_start_up_check_no_server(make_task, monkeypatch):
    monkeypatch.setenv("LLM_BEARER", KEY)
    with FakeOpenAI() as server:
        url = server.url  # the port is free again once the server is gone
    task = make_task(config=CONFIG.format(url=url, max_retries=0, request_timeout=5, timeout=10))
    started = time.monotonic()
    with pytest.raises(AutoresearchError, match="no OpenAI-compatible server answers at"):
        Loop(load_task(task), "t1", create_agent("openai", load_task(task)), say=lambda s: None).run(Limits(1))
    assert time.monotonic() - started < 5
    assert not (task / ".autoresearch").exists()


# -- config ----------------------------------------------------------------------------------
def test_config_needs_a_model_and_refuses_a_key(make_task):
    base = CONFIG.format(url="http://127.0.0.1:1/v1", max_retries=0, request_timeout=5, timeout=10)
    task = load_task(make_task(config=base.replace('model = "fake-model"\n', "")))
    with pytest.raises(ConfigError, match="agent.model"):
        OpenAIAgent.from_task(task)
    task.dir.joinpath("autoresearch.toml").write_text(base + 'api_key = "sk-oops"\n')
    with pytest.raises(ConfigError, match="agent.api_key: never put the key"):
        OpenAIAgent.from_task(load_task(task.dir))


def test_base_url_from_the_environment(make_task, monkeypatch):
    base = CONFIG.format(url="", max_retries=0, request_timeout=5, timeout=10).replace('base_url = ""\n', "")
    task = load_task(make_task(config=base))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1/")
    assert OpenAIAgent.from_task(task).base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")
    assert OpenAIAgent.from_task(task).base_url == "http://127.0.0.1:8/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_BASE")
    assert OpenAIAgent.from_task(task).base_url == "https://api.openai.com/v1"


# -- the agent contract, called directly (what tests/agents/test_contract.py checks of every backend)
@pytest.fixture
def direct(make_task, monkeypatch, tmp_path):
    """(agent, context) against a fake server, without the loop."""
    from autoresearch.agents.base import Context
    from autoresearch.records import Experiment

    monkeypatch.setenv("LLM_BEARER", KEY)
    servers = []

    def make(replies, prompt_file=True):
        server = FakeOpenAI(replies).__enter__()
        servers.append(server)
        task = load_task(make_task(config=CONFIG.format(url=server.url, max_retries=0, request_timeout=10, timeout=30)))
        head = git(task.dir, "rev-parse", "HEAD").strip()
        base = Experiment(iteration=0, commit=head, parent=head, status=Status.KEEP, description="baseline",
                          metrics={"score": 1.0})
        run_dir = tmp_path / "run"
        run_dir.mkdir(exist_ok=True)
        (run_dir / "prompt.md").write_text("# Tiny task\nRaise X.\n")
        ctx = Context(task_dir=task.dir, iteration=1, editable=task.editable, readonly=task.readonly,
                      history=(base,), best=base, primary="score", direction="maximize", prompt="# Tiny task\nRaise X.\n",
                      prompt_file=run_dir / "prompt.md" if prompt_file else None, on_process_start=pids.append)
        return create_agent("openai", task), ctx

    pids = []
    yield make
    assert pids == []  # no process is started: the model is behind HTTP
    for server in servers:
        server.__exit__(None, None, None)


def test_contract_edit_and_explain(direct):
    agent, ctx = direct([GOOD])
    agent.check()
    proposal = agent.propose(ctx)
    assert proposal.ok and agent.name == "openai"
    assert [line[3:] for line in git(ctx.task_dir, "status", "--porcelain").splitlines()] == ["train.py"]
    assert isinstance(proposal.cost_usd, float) and isinstance(proposal.tokens, int)


def test_contract_failure_is_a_proposal_not_an_exception(direct):
    agent, ctx = direct([Reply(status=401)])
    proposal = agent.propose(ctx)
    assert not proposal.ok and "401" in proposal.error
    assert git(ctx.task_dir, "status", "--porcelain").strip() == ""


def test_contract_works_without_a_prompt_file(direct):
    agent, ctx = direct([GOOD], prompt_file=False)
    assert agent.propose(ctx).ok
    assert not list(ctx.task_dir.rglob("agent.log"))  # no run directory: no transcript in the work tree


def test_a_repeat_goes_back_to_the_model_in_the_next_request(run):
    """Issue 12: the same code as iteration 1 is not run again; the model hears what it repeats."""
    lower = answer(replace="X = 0.5  # search: float(0.0, 10.0)\n", explanation="Lower X to 0.5\nMaybe less is more.")
    usage = {"prompt_tokens": 100, "completion_tokens": 10}
    r = run([Reply(lower, usage=usage), Reply(lower, usage=usage),
             Reply(answer(replace="X = 3.0  # search: float(0.0, 10.0)\n", explanation="Raise X to 3.0\nMore is more."),
                   usage={"prompt_tokens": 200, "completion_tokens": 20})], iterations=2)
    assert [(e.iteration, e.status, e.description) for e in r.records] == [
        (0, Status.KEEP, "baseline"), (1, Status.DISCARD, "Lower X to 0.5"), (2, Status.KEEP, "Raise X to 3.0")]
    assert len(r.chats) == 3
    assert "Not run: your proposal repeated" not in r.chats[1].last_user
    asked_again = r.chats[2].last_user
    assert "## Not run: your proposal repeated an earlier experiment" in asked_again
    assert f'"Lower X to 0.5" gives the same code as iteration 1 (commit {r.records[1].commit[:7]}, score = 0.5)' in asked_again
    # both answers of iteration 2 are paid for by its row
    assert r.records[1].tokens == 110 and r.last.tokens == 110 + 220
    assert r.last.cost_usd == pytest.approx((300 * 2 + 30 * 8) / 1e6)
