"""The budget as the repository defines it, the footer's check of it, and the hard limit of a run."""

import textwrap

import pytest

from autoresearch import budget
from autoresearch.budget import Timeout, footer_disagreement, harness_budget, hard_timeout
from autoresearch.config import load_task
from autoresearch.records import Experiment, Status


def write(d, name, text):
    (d / name).write_text(textwrap.dedent(text))


@pytest.mark.parametrize("train, prepare, expected", [
    ("from prepare import MAX_SEQ_LEN, TIME_BUDGET\n", "TIME_BUDGET = 300\n", 300),
    ("from prepare import TIME_BUDGET as B\n", "TIME_BUDGET = 5 * 60  # five minutes\n", 300),
    ("import prepare\nwhile t < prepare.TIME_BUDGET: pass\n", "TIME_BUDGET: float = 2.5\n", 2.5),
    ("import prepare as p\nx = p.TIME_BUDGET\n", "TIME_BUDGET = 300\nTIME_BUDGET = 20\n", 20),  # the last one counts
    # The script reads our variable: the config's budget is what it trains for.
    ("import os\nfrom prepare import TIME_BUDGET\nB = float(os.environ.get('AUTORESEARCH_TIME_BUDGET', TIME_BUDGET))\n",
     "TIME_BUDGET = 300\n", None),
    # The harness reads it: the same.
    ("from prepare import TIME_BUDGET\n", "import os\nTIME_BUDGET = float(os.environ.get('AUTORESEARCH_TIME_BUDGET', '10'))\n", None),
    ("TIME_BUDGET = 30\n", "TIME_BUDGET = 300\n", None),  # its own constant: not the harness's
    ("from prepare import TIME_BUDGET\n", "TIME_BUDGET = compute()\n", None),
    ("from prepare import TIME_BUDGET\n", "TIME_BUDGET = 'x'\n", None),
    ("def broken(:\n", "TIME_BUDGET = 300\n", None),
])
def test_harness_budget(tmp_path, train, prepare, expected):
    write(tmp_path, "train.py", train)
    write(tmp_path, "prepare.py", prepare)
    found = harness_budget(tmp_path, ["train.py"], ["prepare.py"])
    assert (found.seconds if found else None) == expected
    if found:
        assert found.describe() == f"train.py trains for TIME_BUDGET = {expected:g} s from prepare.py"


def test_a_budget_from_an_editable_module_is_not_the_harnesss(tmp_path):
    write(tmp_path, "train.py", "from prepare import TIME_BUDGET\n")
    write(tmp_path, "prepare.py", "TIME_BUDGET = 300\n")
    assert harness_budget(tmp_path, ["train.py", "prepare.py"], ["data.py"]) is None


def test_footer_disagreement():
    assert footer_disagreement({"training_seconds": 300.1}, 300) is None
    assert footer_disagreement({"training_seconds": 314.0}, 300) is None  # within 5 %
    warning = footer_disagreement({"training_seconds": 300.1}, 20)
    assert "training_seconds: 300.1 but the budget is 20 s (+1400%)" in warning and "TIME_BUDGET" in warning
    assert "train_seconds: 5" in footer_disagreement({"train_seconds": 5.0}, 10)
    assert footer_disagreement({"val_bpb": 1.0}, 10) is None and footer_disagreement({"training_seconds": "x"}, 10) is None


def test_hard_timeout():
    assert hard_timeout(100, 20, None) == Timeout(100) and hard_timeout(100, 20, 887) == Timeout(100)
    before = hard_timeout(None, 20, None)
    assert before.seconds == 5 * 20 + 900 and "baseline may take up to 1000 s" in before.note
    after = hard_timeout(None, 20, 306.4)
    assert after.seconds == 673 and "the baseline took 306 s for a 20 s budget" in after.note and "not 100 s" in after.note
    assert hard_timeout(None, 300, 325.9) == Timeout(660)  # eval fits in the default's margin
    assert hard_timeout(None, 10, 11) == Timeout(80)


def karpathy_task(d, config_extra=""):
    write(d, "train.py", "from prepare import TIME_BUDGET\nprint('---')\nprint('val_bpb: 1.0')\n")
    write(d, "prepare.py", "TIME_BUDGET = 300\n")
    write(d, "autoresearch.toml", f'[task]\nrun = "python train.py"\neditable = ["train.py"]\nreadonly = ["prepare.py"]\n'
                                  f'time_budget = 20\n{config_extra}\n[metrics]\nprimary = "val_bpb"\ndirection = "minimize"\n')
    return load_task(d)


def test_a_config_that_disagrees_with_the_harness_is_told_so(tmp_path):
    task = karpathy_task(tmp_path)
    assert task.time_budget == 300  # what train.py really trains for
    notes = "\n".join(task.notes())
    assert "train.py trains for TIME_BUDGET = 300 s from prepare.py (read-only), so time_budget = 20" in notes
    assert task.timeout == 5 * 300 + 900 and "baseline may take up to 2400 s" in notes
    # After the baseline: its wall time decides.
    later = task.with_baseline_wall(1000.0)
    assert later.timeout == 2060 and later.moved_to(tmp_path / "w0").timeout == 2060
    assert karpathy_task(tmp_path, "timeout = 90").with_baseline_wall(1000.0).timeout == 90


def test_a_task_without_a_harness_budget_keeps_the_default_until_its_baseline(make_task):
    task = load_task(make_task())
    assert task.harness is None and task.timeout == task.config.task.hard_timeout
    assert not [n for n in task.notes() if n.startswith("timeout")]


def test_run_timeout_reads_the_baseline_from_the_records(tmp_path):
    task = karpathy_task(tmp_path)
    base = Experiment(0, "a" * 40, "", Status.KEEP, "baseline", wall_seconds=500.0)
    crashed = Experiment(0, "a" * 40, "", Status.CRASH, "baseline", wall_seconds=3.0)
    assert budget.run_timeout(task, []).seconds == 2400
    assert budget.run_timeout(task, [crashed]).seconds == 2400
    assert budget.run_timeout(task, [base]).seconds == 1060


def test_budget_watch_says_the_derived_timeout(tmp_path):
    write(tmp_path, "prepare.py", "TIME_BUDGET = 20\n")
    task = karpathy_task(tmp_path)
    write(tmp_path, "prepare.py", "TIME_BUDGET = 20\n")
    task = load_task(tmp_path)
    said = []
    budget.budget_watch(task, said.append)(None, Experiment(0, "a", "", Status.KEEP, "baseline",
                                                             metrics={"training_seconds": 20.0}, wall_seconds=306.0))
    assert said == ["timeout: the baseline took 306 s for a 20 s budget, so runs are killed after 2 x 306 + 60 = 672 s, "
                    "not 100 s (set [task] timeout to choose)"]


def test_budget_watch_says_the_timeout_and_warns_once(tmp_path):
    task = karpathy_task(tmp_path)
    said = []
    watch = budget.budget_watch(task, said.append)
    watch(None, Experiment(0, "a", "", Status.KEEP, "baseline", metrics={"training_seconds": 20.3}, wall_seconds=120.0))
    watch(None, Experiment(1, "b", "a", Status.DISCARD, "x", metrics={"training_seconds": 20.1}, wall_seconds=119.0))
    assert not [s for s in said if s.startswith("timeout")]  # 120 s for a 300 s budget: nothing to derive
    warnings = [s for s in said if s.startswith("warning")]
    assert len(warnings) == 1 and "#0" in warnings[0] and "budget is 300 s" in warnings[0]
