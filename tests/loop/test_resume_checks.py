"""What a resume checks before it touches anything (issue 12)."""

from __future__ import annotations

import pytest

from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger

from conftest import TINY_CONFIG
from helpers import ScriptedAgent, run, set_x


def test_a_resume_refuses_a_dirty_tree_and_touches_nothing(make_task):
    task = make_task()
    run(task, ScriptedAgent(), 0)  # the baseline only
    (task / "train.py").write_text((task / "train.py").read_text() + "# my uncommitted idea\n")
    with pytest.raises(AutoresearchError, match=r"uncommitted changes in train\.py; commit or stash them"):
        run(task, ScriptedAgent(set_x(2.0)), 1)
    assert (task / "train.py").read_text().endswith("# my uncommitted idea\n")  # the edit is still there
    assert len(Ledger(task / ".autoresearch/t1/ledger.jsonl").records) == 1  # no "agent" crash recorded


def test_a_resume_refuses_a_dirty_config_too(make_task):
    task = make_task()
    run(task, ScriptedAgent(), 0)
    (task / "autoresearch.toml").write_text((task / "autoresearch.toml").read_text() + "\n# edited\n")
    with pytest.raises(AutoresearchError, match=r"autoresearch\.toml"):
        run(task, ScriptedAgent(set_x(2.0)), 1)


def test_memory_gb_falls_back_to_the_measured_peak_when_the_footer_says_0(make_task):
    task = make_task(train='''\
        X = 1.0
        block = bytearray(400 * 1024 * 1024)  # resident: every page written
        for i in range(0, len(block), 4096):
            block[i] = 1
        import time; time.sleep(0.5)
        print("---")
        print(f"score: {X:.6f}")
        print("peak_vram_mb: 0.0")
    ''')
    _, [baseline] = run(task, ScriptedAgent(), 0)
    assert baseline.peak_rss_mb > 300 and baseline.memory_gb == round(baseline.peak_rss_mb / 1024, 1) >= 0.3


def test_ctrl_c_exits_130_with_one_rollback_message(make_task):
    import signal
    import subprocess
    import sys
    import time

    task = make_task(train='''\
        import pathlib, time
        X = 1.0
        if X > 1:
            pathlib.Path("run_started").write_text("1")
            time.sleep(60)
        print("---")
        print(f"score: {X:.6f}")
    ''', config=TINY_CONFIG.replace("timeout = 20", "timeout = 90")
        + '\n[agent]\nkind = "command"\ncommand = "python -c \\"import re,pathlib; p=pathlib.Path(\'train.py\'); '
          'p.write_text(re.sub(\'X = 1.0\', \'X = 2.0\', p.read_text())); print(\'X -> 2\')\\""\n')
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(task), "--tag", "c", "-n", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 60
    while not (task / "run_started").exists():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert out.count("rolled back") + out.count("rolling back") == 1, out


def test_an_unknown_agent_flag_names_the_flag(make_task):
    from helpers import cli

    task = make_task()
    result = cli("run", str(task), "--tag", "a", "-n", "1", "--agent", "bogus")
    assert result.returncode == 2 and "--agent 'bogus': unknown agent" in result.stderr, result.stderr
    assert "autoresearch.toml" not in result.stderr


def test_a_task_with_nothing_to_tune_fails_before_the_baseline(make_task):
    from autoresearch.agents import create_agent
    from autoresearch.config import load_task
    from autoresearch.loop import Limits, Loop

    task = make_task(train='''\
        x = 1.0  # lowercase: not a knob
        print("---")
        print(f"score: {x:.6f}")
    ''')
    loaded = load_task(task)
    loop = Loop(loaded, "n", create_agent("tuner", loaded), say=lambda s: None)
    with pytest.raises(AutoresearchError, match=r"nothing to tune in train\.py.*with or without a search space"):
        loop.run(Limits(iterations=2))
    assert not (task / ".autoresearch/n/runs/0000/log.txt").exists()  # no baseline was trained


def test_descriptions_are_safe_for_git_tsv_and_terminal_and_otherwise_verbatim(make_task):
    from autoresearch.agents.command import split_explanation
    from autoresearch.records import Proposal

    from helpers import tsv

    task = make_task()

    def nasty(d):
        set_x(2.0)(d)
        return Proposal("-nan\x00 fix \x1b[31mred\x1b[0m\tand\x07 more", "Why:\x00 \x1b]0;title\x07because.\nLine 2.")

    _, records = run(task, ScriptedAgent(nasty), 1)
    assert records[1].status.value == "keep" and records[1].description == "-nan fix red and more"
    assert records[1].explanation == "Why: because.\nLine 2."
    assert tsv(task)[-1][-1] == "-nan fix red and more"
    assert split_explanation("-nan is what the loss became\nmore")[0] == "-nan is what the loss became"
    assert split_explanation("## **Lower LR**\nbecause")[0] == "Lower LR"
    assert split_explanation("- raise X\nbecause")[0] == "raise X"


def test_tracked_progress_png_and_results_tsv_are_never_written_over(make_task):
    from autoresearch.api import run_loop

    from conftest import git

    task = make_task(extra={"progress.png": "the README's own image\n", "results.tsv": "a table the user keeps\n"})
    before = {n: (task / n).read_bytes() for n in ("progress.png", "results.tsv")}
    said = []
    run_loop(task, "tr", iterations=1, agent="tuner", say=said.append)
    run_loop(task, "tr", iterations=1, agent="tuner", say=said.append)  # its own outputs never block a resume
    for name, content in before.items():
        assert (task / name).read_bytes() == content, name
    store = task / ".autoresearch" / "tr"
    assert (store / "progress.png").stat().st_size > 1000 and len((store / "results.tsv").read_text().splitlines()) == 4
    assert git(task, "status", "--porcelain", "--untracked-files=no") == ""
    assert not list(store.glob("results.tsv.bak*")) and not any("changed by hand" in s for s in said)
    assert any(str(store / "progress.png") in s for s in said)  # the summary says where it went
