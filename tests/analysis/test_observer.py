"""The refresh after every experiment: curve capture, meta-analysis, summary; and the CLI commands."""

import json
import os
import time
from types import SimpleNamespace

from typer.testing import CliRunner

from autoresearch.analysis.observer import analyze_record, backfill, capture_curve, refresh
from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

from conftest import tiny_config
from helpers import ScriptedAgent, x_is

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


def plain_task(tmp_path, metrics: str = ""):
    """A task folder without git (val_acc to maximise, not declared deterministic) and its run store, created."""
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "train.py").write_text("X = 1\n")
    (task_dir / "prepare.py").write_text("DATA = 'fixed'\n")
    (task_dir / "autoresearch.toml").write_text(tiny_config(primary="val_acc", deterministic=False, metrics=metrics))
    task = load_task(task_dir)
    store = RunStore(task.dir, "t")
    store.create()
    return task, store


def record_baseline(store, metrics: dict, **kw) -> Experiment:
    """The baseline with `metrics` in the ledger and its metrics.json, as the loop leaves them."""
    record = Experiment(0, "c0", "c0", Status.KEEP, "baseline", metrics=metrics, **kw)
    store.ledger.records  # load first: appending to an unread ledger would count the record twice
    store.ledger.append(record)
    (store.run_dir(0) / "metrics.json").write_text(json.dumps(metrics))
    return record


def test_refresh_analyses_the_run_and_rewrites_the_summary(tmp_path):
    task, store = plain_task(tmp_path)
    task_dir = task.dir
    record = record_baseline(store, {"val_acc": 0.5}, started_at=time.time() - 5)
    (task_dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "val_acc": 0.1 * e}) + "\n" for e in range(1, 6)))
    refresh(SimpleNamespace(task=task, store=store), record)
    assert (store.run_dir(0) / "metrics.jsonl").exists()
    meta = json.loads((store.run_dir(0) / "meta.json").read_text())
    assert meta["flags"] == ["still_improving"]
    summary = json.loads((task_dir / "analysis_summary.json").read_text())
    assert summary["meta"]["best"]["flags"] == ["still_improving"]
    assert any(h["kind"] == "meta" for h in summary["hints"])


def test_majority_rate_from_the_config_flags_a_constant_predictor(tmp_path):
    task, store = plain_task(tmp_path, metrics="majority_rate = 0.3484\n")
    record = record_baseline(store, {"val_acc": 34.84})  # in percent: still caught
    meta = analyze_record(task, store, record)
    assert "degenerate" in meta["flags"] and "majority-class rate 0.3484" in meta["warnings"][0]


def test_as_a_loop_observer(make_task):
    task_dir = make_task(train=TRAIN)
    agent = ScriptedAgent(*x_is(2.0, 0.5))
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
    assert "Frontier: #0 1 (baseline) -> #1 2 (X up, +1)" in agent.contexts[1].prompt
    assert "run #1: val loss rose from epoch" in agent.contexts[1].prompt


def test_cli_summarize_and_suggest(make_task):
    from autoresearch.cli import app

    task_dir = make_task(train=TRAIN)
    Loop(load_task(task_dir), "t", ScriptedAgent(*x_is(2.0)), say=lambda s: None).run(Limits(iterations=1))  # no observer
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
