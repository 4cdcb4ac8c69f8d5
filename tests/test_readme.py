"""The README's promises that a test can check: its minimal task runs as printed, and every
search type and footer key the tool reads is documented."""

import re
import subprocess
from pathlib import Path

from autoresearch.analysis.morning import VALIDATION_SIZE_KEYS
from autoresearch.config import load_task
from autoresearch.constants import GRAMMAR
from autoresearch.gpu import TRAIN_KEYS
from autoresearch.loop import Limits, Loop
from autoresearch.agents import create_agent
from autoresearch.records import Status

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(title)
    return README[start:README.index("\n### ", start + 1)]


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_the_minimal_task_runs_as_printed(tmp_path):
    own = section("### A complete minimal task")
    (train,), (toml,) = fenced(own, "python"), fenced(own, "toml")
    task = tmp_path / "task"
    task.mkdir()
    (task / "train.py").write_text(train)
    (task / "autoresearch.toml").write_text(toml.replace("time_budget = 10", "time_budget = 2"))
    (task / ".gitignore").write_text("metrics.jsonl\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=task, check=True)
    subprocess.run(git + ["add", "-A"], cwd=task, check=True)
    subprocess.run(git + ["commit", "-qm", "my task"], cwd=task, check=True)
    loaded = load_task(task)
    records = Loop(loaded, "first", create_agent("tuner", loaded), say=lambda s: None).run(Limits(iterations=2))
    base = records[0]
    assert base.status is Status.KEEP, base.reason
    assert set(base.metrics) >= {"val_loss", "train_seconds", "val_size"} and base.metrics["val_size"] == 100
    assert base.metrics["val_loss"] < 10
    # The baseline, its noise repeat (the task trains for a time budget, so noise-aware by default), 2 iterations.
    assert records[1].verdict.noise_repeat and records[1].metrics["val_size"] == 100
    assert len(records) == 4 and all(r.status is not Status.CRASH or "agent" in r.reason for r in records)
    assert (task / ".autoresearch" / "first" / "runs" / "0000" / "metrics.jsonl").exists()  # the curve was captured


def test_every_search_type_and_footer_key_is_documented():
    kinds = re.findall(r"(\w+)\(a, b\)", GRAMMAR)
    assert kinds == ["log", "float", "int", "int_log", "pow2"]
    own = section("### A complete minimal task")
    for kind in kinds:
        assert f"`{kind}(a, b)`" in own, kind
    assert "`[choices]`" in own
    for key in (*TRAIN_KEYS, *VALIDATION_SIZE_KEYS[:6], "peak_vram_mb"):
        assert f"`{key}`" in own, key


def test_the_resume_section_says_what_a_resume_checks_and_how_to_adopt_a_changed_config():
    from typer.testing import CliRunner

    from autoresearch.cli import app
    from autoresearch.tag_config import ADOPT_FLAG, TASK_KEYS

    own = section("### What a resume checks")
    assert "uncommitted changes" in own and "never reset away" in own
    for key in ("[metrics]", *TASK_KEYS):
        assert f"`{key}`" in own, key
    assert ADOPT_FLAG in own and "adopt_config" in own and "re-judged" in own
    assert ADOPT_FLAG in CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
