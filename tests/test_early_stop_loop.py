"""Early stopping in the loop: real processes writing their curve as they train."""

import json
import re

from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status

from helpers import ScriptedAgent, set_x

# The curve climbs to X / 10 over the budget; a log line every 0.2 s of "training".
TRAIN = '''\
X = 9.0  # search: float(0.0, 10.0)
import os, time
budget = float(os.environ["AUTORESEARCH_TIME_BUDGET"])
start = time.monotonic()
while (t := time.monotonic() - start) < budget:
    time.sleep(0.2)
    print(f"epoch {int(t / 0.2)} | val {X / 10 * min(1.0, 0.6 + t / budget):.4f} | seconds {t:.2f}", flush=True)
print("---")
print(f"score: {X / 10:.6f}")
'''

CONFIG = """\
[task]
run = "python train.py"
editable = ["train.py"]
readonly = ["prepare.py"]
time_budget = 4
timeout = 30

[metrics]
primary = "val"
direction = "maximize"
noise_runs = 1

[early_stop]
min_curves = 2
warmup = 0.25
interval = 0.2
"""


def test_a_run_behind_every_earlier_curve_is_stopped_and_recorded_as_a_discard(make_task):
    task = make_task(TRAIN, CONFIG.replace('primary = "val"', 'primary = "score"'))
    # The footer's primary is `score`; the curve's lines carry `val`, not the primary: never stopped.
    agent = ScriptedAgent(set_x(8.9), set_x(1.0))
    records = Loop(load_task(task), "t", agent, say=lambda s: None).run(Limits(iterations=2))
    assert [r.stopped_at for r in records] == [None, None, None]


def test_early_stop_end_to_end(make_task):
    task = make_task(TRAIN.replace('print(f"score: {X / 10:.6f}")', 'print(f"val: {X / 10:.6f}")'), CONFIG)
    agent = ScriptedAgent(set_x(8.9), set_x(1.0), set_x(9.5))
    loop = Loop(load_task(task), "t", agent, say=lambda s: None)
    records = loop.run(Limits(iterations=3))
    base, close, bad, better = records
    assert base.stopped_at is None and close.stopped_at is None  # fewer than 2 earlier curves for #1
    assert bad.status is Status.DISCARD and bad.stopped_at is not None and bad.stopped_at < 0.9
    assert bad.reason.startswith(f"stopped at {bad.stopped_at:.0%} of the budget: val 0.0")
    assert re.search(r"while earlier runs had 0\.[6-9]\d* at that time$", bad.reason)
    assert 0.0 < bad.metrics["val"] < 0.1  # the partial metric, from the curve
    assert bad.wall_seconds < 3.5  # it did not train its whole 4 s
    trace = json.loads((loop.store.run_dir(2) / "early_stop.json").read_text())
    assert trace["stopped"]["reason"] == bad.reason and trace["trace"]
    # Never the baseline; a run ahead of the curves trains to the end and is kept.
    assert better.status is Status.KEEP and better.stopped_at is None
    row = [line.split("\t") for line in (task / "results.tsv").read_text().splitlines()][3]
    assert row[3] == "discard" and row[1] == f"{bad.metrics['val']:.6f}"


def test_early_stop_off_in_the_config_trains_every_run_to_the_end(make_task):
    config = CONFIG + "enabled = false\n"
    task = make_task(TRAIN.replace('print(f"score: {X / 10:.6f}")', 'print(f"val: {X / 10:.6f}")'), config)
    agent = ScriptedAgent(set_x(8.9), set_x(1.0))
    loop = Loop(load_task(task), "t", agent, say=lambda s: None)
    records = loop.run(Limits(iterations=2))
    assert [r.stopped_at for r in records] == [None, None, None]
    assert records[-1].metrics["val"] == 0.1 and not (loop.store.run_dir(2) / "early_stop.json").exists()
