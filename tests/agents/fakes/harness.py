"""Install the fake CLIs on PATH for a test, plant API keys, and read back what the fakes saw.

    def test_x(fake_cli):
        fake_cli.scenario("rate_limit,success")
        ... run the loop with kind = "claude" ...
        fake_cli.calls()  # one dict per call of any fake: argv, cwd, prompt, secrets_seen, ...
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import TINY_CONFIG

FAKES = Path(__file__).parent
NAMES = ("claude", "codex", "gemini", "aider")
# Planted in the environment of every test that uses the fakes; no file we write may hold one.
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-PLANTED-0123456789abcdef",
    "OPENAI_API_KEY": "sk-proj-PLANTED-0123456789abcdef",
    "GEMINI_API_KEY": "AIzaPLANTED-0123456789abcdef",
    "GITHUB_TOKEN": "ghp_PLANTED0123456789abcdef",  # belongs to no agent
}
# The key each backend needs (its fake leaks it on stderr).
KEY_OF = {"claude": "ANTHROPIC_API_KEY", "codex": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY", "aider": "OPENAI_API_KEY"}
OUR_RETRIES = ("claude",)  # the others retry by themselves: ours stay off (one retry policy)
MODELS = {"claude": "sonnet", "codex": "gpt-5-codex", "gemini": "gemini-2.5-pro", "aider": "gpt-4o"}


def config(kind: str, timeout: float = 20, extra: str = "") -> str:
    """The tiny task's config with the fake backend `kind` as its agent.

    The fakes' state folder (under tmp_path, which the sandbox's private /tmp covers) is opened
    up to the agent's sandbox, as a user opens up a CLI's own folder; fake_cli sets it first."""
    state = os.environ.get("FAKE_STATE_DIR")
    sandbox = f'\n[sandbox]\nagent_writable = ["{state}"]\n' if state else ""  # before [agent]: callers append to it
    return TINY_CONFIG + sandbox + textwrap.dedent(f'''
        [agent]
        kind = "{kind}"
        timeout = {timeout}
        model = "{MODELS[kind]}"
        env = ["FAKE_STATE_DIR", "FAKE_SCENARIO", "FAKE_VALUE", "FAKE_LOGGED_IN"]
    ''') + ("retries = 2\nbackoff = 0.01\n" if kind in OUR_RETRIES else "") + textwrap.dedent(extra)




class FakeCli:
    def __init__(self, root: Path, monkeypatch):
        self.bin = root / "fake-bin"
        self.state = root / "fake-state"
        self.bin.mkdir()
        self.state.mkdir()
        # The fakes' code is copied beside their wrappers: a checkout under /tmp (a CI clone) is
        # hidden by the agent sandbox's private /tmp, and only the program's own folder is bound back.
        lib = self.bin / "lib"
        lib.mkdir()
        for source in (*NAMES, "fakecli"):
            shutil.copyfile(FAKES / f"{source}.py", lib / f"{source}.py")
        for name in NAMES:
            wrapper = self.bin / name
            wrapper.write_text(f"#!{sys.executable}\nimport runpy, sys\nsys.path.insert(0, {str(lib)!r})\n"
                               f"runpy.run_path({str(lib / (name + '.py'))!r}, run_name='__main__')\n")
            wrapper.chmod(0o755)
        self._monkeypatch = monkeypatch
        # Only system directories besides ours: a real claude or aider on the developer's PATH must not answer.
        monkeypatch.setenv("PATH", os.pathsep.join([str(self.bin), "/usr/local/bin", "/usr/bin", "/bin"]))
        monkeypatch.setenv("FAKE_STATE_DIR", str(self.state))
        monkeypatch.setenv("FAKE_SCENARIO", "success")
        for name, value in SECRETS.items():
            monkeypatch.setenv(name, value)
        # The start-up check connects to each CLI's API host: here a socket on 127.0.0.1 that
        # accepts (and nothing more), named where each CLI reads its base URL.
        self.api = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{self.api.getsockname()[1]}"
        for name in ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"):
            monkeypatch.setenv(name, url)

    def scenario(self, plays: str) -> None:
        self._monkeypatch.setenv("FAKE_SCENARIO", plays)

    def calls(self) -> list[dict]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fake_cli(tmp_path, monkeypatch) -> FakeCli:
    fake = FakeCli(tmp_path, monkeypatch)
    yield fake
    fake.api.close()


def files_holding(root: Path, needles) -> list[str]:
    """Every file under `root` (the .git objects too) whose bytes contain one of `needles`."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return found
