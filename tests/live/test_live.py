"""The live view: the loop publishes the iteration in flight; the terminal reads it back."""

import io
import json
import threading
import time
from pathlib import Path

from rich.console import Console

from autoresearch.config import load_task
from autoresearch.live.publisher import Publisher
from autoresearch.live.state import eta_seconds, live_path, read_states, request_stop, write_state
from autoresearch.live.terminal import TerminalView, status_line
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from helpers import ScriptedAgent, SharedScript, wait_for, x_is

# A run that prints a line, then waits (up to 20 s) for the test to say it saw the line.
WAITING_TRAIN = '''\
import json, os, pathlib, time
X = 1.0  # search: float(0.0, 10.0)
print("epoch 1 loss 0.50 acc 0.70")
with open("metrics.jsonl", "w") as fh:
    fh.write(json.dumps({"epoch": 1, "val_loss": 0.5}) + "\\n")
    fh.flush()
    go = pathlib.Path(os.environ["GO_FILE"])
    for _ in range(400):
        if go.exists():
            break
        time.sleep(0.05)
    fh.write(json.dumps({"epoch": 2, "val_loss": 0.25}) + "\\n")
print("saw-go" if go.exists() else "no-go")
print("---")
print(f"score: {X:.6f}")
'''


def _state(task):
    try:
        return json.loads(live_path(task / ".autoresearch" / "t1").read_text())
    except (OSError, ValueError):
        return {}


def test_the_run_in_flight_is_published_and_its_log_can_be_followed(make_task, tmp_path, monkeypatch):
    task = make_task(train=WAITING_TRAIN, extra={".gitignore": "metrics.jsonl\n"})
    go = tmp_path / "gate" / "go"  # a folder the sandboxed run may see: [sandbox] writable below
    go.parent.mkdir()
    monkeypatch.setenv("GO_FILE", str(go))
    config = (task / "autoresearch.toml").read_text().replace('readonly = ["prepare.py"]',
                                                              'readonly = ["prepare.py"]\nenv = ["GO_FILE"]')
    config += f'\n[sandbox]\nwritable = ["{go.parent}"]\n'
    (task / "autoresearch.toml").write_text(config)
    import subprocess
    subprocess.run(["git", "commit", "-qam", "env"], cwd=task, check=True)
    loop = Loop(load_task(task), "t1", ScriptedAgent(*x_is(2.0)), say=lambda s: None)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("records", loop.run(Limits(iterations=1))))
    thread.start()
    try:
        # While the baseline trains: the state says so, with its log line and its curve so far.
        state = wait_for(lambda: (s := _state(task)).get("stage") == "measure" and s.get("curve") and s.get("log_line") and s)
        assert state["iteration"] == 0 and state["description"] == "baseline"
        assert state["log_line"] == "epoch 1 loss 0.50 acc 0.70"
        assert state["curve"][0]["val_loss"] == 0.5 and state["curve"][0]["t"] >= 0
        assert state["budget"] == 5 and state["session"]["planned"] == 2
        assert read_states(task / ".autoresearch" / "t1")[0]["alive"] is True
        # `tail -f` works: the line is in the run's log while the run is still going.
        log = task / ".autoresearch" / "t1" / "runs" / "0000" / "log.txt"
        assert "epoch 1 loss" in log.read_text()
        go.write_text("")
        second = wait_for(lambda: (s := _state(task)).get("iteration") == 1 and s.get("stage") == "measure" and s)
        assert second["description"] == "X -> 2.0"
        assert second["best"]["iteration"] == 0 and second["best"]["value"] == 1.0
    finally:
        go.write_text("")
        thread.join(60)
    assert [r.status for r in out["records"]] == [Status.KEEP, Status.KEEP]
    assert "saw-go" in log.read_text()
    final = _state(task)
    assert final["stage"] == "finished" and final["best"]["iteration"] == 1
    assert final["session"]["done"] == 2 and final["session"]["queued"] == 0
    assert read_states(task / ".autoresearch" / "t1")[0]["alive"] is False


def test_a_stop_request_ends_the_night_after_the_iteration_and_is_then_cleared(make_task):
    task = make_task()
    root = task / ".autoresearch" / "t1"

    class StopAfterFirst(ScriptedAgent):
        def propose(self, context):
            request_stop(root)  # as the dashboard's button does, during iteration 1
            return super().propose(context)

    loop = Loop(load_task(task), "t1", StopAfterFirst(*x_is(2.0, 3.0, 4.0)), say=lambda s: None)
    records = loop.run(Limits(iterations=3))
    assert [r.iteration for r in records] == [0, 1]  # iteration 1 finished; 2 and 3 never began
    assert records[1].status is Status.KEEP
    assert not (root / "stop.request").exists()
    assert _state(task)["finished_reason"] == "stop requested"
    # The next run is not stopped by a request made before it began.
    request_stop(root)
    again = Loop(load_task(task), "t1", ScriptedAgent(*x_is(5.0)), say=lambda s: None).run(Limits(iterations=1))
    assert [r.iteration for r in again] == [2]


def test_the_publisher_follows_a_growing_log_and_ignores_an_older_curve_file(tmp_path):
    store, task_dir = tmp_path / "store", tmp_path / "task"
    store.mkdir()
    task_dir.mkdir()
    old = task_dir / "metrics.jsonl"
    old.write_text('{"epoch": 9, "val_loss": 9.0}\n')
    import os
    os.utime(old, (time.time() - 100, time.time() - 100))
    log = tmp_path / "log.txt"
    log.write_text("")
    pub = Publisher(store, worker=None, tag="t", primary="score", direction="maximize", budget=10, timeout=30,
                    task_dir=task_dir)
    pub.session(planned=3, max_seconds=None)
    pub.stage(4, "screen", description="LR 1e-3 -> 3e-3")
    pub.stage(4, "measure", log_path=str(log), run_started_at=time.time())
    try:
        with open(log, "a") as fh:
            fh.write("epoch 1 | loss 0.9\npartial line without newline")
        state = wait_for(lambda: (s := _state_of(store)).get("log_line") and s)
        assert state["log_line"] == "epoch 1 | loss 0.9"  # an unfinished line is not shown half-written
        assert [p["loss"] for p in state["curve"]] == [0.9]  # from the log: the old metrics.jsonl is not this run's
        assert state["description"] == "LR 1e-3 -> 3e-3"
    finally:
        pub.finished("done")
    assert _state_of(store)["stage"] == "finished"


def _state_of(store):
    try:
        return json.loads((store / "live.json").read_text())
    except (OSError, ValueError):
        return {}


def test_eta_comes_from_the_mean_iteration_time_and_respects_the_deadline():
    now = 1000.0
    state = {"alive": True, "iteration": 3, "stage": "measure", "iteration_started_at": now - 20,
             "session": {"mean_seconds": 60.0, "queued": 4, "deadline": None}}
    assert eta_seconds([state], now) == 40 + 4 * 60
    two = [dict(state, worker=0), dict(state, worker=1)]
    assert eta_seconds(two, now) == 40 + 4 * 60 / 2  # two workers share what is left
    late = dict(state, session={**state["session"], "deadline": now + 30})
    assert eta_seconds([late], now) == 30 + 60  # nothing starts after the deadline
    assert eta_seconds([dict(state, session={"mean_seconds": None, "queued": 4})], now) is None
    assert eta_seconds([dict(state, alive=False)], now) is None


def test_without_a_terminal_a_plain_status_line_is_printed_when_a_run_starts(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    now = time.time()
    state = {"stage": "measure", "iteration": 7, "description": "WIDTH 64 -> 128", "updated_at": now,
             "run_started_at": now - 42, "iteration_started_at": now - 45, "budget": 300, "primary": "val_acc",
             "direction": "maximize", "log_line": "epoch 3 loss 0.41",
             "best": {"iteration": 4, "value": 0.9123, "description": "LR up"},
             "session": {"planned": 10, "done": 7, "queued": 3, "mean_seconds": 310.0}}
    write_state(root / "live.json", state)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300)
    with TerminalView(root, console, tick=0.05, plain_interval=3600):
        wait_for(lambda: out.getvalue())
    text = out.getvalue()
    assert text.count("\n") == 1  # one line, no redraw codes
    assert "\x1b[" not in text
    assert "#7 training 00:4" in text and "/ 05:00" in text and "WIDTH 64 -> 128" in text
    assert "last: epoch 3 loss 0.41" in text and "best val_acc 0.9123 (#4: LR up)" in text and "ETA" in text


def test_status_line_of_an_idle_store_and_of_several_workers():
    now = time.time()
    assert status_line([], now) == "idle"
    w = {"alive": True, "stage": "measure", "iteration": 3, "run_started_at": now - 5, "budget": 60,
         "primary": "loss", "direction": "minimize", "session": {"done": 1, "planned": 5}}
    line = status_line([dict(w, worker=0, best={"iteration": 1, "value": 0.5, "description": "a"}),
                        dict(w, worker=1, iteration=4, best={"iteration": 2, "value": 0.4, "description": "b"})], now)
    assert "[w0] #3 training" in line and "[w1] #4 training" in line
    assert "best loss 0.4 (#2: b)" in line  # minimize: the lower of the two workers' bests


def test_on_a_terminal_the_panel_shows_the_bar_the_curve_and_the_log(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    now = time.time()
    write_state(root / "live.json", {
        "stage": "measure", "iteration": 3, "description": "LR 1e-3 -> 3e-3", "updated_at": now,
        "run_started_at": now - 30, "iteration_started_at": now - 31, "budget": 60, "primary": "loss",
        "direction": "minimize", "log_line": "epoch 5 loss 0.2", "curve": [{"epoch": 5, "val_loss": 0.2}],
        "best": {"iteration": 1, "value": 0.25, "description": "baseline"},
        "session": {"planned": 4, "done": 3, "queued": 1, "mean_seconds": 62.0}})
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    view = TerminalView(root, console, live=True)
    console.print(view.render())
    text = console.export_text()
    assert "#3 training 00:3" in text and "/ 01:00" in text and "━" in text  # the bar against the budget
    assert "curve: epoch 5  val_loss 0.2" in text and "log: epoch 5 loss 0.2" in text
    assert "best loss 0.25 (#1: baseline)" in text and "ETA" in text


def test_several_workers_each_publish_and_all_honour_a_stop_request(make_task):
    from autoresearch.workers import parse_slots, run_workers

    train = "import time\nX = 1.0\ntime.sleep(1.0)\nprint('---')\nprint(f'score: {X:.6f}')\n"
    task = make_task(train=train)
    root = task / ".autoresearch" / "w"
    lock, edits = threading.Lock(), x_is(*(float(v) for v in range(2, 40)))

    out = {}
    runner = threading.Thread(target=lambda: out.setdefault("records", run_workers(
        load_task(task), "w", lambda i: SharedScript(edits, lock), parse_slots(None, 2), Limits(iterations=30), say=lambda s: None)))
    runner.start()
    try:
        both = wait_for(lambda: len([s for s in read_states(root) if s.get("alive") and s.get("worker") is not None
                                     and s.get("stage") == "measure"]) == 2, 60)
        assert both, read_states(root)
        assert {s["worker"] for s in read_states(root) if s.get("worker") is not None} == {0, 1}
        request_stop(root)
    finally:
        runner.join(120)
    records = out["records"]
    assert 3 <= len(records) <= 6  # baseline, the runs in flight, perhaps one each started before the request
    assert all(s["stage"] == "finished" for s in read_states(root))
