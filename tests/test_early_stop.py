import json
import math
import threading
import time

import pytest
from dataclasses import replace

from autoresearch.early_stop import (
    ANALOGS,
    TRACE_NAME,
    CurveWatcher,
    Rules,
    Stop,
    best_until,
    judge,
    load_trace,
    optimistic_final,
    save_trace,
    trace_from_points,
)

# Shapes measured on the bundled example (5 s budget): val_acc against fraction of the budget.
GOOD = [(0.03, 0.19), (0.14, 0.40), (0.24, 0.47), (0.36, 0.50), (0.46, 0.51), (0.58, 0.53), (0.7, 0.53),
        (0.8, 0.54), (0.9, 0.54), (1.0, 0.543)]
SLOW = [(0.03, 0.11), (0.15, 0.22), (0.28, 0.20), (0.38, 0.20), (0.5, 0.21)]


def shifted(trace, delta):
    return [(t, v + delta) for t, v in trace]


EARLIER = [GOOD, shifted(GOOD, 0.01), shifted(GOOD, -0.01)]
# Optuna's median pruner after a quarter of the budget: the rule most tests below pin (the defaults are stricter).
MEDIAN = Rules(percentile=50, warmup=0.25)


def test_a_run_far_behind_the_median_at_equal_time_is_stopped_with_a_reason():
    stop = judge(SLOW, EARLIER, best_value=0.553, rules=MEDIAN, primary="val_acc", direction="maximize")
    assert isinstance(stop, Stop)
    assert stop.at == 0.5 and stop.value == 0.22 and stop.bar == pytest.approx(0.51)
    assert stop.reason == "stopped at 50% of the budget: val_acc 0.22 while earlier runs had 0.51 at that time"


def test_nothing_is_stopped_in_the_warm_up_or_without_enough_curves_or_when_disabled():
    early = SLOW[:2]  # 15% of the budget
    assert judge(early, EARLIER, 0.553, MEDIAN, "val_acc", "maximize") is None
    assert judge(SLOW, EARLIER[:2], 0.553, MEDIAN, "val_acc", "maximize") is None  # 2 < min_curves
    assert judge(SLOW, EARLIER[:2], 0.553, replace(MEDIAN, min_curves=2), "val_acc", "maximize") is not None
    assert judge(SLOW, EARLIER, 0.553, replace(MEDIAN, enabled=False), "val_acc", "maximize") is None
    assert judge(SLOW, EARLIER, 0.553, replace(MEDIAN, warmup=0.6), "val_acc", "maximize") is None
    assert judge([], EARLIER, 0.553, MEDIAN, "val_acc", "maximize") is None  # no curve: never stopped


def test_only_curves_that_reached_the_same_time_are_compared():
    short = [GOOD[:3]] * 5  # they ended at 24% of the budget: nothing known at 50%
    assert judge(SLOW, short, 0.553, MEDIAN, "val_acc", "maximize") is None


def test_a_run_ahead_of_the_median_or_level_with_it_continues():
    assert judge(GOOD[:5], EARLIER, 0.553, MEDIAN, "val_acc", "maximize") is None
    flat_behind = [(0.1, 0.49), (0.25, 0.50), (0.46, 0.505)]  # a little behind the median, and flat
    assert judge(flat_behind, EARLIER, 0.553, MEDIAN, "val_acc", "maximize") is not None
    # percentile 90: stopped only when worse than 90% of earlier runs; ahead of the lowest, it survives
    assert judge(flat_behind, EARLIER, 0.553, replace(MEDIAN, percentile=90), "val_acc", "maximize") is None


def test_a_run_whose_extrapolated_curve_could_still_beat_the_best_is_never_stopped():
    # Behind the median, but climbing fast: at its own rate it ends above the best.
    climbing = [(0.1, 0.1), (0.25, 0.3), (0.5, 0.49)]
    assert optimistic_final(climbing, EARLIER, "maximize") > 0.553
    assert judge(climbing, EARLIER, 0.553, MEDIAN, "val_acc", "maximize") is None
    # An earlier run that gained a lot late makes the same point by analogy.
    late_bloomer = [(0.25, 0.1), (0.5, 0.2), (1.0, 0.9)]
    assert judge(SLOW, [*EARLIER, late_bloomer], 0.553, MEDIAN, "val_acc", "maximize") is None


def test_a_saturating_curve_behind_the_others_is_stopped_before_it_flattens():
    # Its start is steep, as every curve's is: carried on as a straight line it would end far
    # above the best (0.36 + 0.11 / 0.15 * 0.7 = 0.87), yet the earlier curves, at this time,
    # gained about as much again as over the last stretch, which takes it to ~0.47 < 0.553.
    saturating = [(0.1, 0.25), (0.2, 0.33), (0.3, 0.36)]
    assert optimistic_final(saturating, EARLIER, "maximize") == pytest.approx(0.36 + 0.11 * 0.073 / 0.07, abs=0.01)
    stop = judge(saturating, EARLIER, 0.553, MEDIAN, "val_acc", "maximize")
    assert stop is not None and stop.at == 0.3
    # The same pace on top of a best that this pace could reach: it trains on.
    assert judge(saturating, EARLIER, 0.47, MEDIAN, "val_acc", "maximize") is None


def test_an_earlier_curve_that_was_flat_and_then_gained_credits_a_climbing_run_up_to_its_straight_line():
    flat_then_late = [(0.15, 0.3), (0.3, 0.3), (1.0, 0.45)]  # its late gain alone: 0.36 + 0.15 < 0.553
    saturating = [(0.1, 0.25), (0.2, 0.33), (0.3, 0.36)]
    # Its pace, 0.11 over the last 0.15 of the budget, carried on to the end: 0.36 + 0.11 * 0.7 / 0.15.
    bound = optimistic_final(saturating, [*EARLIER, flat_then_late], "maximize")
    assert bound == pytest.approx(0.36 + 0.11 * 0.7 / 0.15)
    assert judge(saturating, [*EARLIER, flat_then_late], 0.553, MEDIAN, "val_acc", "maximize") is None


def test_a_run_that_barely_climbs_is_stopped_even_beside_a_curve_that_was_flat_and_then_gained():
    # The flat stretch made the ratio of later gain to gain over it a division by ~0: the bound
    # was 10^4 and more, and a run this far behind trained its whole budget (seen on the example).
    flat_then_late = [(0.25, 0.3), (0.5, 0.3), (1.0, 0.45)]
    crawling = [(0.1, 0.28), (0.25, 0.30), (0.5, 0.31)]  # +0.01 over the last quarter of the budget
    bound = optimistic_final(crawling, [*EARLIER, flat_then_late], "maximize")
    assert bound == pytest.approx(0.31 + 0.15)  # the largest late gain of an earlier run wins
    stop = judge(crawling, [*EARLIER, flat_then_late], 0.553, MEDIAN, "val_acc", "maximize")
    assert stop is not None and stop.at == 0.5


def test_minimize_is_the_mirror_image():
    loss = lambda tr: [(t, 2 - v) for t, v in tr]  # noqa: E731
    stop = judge(loss(SLOW), [loss(t) for t in EARLIER], 2 - 0.553, MEDIAN, "val_loss", "minimize")
    assert stop is not None and stop.value == pytest.approx(1.78) and stop.bar == pytest.approx(1.49)
    assert judge(loss(GOOD[:5]), [loss(t) for t in EARLIER], 2 - 0.553, MEDIAN, "val_loss", "minimize") is None


def test_traces_use_the_curves_own_clock_else_when_the_watcher_saw_each_point():
    points = [{"epoch": 1, "val_acc": 0.5, "seconds": 1.0}, {"epoch": 2, "val_acc": 0.6, "seconds": 2.5}]
    assert trace_from_points(points, "val_acc", 5) == [(0.2, 0.5), (0.5, 0.6)]
    bare = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": float("nan")}, {"epoch": 3, "val_acc": 0.7}]
    assert trace_from_points(bare, "val_acc", 10, seen_at=[2.0, 4.0, 6.0]) == [(0.2, 0.5), (0.6, 0.7)]
    assert trace_from_points(bare, "val_acc", 10) == []  # no clock at all: nothing to compare at equal time
    assert best_until([(0.1, 0.5), (0.2, 0.4)], 0.15, "maximize") == 0.5
    assert best_until([(0.1, 0.5)], 0.05, "maximize") is None


def test_a_saved_trace_round_trips_and_a_torn_one_falls_back_to_the_curve(tmp_path):
    save_trace(tmp_path, SLOW, "val_acc", 5.0, None)
    assert load_trace(tmp_path, "val_acc", 5.0) == SLOW
    assert load_trace(tmp_path, "val_acc", 10.0) == []  # another budget: another clock
    (tmp_path / TRACE_NAME).write_text("{torn")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"val_acc": 0.4, "seconds": 2.5}) + "\n")
    assert load_trace(tmp_path, "val_acc", 5.0) == [(0.5, 0.4)]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_watcher_reads_log_lines_as_they_arrive_and_ignores_a_torn_last_line(tmp_path):
    log = tmp_path / "log.txt"
    clock = FakeClock()
    w = CurveWatcher(MEDIAN, "val_acc", "maximize", 10, EARLIER, 0.553,
                     [tmp_path / "metrics.jsonl", log], clock=clock)
    log.write_text("epoch 1 | loss 2.3 | val_acc 0.11\n")
    clock.now = 1.5
    assert w.look() is None and w.trace == [(0.15, 0.11)]
    log.write_text("epoch 1 | loss 2.3 | val_acc 0.11\nepoch 2 | loss 2.2 | val_acc 0.2\nepoch 3 | val_a")
    clock.now = 5.0
    stop = w.look()
    assert w.trace == [(0.15, 0.11), (0.5, 0.2)]  # the torn line is read on the next look
    assert stop is not None and stop.at == 0.5


def test_a_curve_file_older_than_the_run_is_not_its_curve(tmp_path):
    import os
    stale = tmp_path / "metrics.jsonl"
    stale.write_text(json.dumps({"val_acc": 0.1, "seconds": 5.0}) + "\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    w = CurveWatcher(MEDIAN, "val_acc", "maximize", 10, EARLIER, 0.553, [stale])
    assert w.look() is None and w.trace == []


def test_a_curve_file_the_run_has_not_touched_is_not_its_curve_however_fresh(tmp_path):
    from autoresearch.store import file_stamp

    # The run before was stopped a moment ago: its curve is still there, younger than any slack.
    left = tmp_path / "metrics.jsonl"
    left.write_text(json.dumps({"val_acc": 0.1, "seconds": 5.0}) + "\n")
    w = CurveWatcher(MEDIAN, "val_acc", "maximize", 10, EARLIER, 0.553, [left], before={left: file_stamp(left)})
    assert w.look() is None and w.trace == []
    left.write_text(json.dumps({"val_acc": 0.2, "seconds": 1.25}) + "\n")  # this run's first line
    assert w.look() is None and w.trace == [(0.125, 0.2)]


def test_watching_sets_the_run_stop_when_judged_and_passes_an_outer_stop_through(tmp_path):
    curve = tmp_path / "metrics.jsonl"
    curve.write_text("".join(json.dumps({"val_acc": v, "seconds": t * 10}) + "\n" for t, v in SLOW))
    w = CurveWatcher(replace(MEDIAN, interval=0.05), "val_acc", "maximize", 10, EARLIER, 0.553, [curve])
    with w.watching(threading.Event()) as run_stop:
        assert run_stop.wait(5)
    assert w.decision is not None and w.decision.at == 0.5

    outer = threading.Event()
    quiet = CurveWatcher(replace(MEDIAN, interval=0.05), "val_acc", "maximize", 10, EARLIER, 0.553, [tmp_path / "none"])
    with quiet.watching(outer) as run_stop:
        assert not run_stop.wait(0.3)
        outer.set()
        assert run_stop.wait(2)
    assert quiet.decision is None


def test_disabled_watching_hands_back_the_outer_event_untouched(tmp_path):
    outer = threading.Event()
    w = CurveWatcher(replace(MEDIAN, enabled=False), "val_acc", "maximize", 10, EARLIER, 0.553, [tmp_path / "x"])
    with w.watching(outer) as run_stop:
        assert run_stop is outer


def test_the_reason_is_a_verdict_that_round_trips():
    from autoresearch.verdict import Reason, Status, Verdict

    text = judge(SLOW, EARLIER, 0.553, MEDIAN, "val_acc", "maximize").reason
    v = Verdict.parse(Status.DISCARD, text)
    assert v.reason is Reason.STOPPED_EARLY and v.stopped_early and v.render() == text
    assert not Verdict.parse(Status.DISCARD, "val_acc worse").stopped_early


def test_the_late_gains_that_forecast_a_run_are_those_of_curves_near_it_that_trained_to_the_end():
    # ANALOGS curves at the run's level that gained little later, one far above that gained a lot.
    low = [[(0.25, 0.30 + d), (0.5, 0.31 + d), (1.0, 0.33 + d)] for d in (-0.01, -0.005, 0.0, 0.005, 0.01)]
    assert len(low) == ANALOGS
    high = [(0.25, 0.50), (0.5, 0.55), (1.0, 0.80)]
    run = [(0.25, 0.30), (0.5, 0.31)]
    bound = optimistic_final(run, [*low, high], "maximize")
    assert bound == pytest.approx(0.31 + 0.02)  # the near curves' late gain (and its own pace, 0.01 x 2), not 0.25
    stop = judge(run, [*low, high], 0.6, MEDIAN, "val_acc", "maximize")
    assert stop is not None and stop.at == 0.5
    # A curve stopped early (it ends at 60% of the budget) is no analog: its gain was cut short.
    cut = [(0.25, 0.30), (0.5, 0.31), (0.6, 0.311)]
    assert optimistic_final(run, [cut, cut, cut, high], "maximize") == pytest.approx(0.31 + 0.25)


def test_the_pace_of_a_curve_far_below_credits_no_run_at_the_top():
    # Seen on the example: the baselines (val_acc 0.6) were still climbing where the tuned runs
    # (0.9 and more) had flattened, and their later-to-recent ratio, applied to every run's own
    # pace, forecast 1.2 to 2.8; runs that ended below what a keep needed trained to the end.
    near = [[(0.1, 0.85 + d), (0.2, 0.90 + d), (1.0, 0.93 + d)] for d in (-0.02, -0.01, 0.0, 0.01, 0.02)]
    baseline = [(0.1, 0.55), (0.2, 0.551), (1.0, 0.60)]  # flat over the stretch, then +0.05: ratio 50
    run = [(0.1, 0.85), (0.2, 0.90)]
    bound = optimistic_final(run, [*near, baseline], "maximize")
    # its pace (+0.05) scaled as its analogs went on (their later gain 0.03 over their recent 0.05), not 50 times
    assert bound == pytest.approx(0.90 + 0.05 * 0.03 / 0.05)
    assert judge(run, [*near, baseline], 0.95, MEDIAN, "val_acc", "maximize") is None  # in the warm-up
    assert judge(run, [*near, baseline], 0.95, replace(MEDIAN, warmup=0.2, percentile=10), "val_acc",
                 "maximize") is not None


def test_the_watcher_compares_with_the_best_an_adopted_config_rejudged(make_task, tmp_path):
    from autoresearch.config import load_task
    from autoresearch.early_stop import watcher_for
    from autoresearch.store import RunStore

    from helpers import adopted_ledger

    task = load_task(make_task())
    store = RunStore(task.dir, "t1")
    store = RunStore(task.dir, "t1", ledger=adopted_ledger(store.ledger.path))
    history = list(store.ledger.records)  # what the loop hands it: a copy of the ledger's records
    watcher = watcher_for(task, store, history, tmp_path / "run", may_stop=True)
    assert watcher.best_value == 0.5  # iteration 3, not the last keep's 3.0 judged under the old direction


def _experiment(n, commit, status, reason, score):
    from autoresearch.records import Experiment, Status

    return Experiment(n, commit, "p", Status(status), "d", metrics={"val_acc": score}, reason=reason)


class _Store:
    ledger = None  # no ledger of its own: the best is the history's last keep

    def __init__(self, root):
        self.root = root

    def run_dir(self, iteration):
        return self.root / f"{iteration:04d}"


@pytest.mark.parametrize("confirm, bar", [(False, 0.90 + math.sqrt(2) * 0.02), (True, 0.90)])
def test_a_run_is_judged_against_what_a_keep_must_reach_the_best_plus_the_noise_floor(tmp_path, confirm, bar):
    from autoresearch.config import load_task
    from autoresearch.early_stop import watcher_for

    from conftest import tiny_config

    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "prepare.py").write_text("")
    metrics = f"noise_runs = 2\nconfirm = {'true' if confirm else 'false'}\n"
    (tmp_path / "autoresearch.toml").write_text(tiny_config(primary="val_acc", metrics=metrics))
    task = load_task(tmp_path)
    history = [_experiment(0, "base", "keep", "baseline", 0.90),
               _experiment(1, "base", "discard", "noise: baseline repeat 1", 0.88)]  # floor sqrt(2) x 0.02
    watcher = watcher_for(task, _Store(tmp_path / "runs"), history, tmp_path / "runs" / "0002", may_stop=True)
    # The value a run's optimistic final is held to: without confirm, a run that can end at most
    # inside the floor over the best can never be kept; with confirm, one just above the best is
    # confirmed (and may be kept), so the best alone is the bar.
    assert watcher.best_value == pytest.approx(bar)


def test_the_rules_without_a_section_are_the_sections_defaults():
    from autoresearch.config import EarlyStopSection

    assert Rules() == Rules.from_config(None) == Rules.from_config(EarlyStopSection())
