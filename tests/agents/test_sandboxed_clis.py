"""The CLI backends inside the agent sandbox, end to end through the real loop against the fakes
(tests/agents/fakes/): the edit goes through and is kept, the state folder the loop opens up
(`[sandbox] agent_writable`) is written, and the call ran inside bwrap."""

import textwrap

import pytest

from autoresearch.agents import create_agent
from autoresearch.config import load_task
from autoresearch.execution import sandbox
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import TINY_CONFIG
from fakes.harness import NAMES as BACKENDS, fake_cli  # noqa: F401 (fixture)

MODELS = {"claude": "sonnet", "codex": "gpt-5-codex", "gemini": "gemini-2.5-pro", "aider": "gpt-4o"}


def config(kind: str) -> str:
    return TINY_CONFIG + textwrap.dedent(f'''
        [agent]
        kind = "{kind}"
        timeout = 20
        model = "{MODELS[kind]}"
        env = ["FAKE_STATE_DIR", "FAKE_SCENARIO", "FAKE_VALUE", "FAKE_LOGGED_IN"]
    ''')

pytestmark = pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")


@pytest.mark.parametrize("kind", BACKENDS)
def test_each_backend_edits_and_is_kept_inside_the_sandbox(make_task, fake_cli, kind, monkeypatch):
    calls = []
    real_argv = sandbox.View.argv

    def spy(view, command, cwd, *args, **kwargs):
        calls.append(command)
        return real_argv(view, command, cwd, *args, **kwargs)

    monkeypatch.setattr(sandbox.View, "argv", spy)
    extra = textwrap.dedent(f'''
        [sandbox]
        mode = "required"
        agent_writable = ["{fake_cli.state}"]
    ''')
    task_dir = make_task(config=config(kind) + extra)
    task = load_task(task_dir)
    records = Loop(task, "t", create_agent(kind, task), say=lambda s: None).run(Limits(iterations=1))
    assert records[-1].status is Status.KEEP and records[-1].metrics["score"] == 2.0, records[-1].reason
    assert len(fake_cli.calls()) == 1  # the fake wrote its call record into the opened-up folder
    assert any(kind in " ".join(c) for c in calls), calls  # its command went through bwrap
    if kind == "codex":  # its own sandbox would nest namespaces inside ours: off, ours confines it
        argv = fake_cli.calls()[0]["argv"]
        assert argv[argv.index("--sandbox") + 1] == "danger-full-access"
