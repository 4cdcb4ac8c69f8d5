"""The dashboard in headless Chromium: a running night, then its next experiment arriving
on the same page without a reload. Screenshots of both moments are left in tmp_path (and in
$AUTORESEARCH_SCREENSHOTS when set, to look at)."""

import os
import shutil
import subprocess
import threading

import pytest

from autoresearch.config import load_task
from autoresearch.dashboard import Dashboard
from autoresearch.live.state import live_path
from autoresearch.loop import Limits, Loop
from autoresearch.records import Proposal
from autoresearch.store import RunStore

from cdp import Browser, chromium
import helpers

BINARY = chromium()
pytestmark = pytest.mark.skipif(BINARY is None, reason="needs chromium (apt-get install -y chromium)")

# The baseline finishes at once; the experiment trains until the test lets it finish.
TRAIN = '''\
import json, os, pathlib, time
X = 1.0  # search: float(0.0, 10.0)
go = pathlib.Path(os.environ["GO_FILE"])
if X != 1.0:
    for epoch in range(1, 2000):
        print(f"epoch {epoch} loss {1 / epoch:.4f} acc {1 - 1 / (epoch + 1):.4f}", flush=True)
        if go.exists():
            break
        time.sleep(0.1)
print("---")
print(f"score: {X:.6f}")
print("train_seconds: 3.5")
'''


class Edit:
    name = "scripted"

    def __init__(self):
        self.n = 0

    def propose(self, context):
        self.n += 1
        p = context.task_dir / "train.py"
        p.write_text(p.read_text().replace("X = 1.0", f"X = {1.0 + self.n}"))
        return Proposal(f"X -> {1.0 + self.n} <img src=x onerror=document.title='pwned'>", "Raise X: the score is X.")


def wait_for(predicate, seconds=30.0):
    return helpers.wait_for(predicate, seconds, step=0.1)  # a browser's page takes its time


def _rows(browser):
    return browser.eval("[...document.querySelectorAll('#table tbody tr')].map(r => r.dataset.iteration)") or []


def test_a_running_night_updates_by_itself_in_chromium(make_task, tmp_path, monkeypatch):
    task = make_task(train=TRAIN)
    go = tmp_path / "gate" / "go"  # a folder the sandboxed run may see: [sandbox] writable below
    go.parent.mkdir()
    monkeypatch.setenv("GO_FILE", str(go))
    config = (task / "autoresearch.toml").read_text().replace('timeout = 20', 'timeout = 120\nenv = ["GO_FILE"]')
    config += f'\n[sandbox]\nwritable = ["{go.parent}"]\n'
    (task / "autoresearch.toml").write_text(config)
    subprocess.run(["git", "commit", "-qam", "env"], cwd=task, check=True)
    loop = Loop(load_task(task), "t1", Edit(), say=lambda s: None)
    out = {}
    runner = threading.Thread(target=lambda: out.setdefault("records", loop.run(Limits(iterations=3))))
    runner.start()
    board = Dashboard(load_task(task), RunStore(task, "t1"), port=0)
    board.start()
    browser = Browser(BINARY, str(tmp_path / "profile"))
    try:
        import json
        assert wait_for(lambda: (s := _read(live_path(task / ".autoresearch" / "t1"))).get("iteration") == 1
                        and s.get("stage") == "measure" and s.get("log_line"))
        browser.open(board.url)
        assert wait_for(lambda: _rows(browser) == ["0"]), _rows(browser)
        runs = wait_for(lambda: "live curve" in (t := browser.eval("document.getElementById('runs').innerText") or "") and t)
        assert "#1" in runs and "training" in runs and "X -> 2.0 <img" in runs  # the payload shows as text
        assert browser.eval("document.getElementById('pill').textContent") == "running"
        assert browser.eval("document.getElementById('stop').disabled") is False
        browser.eval("window.samePage = 'yes'")
        before = tmp_path / "before.png"
        browser.screenshot(before)
        # The stop button: asks for a graceful stop after the iteration in flight.
        browser.eval("window.confirm = () => true; document.getElementById('stop').click()")
        assert wait_for(lambda: (task / ".autoresearch" / "t1" / "stop.request").exists())
        assert wait_for(lambda: browser.eval("document.getElementById('pill').textContent") == "stopping after this iteration")

        go.write_text("")  # the experiment finishes and is recorded
        assert wait_for(lambda: _rows(browser) == ["1", "0"], 60), _rows(browser)
        assert browser.eval("window.samePage") == "yes"  # the same page: it updated without a reload
        row = browser.eval("document.querySelector('#table tbody tr').innerText")
        assert "X -> 2.0 <img src=x" in row and "keep" in row and "3.5" in row
        assert browser.eval("document.querySelectorAll('img').length") == 0
        # A row opens the experiment: its explanation and its diff.
        browser.eval("document.querySelector('#table tbody tr').click()")
        detail = wait_for(lambda: "+X = 2.0" in (t := browser.eval("document.getElementById('detail').innerText") or "") and t)
        assert "Raise X: the score is X." in detail and "-X = 1.0" in detail
        assert browser.eval("document.title") != "pwned"
        assert wait_for(lambda: browser.eval("document.getElementById('pill').textContent") == "not running")
        best = browser.eval("document.getElementById('best').innerText")
        assert "score 2" in best and "+1" in best and "X" in best
        after = tmp_path / "after.png"
        browser.screenshot(after)
        assert before.stat().st_size > 10_000 and after.stat().st_size > 10_000
        keep = os.environ.get("AUTORESEARCH_SCREENSHOTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(before, keep)
            shutil.copy(after, keep)
    finally:
        go.write_text("")
        browser.close()
        board.close()
        runner.join(60)
    assert [r.iteration for r in out["records"]] == [0, 1]  # stopped after the iteration in flight, not 3


def _read(path):
    import json
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
