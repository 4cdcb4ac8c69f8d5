"""The `openai` backend starts no process, so no sandbox holds it: its edits are applied by our
own code, which must never write anywhere but the editable files (issue 11), whatever a run or an
earlier agent left in the task folder."""

import os

import pytest

from autoresearch.agents import knobs
from autoresearch.agents.edit_blocks import EditBlock, EditError, apply_blocks
from autoresearch.errors import AutoresearchError


def test_a_planted_link_at_the_temporary_name_is_not_followed(tmp_path):
    task, outside = tmp_path / "task", tmp_path / "bashrc"
    task.mkdir()
    (task / "train.py").write_text("X = 1\n")
    outside.write_text("# rc\n")
    (task / f".train.py.edit.{os.getpid()}").symlink_to(outside)  # our pid is no secret
    assert apply_blocks(task, [EditBlock("train.py", "X = 1\n", "X = 2\n")], ["train.py"]) == ["train.py"]
    assert (task / "train.py").read_text() == "X = 2\n" and not (task / "train.py").is_symlink()
    assert outside.read_text() == "# rc\n"


@pytest.mark.parametrize("name", ["../outside.py", ".git/hooks/post-commit", ".autoresearch/t/ledger.jsonl", "prepare.py"])
def test_blocks_for_any_other_path_are_refused_and_nothing_is_written(tmp_path, name):
    task = tmp_path / "task"
    (task / ".git" / "hooks").mkdir(parents=True)
    (task / "train.py").write_text("X = 1\n")
    (task / "prepare.py").write_text("DATA = 1\n")
    with pytest.raises(EditError):
        apply_blocks(task, [EditBlock(name, "", "planted\n")], ["train.py"], ["prepare.py"])
    assert not (tmp_path / "outside.py").exists() and not (task / ".git" / "hooks" / "post-commit").exists()
    assert (task / "prepare.py").read_text() == "DATA = 1\n"


def test_a_knob_edit_never_writes_through_a_link_out_of_the_task(tmp_path):
    task, outside = tmp_path / "task", tmp_path / "elsewhere.py"
    task.mkdir()
    outside.write_text("LR = 0.1  # search: float(0.0, 1.0)\n")
    (task / "train.py").symlink_to(outside)
    found = knobs.knobs(task, ["train.py"])
    assert "LR" in found
    with pytest.raises(AutoresearchError, match="outside the task directory"):
        knobs.apply(task, found, {"changes": [{"knob": "LR", "value": found["LR"].candidates()[0]}]})
    assert outside.read_text() == "LR = 0.1  # search: float(0.0, 1.0)\n"
