"""One contract every agent backend passes: what the loop relies on, whatever edits the code.

Parametrized over the backends behind `Agent.propose(context) -> Proposal`: the built-in
tuner, the shell `command` agent, the coding CLIs (against their fakes) and the `openai`
agent (against a chat-completions server on 127.0.0.1). A new backend adds a `Backend` entry
here and must pass as is. The scenario a test sets (FAKE_SCENARIO) drives each of them.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from autoresearch.agents import create_agent
from autoresearch.agents.base import Context
from autoresearch.config import load_task
from autoresearch.records import Proposal

from conftest import TINY_CONFIG, git
from helpers import agent_context as context
from fake_openai_server import FakeOpenAI, Reply
from fakes.harness import fake_cli  # noqa: F401 (fixture)

EDITOR = '''\
import os, pathlib, re, sys, time
if os.environ.get("FAKE_SCENARIO") == "hang":
    time.sleep(600)
if os.environ.get("FAKE_SCENARIO") == "not_logged_in":
    sys.exit("error: not logged in")
p = pathlib.Path("train.py")
p.write_text(re.sub(r"(?m)^X = [^\\s#]+", "X = 2.0", p.read_text()))
print("<explanation>\\nRaise X to 2.0\\nThe score is X itself.\\n</explanation>")
if os.environ.get("FAKE_SCENARIO") == "truncated_after_edit":
    sys.exit("the agent crashed after its edit")
'''


@dataclass(frozen=True)
class Backend:
    kind: str
    starts_processes: bool = True  # the tuner edits in-process
    can_fail: bool = True  # has a failure mode a scenario can trigger


BACKENDS = [Backend("tuner", starts_processes=False, can_fail=False), Backend("command"),
            Backend("claude"), Backend("codex"), Backend("gemini"), Backend("aider"),
            Backend("openai", starts_processes=False)]

# The openai agent's model: SEARCH/REPLACE blocks as a chat-completions server returns them.
EDIT_BLOCKS = ("train.py\n```python\n<<<<<<< SEARCH\nX = 1.0  # search: float(0.0, 10.0)\n=======\n"
               "X = 2.0  # search: float(0.0, 10.0)\n>>>>>>> REPLACE\n```\n\n"
               "<explanation>\nRaise X to 2.0\nThe score is X itself.\n</explanation>\n")


def model_reply(request) -> Reply:
    """The fake server's answer to the scenario the test set, like the fake CLIs'."""
    play = os.environ.get("FAKE_SCENARIO", "success")
    if play == "hang":
        return Reply(EDIT_BLOCKS, delay=600)
    if play == "not_logged_in":
        return Reply(status=401)
    return Reply(EDIT_BLOCKS)


@pytest.fixture(params=BACKENDS, ids=lambda b: b.kind)
def setup(request, make_task, fake_cli, tmp_path):
    backend = request.param
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    server = FakeOpenAI(responder=model_reply).__enter__()
    request.addfinalizer(lambda: server.__exit__(None, None, None))
    task_dir = make_task(config=TINY_CONFIG + textwrap.dedent(f'''
        [agent]
        kind = "{backend.kind}"
        command = "{sys.executable} {editor}"
        timeout = 30
        env = ["FAKE_STATE_DIR", "FAKE_SCENARIO"]
        model = "fake-model"

        [agent.claude]
        backoff = 0.01

        [agent.openai]
        base_url = "{server.url}"
        max_retries = 0
    '''))
    task = load_task(task_dir)
    agent = create_agent(backend.kind, task)
    return backend, task, agent, fake_cli


def test_names_itself_and_checks(setup):
    backend, task, agent, _ = setup
    assert agent.name == backend.kind
    check = getattr(agent, "check", None)
    if check is not None:
        check()  # the fakes are installed: no error


def test_edits_only_editable_files_and_explains(setup, tmp_path):
    backend, task, agent, _ = setup
    proposal = agent.propose(context(task, tmp_path / "run"))
    assert isinstance(proposal, Proposal) and proposal.ok, proposal.error
    assert proposal.description.strip() and proposal.explanation.strip()
    changed = [line[3:] for line in git(task.dir, "status", "--porcelain").splitlines()]
    assert changed == ["train.py"]
    assert isinstance(proposal.cost_usd, float) and isinstance(proposal.tokens, int)


def test_reports_its_processes(setup, tmp_path):
    backend, task, agent, _ = setup
    pids = []
    agent.propose(context(task, tmp_path / "run", on_process_start=pids.append))
    assert bool(pids) == backend.starts_processes
    for pid in pids:  # and leaves none behind
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_stops_when_asked(setup, tmp_path, monkeypatch):
    backend, task, agent, fake = setup
    fake.scenario("hang")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    proposal = agent.propose(context(task, tmp_path / "run", stop_event=stop))
    assert time.monotonic() - started < 10  # not the 30 s agent timeout, let alone the hang
    if backend.can_fail:
        assert not proposal.ok


def only(keep):
    """Run a contract test on the backends it applies to (the others are not collected)."""
    chosen = [b for b in BACKENDS if keep(b)]
    return pytest.mark.parametrize("setup", chosen, indirect=True, ids=[b.kind for b in chosen])


# The tuner, openai and aider apply their edits themselves (or exit 0): none fails after an edit.
@only(lambda b: b.kind not in ("tuner", "openai", "aider"))
def test_success_is_judged_by_the_diff_not_the_exit_code(setup, tmp_path):
    backend, task, agent, fake = setup
    fake.scenario("truncated_after_edit")  # edits, then exits non-zero or prints a cut-off result
    proposal = agent.propose(context(task, tmp_path / "run"))
    assert proposal.ok and proposal.data["warning"], proposal.error
    assert [line[3:] for line in git(task.dir, "status", "--porcelain").splitlines()] == ["train.py"]


@only(lambda b: b.can_fail)
def test_a_failure_is_a_proposal_not_an_exception(setup, tmp_path):
    backend, task, agent, fake = setup
    fake.scenario("not_logged_in")
    proposal = agent.propose(context(task, tmp_path / "run"))
    assert not proposal.ok and proposal.error
    assert git(task.dir, "status", "--porcelain").strip() == ""


@only(lambda b: b.kind != "command")  # the command agent's interface is the prompt file
def test_works_without_a_prompt_file(setup, tmp_path):
    # A caller other than the loop (a test, a notebook) may pass only the prompt text.
    backend, task, agent, _ = setup
    ctx = context(task, tmp_path / "run")
    ctx = Context(**{**ctx.__dict__, "prompt_file": None})
    assert agent.propose(ctx).ok


def test_an_agent_must_write_propose():
    """`propose` is abstract: a backend without it fails when it is made, not in the night."""
    from autoresearch.agents.base import Agent, as_agent

    class NoPropose(Agent):
        name = "half"

    with pytest.raises(TypeError, match="propose"):
        NoPropose()

    class Plain:  # the bare protocol: any object with `propose`
        def propose(self, context):
            return Proposal("p", "why")

    agent = as_agent(Plain())
    assert isinstance(agent, Agent) and agent.name == "agent" and agent.repairs
    assert agent.check() is None and agent.write_memo("r") is None and agent.close() is None
