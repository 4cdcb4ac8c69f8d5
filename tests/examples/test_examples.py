"""The bundled examples: each is a complete task once copied, and the YAML twin shares the
MNIST-1D example's code instead of holding a copy of it."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest

from autoresearch.api import EXAMPLES, SHARED, copy_example
from autoresearch.config import load_task

PACKAGE = resources.files("autoresearch.examples")


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_copied_example_is_a_complete_committed_task(tmp_path, name):
    task = load_task(copy_example(name, tmp_path / name))
    for path in (*task.editable, *task.readonly, "program.md"):
        assert (task.dir / path).is_file(), path
    status = subprocess.run(["git", "status", "--porcelain"], cwd=task.dir, capture_output=True, text=True).stdout
    assert status == ""


def test_the_yaml_twin_trains_with_the_mnist1d_code_itself(tmp_path):
    assert not (PACKAGE / "mnist1d_yaml" / "prepare.py").is_file()  # one copy in the package
    task = copy_example("mnist1d_yaml", tmp_path / "twin")
    for file, origin in SHARED["mnist1d_yaml"].items():
        assert (task / file).read_bytes() == (PACKAGE / origin).read_bytes()
    assert "mnist1d_train.py" in load_task(task).readonly


def twin_source(tmp_path, config: str) -> str:
    """What the twin's train.py would run: mnist1d's train.py with the config's values (torch stubbed)."""
    task = copy_example("mnist1d_yaml", tmp_path / "twin")
    (task / "config.yaml").write_text(config)
    (task / "mnist1d_train.py").write_text((task / "mnist1d_train.py").read_text().split("\nclass MLP", 1)[0]
                                           .replace("import torch", "#").replace("import prepare", "#")
                                           + "\nprint({k: globals()[k] for k in ('ARCH', 'WIDTH', 'LR', 'SEED')})\n")
    out = subprocess.run([sys.executable, "train.py", "--config", "config.yaml"], cwd=task, capture_output=True,
                         text=True)
    return out.stdout + out.stderr


def test_the_twin_runs_the_code_with_the_config_values(tmp_path):
    config = (PACKAGE / "mnist1d_yaml" / "config.yaml").read_text().replace("arch: mlp ", "arch: cnn ") \
        .replace("lr: 1.0e-3", "lr: 3.0e-3")
    assert "{'ARCH': 'cnn', 'WIDTH': 64, 'LR': 0.003, 'SEED': 0}" in twin_source(tmp_path, config)


def test_a_knob_missing_from_the_code_is_named(tmp_path):
    task = copy_example("mnist1d_yaml", tmp_path / "twin")
    code = task / "mnist1d_train.py"
    code.write_text(code.read_text().replace("\nWIDTH = 64", "\nWIDTH_ = 64"))
    out = subprocess.run([sys.executable, "train.py"], cwd=task, capture_output=True, text=True)
    assert out.returncode != 0 and "mnist1d_train.py: expected one `WIDTH = ...` line, found 0" in out.stderr
