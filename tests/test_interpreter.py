"""The repository's own interpreter runs its training, and the agent is told which one it is."""

import sys
from pathlib import Path

import pytest

from autoresearch import interpreter
from autoresearch.agents import create_agent
from autoresearch.config import load_task
from autoresearch.errors import ConfigError
from autoresearch.loop import Limits, Loop
from autoresearch.prompt import run_interpreter

from conftest import TINY_CONFIG

TRAIN = '''\
import sys
X = 1.0  # search: float(0.0, 10.0)
print("---")
print(f"score: {X:.6f}")
print(f"python: {sys.executable}")
'''


def fake_venv(where: Path) -> Path:
    """A `.venv/bin/python` that is our interpreter under the venv's path (as a real venv's is)."""
    bin_dir = where / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir / "python"


def test_detect_order(tmp_path):
    assert interpreter.detect(tmp_path) == interpreter.Interpreter("ours", sys.executable)
    venv = fake_venv(tmp_path)
    found = interpreter.detect(tmp_path)
    assert found.kind == "venv" and found.python == str(venv) and found.bin_dir == str(venv.parent)
    assert "the repository's .venv" in found.describe()
    other = tmp_path / "env" / "bin"
    other.mkdir(parents=True)
    (other / "python").symlink_to(sys.executable)
    chosen = interpreter.detect(tmp_path, "env/bin/python")
    assert chosen.kind == "config" and chosen.python == str(other / "python") and "[task] python" in chosen.describe()


def test_a_venv_at_the_repository_root_serves_a_task_in_a_subdirectory(tmp_path):
    (tmp_path / ".git").mkdir()
    venv = fake_venv(tmp_path)
    (tmp_path / "task").mkdir()
    assert interpreter.detect(tmp_path / "task").python == str(venv)


def test_a_configured_python_that_is_not_there_names_the_key(make_task):
    task_dir = make_task(config=TINY_CONFIG.replace("timeout = 20", 'timeout = 20\npython = "nope/bin/python"'))
    with pytest.raises(ConfigError) as info:
        load_task(task_dir)
    assert info.value.key == "task.python" and "autoresearch.toml" in str(info.value) and ".venv/bin/python" in str(info.value)


def test_a_configured_python_without_a_python_beside_it_is_refused(make_task, tmp_path):
    odd = tmp_path / "tools" / "py3"
    odd.parent.mkdir()
    odd.symlink_to(sys.executable)
    task_dir = make_task(config=TINY_CONFIG.replace("timeout = 20", f'timeout = 20\npython = "{odd}"'))
    with pytest.raises(ConfigError, match="its directory has no `python`"):
        load_task(task_dir)


def test_the_runs_use_the_repositorys_venv_and_the_agent_is_told(make_task):
    task_dir = make_task(train=TRAIN)
    venv = fake_venv(task_dir)  # untracked, as a .venv is
    task = load_task(task_dir)
    assert task.interpreter.python == str(venv)
    loop = Loop(task, "v", create_agent("tuner", task), say=lambda s: None)
    records = loop.run(Limits(1))
    assert [r.metrics.get("python") for r in records] == [str(venv), str(venv)]
    prompt = (loop.store.run_dir(1) / "prompt.md").read_text()
    assert f"with `python` = `{venv}`" in prompt


def test_run_interpreter_for_uv_and_for_a_given_directory(tmp_path):
    assert "through `uv run`" in run_interpreter("uv run train.py", tmp_path)
    venv = fake_venv(tmp_path)
    assert run_interpreter("python train.py", tmp_path, str(venv.parent)) == str(venv)
