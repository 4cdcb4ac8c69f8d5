"""Noise-aware keeps through the real loop: two baselines by default, a gain inside their spread
is a discard that says why, a gain above it is kept, a deterministic task runs one baseline, and
status, the terminal line and the report print every gain next to the floor it was held to."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from autoresearch.analysis.report import render_report
from autoresearch.config import load_task
from autoresearch.errors import ConfigError
from autoresearch.gains import gains
from autoresearch.loop import Limits, Loop
from autoresearch.records import Status
from autoresearch.store import RunStore
from autoresearch.verdict import Reason

from helpers import ScriptedAgent, SharedScript

# Seed 0 (the baseline, and every agent run) gives X; AUTORESEARCH_SEED=1 (the repeat) X + SIGN * 0.01,
# so two baselines 0.01 apart: spread 0.01 / sqrt(2), floor sqrt(2) x 0.01 = 0.014142.
TRAIN = '''\
import os
X = 1.0
SIGN = {sign}
seed = int(os.environ.get("AUTORESEARCH_SEED", "0"))
print("---")
print(f"score: {{X + SIGN * 0.01 * (seed % 2):.6f}}")
'''

CONFIG = '''\
[task]
run = "python train.py"
editable = ["train.py"]
time_budget = 5
timeout = 30

[metrics]
primary = "score"
direction = "{direction}"
{extra}
'''


def set_x(value):
    def edit(d):
        p = d / "train.py"
        p.write_text(re.sub(r"X = [-0-9.]+", f"X = {value}", p.read_text()))
        return f"X -> {value}"
    return edit


def night(make_task, edits, *, direction="maximize", extra="", said=None):
    sign = 1 if direction == "maximize" else -1
    task = make_task(train=TRAIN.format(sign=sign), config=CONFIG.format(direction=direction, extra=extra))
    loop = Loop(load_task(task), "t1", ScriptedAgent(*edits), say=(said.append if said is not None else lambda s: None))
    return task, loop.run(Limits(iterations=len(edits)))


@pytest.mark.parametrize("direction, inside, above", [("maximize", 1.012, 1.02), ("minimize", 0.988, 0.98)])
def test_two_baselines_by_default_and_a_gain_must_clear_their_spread(make_task, direction, inside, above):
    said = []
    task, records = night(make_task, [set_x(inside), set_x(above)], direction=direction, said=said)
    base, repeat, small, big = records
    assert base.reason == "baseline" and repeat.verdict.noise_repeat  # run twice without being asked
    assert repeat.commit == base.commit and abs(repeat.metrics["score"] - base.metrics["score"]) == pytest.approx(0.01)
    assert small.status is Status.DISCARD and small.verdict.reason is Reason.WITHIN_NOISE
    assert small.reason == ("score gain 0.012000 is within the noise floor 0.014142: "
                            "2 x the spread (std 0.007071) of 2 runs of the same code")
    assert big.status is Status.KEEP and big.verdict.reason is Reason.IMPROVED
    # the terminal's line for each judged run holds its gain and the floor it was held to
    assert any(line.startswith("#2 ") and "+0.012000 (noise floor 0.014142)" in line for line in said), said
    assert any(line.startswith("#3 ") and "+0.020000 (noise floor 0.014142)" in line for line in said), said


def test_deterministic_runs_one_baseline_and_keeps_a_small_gain(make_task):
    task, records = night(make_task, [set_x(1.001)], extra="deterministic = true")
    assert [r.iteration for r in records] == [0, 1] and not any(r.verdict.noise_repeat for r in records)
    assert records[1].status is Status.KEEP


def test_deterministic_with_repeats_is_a_clear_config_error(make_task):
    task = make_task(train=TRAIN.format(sign=1), config=CONFIG.format(direction="maximize",
                                                                      extra="deterministic = true\nnoise_runs = 3"))
    with pytest.raises(ConfigError) as info:
        load_task(task)
    message = str(info.value)
    assert "autoresearch.toml" in message and "deterministic" in message and "noise_runs = 3" in message
    assert "drop noise_runs, or set deterministic = false" in message
    with pytest.raises(ConfigError, match="deterministic"):
        load_task(make_task(train=TRAIN.format(sign=1),
                            config=CONFIG.format(direction="maximize", extra='deterministic = "sometimes"')))


def test_confirm_gives_a_gain_inside_the_floor_its_second_run(make_task):
    # Confirmation runs get AUTORESEARCH_SEED = their own iteration: 3 and 5 are odd, so +0.01.
    task, records = night(make_task, [set_x(1.003), set_x(1.008)], extra="confirm = true")
    ledger = sorted(RunStore(task, "t1").ledger.records, key=lambda r: r.iteration)
    assert [r.iteration for r in ledger] == [0, 1, 2, 3, 4, 5]
    weak, weak_check, real, real_check = ledger[2:]
    assert weak_check.verdict.confirmation and weak_check.metrics["score"] == pytest.approx(1.013)
    # mean gain (0.003 + 0.013) / 2 = 0.008 against the two-run floor 0.014142 / sqrt(2) = 0.01
    assert weak.status is Status.DISCARD and weak.verdict.reason is Reason.WITHIN_NOISE
    assert weak.reason.startswith("score gain 0.008000 is within the noise floor 0.010000: the mean gain of "
                                  "iterations 2 and 3"), weak.reason
    # mean (0.008 + 0.018) / 2 = 0.013 clears it, though the run alone (0.008) is inside the floor
    assert real.status is Status.KEEP and real.reason == "score improved; confirmed by iteration 5"
    assert real_check.commit == real.commit


def test_status_and_report_show_the_floor_next_to_every_gain(make_task):
    task, records = night(make_task, [set_x(1.012), set_x(1.02)])
    env = {**os.environ, "COLUMNS": "200"}
    shown = subprocess.run([sys.executable, "-m", "autoresearch", "status", str(task), "--tag", "t1"],
                           capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "noise floor 0.014142: a keep must gain more than this (2 x the spread (std 0.007071) of 2 runs" in out
    assert "gain (floor)" in out
    assert re.search(r"^\s*2 .*\+0\.012000 \(0\.014142\).*discard", out, re.M), out
    assert re.search(r"^\s*3 .*\+0\.020000 \(0\.014142\).*keep", out, re.M), out
    as_json = json.loads(subprocess.run([sys.executable, "-m", "autoresearch", "status", str(task), "--tag", "t1",
                                         "--json"], capture_output=True, text=True, env=env).stdout)
    noise = as_json["noise"]
    assert noise["floor"] == 0.014142 and noise["known"] and noise["runs"] == 2
    assert noise["gains"] == {"2": {"gain": 0.012, "floor": 0.014142}, "3": {"gain": 0.02, "floor": 0.014142}}

    html = render_report(load_task(task), RunStore(task, "t1"))
    frontier = html[html.index('id="frontier-table"'):html.index("</table>", html.index('id="frontier-table"'))]
    assert "noise floor then" in frontier and "+0.02</td><td class=\"num small muted\">floor 0.0141421</td>" in frontier
    table = html[html.index('id="experiments-table"'):html.index('<h2 id="experiments">')]
    assert "+0.012</td><td class=\"num small muted\">floor 0.0141421</td>" in table
    first = html[:html.index('<section id="summary">')]
    assert "Noise floor ± 0.0141421 (2 × the spread of 2 baseline runs" in first


def test_status_says_when_the_floor_is_unknown(make_task):
    task, _ = night(make_task, [set_x(1.001)], extra="noise_runs = 1")
    shown = subprocess.run([sys.executable, "-m", "autoresearch", "status", str(task), "--tag", "t1"],
                           capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert "noise floor unknown: a keep needs only min_delta 0" in shown.stdout, shown.stdout
    assert "+0.001000 (?)" in shown.stdout


def test_a_tag_begun_with_one_baseline_measures_its_floor_on_resume(make_task):
    from conftest import git

    task = make_task(train=TRAIN.format(sign=1), config=CONFIG.format(direction="maximize", extra="noise_runs = 1"))
    # The config is the user's, outside git, so that it can change between the two sessions.
    git(task, "rm", "-q", "--cached", "autoresearch.toml")
    (task / ".git" / "info" / "exclude").write_text("autoresearch.toml\n")
    git(task, "commit", "-qm", "config outside git")
    Loop(load_task(task), "t1", ScriptedAgent(set_x(1.2)), say=lambda s: None).run(Limits(iterations=1))
    store = RunStore(task, "t1")
    (store.root / "config.json").unlink()  # as a tag begun before its rules were stored
    (task / "autoresearch.toml").write_text(CONFIG.format(direction="maximize", extra=""))  # today's default
    said = []
    records = Loop(load_task(task), "t1", ScriptedAgent(set_x(1.21)), say=said.append).run(Limits(iterations=1))
    repeat, small = records
    keep = store.ledger.find(1)
    assert any("measuring the noise floor first" in line for line in said), said
    assert repeat.verdict.noise_repeat and repeat.commit == keep.commit  # the best of that moment, seed 1
    assert repeat.metrics["score"] == pytest.approx(1.21)
    assert small.status is Status.DISCARD and "within the noise floor 0.014142" in small.reason


def test_workers_share_one_floor_measured_before_they_start(make_task):
    import threading

    from autoresearch.workers import parse_slots, run_workers

    task = make_task(train=TRAIN.format(sign=1), config=CONFIG.format(direction="maximize", extra=""))
    edits, lock = [set_x(v) for v in (1.005, 1.006, 1.5, 1.501)], threading.Lock()
    records = run_workers(load_task(task), "w", lambda i: SharedScript(edits, lock), parse_slots(None, 2),
                          Limits(iterations=4), say=lambda s: None)
    ledger = list(RunStore(task, "w").ledger.records)
    assert ledger[0].reason == "baseline" and ledger[1].verdict.noise_repeat  # by the pool, before any worker
    assert ledger[0].worker is None and ledger[1].worker is None
    judged = {r.metrics["score"]: r for r in ledger[2:]}
    assert sorted(judged) == [1.005, 1.006, 1.5, 1.501] and len(records) == 6
    held = gains(ledger, load_task(task).metrics)
    for r in judged.values():  # every worker held to the one floor, against the best of its moment
        g = held[r.iteration]
        assert g.floor.value == pytest.approx(0.014142, abs=1e-6)
        if 0 < g.value <= g.floor.value:
            assert r.status is Status.DISCARD and r.verdict.reason is Reason.WITHIN_NOISE, r.reason
        assert (r.status is Status.KEEP) == (g.value > g.floor.value)
    assert [judged[v].status for v in (1.005, 1.006)] == [Status.DISCARD, Status.DISCARD]
    assert Status.KEEP in (judged[1.5].status, judged[1.501].status)
