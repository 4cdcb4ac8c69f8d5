"""The `openai` agent's test harness: the real loop against a fake chat-completions server on
127.0.0.1, with a planted API key that no written file may hold (test_openai*.py share it)."""

import json
import threading
import time

import pytest

from autoresearch.agents import create_agent
from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop

from conftest import TINY_CONFIG
from fake_openai_server import FakeOpenAI

KEY = "sk-test-PLANTED-7f3a9c1e5b2d4f60"
LINE = "X = 1.0  # search: float(0.0, 10.0)\n"

CONFIG = TINY_CONFIG + """
[agent]
kind = "openai"
model = "fake-model"
base_url = "{url}"
api_key_env = "LLM_BEARER"
price_in = 2.0
price_out = 8.0
max_retries = {max_retries}
retry_base_delay = 0.01
request_timeout = {request_timeout}
timeout = {timeout}
max_fix_rounds = 2
"""


def answer(replace="X = 2.0  # search: float(0.0, 10.0)\n", search=LINE, path="train.py",
           explanation="Raise X to 2.0\nThe score grows with X, so a larger X should score higher."):
    return (f"I will raise X.\n\n{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n\n"
            f"<explanation>\n{explanation}\n</explanation>\n")


GOOD = answer()


class Run:
    """One loop run against a fake server: the baseline, then `iterations` agent iterations."""

    def __init__(self, make_task, monkeypatch, replies, *, iterations=1, key=KEY, server_key=KEY, url_suffix="",
                 max_retries=3, request_timeout=10, timeout=60, stop_after=None, extra_config=""):
        # The key lives in a variable whose name does not look secret: only our own redaction can hide it.
        monkeypatch.setenv("LLM_BEARER", key)
        self.said = []
        with FakeOpenAI(replies, api_key=server_key) as self.server:
            self.task = make_task(config=CONFIG.format(url=self.server.url + url_suffix, max_retries=max_retries,
                                                       request_timeout=request_timeout, timeout=timeout)
                                       + extra_config)
            task = load_task(self.task)
            stop = threading.Event()
            self.loop = Loop(task, "t1", create_agent("openai", task), say=self.said.append, stop_event=stop)
            if stop_after is not None:
                threading.Timer(stop_after, stop.set).start()
            started = time.monotonic()
            try:
                self.records = self.loop.run(Limits(iterations=iterations))
            finally:
                self.elapsed = time.monotonic() - started

    @property
    def chats(self):
        return self.server.chat_requests

    @property
    def last(self):
        return self.records[-1]

    def ledger(self):
        return [json.loads(line) for line in self.loop.store.ledger.path.read_text().splitlines()]


@pytest.fixture
def run(make_task, monkeypatch):
    runs = []

    def start(replies, **kw):
        r = Run(make_task, monkeypatch, replies, **kw)
        runs.append(r)
        return r

    yield start
    for r in runs:  # every scenario: the key reached the server and nothing written holds it
        assert_no_secret(r.task)


def assert_no_secret(task_dir):
    for path in task_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
