"""Agent failures cost seconds: the start-up check refuses a backend that cannot work, a known
cause ends a call as soon as the program prints it (with its own line and the fix), and the
same failure a few times in a row pauses the night with a non-zero exit.

Against the fake CLIs (tests/agents/fakes/), which print what the real programs print offline.
"""

import json
import socket
import textwrap
import time

import pytest

from autoresearch.agents import create_agent
from autoresearch.agents.failures import message, shorten
from autoresearch.api import run_loop
from autoresearch.config import load_task
from autoresearch.errors import AgentPaused, AutoresearchError, ConfigError
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import TINY_CONFIG
from fakes.harness import config, fake_cli  # noqa: F401 (fixture)

HANG_TIMEOUT = 60  # the fakes below would wait at least this long; a known cause must end them at once


def one_iteration(make_task, kind, scenario, fake_cli, extra=""):
    fake_cli.scenario(scenario)
    task = load_task(make_task(config=config(kind, timeout=HANG_TIMEOUT, extra=extra)))
    loop = Loop(task, "t", create_agent(kind, task), say=lambda s: None)
    started = time.monotonic()
    record = loop.run(Limits(iterations=1))[-1]
    return record, time.monotonic() - started


@pytest.mark.parametrize("kind, scenario, failure, said", [
    ("codex", "offline", "offline", "failed to lookup address information"),
    ("gemini", "offline", "offline", "fetch failed sending request"),
    ("claude", "offline", "offline", "Can't reach the API server"),
    ("aider", "browser_login", "login", "open this URL in your browser"),
])
def test_a_known_cause_ends_the_call_at_once_with_the_programs_line_and_the_fix(make_task, fake_cli, kind,
                                                                              scenario, failure, said):
    record, took = one_iteration(make_task, kind, scenario, fake_cli)
    assert record.status is Status.CRASH
    assert took < HANG_TIMEOUT / 2, f"waited {took:.0f} s for a failure no wait can fix"
    assert said in record.reason and record.reason.startswith(f"agent: {kind}: ")
    assert record.agent_data["failure"] == failure
    assert ("check the network" in record.reason) if failure == "offline" else ("log in once by hand" in record.reason)
    assert len(fake_cli.calls()) == 1, "a known cause is not retried"


def test_codex_failed_file_write_is_reported_not_no_change(make_task, fake_cli):
    record, _ = one_iteration(make_task, "codex", "write_failed", fake_cli)
    assert record.status is Status.CRASH and record.agent_data["failure"] == "write"
    assert "failed" in record.reason and "train.py" in record.reason and "no change" not in record.reason


def test_the_same_agent_failure_three_times_pauses_the_night_and_the_exit_says_why(make_task, fake_cli):
    fake_cli.scenario("offline")
    task_dir = make_task(config=config("codex", timeout=HANG_TIMEOUT))
    said = []
    with pytest.raises(AgentPaused, match=r"paused after 3 identical agent failures in a row.*check the network"):
        run_loop(task_dir, "t", iterations=10, say=said.append)
    assert len(fake_cli.calls()) == 3, "paused after the third, not at the crash limit of 5"
    from autoresearch.store import RunStore
    records = RunStore(task_dir, "t").ledger.records
    assert [r.status for r in records[1:]] == [Status.CRASH] * 3 and records[0].status is Status.KEEP


def test_the_cli_exits_non_zero_on_an_agent_pause(make_task, fake_cli):
    import subprocess, sys, os
    fake_cli.scenario("offline")
    task_dir = make_task(config=config("codex", timeout=HANG_TIMEOUT))
    done = subprocess.run([sys.executable, "-m", "autoresearch", "run", str(task_dir), "--tag", "t", "-n", "5"],
                          capture_output=True, text=True, env=os.environ, timeout=300)
    assert done.returncode != 0
    assert "paused after 3 identical agent failures" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_different_failures_do_not_pause(make_task, fake_cli):
    fake_cli.scenario("offline,question,offline,question")
    task_dir = make_task(config=config("codex", timeout=HANG_TIMEOUT))
    records = run_loop(task_dir, "t", iterations=4, say=lambda s: None)
    assert len(records) == 5 and all(r.status is Status.CRASH for r in records[1:])


# -- start-up check -------------------------------------------------------------------------

def test_claude_not_logged_in_is_refused_before_the_baseline(make_task, fake_cli, monkeypatch):
    monkeypatch.setenv("FAKE_LOGGED_IN", "0")
    task_dir = make_task(config=config("claude"))
    with pytest.raises(AutoresearchError, match=r"not logged in.*claude /login"):
        run_loop(task_dir, "t", iterations=1, say=lambda s: None)
    assert not (task_dir / ".autoresearch").exists() or not any((task_dir / ".autoresearch").rglob("ledger.jsonl"))


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini"])
def test_an_unreachable_api_is_refused_before_the_baseline(make_task, fake_cli, monkeypatch, kind):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    for name in ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    agent = create_agent(kind, load_task(make_task(config=config(kind))))
    started = time.monotonic()
    with pytest.raises(AutoresearchError, match=rf"cannot connect to 127.0.0.1:{port}.*check the network"):
        agent.check()
    assert time.monotonic() - started < 10
    skip = create_agent(kind, load_task(make_task(config=config(kind, extra="preflight = false\n"))))
    skip.check()  # the escape hatch for a setup the check does not know


def test_codex_without_key_or_login_is_refused(make_task, fake_cli, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    (fake_cli.bin / "codex").write_text("#!/bin/sh\n[ \"$1 $2\" = \"login status\" ] && { echo 'Not logged in'; exit 1; }\n"
                                        "echo '--json --sandbox --skip-git-repo-check --cd --model'\n")
    agent = create_agent("codex", load_task(make_task(config=config("codex"))))
    with pytest.raises(AutoresearchError, match=r"codex is not logged in .*Not logged in.*codex login"):
        agent.check()


def test_gemini_without_any_auth_is_refused(make_task, fake_cli, monkeypatch, tmp_path):
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    with pytest.raises(AutoresearchError, match=r"gemini has no login.*GEMINI_API_KEY"):
        create_agent("gemini", load_task(make_task(config=config("gemini")))).check()


def test_aider_without_a_model_is_refused_instead_of_a_browser_login(make_task, fake_cli):
    text = config("aider").replace('model = "gpt-4o"\n', "")
    with pytest.raises(AutoresearchError, match=r"no model is named.*browser login"):
        create_agent("aider", load_task(make_task(config=text))).check()


def test_claude_is_found_inside_claude_agent_sdk(make_task, fake_cli, monkeypatch, tmp_path):
    package = tmp_path / "site" / "claude_agent_sdk"
    (package / "_bundled").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_bundled" / "claude").write_bytes((fake_cli.bin / "claude").read_bytes())
    (package / "_bundled" / "claude").chmod(0o755)
    (fake_cli.bin / "claude").unlink()  # not on PATH: only in the package, as `pip install claude-agent-sdk` leaves it
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    agent = create_agent("claude", load_task(make_task(config=config("claude"))))
    agent.check()
    assert agent._checked == str(package / "_bundled" / "claude")


# -- messages -------------------------------------------------------------------------------

def test_the_message_is_the_last_meaningful_line_whole():
    stderr = ("Warning: 256-color support not detected.\nAttempt 1 failed. Retrying... Error: fetch failed\n"
              "    at file:///x/chunk.js:1:2\n    at process.processTicksAndRejections (node:internal:95:5)\n\n")
    assert message(stderr) == "Attempt 1 failed. Retrying... Error: fetch failed"
    pretty = '{\n  "session_id": "s",\n  "error": {\n    "type": "Error",\n    "message": "Please set an Auth method",\n    "code": 41\n  }\n}\n'
    assert message(pretty) == "Please set an Auth method"
    assert message('{"type":"error","message":"Reconnecting... 2/5"}') == "Reconnecting... 2/5"
    long = "OpenRouter provides free and paid access to many LLMs. " * 10
    short = shorten(long, 80)
    assert len(short) <= 80 and short.endswith("…") and long.startswith(short[:-1])  # cut between words, never mid-word


# -- config ---------------------------------------------------------------------------------

def test_a_backend_table_means_the_same_for_every_backend(make_task, fake_cli):
    text = config("claude") + textwrap.dedent('''
        [agent.gemini]
        binary = "gemini"
        env = ["MY_GEMINI_SETTING"]
        timeout = 33
    ''')
    task = load_task(make_task(config=text))
    gemini = create_agent("gemini", task)  # --agent gemini on a task set up for claude
    assert gemini.timeout == 33 and "MY_GEMINI_SETTING" in gemini.env_names
    import os
    os.environ["MY_GEMINI_SETTING"] = "1"
    try:
        assert gemini.env()["MY_GEMINI_SETTING"] == "1"
    finally:
        del os.environ["MY_GEMINI_SETTING"]


def test_an_unknown_key_in_a_backend_table_is_refused(make_task, fake_cli):
    text = config("claude") + '\n[agent.gemini]\nmax_turns = 3\n'
    with pytest.raises(ConfigError, match=r"agent.gemini.max_turns: the gemini backend has no setting 'max_turns'"):
        create_agent("gemini", load_task(make_task(config=text)))


def test_a_missing_binary_names_the_table_that_applies(make_task, fake_cli):
    text = config("claude") + '\n[agent.codex]\nbinary = "no-such-codex"\n'
    with pytest.raises(AutoresearchError, match=r"under \[agent.codex\]"):
        create_agent("codex", load_task(make_task(config=text))).check()


def test_aider_runs_without_fetching_litellms_price_map(make_task, fake_cli):
    agent = create_agent("aider", load_task(make_task(config=config("aider"))))
    assert agent.env()["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_an_agent_that_answers_without_editing_is_not_a_setup_pause():
    from autoresearch import crash_policy
    from autoresearch.records import Experiment
    same = [Experiment(iteration=i, commit="c", parent="c", status=Status.CRASH, description="agent failed",
                       reason="agent: no change to the editable files") for i in (1, 2, 3)]
    assert crash_policy.should_pause_for_agent(same, 3) is None  # the ideas failed, not the setup
    auth = [Experiment(iteration=i, commit="c", parent="c", status=Status.CRASH, description="agent failed",
                       reason=f"agent: claude: Not logged in (session {i})", agent_data={"failure": "auth"})
            for i in (1, 2, 3)]
    assert "paused after 3 identical agent failures" in crash_policy.should_pause_for_agent(auth, 3)
    assert crash_policy.should_pause_for_agent(auth, 0) is None and crash_policy.should_pause_for_agent(auth[:2], 3) is None
