"""The agent's prompt: pinned by golden files, bounded by its size budget."""

import os
import shutil
import sys
from pathlib import Path

from autoresearch.config import Task, TaskConfig
from autoresearch.prompt import Extras, render_prompt, run_interpreter
from autoresearch.records import Experiment, Status

from helpers import check_golden

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


def test_the_interpreter_told_is_the_one_the_command_runs(tmp_path):
    ours = shutil.which("python", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert run_interpreter("python train.py", tmp_path) == ours
    assert run_interpreter("CUDA_VISIBLE_DEVICES=0 env A=1 python -u train.py", tmp_path) == ours
    assert run_interpreter(".venv/bin/python train.py", tmp_path) == str(tmp_path / ".venv/bin/python")
    assert run_interpreter("/opt/env/bin/python3 train.py", tmp_path) == "/opt/env/bin/python3"
    assert run_interpreter("bash run.sh", tmp_path) == ours  # what `python` means inside the script


def test_the_loop_tells_the_agent_the_interpreter_that_then_runs_the_training(make_task):
    # A task with its own virtual environment: the prompt must name it, not autoresearch's.
    from autoresearch.config import load_task
    from autoresearch.loop import Limits, Loop
    from helpers import ScriptedAgent, set_x

    train = ('X = 1.0  # search: float(0.0, 10.0)\nimport sys\nprint("interpreter:", sys.executable)\n'
             'print("---")\nprint(f"score: {X:.6f}")\n')
    for tag, command in (("path", "python train.py"), ("own", "env/bin/python train.py")):
        task = make_task(train=train, subdir=tag, config=CONFIG.replace("RUN", command))
        (task / "env/bin").mkdir(parents=True)
        (task / "env/bin/python").symlink_to(sys.executable)  # a venv's python is a link like this
        agent = ScriptedAgent(set_x(2.0))
        loop = Loop(load_task(task), tag, agent, say=lambda s: None)
        loop.run(Limits(iterations=1))
        ran = (loop.store.run_dir(1) / "log.txt").read_text().split("interpreter: ", 1)[1].split("\n")[0]
        assert f"with `python` = `{ran}`" in agent.contexts[0].prompt, (command, ran)
        assert command != "env/bin/python train.py" or ran == str(task / "env/bin/python")


CONFIG = '''\
[task]
run = "RUN"
editable = ["train.py"]
time_budget = 5
timeout = 20

[metrics]
primary = "score"
direction = "maximize"
deterministic = true
'''
