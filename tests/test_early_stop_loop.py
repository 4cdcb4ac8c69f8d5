"""Early stopping in the loop: real processes writing their curve as they train."""

import json
import os
import re
import time

from autoresearch.records import Status

from conftest import tiny_config
from helpers import ScriptedAgent, run, set_x, tsv

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
# The same, its footer's primary the curve's `val`.
TRAIN_VAL = TRAIN.replace('print(f"score: {X / 10:.6f}")', 'print(f"val: {X / 10:.6f}")')

CONFIG = tiny_config(time_budget=4, timeout=30, primary="val", metrics="noise_runs = 1\n") + """
[early_stop]
min_curves = 2
warmup = 0.25
interval = 0.2
"""


def test_a_run_behind_every_earlier_curve_is_stopped_and_recorded_as_a_discard(make_task):
    task = make_task(TRAIN, CONFIG.replace('primary = "val"', 'primary = "score"'))
    # The footer's primary is `score`; the curve's lines carry `val`, not the primary: never stopped.
    _, records = run(task, ScriptedAgent(set_x(8.9), set_x(1.0)), 2, tag="t")
    assert [r.stopped_at for r in records] == [None, None, None]


def test_early_stop_end_to_end(make_task):
    task = make_task(TRAIN_VAL, CONFIG)
    loop, records = run(task, ScriptedAgent(set_x(8.9), set_x(1.0), set_x(9.5)), 3, tag="t")
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
    row = tsv(task)[3]
    assert row[3] == "discard" and row[1] == f"{bad.metrics['val']:.6f}"
    # The terminal's line says it was stopped, and why; a run that trained to its end does not.
    from autoresearch.loop.record import line

    assert line(loop, bad).endswith(f"discard {bad.description}  ({bad.reason})")
    assert "stopped at" not in line(loop, better) and "stopped at" not in line(loop, close)


def test_early_stop_off_in_the_config_trains_every_run_to_the_end(make_task):
    config = CONFIG + "enabled = false\n"
    task = make_task(TRAIN_VAL, config)
    loop, records = run(task, ScriptedAgent(set_x(8.9), set_x(1.0)), 2, tag="t")
    assert [r.stopped_at for r in records] == [None, None, None]
    assert records[-1].metrics["val"] == 0.1 and not (loop.store.run_dir(2) / "early_stop.json").exists()


# As the example: metrics.jsonl in the task directory, rewritten by each run only once its
# imports are done (here after 1 s), with the run's own training clock.
TRAIN_JSONL = '''\
X = 9.0  # search: float(0.0, 10.0)
import json, os, time
budget = float(os.environ["AUTORESEARCH_TIME_BUDGET"])
time.sleep(1.0)
log = open("metrics.jsonl", "w")
start = time.monotonic()
while (t := time.monotonic() - start) < budget:
    time.sleep(0.2)
    log.write(json.dumps({"val": X / 10 * min(1.0, 0.6 + t / budget), "seconds": round(t, 2)}) + "\\n")
    log.flush()
print("---")
print(f"val: {X / 10:.6f}")
'''


def test_the_curve_a_stopped_run_left_does_not_stop_the_next_run(make_task):
    """A stopped run's metrics.jsonl is still in the task directory when the next run starts,
    a moment later (well inside the file-time slack): it is not the next run's curve."""
    task = make_task(TRAIN_JSONL, CONFIG, extra={".gitignore": "metrics.jsonl\n"})

    def better_at_once(d):
        described = set_x(9.5)(d)
        # As if the stopped run had written it as this run starts, however long the commit takes
        # on a loaded machine (a run stopped early is followed at once by the next).
        soon = time.time() + 3
        os.utime(d / "metrics.jsonl", (soon, soon))
        return described

    loop, (base, close, bad, better) = run(task, ScriptedAgent(set_x(8.9), set_x(1.0), better_at_once), 3, tag="t")
    assert bad.stopped_at is not None and bad.status is Status.DISCARD
    # Judged on its own curve, the better run trains its whole budget and is kept.
    assert better.stopped_at is None and better.status is Status.KEEP
    assert better.metrics["val"] == 0.95 and better.wall_seconds > 4
    trace = json.loads((loop.store.run_dir(3) / "early_stop.json").read_text())
    assert trace["stopped"] is None and trace["trace"][-1][1] > 0.9  # its own curve, not the stopped one's
    assert json.loads((loop.store.run_dir(3) / "metrics.jsonl").read_text().splitlines()[-1])["val"] > 0.9
