"""The real coding CLIs, where installed: our flags and parsing checked against the real programs.

Each test runs the real loop with the real binary, either without credentials (the error path
must be classified right) or against a model server on 127.0.0.1 that speaks the real protocol
(tests/agents/fakes/servers.py, fake_openai_server.py): a full edit round trip. Marked slow;
a test whose program is missing is skipped and says how to install it:

    pip install claude-agent-sdk               # its wheel bundles the claude binary
    npm install -g @openai/codex @google/gemini-cli
    pip install aider-chat                     # a separate virtualenv is fine

Programs outside PATH are found through AUTORESEARCH_REAL_CLI_PATH (a PATH-style list).
`.ci/install-agents` installs the pinned versions under ~/.cache/autoresearch-ci and prints
the variables to export; CI runs it and sets AUTORESEARCH_REQUIRE_REAL=1, which turns a
missing program into a failure instead of a skip:

    eval "$(.ci/install-agents)" && .venv/bin/python -m pytest -q tests/agents/test_real_clis.py

The offline cases run the program in a network namespace of its own (`unshare -n`, as root),
where every lookup fails at once as it does on a machine without network.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from autoresearch.agents import create_agent
from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from fake_openai_server import FakeOpenAI, Reply
from conftest import TINY_CONFIG, tiny_config
from fakes.servers import AnthropicServer, Error, GeminiServer, ResponsesServer

pytestmark = pytest.mark.slow

INSTALL = {"claude": "pip install claude-agent-sdk", "codex": "npm install -g @openai/codex",
           "gemini": "npm install -g @google/gemini-cli", "aider": "pip install aider-chat"}
LINE = "X = 1.0  # search: float(0.0, 10.0)"  # train.py's first line (tests/conftest.py make_task)
EXPLANATION = "Done.\n<explanation>\nRaise X to 2.0\nThe score is X itself, so a larger X scores higher.\n</explanation>"


def real(name: str) -> str:
    path = os.pathsep.join(p for p in (os.environ.get("AUTORESEARCH_REAL_CLI_PATH"), os.environ.get("PATH")) if p)
    found = shutil.which(name, path=path)
    if found is None and name == "claude" and importlib.util.find_spec("claude_agent_sdk"):
        bundled = Path(importlib.util.find_spec("claude_agent_sdk").origin).parent / "_bundled" / "claude"
        found = str(bundled) if bundled.is_file() else None
    if found is None:
        message = f"the real {name} is not installed (`{INSTALL[name]}`, or AUTORESEARCH_REAL_CLI_PATH)"
        if os.environ.get("AUTORESEARCH_REQUIRE_REAL") == "1" or os.environ.get("CI"):  # CI must run them
            pytest.fail(message)
        pytest.skip(message)
    return found


# The offline wrapper makes a network namespace of its own, which cannot nest inside the agent
# sandbox where the tests run as root (no capabilities there): these cases run unsandboxed.
OFFLINE_EXTRA = 'preflight = false\n\n[sandbox]\nmode = "off"\n'


def offline(tmp_path, binary: str) -> str:
    """A wrapper running `binary` without network: its own empty network namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-n", "true"], capture_output=True).returncode != 0:
        message = "needs root and unshare for a network namespace"
        if os.environ.get("AUTORESEARCH_REQUIRE_REAL") == "1" or os.environ.get("CI"):  # CI must run them
            pytest.fail(message)
        pytest.skip(message)
    wrapper = tmp_path / f"offline-{Path(binary).name}"
    wrapper.write_text(f"#!/bin/sh\nexec unshare -n {binary} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(autouse=True)
def clean_home(tmp_path, monkeypatch):
    """No credentials of this machine's user: a fresh HOME and no API keys."""
    home = tmp_path / "home"
    home.mkdir(parents=True)
    # codex cannot write (its file_change fails) when CODEX_HOME is under /tmp: keep it out of there.
    codex_home = Path(os.path.expanduser("~/.cache/autoresearch-test-codex")) / uuid.uuid4().hex
    codex_home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_AUTH_TOKEN", "_BASE_URL", "_API_BASE")) or name.startswith(("CLAUDE_", "GEMINI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    yield
    shutil.rmtree(codex_home, ignore_errors=True)


def run(make_task, kind: str, binary: str, extra: str = "", iterations: int = 1):
    task_dir = make_task(config=tiny_config(timeout=30) + textwrap.dedent(f'''
        [agent]
        kind = "{kind}"
        binary = "{binary}"
        timeout = 180
    ''') + ("retries = 1\nbackoff = 0.1\n" if kind == "claude" else "") + textwrap.dedent(extra))
    task = load_task(task_dir)
    agent = create_agent(kind, task)
    agent.check()  # the real --help lists every flag we pass
    loop = Loop(task, "real", agent, say=lambda s: None)
    return task_dir, loop.run(Limits(iterations=iterations))[-1]


# -- claude ---------------------------------------------------------------------------------

def test_claude_not_logged_in_is_refused_before_the_baseline(make_task):
    started = time.monotonic()
    with pytest.raises(AutoresearchError, match=r"Claude Code is not logged in .*claude /login"):
        run(make_task, "claude", real("claude"))
    assert time.monotonic() - started < 60


def test_claude_offline_is_refused_then_ends_a_call_at_once(make_task, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(AutoresearchError, match=r"cannot connect to 127.0.0.1:9"):
        run(make_task, "claude", real("claude"))  # logged in (the key), but the API is not there
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    started = time.monotonic()
    _, record = run(make_task, "claude", offline(tmp_path, real("claude")), extra=OFFLINE_EXTRA)
    assert record.status is Status.CRASH and record.agent_data["failure"] == "offline", record.reason
    assert "Can't reach the API server" in record.reason and time.monotonic() - started < 120


def test_claude_invalid_key(make_task, monkeypatch):
    with AnthropicServer([Error(401)]) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-invalid-0123456789")
        monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")  # its own retries would take minutes
        task_dir, record = run(make_task, "claude", real("claude"))
    assert record.status is Status.CRASH
    assert "Invalid API key" in record.reason and record.agent_data["failures"][0].startswith("auth: ")


def test_claude_rate_limit_then_full_edit_round_trip(make_task, monkeypatch, tmp_path):
    target = str(tmp_path / "repo" / "train.py")
    script = [Error(429),  # first call: rate limited; ours retries
              [{"type": "tool_use", "name": "Read", "input": {"file_path": target}}],
              [{"type": "tool_use", "name": "Edit", "input": {"file_path": target, "old_string": "X = 1.0",
                                                               "new_string": "X = 2.0"}}],
              [{"type": "text", "text": EXPLANATION}]]
    with AnthropicServer(script) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
        task_dir, record = run(make_task, "claude", real("claude"),
                               extra='model = "claude-sonnet-4-5"\nmax_turns = 10\n')  # --max-turns: hidden, accepted
        requests = server.agent_requests()
    assert record.status is Status.KEEP, record.reason
    assert record.metrics["score"] == 2.0 and record.description == "Raise X to 2.0"
    assert record.agent_data["attempts"] == 2 and record.agent_data["failures"][0].startswith("transient: ")
    assert record.tokens == 3 * 120 and record.cost_usd > 0  # claude prices its own tokens
    first = requests[1]
    assert first["model"] == "claude-sonnet-4-5"
    assert "Edit only these files" in str(first["system"])  # --append-system-prompt reached the model
    assert "Tiny task" in str(first["messages"])  # and the prompt, through stdin


def test_claude_writes_the_strategy_memo_read_only(make_task, monkeypatch):
    with AnthropicServer([[{"type": "text", "text": "## What works\nRaising X."}]]) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        task = load_task(make_task(config=TINY_CONFIG + textwrap.dedent(f'''
            [agent]
            kind = "claude"
            binary = "{real("claude")}"
        ''')))
        memo = create_agent("claude", task).write_memo("Write the strategy memo for this run.")
        tools = {t["name"] for t in server.agent_requests()[0]["tools"]}
    assert memo.text == "## What works\nRaising X."
    assert memo.cost_usd > 0 and memo.tokens >= 120  # Claude Code priced the call: the outer loop records it
    assert "Read" in tools and not tools & {"Edit", "Write", "Bash"}  # the memo call cannot edit


# -- codex ----------------------------------------------------------------------------------

def codex_provider(url: str) -> str:
    table = (f'{{name="fake", base_url="{url}/v1", env_key="OPENAI_API_KEY", wire_api="responses", '
             f'request_max_retries=0, stream_max_retries=0}}')
    return f"extra_args = ['-c', 'model_provider=\"fake\"', '-c', '''model_providers.fake={table}''']\n"


def test_codex_unauthorized(make_task, monkeypatch):
    with ResponsesServer([Error(401, message="Incorrect API key provided: sk-inv***")] * 10) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-invalid-0123456789")
        _, record = run(make_task, "codex", real("codex"), extra=codex_provider(server.url))
    assert record.status is Status.CRASH
    assert "401 Unauthorized" in record.reason and record.agent_data["failures"][0].startswith("auth: ")


def test_codex_full_edit_round_trip(make_task, monkeypatch):
    patch = f"*** Begin Patch\n*** Update File: train.py\n@@\n-{LINE}\n+{LINE.replace('1.0', '2.0', 1)}\n*** End Patch\n"
    script = [[{"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "apply_patch",
                "input": patch, "status": "completed"}],
              [{"type": "message", "content": EXPLANATION}]]
    with ResponsesServer(script) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
        _, record = run(make_task, "codex", real("codex"), extra='model = "gpt-5.5"\n' + codex_provider(server.url)
                        + '[agent.price]\n"gpt-5.5" = [1.25, 0.125, 10.0]\n')
    assert record.status is Status.KEEP, record.reason
    assert record.metrics["score"] == 2.0 and record.description == "Raise X to 2.0"
    assert record.tokens == 2 * 120
    assert record.cost_usd == pytest.approx(2 * (60 * 1.25 + 40 * 0.125 + 20 * 10.0) / 1e6)


# -- gemini ---------------------------------------------------------------------------------

def test_gemini_not_logged_in_is_refused_before_the_baseline(make_task):
    with pytest.raises(AutoresearchError, match=r"gemini has no login"):
        run(make_task, "gemini", real("gemini"))


def test_gemini_not_logged_in_at_night_is_classified(make_task):
    _, record = run(make_task, "gemini", real("gemini"), extra="preflight = false\n")
    assert record.status is Status.CRASH and record.agent_data["failure"] == "auth"
    assert "Please set an Auth method" in record.reason


def test_gemini_offline_ends_the_call_at_once(make_task, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-0123456789")
    started = time.monotonic()
    _, record = run(make_task, "gemini", offline(tmp_path, real("gemini")), extra=OFFLINE_EXTRA)
    assert record.status is Status.CRASH and record.agent_data["failure"] == "offline", record.reason
    assert time.monotonic() - started < 90  # gemini alone retries for about 20 minutes


def test_codex_offline_ends_the_call_at_once(make_task, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    started = time.monotonic()
    _, record = run(make_task, "codex", offline(tmp_path, real("codex")), extra=OFFLINE_EXTRA)
    assert record.status is Status.CRASH and record.agent_data["failure"] == "offline", record.reason
    assert "failed to lookup address" in record.reason
    assert time.monotonic() - started < 90  # codex alone reconnects forever


def test_codex_without_login_is_refused(make_task):
    with pytest.raises(AutoresearchError, match=r"codex is not logged in .*Not logged in"):
        run(make_task, "codex", real("codex"))


def test_gemini_full_edit_round_trip(make_task, monkeypatch, tmp_path):
    target = str(tmp_path / "repo" / "train.py")
    script = [[{"functionCall": {"name": "read_file", "args": {"file_path": target}}}],
              [{"functionCall": {"name": "replace", "args": {"file_path": target, "instruction": "Raise X to 2.0",
                                                              "old_string": LINE,
                                                              "new_string": LINE.replace("1.0", "2.0", 1)}}}],
              [{"text": EXPLANATION}]]
    # An API key with a custom base URL: select the key in settings (the base URL alone means "gateway" auth).
    settings = Path(os.environ["HOME"]) / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"security": {"auth": {"selectedType": "gemini-api-key"}}}')
    with GeminiServer(script) as server:
        monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-0123456789")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        _, record = run(make_task, "gemini", real("gemini"), extra='model = "gemini-2.5-pro"\n'
                        'env = ["GOOGLE_GEMINI_BASE_URL"]\n')
        first = next(r["body"] for r in server.requests if r["body"].get("tools"))
    assert record.status is Status.KEEP, record.reason
    assert record.metrics["score"] == 2.0 and record.description == "Raise X to 2.0"
    assert record.tokens == 3 * 120
    assert record.cost_usd == pytest.approx(3 * (100 * 1.25 + 20 * 10.0) / 1e6)
    assert "Edit only these files" in json.dumps(first["contents"]) and "Tiny task" in json.dumps(first["contents"])


# -- aider ----------------------------------------------------------------------------------

AIDER_REPLY = (f"train.py\n```python\n<<<<<<< SEARCH\n{LINE}\n=======\n{LINE.replace('1.0', '2.0', 1)}\n"
               f">>>>>>> REPLACE\n```\n\n{EXPLANATION}")


def test_aider_without_a_model_is_refused_and_its_browser_login_ends_at_once(make_task):
    with pytest.raises(AutoresearchError, match=r"no model is named"):
        run(make_task, "aider", real("aider"))
    started = time.monotonic()
    _, record = run(make_task, "aider", real("aider"), extra="preflight = false\n")
    assert record.status is Status.CRASH and record.agent_data["failure"] == "login", record.reason
    assert "browser" in record.reason and time.monotonic() - started < 90  # aider alone waits 5 minutes


def test_aider_invalid_key(make_task, monkeypatch):
    with FakeOpenAI([], api_key="sk-the-right-one-0123456789") as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-0123456789")
        _, record = run(make_task, "aider", real("aider"), extra='model = "openai/fake-model"\n')
    assert record.status is Status.CRASH
    assert "AuthenticationError" in record.reason and record.agent_data["failures"][0].startswith("auth: ")


def test_aider_full_edit_round_trip(make_task, monkeypatch):
    usage = {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
    with FakeOpenAI([Reply(AIDER_REPLY, usage=usage)]) as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
        task_dir, record = run(make_task, "aider", real("aider"), extra='model = "openai/fake-model"\n'
                               'extra_args = ["--edit-format", "diff"]\n')
        prompt = server.chat_requests[0].last_user
    assert record.status is Status.KEEP, record.reason
    assert record.metrics["score"] == 2.0 and record.description == "Raise X to 2.0"
    assert record.tokens == 1050
    assert "Edit only these files" in prompt and "Tiny task" in prompt
    assert not [p for p in task_dir.iterdir() if p.name.startswith(".aider") or p.name == ".gitignore"]
