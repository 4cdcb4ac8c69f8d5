"""The CLI backends inside the agent sandbox, end to end through the real loop against the fakes
(tests/agents/fakes/): the edit goes through and is kept, the state folder the loop opens up
(`[sandbox] agent_writable`) is written, and the call ran inside bwrap."""

import json
import sys
import textwrap

import pytest

from autoresearch.agents import create_agent
from autoresearch.config import load_task
from autoresearch.execution import sandbox
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from conftest import SECRET_NETRC, SECRET_SSH, TINY_CONFIG
from fakes.harness import NAMES as BACKENDS, SECRETS, config as fake_config, fake_cli  # noqa: F401 (fixture)

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


PROBE = '''#!{python}
import json, os, runpy, sys
home, seen = os.path.expanduser("~"), {{}}
for rel in (".netrc", ".ssh/id_rsa", ".aws/credentials"):
    try:
        seen[rel] = open(os.path.join(home, rel)).read()
    except OSError as exc:
        seen[rel] = type(exc).__name__
try:
    open({prepare!r}, "a").write("DATA = 'poisoned'\\n")  # the read-only file the evaluation imports
    wrote = True
except OSError:
    wrote = False
with open(os.path.join(os.environ["FAKE_STATE_DIR"], "probes.jsonl"), "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ), "seen": seen, "wrote": wrote}}) + "\\n")
sys.path.insert(0, {lib!r})
runpy.run_path({fake!r}, run_name="__main__")  # then what the fake claude answers
'''


def test_the_start_up_probes_run_the_cli_as_its_calls_do(make_task, fake_cli, fake_home):
    """`claude --help` and `claude auth status`, run before the baseline, start the user's CLI
    binary: in the agent's sandbox and environment, never with the orchestrator's rights (the
    home's credentials, the read-only files, other backends' keys)."""
    task_dir = make_task(config=fake_config("claude").replace("[sandbox]\n", '[sandbox]\nmode = "required"\n'))
    wrapper = fake_cli.bin / "claude"
    wrapper.write_text(PROBE.format(python=sys.executable, prepare=str(task_dir / "prepare.py"),
                                    lib=str(fake_cli.bin / "lib"), fake=str(fake_cli.bin / "lib" / "claude.py")))
    task = load_task(task_dir)
    records = Loop(task, "t", create_agent("claude", task), say=lambda s: None).run(Limits(iterations=1))
    assert records[-1].status is Status.KEEP, records[-1].reason
    probes = [json.loads(line) for line in (fake_cli.state / "probes.jsonl").read_text().splitlines()]
    assert [p["argv"][:2] for p in probes[:2]] == [["--help"], ["auth", "status"]], probes
    call = probes[-1]  # the agent's own call, for comparison
    for probe in probes[:2]:
        assert not [rel for rel, text in probe["seen"].items() if SECRET_NETRC in text or SECRET_SSH in text], probe["seen"]
        assert not probe["wrote"]
        assert SECRETS["OPENAI_API_KEY"] not in json.dumps(probe["env"])  # codex's key: not claude's
        assert SECRETS["GITHUB_TOKEN"] not in json.dumps(probe["env"])
        assert set(probe["env"]) <= set(call["env"]) | {"PWD", "OLDPWD", "SHLVL", "_"}, set(probe["env"]) - set(call["env"])
    assert (task_dir / "prepare.py").read_text() == "DATA = 'fixed'\n"
