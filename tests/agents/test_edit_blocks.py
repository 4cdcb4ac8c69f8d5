"""SEARCH/REPLACE blocks: parsing the model's text, applying all or nothing, refusing what is not editable."""

import os
from pathlib import Path

import pytest

from autoresearch.agents.edit_blocks import EditBlock, EditError, apply_blocks, parse_blocks

TRAIN = "LR = 1e-3\nWIDTH = 64\n\n\ndef main():\n    print('---')\n    print('score: 1.0')\n"


def block(path, search, replace):
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


@pytest.fixture
def task(tmp_path) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "model.py").write_text("LAYERS = 2\n")
    (tmp_path / "prepare.py").write_text("DATA = 'fixed'\n")
    return tmp_path


def apply(task, text, editable=("train.py", "model.py"), readonly=("prepare.py",)):
    return apply_blocks(task, parse_blocks(text, default_path="train.py"), editable, readonly)


# -- parsing ---------------------------------------------------------------------------------
def test_parse_plain_and_fenced_blocks():
    text = (
        "I will raise the LR.\n\n"
        + block("train.py", "LR = 1e-3\n", "LR = 3e-3\n")
        + "\nand the model:\n\n"
        + "model.py\n```python\n<<<<<<< SEARCH\nLAYERS = 2\n=======\nLAYERS = 3\n>>>>>>> REPLACE\n```\n"
    )
    assert parse_blocks(text) == [EditBlock("train.py", "LR = 1e-3\n", "LR = 3e-3\n"),
                                  EditBlock("model.py", "LAYERS = 2\n", "LAYERS = 3\n")]


@pytest.mark.parametrize("header", ["`train.py`", "**train.py**", "### train.py", "File: train.py", "```python\ntrain.py"])
def test_parse_decorated_path_lines(header):
    text = f"{header}\n```python\n<<<<<<< SEARCH\nA\n=======\nB\n>>>>>>> REPLACE\n```\n"
    assert parse_blocks(text)[0].path == "train.py"


def test_parse_path_from_previous_block_or_default():
    text = block("model.py", "A\n", "B\n") + "\nThen:\n<<<<<<< SEARCH\nC\n=======\nD\n>>>>>>> REPLACE\n"
    assert [b.path for b in parse_blocks(text)] == ["model.py", "model.py"]
    prose = "Here is the change:\n<<<<<<< SEARCH\nA\n=======\nB\n>>>>>>> REPLACE\n"
    assert parse_blocks(prose, default_path="train.py")[0].path == "train.py"
    with pytest.raises(EditError, match="names no file"):
        parse_blocks(prose)


def test_parse_tolerates_marker_length_and_empty_parts():
    text = "train.py\n<<<<<<<< SEARCH\n======\nNEW = 1\n>>>>>>>> REPLACE\n"
    assert parse_blocks(text) == [EditBlock("train.py", "", "NEW = 1\n")]


def test_parse_unclosed_block_is_an_error():
    with pytest.raises(EditError, match="not closed"):
        parse_blocks("train.py\n<<<<<<< SEARCH\nLR = 1\n=======\nLR = 2\n")


def test_no_blocks_is_an_empty_list():
    assert parse_blocks("Should I use a CNN or an MLP?") == []


# -- applying --------------------------------------------------------------------------------
def test_apply_exact_unique_match(task):
    assert apply(task, block("train.py", "LR = 1e-3\n", "LR = 3e-3\n")) == ["train.py"]
    assert (task / "train.py").read_text() == TRAIN.replace("1e-3", "3e-3")


def test_several_blocks_in_one_file_apply_in_order(task):
    text = block("train.py", "LR = 1e-3\n", "LR = 2e-3\n") + block("train.py", "LR = 2e-3\nWIDTH = 64\n", "LR = 2e-3\nWIDTH = 128\n")
    apply(task, text)
    assert (task / "train.py").read_text().startswith("LR = 2e-3\nWIDTH = 128\n")


def test_no_match_names_the_closest_lines(task):
    with pytest.raises(EditError) as err:
        apply(task, block("train.py", "def main():\n  print('---')\n", "def main():\n  print('===')\n"))
    reason = err.value.reasons[0]
    assert "not found exactly" in reason and "closest lines are 5-6" in reason and "    print('---')" in reason
    assert (task / "train.py").read_text() == TRAIN


def test_several_matches_are_refused(task):
    (task / "train.py").write_text("x = 1\nx = 1\n")
    with pytest.raises(EditError, match=r"matches 2 times \(lines 1, 2\)"):
        apply(task, block("train.py", "x = 1\n", "x = 2\n"))


def test_all_or_nothing_across_files(task):
    text = block("model.py", "LAYERS = 2\n", "LAYERS = 3\n") + block("train.py", "NOT THERE\n", "X\n")
    with pytest.raises(EditError):
        apply(task, text)
    assert (task / "model.py").read_text() == "LAYERS = 2\n"


def test_invalid_python_is_refused_with_the_line(task):
    with pytest.raises(EditError) as err:
        apply(task, block("train.py", "WIDTH = 64\n", "WIDTH = (64\n"))
    assert "train.py would no longer parse as Python: line" in err.value.reasons[0]
    assert (task / "train.py").read_text() == TRAIN


def test_readonly_outside_and_not_editable_are_refused(task, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "evil.py").write_text("X = 1\n")
    (task / "link").symlink_to(outside, target_is_directory=True)
    cases = {
        "prepare.py": "read-only",
        "../outside/evil.py": "outside the task directory",
        str(outside / "evil.py"): "outside the task directory",
        "link/evil.py": "outside the task directory",  # a symlink out of the task
        "notes.txt": "not an editable file",
    }
    for path, why in cases.items():
        with pytest.raises(EditError, match=why):
            apply(task, block(path, "", "X = 2\n"))
    assert (outside / "evil.py").read_text() == "X = 1\n"
    assert (task / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert not (task / "notes.txt").exists()


def test_absolute_path_inside_the_task_is_fine(task):
    apply(task, block(str(task / "train.py"), "LR = 1e-3\n", "LR = 5e-3\n"))
    assert "LR = 5e-3" in (task / "train.py").read_text()


def test_empty_search_creates_a_missing_editable_file(task):
    assert apply(task, block("extra.py", "", "Y = 1\n"), editable=("train.py", "extra.py")) == ["extra.py"]
    assert (task / "extra.py").read_text() == "Y = 1\n"
    with pytest.raises(EditError, match="SEARCH part is empty but the file is not"):
        apply(task, block("train.py", "", "Y = 1\n"))
    with pytest.raises(EditError, match="does not exist"):
        apply(task, block("other.py", "A = 1\n", "A = 2\n"), editable=("train.py", "other.py"))


def test_a_change_that_changes_nothing_is_refused(task):
    with pytest.raises(EditError, match="change nothing"):
        apply(task, block("train.py", "LR = 1e-3\n", "LR = 1e-3\n"))


def test_crlf_files_and_a_last_line_without_newline(task):
    (task / "model.py").write_bytes(b"A = 1\r\nB = 2\r\n")
    apply(task, block("model.py", "B = 2\n", "B = 3\n"))
    assert (task / "model.py").read_bytes() == b"A = 1\r\nB = 3\r\n"
    (task / "model.py").write_text("A = 1\nB = 2")
    apply(task, block("model.py", "B = 2\n", "B = 4\n"))
    assert (task / "model.py").read_text() == "A = 1\nB = 4"


def test_file_mode_is_kept(task):
    os.chmod(task / "train.py", 0o755)
    apply(task, block("train.py", "LR = 1e-3\n", "LR = 3e-3\n"))
    assert os.stat(task / "train.py").st_mode & 0o777 == 0o755
