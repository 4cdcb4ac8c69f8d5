"""The CLI backends end to end through the real loop, against fakes of claude, codex, gemini and aider.

Each fake parses the real program's arguments and prints its real JSON shapes and exit codes
(tests/agents/fakes/); a scenario says what it does: edit, fail to log in, hit the turn limit,
get rate limited, hang, ask a question, print a truncated answer.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.agents import create_agent
from autoresearch.agents.cli_agent import Failure, classify
from autoresearch.api import status_of
from autoresearch.execution.sandbox import probe
from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import git
from helpers import agent_context as contract_context
from fakes.harness import KEY_OF, OUR_RETRIES, SECRETS, config, fake_cli, files_holding  # noqa: F401 (fixture)

BACKENDS = ("claude", "codex", "gemini", "aider")
# What one successful call of each fake costs: claude reports it, the others go through the price table.
COST = {"claude": 0.0123, "codex": (4000 * 1.25 + 20000 * 0.125 + 900 * 10) / 1e6,
        "gemini": (20000 * 1.25 + 10000 * 0.125 + 1500 * 10) / 1e6, "aider": 0.0135}
TOKENS = {"claude": 1200 + 300 + 4000 + 250, "codex": 24000 + 900, "gemini": 31500, "aider": 2710}


def run(make_task, kind, iterations=1, extra="", **kw):
    task_dir = make_task(config=config(kind, **kw) + extra)
    task = load_task(task_dir)
    loop = Loop(task, "t", create_agent(kind, task), say=lambda s: None)
    records = loop.run(Limits(iterations=iterations))
    return task_dir, loop, records[-1]


def crash_of(make_task, fake_cli, kind, scenario, **kw):
    """The record of one iteration whose agent call plays `scenario`: a crash."""
    fake_cli.scenario(scenario)
    _, _, record = run(make_task, kind, **kw)
    assert record.status is Status.CRASH, record.reason
    return record


@pytest.mark.parametrize("kind", BACKENDS)
def test_edit_is_trained_kept_and_costed(make_task, fake_cli, kind):
    task_dir, loop, record = run(make_task, kind)
    assert record.status is Status.KEEP, record.reason
    assert record.metrics["score"] == 2.0
    assert record.description == "Raise X to 2.0"
    assert "The score is X itself" in record.explanation
    assert record.cost_usd == pytest.approx(COST[kind])
    assert record.tokens == TOKENS[kind]
    assert record.agent_data["attempts"] == 1
    totals = status_of(task_dir, "t").totals()
    assert totals["cost_usd"] == pytest.approx(COST[kind]) and totals["tokens"] == TOKENS[kind]
    assert git(task_dir, "status", "--porcelain").strip() == ""  # no stray file of the CLI in the work tree
    log = (loop.store.run_dir(record.iteration) / "agent.log").read_text()
    assert "=== attempt 1: exit 0" in log and "[redacted]" in log  # the fake leaked its key on stderr


def test_flags_reach_claude(make_task, fake_cli):
    run(make_task, "claude", extra="max_turns = 7\n")
    (call,) = fake_cli.calls()
    argv = call["argv"]
    assert argv[:3] == ["-p", "--output-format", "json"]
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--append-system-prompt") + 1] == call["system"]
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--allowedTools") + 1] == "Read,Edit,Write,Glob,Grep"
    assert argv[argv.index("--model") + 1] == "sonnet"
    # the rules in the system prompt, the loop's prompt on stdin: with the exact interpreter
    assert sys.executable in call["system"] and "python train.py" in call["system"]
    assert "Edit only these files" in call["system"] and "Tiny task" in call["prompt"]
    assert not call["stdin_is_tty"]


@pytest.mark.parametrize("kind, expected", [
    ("codex", ["exec", "--json", "--sandbox", "workspace-write", "--skip-git-repo-check", "--cd"]),
    ("gemini", ["--prompt"]),
    ("aider", ["--message-file"]),
])
def test_flags_of_the_other_clis(make_task, fake_cli, kind, expected):
    task_dir, _, _ = run(make_task, kind)
    (call,) = fake_cli.calls()
    if kind == "codex" and not probe():  # inside our agent sandbox codex's own is off (no nested namespaces)
        expected = [("danger-full-access" if flag == "workspace-write" else flag) for flag in expected]
    assert call["argv"][:len(expected)] == expected
    assert "Edit only these files" in call["prompt"] and "Tiny task" in call["prompt"]
    if kind == "codex":
        assert call["workdir"] == str(task_dir) and call["argv"][-1] == "-"
    if kind == "gemini":
        assert call["approval_mode"] == "auto_edit"  # the folder was trusted: edits were allowed
    if kind == "aider":
        assert call["files"] == ["train.py"] and call["read"] == ["prepare.py"]
        assert "--no-auto-commits" in call["argv"] and "--no-dirty-commits" in call["argv"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_not_logged_in_is_a_crash_and_not_retried(make_task, fake_cli, kind):
    record = crash_of(make_task, fake_cli, kind, "not_logged_in")
    assert record.reason.startswith(f"agent: {kind}: ")
    assert len(fake_cli.calls()) == 1, "an auth failure is not retried"
    assert record.agent_data["failures"][0].startswith("auth: ")


@pytest.mark.parametrize("kind", OUR_RETRIES)
def test_rate_limit_then_success_retries(make_task, fake_cli, kind):
    fake_cli.scenario("rate_limit,success")
    _, _, record = run(make_task, kind)
    assert record.status is Status.KEEP, record.reason
    assert len(fake_cli.calls()) == 2
    assert record.agent_data["attempts"] == 2
    assert record.agent_data["failures"][0].startswith("transient: ")
    assert record.cost_usd == pytest.approx(COST[kind])


@pytest.mark.parametrize("kind", OUR_RETRIES)
def test_rate_limit_retries_are_bounded(make_task, fake_cli, kind):
    record = crash_of(make_task, fake_cli, kind, "overloaded")
    assert "gave up after 3 attempts" in record.reason
    assert len(fake_cli.calls()) == 3  # retries = 2


@pytest.mark.parametrize("kind", sorted(set(BACKENDS) - set(OUR_RETRIES)))
def test_a_cli_that_retries_by_itself_is_not_retried_by_us(make_task, fake_cli, kind):
    record = crash_of(make_task, fake_cli, kind, "rate_limit,success")
    assert len(fake_cli.calls()) == 1  # its own retries were the policy
    assert record.agent_data["failures"][0].startswith("transient: ")
    with pytest.raises(AutoresearchError, match=rf"agent.retries: {kind} retries transient errors by itself"):
        create_agent(kind, load_task(make_task(config=config(kind, extra="retries = 2\n"))))


def test_claude_runs_with_its_own_retries_off(make_task, fake_cli):
    agent = create_agent("claude", load_task(make_task(config=config("claude"))))
    assert agent.env()["CLAUDE_CODE_MAX_RETRIES"] == "0" and agent.retries == 2


@pytest.mark.parametrize("kind", ["claude", "gemini"])  # codex and aider have no turn limit to hit
def test_max_turns_without_edit(make_task, fake_cli, kind):
    record = crash_of(make_task, fake_cli, kind, "max_turns")
    assert "turn" in record.reason and record.reason.startswith(f"agent: {kind}: ")
    assert record.agent_data["failures"][0].startswith("max_turns: ")  # claude's subtype, gemini's exit code 53
    assert len(fake_cli.calls()) == 1


@pytest.mark.parametrize("kind", ["claude", "aider"])  # the same runner path for all; test_contract stops each
def test_hang_is_killed_at_the_agent_timeout(make_task, fake_cli, kind):
    started = time.monotonic()
    record = crash_of(make_task, fake_cli, kind, "hang", timeout=1.5)
    assert "no answer within the [agent] timeout of 1.5 s" in record.reason
    assert time.monotonic() - started < 20  # the fake ignores SIGTERM: the group was killed


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_question_and_no_edit_is_a_crash(make_task, fake_cli, kind):
    record = crash_of(make_task, fake_cli, kind, "question")
    assert record.reason == "agent: no change to the editable files"
    assert "Which would you prefer?" in record.explanation  # what it said is kept for the next prompt


@pytest.mark.parametrize("kind", BACKENDS)
def test_truncated_output_is_a_crash(make_task, fake_cli, kind):
    record = crash_of(make_task, fake_cli, kind, "truncated")
    assert record.reason.startswith(f"agent: {kind}: ")
    assert record.agent_data["failures"][0].startswith("output: ")


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_edit_then_truncated_output_is_judged_by_the_diff(make_task, fake_cli, kind):
    fake_cli.scenario("truncated_after_edit")
    _, _, record = run(make_task, kind)
    assert record.status is Status.KEEP, record.reason
    assert record.agent_data["warning"].startswith(f"{kind}: ")


def test_aider_edit_blocks_that_do_not_match(make_task, fake_cli):
    record = crash_of(make_task, fake_cli, "aider", "nomatch")
    assert record.reason == "agent: aider: its edit blocks did not match the files"
    assert record.cost_usd == pytest.approx(3 * 0.0135)  # three reflections were paid for


@pytest.mark.parametrize("kind", BACKENDS)
def test_no_secret_in_any_written_file_and_keys_only_to_their_agent(make_task, fake_cli, kind):
    # Error text built from stderr, where the key leaked; a strategy memo after every iteration.
    fake_cli.scenario("truncated,not_logged_in,not_logged_in,not_logged_in,success")
    task_dir, loop, _ = run(make_task, kind, iterations=3, extra="memo_every = 1\n")
    assert (loop.store.root / "strategy.md").exists() and (loop.store.root / "runs/0001/prompt.md").exists()
    assert files_holding(task_dir, SECRETS.values()) == []
    seen = set(fake_cli.calls()[0]["secrets_seen"])
    assert KEY_OF[kind] in seen
    # aider may call any provider, so it gets each provider's key (environment.AGENT_NAMES)
    others = set() if kind == "aider" else {KEY_OF[k] for k in BACKENDS} - {KEY_OF[kind]}
    assert not seen & (others | {"GITHUB_TOKEN"}), seen


def test_backend_tables_keep_options_apart(make_task, fake_cli):
    # A task set up for claude, run with --agent codex: codex must not get claude's model.
    task = load_task(make_task(config=config("claude", extra='''
        [agent.codex]
        model = "gpt-5-mini"
    ''')))
    codex, claude = create_agent("codex", task), create_agent("claude", task)
    assert codex.model == "gpt-5-mini" and claude.model == "sonnet"


@pytest.mark.parametrize("kind", BACKENDS)
def test_unsupported_version_is_refused_at_start(make_task, fake_cli, kind):
    # An older CLI whose help lists none of the flags we pass but the first: the loop refuses
    # before a branch, a store or a baseline run exists.
    agent = create_agent(kind, load_task(make_task(config=config(kind))))
    first, missing = agent.required_flags[0], agent.required_flags[1]
    (fake_cli.bin / kind).write_text(f"#!{sys.executable}\nprint('Usage: {kind} [options]\\n  {first}  something')\n")
    task = load_task(agent.task.dir)
    with pytest.raises(AutoresearchError, match=f"does not accept {missing}.*upgrade it with"):
        Loop(task, "t", create_agent(kind, task), say=lambda s: None).run(Limits(iterations=1))
    assert not (task.dir / ".autoresearch").exists()
    assert git(task.dir, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert fake_cli.calls() == []  # only --help ran


def test_retries_back_off_exponentially(make_task, fake_cli, tmp_path):
    fake_cli.scenario("overloaded")
    task = load_task(make_task(config=config("claude").replace("backoff = 0.01", "backoff = 0.3")))
    proposal = create_agent("claude", task).propose(contract_context(task, tmp_path / "run"))
    assert not proposal.ok and "gave up after 3 attempts" in proposal.error
    at = [c["at"] for c in fake_cli.calls()]
    assert len(at) == 3
    assert at[1] - at[0] >= 0.3 and at[2] - at[1] >= 0.6  # backoff, then twice the backoff


@pytest.mark.parametrize("message, status, expected", [
    ("API Error: Connection error.", None, Failure.TRANSIENT),  # claude, offline
    ("stream disconnected before completion: error sending request for url", None, Failure.TRANSIENT),  # codex
    ("[API Error: exception TypeError: fetch failed sending request]", None, Failure.TRANSIENT),  # gemini, offline
    ("request to https://x failed, reason: socket hang up (ECONNREFUSED)", None, Failure.TRANSIENT),
    ("litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error.", None, Failure.TRANSIENT),
    ("API Error: 529 Overloaded", None, Failure.TRANSIENT),
    ("Request rejected", 429, Failure.TRANSIENT),
    ("upstream failure", 502, Failure.TRANSIENT),
    ("Invalid API key · Fix external API key", 401, Failure.AUTH),
    ("Not logged in · Please run /login", None, Failure.AUTH),
    ("tool execution failed: edit rejected", None, Failure.ERROR),
])
def test_transient_errors_are_told_from_fatal_ones(message, status, expected):
    assert classify(message, status) is expected


@pytest.mark.parametrize("kind", BACKENDS)
def test_no_explanation_block_falls_back_to_the_final_message(make_task, fake_cli, kind):
    fake_cli.scenario("unmarked")
    _, _, record = run(make_task, kind)
    assert record.status is Status.KEEP, record.reason
    assert record.description == "Raised X to 2.0: the score is X itself."
    assert "nothing else changed" in record.explanation and "<<<<<<<" not in record.explanation


def test_run_without_the_binary_fails_fast_with_the_fix(make_task, tmp_path):
    task_dir = make_task(config=config("claude").replace('kind = "claude"', 'kind = "tuner"'))
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}

    def cli(*args):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "autoresearch", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path)
        return done, time.monotonic() - started

    # Starting Python and importing the library takes what it takes (a second or more on a loaded
    # machine); the floor is a `run` that fails just before the agent is made.
    _, floor = cli("run", str(tmp_path / "no-such-task"), "--tag", "x")
    done, elapsed = cli("run", str(task_dir), "--tag", "x", "--agent", "claude")
    assert done.returncode != 0
    message = " ".join((done.stderr + done.stdout).split())
    assert "`claude` not found on PATH" in message
    assert "npm install -g @anthropic-ai/claude-code" in message and 'binary = "/path/to/claude"' in message
    assert elapsed - floor < 1.0, f"took {elapsed:.2f} s; a run failing on a missing task {floor:.2f} s"
    assert not (task_dir / ".autoresearch").exists() or not any((task_dir / ".autoresearch").rglob("ledger.jsonl"))
    assert git(task_dir, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"  # nothing started, no branch


def test_missing_binary_check_is_instant(make_task, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    task = load_task(make_task(config=config("claude")))
    for kind in BACKENDS:
        agent = create_agent(kind, task)
        started = time.monotonic()
        with pytest.raises(Exception, match=f"`{agent.binary}` not found on PATH. Install it with"):
            agent.check()
        assert time.monotonic() - started < 0.2


@pytest.mark.parametrize("kind", BACKENDS)
def test_strategy_memo_is_written_by_the_cli_read_only(make_task, fake_cli, kind):
    task_dir, loop, record = run(make_task, kind, extra="memo_every = 1\n")
    memo_call = fake_cli.calls()[-1]
    assert len(fake_cli.calls()) == 2  # the edit, then the memo
    assert "Raise X to 2.0" in (loop.store.root / "strategy.md").read_text()
    assert git(task_dir, "status", "--porcelain").strip() == ""  # the memo call edited nothing
    read_only = {"claude": "--disallowedTools", "codex": "read-only", "gemini": "default", "aider": "--dry-run"}
    assert read_only[kind] in memo_call["argv"]
    # The memo call is no iteration: its cost is recorded beside the ledger and counted in the totals.
    assert record.cost_usd == pytest.approx(COST[kind]) and record.tokens == TOKENS[kind]
    totals = status_of(task_dir, "t").totals()
    assert totals["memo_cost_usd"] == pytest.approx(COST[kind]) and totals["memo_tokens"] == TOKENS[kind]
    assert totals["cost_usd"] == pytest.approx(2 * COST[kind]) and totals["tokens"] == 2 * TOKENS[kind]


def test_user_runs_claude_with_a_cost_limit_then_status_json(make_task, fake_cli, tmp_path):
    """As a user types it: `autoresearch run --agent claude --max-cost-usd`, then `status --json`.

    Each claude call costs $0.0123, the memo after every iteration as much: the memo's cost
    must count, or a third iteration would start ($0.0369 < $0.04 without the memos)."""
    task_dir = make_task(config=config("claude", extra="memo_every = 1\n").replace('kind = "claude"', 'kind = "tuner"'))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "autoresearch", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path)

    program = (task_dir / "program.md").read_text()
    done = cli("run", str(task_dir), "--tag", "x", "--agent", "claude", "--iterations", "5", "--max-cost-usd", "0.04",
               "--evolve-program")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "cost limit reached: $0.05 of $0.04; stopping" in done.stdout, done.stdout
    assert "agent cost: $0.0492, 23,000 tokens (strategy memo: $0.0246, 11,500 tokens)" in done.stdout, done.stdout
    assert len([c for c in fake_cli.calls() if "--disallowedTools" not in c["argv"]]) == 2  # edits; the rest memos
    totals = json.loads(cli("status", str(task_dir), "--tag", "x", "--json").stdout)
    assert totals["iterations"] == 3 and totals["keeps"] == 2  # baseline, then X = 2.0; the same edit again is no change
    assert totals["best"]["value"] == 2.0 and totals["best"]["description"] == "Raise X to 2.0"
    assert totals["cost_usd"] == pytest.approx(4 * 0.0123) and totals["tokens"] == 4 * TOKENS["claude"]
    assert totals["memo_cost_usd"] == pytest.approx(2 * 0.0123)
    assert not (task_dir / ".autoresearch/x/pending.json").exists()  # stopped between iterations, cleanly
    assert git(task_dir, "status", "--porcelain").strip() == "?? program.proposed.md"  # for the user to review
    # --evolve-program: a proposal beside program.md, which is left alone
    assert (task_dir / "program.md").read_text() == program
    proposed = (task_dir / "program.proposed.md").read_text()
    assert proposed.startswith(program.rstrip()) and "Lessons from run x" in proposed and "Raise X to 2.0" in proposed


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_repeat_goes_back_to_the_cli_in_its_next_prompt(make_task, fake_cli, monkeypatch, kind):
    """Issue 12: the same code as iteration 1 is not run again; the CLI is asked again, and its
    prompt says what it repeated; two in a row end the iteration as an agent crash."""
    monkeypatch.setenv("FAKE_VALUE", "0.5")  # every call sets X = 0.5: a discard, then repeats of it
    task_dir, loop, record = run(make_task, kind, iterations=2, extra="max_repeats = 2\n")
    first = loop.store.ledger.records[1]
    assert first.status is Status.DISCARD and first.metrics["score"] == 0.5
    assert record.iteration == 2 and record.status is Status.CRASH
    assert record.reason == "agent: 2 proposals in a row repeated earlier experiments (iterations 1, 1); none was run"
    prompts = [c["prompt"] for c in fake_cli.calls() if "Tiny task" in c["prompt"]]
    assert len(prompts) == 3 and "Not run: your proposal" not in prompts[1]
    assert f"gives the same code as iteration 1 (commit {first.commit[:7]}, score = 0.5)" in prompts[2]
    assert record.cost_usd == pytest.approx(2 * COST[kind]) and record.tokens == 2 * TOKENS[kind]
    assert not (loop.store.run_dir(2) / "log.txt").exists()
