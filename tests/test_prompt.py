"""The agent's prompt: pinned by golden files, bounded by its size budget."""

import os
from pathlib import Path


from autoresearch.config import Task, TaskConfig
from autoresearch.prompt import Extras, render_prompt
from autoresearch.records import Experiment, Status

GOLDEN = Path(__file__).parent / "golden"


def task(tmp_path=None):
    config = TaskConfig.model_validate({
        "task": {"run": "python train.py", "editable": ["train.py"], "readonly": ["prepare.py"], "time_budget": 10},
        "metrics": {"primary": "val_acc", "direction": "maximize"},
    })
    directory = tmp_path or Path("/task")
    return Task(directory, config, directory / "autoresearch.toml")


def history(n):
    out = [Experiment(iteration=0, commit="a" * 40, parent="a" * 40, status=Status.KEEP, description="baseline",
                      explanation="The unmodified code.", metrics={"val_acc": 0.5, "num_params": 1000.0})]
    best = 0.5
    for i in range(1, n + 1):
        status = [Status.DISCARD, Status.KEEP, Status.CRASH][i % 3]
        value = best + 0.01 if status is Status.KEEP else best - 0.02
        if status is Status.KEEP:
            best = value
        out.append(Experiment(
            iteration=i, commit=f"{i:07d}" + "f" * 33, parent="a" * 40, status=status,
            description=f"change {i}: LR x{i}", reason="exit_code: 1" if status is Status.CRASH else "",
            explanation=f"change {i}: LR x{i}\nI changed the learning rate by a factor {i} because the loss was flat. " * 3,
            metrics={} if status is Status.CRASH else {"val_acc": value}))
    return out


def check_golden(name, text):
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def best_of(h):
    return [e for e in h if e.status is Status.KEEP][-1]


def test_golden_first_iteration():
    h = history(0)
    check_golden("prompt_first.md", render_prompt(task(), "nov23", 1, h, h[0], runs_dir=Path("/none"), interpreter="/venv/bin/python"))


def test_golden_with_memo_hints_plateau_and_repair():
    h = history(14)
    extras = Extras(memo="## What works\n- LR up", hints="Frontier: #2, #5", plateau=6,
                    repair={"iteration": 14, "description": "change 14", "reason": "exit_code: 1",
                            "log_tail": "Traceback...\nNameError: name 'x' is not defined", "attempt": 1, "max_attempts": 2})
    text = render_prompt(task(), "nov23", 15, h, best_of(h), runs_dir=Path("/none"), extras=extras,
                         interpreter="/venv/bin/python")
    check_golden("prompt_rich.md", text)


def test_thirty_iterations_stay_under_budget_with_ten_in_full():
    h = history(30)
    text = render_prompt(task(), "t", 31, h, best_of(h), runs_dir=Path("/none"), budget=12_000)
    assert len(text) <= 12_000
    for i in range(21, 31):  # the 10 newest: full explanation
        assert f"### #{i} " in text
        assert f"I changed the learning rate by a factor {i} because" in text
    for i in range(0, 21):  # the 21 older: one line each, not in full
        assert f"\n#{i} " in text
        assert f"### #{i} " not in text
    assert "31 experiments" in text or "31 experiments:" in text


def test_very_long_run_drops_oldest_lines_first():
    h = history(2000)
    text = render_prompt(task(), "t", 2001, h, best_of(h), runs_dir=Path("/none"), budget=10_000)
    assert len(text) <= 10_000
    assert "older experiments left out" in text
    assert "\n#1990 " in text and "### #2000 " in text


def test_crash_shows_reason_and_log_tail(tmp_path):
    h = history(2)
    run = tmp_path / "runs" / "0002"
    run.mkdir(parents=True)
    (run / "log.txt").write_text("line\n" * 50 + "ValueError: shapes (3,) and (4,) not aligned\n")
    h[2] = Experiment(**{**h[2].__dict__, "exit_code": 1})
    text = render_prompt(task(), "t", 3, h, best_of(h), runs_dir=tmp_path / "runs")
    assert "Crash: exit_code: 1" in text and "shapes (3,) and (4,) not aligned" in text


def test_interpreter_and_command_are_told():
    h = history(0)
    text = render_prompt(task(), "t", 1, h, h[0], interpreter="/opt/venv/bin/python")
    assert "`python train.py`" in text and "/opt/venv/bin/python" in text
