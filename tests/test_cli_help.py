"""The command line's surface: --version, help for every option, no placeholder on flags,
and the end of a run that says where you are and what to type next."""

import subprocess
import sys
from importlib.metadata import version

import click
import typer
from typer.testing import CliRunner

from autoresearch.cli import app

runner = CliRunner()


def commands():
    root = typer.main.get_command(app)
    return [(name, cmd) for name, cmd in root.commands.items()]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"autoresearch {version('autoresearch')}"


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {p.opts[0]}" for name, cmd in commands() for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing
    assert not [name for name, cmd in commands() if not (cmd.help or "").strip()]


def test_flags_show_no_value_placeholder_and_brackets_survive():
    for name, cmd in commands():
        out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200", "TERM": "dumb"}).output
        assert "<bool>" not in out, name
    run_help = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200", "TERM": "dumb"}).output
    assert "kind under [executor] in autoresearch.toml" in run_help  # rich markup ate "[executor]" before
    assert "--evolve-program  " in run_help or "--evolve-program " in run_help
    assert "confirm" in runner.invoke(app, ["--help"]).output


def test_the_end_of_a_run_names_the_branch_and_the_next_commands(make_task):
    task = make_task()
    out = subprocess.run([sys.executable, "-m", "autoresearch", "run", str(task), "--tag", "t1", "-n", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "autoresearch/t1  1 experiment: 1 keep" in text  # singular
    assert "on branch autoresearch/t1 (started from main); next:" in text
    assert "git diff main autoresearch/t1" in text
    assert f"autoresearch run {task} --tag t1 --iterations 10" in text
    assert "report.html" in text and f"autoresearch dashboard {task} --tag t1" in text
    assert "git checkout main" in text


def test_status_gain_is_plus_when_better_on_a_minimize_task(make_task):
    from autoresearch.config import load_task
    from autoresearch.loop import Limits, Loop
    from autoresearch.records import Proposal
    from conftest import TINY_CONFIG

    class Lower:
        name = "scripted"

        def propose(self, context):
            p = context.task_dir / "train.py"
            p.write_text(p.read_text().replace("X = 1.0", "X = 0.25"))
            return Proposal("X -> 0.25", "Lower is better.")

    task = make_task(config=TINY_CONFIG.replace('"maximize"', '"minimize"'))
    Loop(load_task(task), "m1", Lower(), say=lambda s: None).run(Limits(iterations=1))
    out = runner.invoke(app, ["status", str(task), "--tag", "m1"], env={"COLUMNS": "200"}).output
    assert "(+0.750000 vs baseline 1.000000; + is better)" in out
