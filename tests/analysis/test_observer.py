"""The refresh after every experiment: curve capture, meta-analysis, summary; and the CLI commands."""

import html
import json
import os
import re
import threading
import tomllib
import time
from types import SimpleNamespace

from typer.testing import CliRunner

from autoresearch.analysis import observer
from autoresearch.analysis.observer import BackgroundRefresh, analyze_record, backfill, capture_curve, refresh
from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Experiment, Proposal, Status
from autoresearch.store import RunStore

TRAIN = '''\
import json
X = 1.0  # search: float(0.0, 10.0)
with open("metrics.jsonl", "w") as f:
    for e in range(1, 8):
        f.write(json.dumps({"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e + 0.01 * e * e, "val_acc": X / 10}) + "\\n")
print("---")
print(f"score: {X:.6f}")
'''


def test_capture_curve_takes_only_a_curve_written_by_this_run(tmp_path):
    task_dir, run_dir = tmp_path / "task", tmp_path / "run"
    task_dir.mkdir()
    run_dir.mkdir()
    (task_dir / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 0.5}\n')
    old = time.time() - 3600
    os.utime(task_dir / "metrics.jsonl", (old, old))
    assert not capture_curve(task_dir, run_dir, started_at=time.time() - 10)  # left by an earlier run
    assert capture_curve(task_dir, run_dir, started_at=old - 10)
    assert (run_dir / "metrics.jsonl").read_text() == '{"epoch": 1, "val_acc": 0.5}\n'
    assert not capture_curve(task_dir, run_dir, started_at=old - 10)  # already there: kept as it is


def test_capture_curve_skips_a_curve_the_run_left_untouched_however_fresh(tmp_path):
    from autoresearch.store import file_stamp

    task_dir, run_dir = tmp_path / "task", tmp_path / "run"
    task_dir.mkdir()
    run_dir.mkdir()
    curve = task_dir / "metrics.jsonl"
    curve.write_text('{"epoch": 1, "val_acc": 0.5}\n')  # the run before's, written a moment ago
    before = file_stamp(curve)
    assert not capture_curve(task_dir, run_dir, started_at=time.time(), before=before)
    curve.write_text('{"epoch": 1, "val_acc": 0.65}\n')  # this run's own
    assert capture_curve(task_dir, run_dir, started_at=time.time() - 1, before=before)
    assert (run_dir / "metrics.jsonl").read_text() == '{"epoch": 1, "val_acc": 0.65}\n'


CURVE = "".join(json.dumps({"epoch": e, "val_acc": 0.1 * e}) + "\n" for e in range(1, 6))  # still improving


def one_run(tmp_path):
    """A task whose store holds one recorded baseline, its curve (CURVE) left in the task folder."""
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "train.py").write_text("X = 1\n")
    (task_dir / "autoresearch.toml").write_text(
        '[task]\nrun = "python train.py"\neditable = ["train.py"]\ntime_budget = 5\n'
        '[metrics]\nprimary = "val_acc"\ndirection = "maximize"\n')
    task = load_task(task_dir)
    store = RunStore(task.dir, "t")
    store.create()
    started = time.time() - 5
    record = Experiment(0, "c0", "c0", Status.KEEP, "baseline", metrics={"val_acc": 0.5}, started_at=started)
    store.ledger.records  # load first: appending to an unread ledger would count the record twice
    store.ledger.append(record)
    (store.run_dir(0) / "metrics.json").write_text(json.dumps({"val_acc": 0.5}))
    (task_dir / "metrics.jsonl").write_text(CURVE)
    return task_dir, task, store, record


def test_refresh_analyses_the_run_and_rewrites_the_summary(tmp_path):
    task_dir, task, store, record = one_run(tmp_path)
    refresh(SimpleNamespace(task=task, store=store), record)
    assert (store.run_dir(0) / "metrics.jsonl").exists()
    meta = json.loads((store.run_dir(0) / "meta.json").read_text())
    assert meta["flags"] == ["still_improving"]
    summary = json.loads((task_dir / "analysis_summary.json").read_text())
    assert summary["meta"]["best"]["flags"] == ["still_improving"]
    assert any(h["kind"] == "meta" for h in summary["hints"])


def test_majority_rate_from_the_config_flags_a_constant_predictor(tmp_path):
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "train.py").write_text("X = 1\n")
    (task_dir / "autoresearch.toml").write_text(
        '[task]\nrun = "python train.py"\neditable = ["train.py"]\ntime_budget = 5\n'
        '[metrics]\nprimary = "val_acc"\ndirection = "maximize"\nmajority_rate = 0.3484\n')
    task = load_task(task_dir)
    store = RunStore(task.dir, "t")
    store.create()
    record = Experiment(0, "c0", "c0", Status.KEEP, "baseline", metrics={"val_acc": 34.84})
    store.ledger.records  # load first: appending to an unread ledger would count the record twice
    store.ledger.append(record)
    (store.run_dir(0) / "metrics.json").write_text(json.dumps({"val_acc": 34.84}))  # in percent: still caught
    meta = analyze_record(task, store, record)
    assert "degenerate" in meta["flags"] and "majority-class rate 0.3484" in meta["warnings"][0]


class SetX:
    name = "scripted"

    def __init__(self, *values):
        self.values = list(values)
        self.prompts = []

    def propose(self, context):
        self.prompts.append(context.prompt)
        value = self.values.pop(0)
        p = context.task_dir / "train.py"
        p.write_text(re.sub(r"(?m)^X = [0-9.]+", f"X = {value}", p.read_text()))
        return Proposal(f"X -> {value}", "Because.")


def test_as_a_loop_observer(make_task):
    task_dir = make_task(train=TRAIN)
    agent = SetX(2.0, 0.5)
    loop = Loop(load_task(task_dir), "t", agent, say=lambda s: None, observers=[refresh])
    loop.run(Limits(iterations=2))
    summary = json.loads((task_dir / "analysis_summary.json").read_text())
    assert [f["iteration"] for f in summary["frontier"]] == [0, 1]
    assert summary["frontier"][1]["changes"] == ["X up"]
    assert summary["recent"][2]["changes"] == ["X down"]  # from the diff: the description has no direction
    assert summary["axes"][0]["axis"] == "X" and summary["axes"][0]["tried"] == 2
    for n in range(3):
        run = loop.store.root / "runs" / f"{n:04d}"
        assert (run / "meta.json").exists() and (run / "axes.json").exists()
        assert "meta_analysis" in json.loads((run / "metrics.json").read_text())
    assert "overfitting" in summary["meta"]["latest"]["flags"]
    # The next agent reads it all: the summary's frontier and the last run's meta-analysis.
    assert "Frontier: #0 1 (baseline) -> #1 2 (X up, +1)" in agent.prompts[1]
    assert "run #1: val loss rose from epoch" in agent.prompts[1]


def slow_summaries(monkeypatch, seconds: float = 0.4) -> list[int]:
    """Every summary the background refresh writes takes `seconds` longer; returns the counts written."""
    written, real = [], observer.write_summary

    def slow(task, store, summary=None):
        time.sleep(seconds)
        written.append(summary["counts"]["experiments"])
        return real(task, store, summary)

    monkeypatch.setattr(observer, "write_summary", slow)
    return written


def test_in_the_background_every_prompt_still_reads_the_analysis_of_every_experiment_before_it(make_task, monkeypatch):
    written = slow_summaries(monkeypatch)
    task_dir = make_task(train=TRAIN)
    agent = SetX(2.0, 0.5)
    refresh_in_background = BackgroundRefresh()
    loop = Loop(load_task(task_dir), "t", agent, say=lambda s: None, observers=[refresh_in_background])
    loop.run(Limits(iterations=2))
    # The loop waited before each prompt: the same text the blocking refresh gives.
    assert "Frontier: #0 1 (baseline) -> #1 2 (X up, +1)" in agent.prompts[1]
    assert "run #1: val loss rose from epoch" in agent.prompts[1]
    # And at its end: the last run's analysis was written before run() returned.
    assert written == [1, 2, 3]
    summary = json.loads((task_dir / "analysis_summary.json").read_text())
    assert summary["counts"]["experiments"] == 3 and summary["recent"][2]["changes"] == ["X down"]
    assert all((loop.store.run_dir(n) / "meta.json").exists() for n in range(3))
    assert not any(t.name == "autoresearch-analysis" for t in threading.enumerate())


def test_the_report_after_a_night_is_complete_and_names_every_experiment(make_task, monkeypatch):
    from autoresearch.api import run_loop

    real = observer.analyze_record

    def slow_last(task, store, record, *a, **k):  # still at work long after the last run is recorded
        time.sleep(3.0 if record.iteration == 3 else 0.0)
        return real(task, store, record, *a, **k)

    monkeypatch.setattr(observer, "analyze_record", slow_last)
    task_dir = make_task(train=TRAIN)
    records = run_loop(task_dir, "t1", iterations=3, agent="tuner", say=lambda s: None)
    assert len(records) == 4
    summary = json.loads((task_dir / "analysis_summary.json").read_text())
    assert summary["counts"]["experiments"] == 4
    report = (task_dir / "report.html").read_text()
    for r in records:
        assert f'id="exp-{r.iteration}"' in report and html.escape(r.description, quote=False) in report
    assert report.count("<summary>meta-analysis</summary>") == 4  # the last run's analysis too


def test_the_curve_is_taken_at_hand_over_and_a_refresh_in_flight_is_waited_for(tmp_path, monkeypatch):
    task_dir, task, store, record = one_run(tmp_path)
    go = threading.Event()
    real = observer.analyze_record
    monkeypatch.setattr(observer, "analyze_record", lambda *a, **k: go.wait(10) and real(*a, **k))
    said: list[str] = []
    refresh_in_background = BackgroundRefresh()
    refresh_in_background(SimpleNamespace(task=task, store=store, say=said.append), record)
    (task_dir / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 0.9}\n')  # the next run's, meanwhile
    assert not refresh_in_background.drain(timeout=0.2)  # still at work
    go.set()
    assert refresh_in_background.drain(timeout=10)
    assert (store.run_dir(0) / "metrics.jsonl").read_text() == CURVE
    assert json.loads((store.run_dir(0) / "meta.json").read_text())["flags"] == ["still_improving"]
    assert json.loads((task_dir / "analysis_summary.json").read_text())["counts"]["experiments"] == 1
    assert said == []


def test_a_failing_background_refresh_warns_and_is_still_drained(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(observer, "analyze_record", broken)
    said: list[str] = []
    refresh_in_background = BackgroundRefresh()
    record = Experiment(3, "c", "c", Status.DISCARD, "x", metrics={})
    store = SimpleNamespace(run_path=lambda n: tmp_path / "none", ledger=SimpleNamespace(records=[record]))
    refresh_in_background(SimpleNamespace(task=SimpleNamespace(dir=tmp_path), store=store, say=said.append), record)
    assert refresh_in_background.drain(timeout=10)
    assert said == ["warning: analysis refresh of #3 failed: OSError: disk full"]


def test_cli_summarize_and_suggest(make_task):
    from autoresearch.cli import app

    task_dir = make_task(train=TRAIN)
    Loop(load_task(task_dir), "t", SetX(2.0), say=lambda s: None).run(Limits(iterations=1))  # no observer
    runner = CliRunner()
    result = runner.invoke(app, ["summarize", str(task_dir)])
    assert result.exit_code == 0, result.output
    assert "Frontier: #0 1 (baseline) -> #1 2 (X up, +1)" in result.output
    assert (task_dir / "analysis_summary.md").exists()
    store = RunStore(task_dir, "t")
    assert (store.root / "runs" / "0001" / "meta.json").exists()  # analysed after the fact
    assert backfill(load_task(task_dir), store) == 0  # and only once
    result = runner.invoke(app, ["suggest", str(task_dir), "--tag", "t", "--max", "2"])
    assert result.exit_code == 0, result.output
    written = sorted((task_dir / "config" / "auto").glob("auto_*"))
    assert [p.name for p in written] == ["auto_001_continue_x_up.patch"]  # X is the only knob, and it gained
    assert "-X = 2.0" in written[0].read_text() and "+X = 4.0" in written[0].read_text()
