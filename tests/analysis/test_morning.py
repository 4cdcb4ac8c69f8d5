"""The morning report's first screen, on a minimize task run by the real loop: the answer,
one sign convention, the uncertainty, the knobs, the diff, how to reproduce it."""

import re

import pytest

from autoresearch.analysis.morning import answer, oriented
from autoresearch.analysis.plot import YRange, physical, time_key, wants_log
from autoresearch.analysis.report import fmt, render_report
from autoresearch.config import load_task
from autoresearch.loop import Limits, Loop
from autoresearch.records import Proposal
from autoresearch.store import RunStore

from helpers import committed_repo

TRAIN = '''\
import os
LOSS = 0.5  # search: float(0.0, 10.0)
WIDTH = 64
jitter = 0.001 * int(os.environ.get("AUTORESEARCH_SEED", "0"))
print("---")
print(f"val_loss: {LOSS + jitter:.6f}")
print("val_size: 500")
if LOSS < 0.5:
    print("train_seconds: 3.5")
'''

CONFIG = '''\
[task]
run = "python train.py"
editable = ["train.py"]
time_budget = 5
timeout = 20

[metrics]
primary = "val_loss"
direction = "minimize"
noise_runs = 3
'''


class Moves:
    name = "tuner"

    def __init__(self, *values):
        self.values = list(values)

    def propose(self, context):
        p = context.task_dir / "train.py"
        v = self.values.pop(0)
        p.write_text(re.sub(r"LOSS = [0-9.]+", f"LOSS = {v}", p.read_text()))
        return Proposal(f"LOSS -> {v}", "Lower is better.")


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root, _ = committed_repo(tmp_path_factory.mktemp("min"), {"train.py": TRAIN, "autoresearch.toml": CONFIG}, name="task")
    # baseline 0.5 and two repeats (0.501, 0.502), then 0.3 (keep), 0.4 (discard), 0.1 (keep)
    Loop(load_task(root), "n1", Moves(0.3, 0.4, 0.1), say=lambda s: None).run(Limits(iterations=3))
    task = load_task(root)
    return task, RunStore(task.dir, "n1")


@pytest.fixture(scope="module")
def html(night):
    return render_report(*night)


def test_gains_are_plus_when_better_on_a_minimize_task(night, html):
    a = answer(*night, list(night[1].ledger.records))
    assert a["best_value"] == 0.1 and a["base_value"] == 0.5
    assert a["gain"] == pytest.approx(0.4)  # lower is better: + means it went down
    assert "<strong>+0.4</strong> vs the baseline 0.5 (+80.0 %)" in html
    frontier = html[html.index('id="frontier-table"'):html.index("</table>", html.index('id="frontier-table"'))]
    assert "+0.2" in frontier and "+0.2</td>" in frontier and "-0.2" not in frontier
    table = html[html.index('id="experiments-table"'):]
    assert 'class="num down">-0.1</td>' in table  # the discard at 0.4 was 0.1 worse than the best then (0.3)
    assert oriented(0.1, 0.5, maximize=False) == pytest.approx(0.4) and oriented(0.9, 0.5, maximize=True) == pytest.approx(0.4)


def test_the_first_screen_holds_the_answer(night, html):
    first = html[:html.index('<section id="summary">')]
    assert "Best val_loss: 0.1" in first
    assert "Noise floor ± 0.002" in first and "3 baseline runs" in first  # 2 x stdev(0.5, 0.501, 0.502)
    assert "measured on 500 validation examples" in first and "above the noise floor" in first
    assert re.search(r"<td><code>LOSS</code></td><td>train.py</td><td class=\"num\">0.5</td><td class=\"num\">0.1</td>", first)
    assert "1 other knob unchanged" in first  # WIDTH
    assert 'class="del">-LOSS = 0.5' in first and 'class="add">+LOSS = 0.1' in first
    assert "git checkout" in first and "AUTORESEARCH_TIME_BUDGET=5 python train.py" in first


def test_labels_say_what_is_known(html):
    table = html[html.index('id="experiments-table"'):html.index('<h2 id="experiments">')]
    rows = re.findall(r"<tr><td class=\"num\"><a href=\"#exp-(\d+)\">.*?</tr>", table, re.S)
    assert rows == ["0", "1", "2", "3", "4", "5"]
    assert table.count(">unknown</td>") == 3 and table.count(">3.5</td>") == 3  # footer train_seconds, not wall
    assert "start-up 0.00" not in html and "start-up unknown" in html
    assert "$0.00" not in html and "0 tokens" not in html and 'id="offline-agent"' in html
    assert "No LLM calls" in html


def test_only_keeps_are_open(html):
    cards = re.findall(r'<details class="exp st-(\w+)" id="exp-\d+"( open)?>', html)
    assert cards and all((status == "keep") == bool(is_open) for status, is_open in cards)
    assert {status for status, _ in cards} == {"keep", "discard"}


def test_one_experiment_is_singular(make_task):
    task = make_task()
    Loop(load_task(task), "one", Moves(), say=lambda s: None).run(Limits(iterations=0))
    html = render_report(load_task(task), RunStore(task, "one"))
    assert "1 experiments" not in html and "Over 1 experiment " in html


def test_numbers_read_one_way():
    assert [fmt(v) for v in (0.97, 0.970000, "0.970000", 6.5e-05, 3.0, 0.1234567)] == \
        ["0.97", "0.97", "0.97", "6.5e-05", "3", "0.123457"]


def test_plot_axes_follow_the_data():
    assert wants_log([3.73, 0.9, 0.0858]) and not wants_log([0.7, 0.93]) and not wants_log([-1.0, 5.0])
    # accuracy never above 1, a loss never below 0
    assert physical(YRange(0.6, 1.1, ()), [0.7, 0.93]).high == 1.0
    assert physical(YRange(-0.2, 0.9, ()), [0.05, 0.8]).low == 0.0
    assert physical(YRange(-5.0, 9.0, ()), [-3.0, 8.0]) == YRange(-5.0, 9.0, ())
    assert time_key([{"epoch": 1, "seconds": 0.4}, {"epoch": 2, "seconds": 0.9}]) == "seconds"
    assert time_key([{"epoch": 1}, {"epoch": 2}]) is None


def test_the_report_plots_the_metric_against_each_knob_that_moved(night, html, tmp_path):
    from autoresearch.analysis.knobs import knob_values
    from autoresearch.analysis.plot import plot_knobs

    task, store = night
    values = knob_values(task, store.ledger.records)
    assert [values[i]["LOSS"] for i in range(6)] == [0.5, 0.5, 0.5, 0.3, 0.4, 0.1] and values[5]["WIDTH"] == 64
    assert plot_knobs(task, store, tmp_path / "k.png") is not None  # LOSS moved; WIDTH did not
    assert 'id="knobs-plot"' in html and 'src="data:image/png;base64,' in html
