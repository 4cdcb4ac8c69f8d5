"""The dashboard server: what it serves, and what it refuses (wrong Host, no token, a cross-site stop)."""

import json
import re
import urllib.error
import urllib.request

import pytest

from autoresearch.config import load_task
from autoresearch.dashboard import Dashboard
from autoresearch.errors import AutoresearchError
from autoresearch.live.state import stop_path
from autoresearch.loop import Limits, Loop
from autoresearch.records import Proposal
from autoresearch.store import RunStore


class Edit:
    name = "scripted"

    def __init__(self, *values):
        self.values = list(values)

    def propose(self, context):
        p = context.task_dir / "train.py"
        v = self.values.pop(0)
        p.write_text(p.read_text().replace("X = 1.0", f"X = {v}"))
        return Proposal(f"X -> {v} <img src=x onerror=alert(1)>", "Raise X: the score is X.")


@pytest.fixture
def night(make_task):
    task = make_task()
    Loop(load_task(task), "t1", Edit(2.0), say=lambda s: None).run(Limits(iterations=1))
    return task


@pytest.fixture
def board(night):
    d = Dashboard(load_task(night), RunStore(night, "t1"), port=0)
    d.start()
    yield d
    d.close()


def get(d, path, headers=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{d.port}{path}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_state_holds_the_table_the_best_knobs_and_how_to_reproduce(board):
    code, body, headers = get(board, "/api/state")
    assert code == 200 and headers["Content-Type"] == "application/json"
    state = json.loads(body)
    assert [r["iteration"] for r in state["experiments"]] == [0, 1]
    assert [r["best_so_far"] for r in state["experiments"]] == [1.0, 2.0]
    # each gain beside the noise floor it was held to (the tiny task is deterministic: min_delta, 0)
    assert [(r["gain"], r["floor"]) for r in state["experiments"]] == [(None, None), (1.0, 0.0)]
    assert state["noise_floor"] == 0.0
    assert state["best"]["iteration"] == 1 and state["baseline"]["value"] == 1.0
    assert {"file": "train.py", "name": "X", "baseline": 1.0, "best": 2.0, "changed": True} in state["knobs"]
    assert any("git checkout" in line for line in state["reproduce"])
    assert state["running"] is False and state["stop_requested"] is False
    assert state["live"][0]["stage"] == "finished"


def test_one_experiment_has_its_diff_explanation_and_log(board):
    code, body, _ = get(board, "/api/experiment/1")
    e = json.loads(body)
    assert code == 200 and "+X = 2.0" in e["diff"] and e["explanation"] == "Raise X: the score is X."
    assert "score: 2.000000" in e["log_tail"]
    assert get(board, "/api/experiment/99")[0] == 404
    assert get(board, "/api/experiment/../../etc/passwd")[0] == 404


def test_the_page_and_its_assets_are_local_and_locked_down(board):
    code, body, headers = get(board, "/")
    assert code == 200 and b'src="app.js"' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for asset in ("/app.js", "/style.css"):
        assert get(board, asset)[0] == 200
    remote = re.compile(rb"""(src|href)\s*=\s*["']?(https?:)?//|fetch\(\s*["'](https?:)?//|url\(\s*["']?(https?:)?//|@import""")
    for name in ("/", "/app.js", "/style.css"):
        assert not remote.search(get(board, name)[1]), name  # no CDN, no remote font: it works offline
    assert b"innerHTML" not in get(board, "/app.js")[1]  # untrusted text never becomes markup


def test_a_foreign_host_header_is_refused(board):
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: it must get nothing.
    assert get(board, "/api/state", {"Host": "evil.example:8765"})[0] == 421
    assert get(board, "/api/state", {"Host": f"localhost:{board.port}"})[0] == 200


def test_stop_needs_the_custom_header_and_then_writes_the_request(board, night):
    root = night / ".autoresearch" / "t1"
    assert get(board, "/api/stop", method="POST")[0] == 400  # what a cross-site form could send
    assert not stop_path(root).exists()
    code, body, _ = get(board, "/api/stop", {"X-Autoresearch-Stop": "1"}, method="POST")
    assert code == 200 and json.loads(body)["stop_requested"] is True
    assert stop_path(root).exists()
    assert json.loads(get(board, "/api/state")[1])["stop_requested"] is True


def test_another_address_needs_a_token_and_every_request_carries_it(night):
    with pytest.raises(AutoresearchError, match="needs a token"):
        Dashboard(load_task(night), RunStore(night, "t1"), host="0.0.0.0", port=0)
    d = Dashboard(load_task(night), RunStore(night, "t1"), port=0, token="s3cret")
    d.start()
    try:
        assert d.url.endswith("?token=s3cret")
        assert get(d, "/api/state")[0] == 403
        assert get(d, "/api/state?token=wrong")[0] == 403
        assert get(d, "/api/stop", {"X-Autoresearch-Stop": "1"}, method="POST")[0] == 403
        assert get(d, "/api/state?token=s3cret")[0] == 200
        assert get(d, "/api/state", {"X-Autoresearch-Token": "s3cret"})[0] == 200
    finally:
        d.close()


def test_a_port_in_use_is_a_clear_error(board, night):
    with pytest.raises(AutoresearchError, match="--port"):
        Dashboard(load_task(night), RunStore(night, "t1"), port=board.port)


def test_a_tag_not_started_yet_serves_an_empty_night(make_task):
    from autoresearch.api import dashboard_for

    task = make_task()
    d = dashboard_for(task, "later", port=0)
    d.start()
    try:
        state = json.loads(get(d, "/api/state")[1])
        assert state["experiments"] == [] and state["best"] is None and state["live"] == []
    finally:
        d.close()


def test_the_command_prints_its_url_and_serves_until_interrupted(night):
    import signal
    import subprocess
    import sys

    # SIGINT ignored at the start, as for a command a shell put in the background: Ctrl-C still stops it.
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "dashboard", str(night), "--tag", "t1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url and "dashboard of autoresearch/t1" in line, line
        with urllib.request.urlopen(f"{url.group(0)}api/state", timeout=10) as resp:
            assert json.loads(resp.read())["tag"] == "t1"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
