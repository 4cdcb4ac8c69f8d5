"""The noise floor as a value: the spread of runs of the same code, where it comes from, how it reads."""

import math

import pytest

from autoresearch import integrity, noise
from autoresearch.config import MetricsSection
from autoresearch.records import Experiment, Status


def test_two_baselines_make_a_floor_of_sqrt2_times_their_difference():
    f = noise.Floor.of([[0.583, 0.573]])
    assert f.measured.std == pytest.approx(0.01 / math.sqrt(2))
    assert f.value == pytest.approx(math.sqrt(2) * 0.01) and f.known
    assert f.source() == "2 x the spread (std 0.007071) of 2 runs of the same code"
    assert f.shown() == "noise floor 0.014142"


def test_min_delta_wins_when_larger_and_the_reason_says_so():
    f = noise.Floor.of([[1.0, 1.001]], min_delta=0.05)
    assert f.value == 0.05 and f.source() == "[metrics] min_delta (twice the measured spread, 0.001414, is no larger)"


def test_one_run_is_unknown_unless_declared_deterministic():
    unknown = noise.Floor.of([[1.0]])
    assert not unknown.known and unknown.value == 0.0 and unknown.shown() == "noise floor unknown"
    assert "noise_runs = 1" in unknown.source()
    declared = noise.Floor.of([[1.0]], min_delta=0.001, deterministic=True)
    assert declared.known and declared.value == 0.001
    assert declared.shown() == "noise floor 0.001000 (deterministic)"


def _e(n, commit, status, reason, score):
    return Experiment(n, commit, "p", Status(status), "d", metrics={"score": score}, reason=reason)


def test_groups_are_runs_of_the_same_commit_confirmations_included():
    history = [
        _e(0, "base", "keep", "baseline", 1.0),
        _e(1, "base", "discard", "noise: baseline repeat 1", 1.01),
        _e(2, "c2", "keep", "score improved; confirmed by iteration 3", 1.05),
        _e(3, "c2", "discard", "confirmation run of iteration 2", 1.03),
        _e(4, "c4", "discard", "score worse", 0.9),  # an ordinary run: no second run of its code
        _e(5, "c5", "crash", "confirmation run of iteration 4: the run failed", 0.0),  # crashed: no number
    ]
    assert sorted(integrity.noise_groups(history, "score")) == [[1.0, 1.01], [1.05, 1.03]]
    metrics = MetricsSection(primary="score", direction="maximize")
    floor = integrity.decision_floor(history, metrics)
    assert floor.measured.groups == 2 and floor.measured.runs == 4  # pooled: sqrt((0.005² x 2 + 0.01² x 2) / 2)
    assert floor.source() == "2 x the spread (std 0.011180) of 4 runs of 2 commits"


def test_a_repeat_made_on_resume_groups_with_the_keep_whose_code_it_ran():
    history = [
        _e(0, "base", "keep", "baseline", 1.0),
        _e(1, "k1", "keep", "score improved", 1.2),
        _e(2, "k1", "discard", "noise: baseline repeat 1", 1.18),  # the best of that moment, not the baseline
    ]
    assert integrity.noise_groups(history, "score") == [[1.0], [1.2, 1.18]]
    assert integrity.noise_floor(history, "score", 0.0) == pytest.approx(2 * 0.02 / math.sqrt(2))
