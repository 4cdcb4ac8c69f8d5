"""Render the agent's prompt from a template file and plain data, within a size budget."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import jinja2

from autoresearch.context import RECENT, fmt, view_history
from autoresearch.ledger import Ledger
from autoresearch.program_md import mark_handled
from autoresearch.records import Experiment

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_BUDGET = 24_000  # characters; ~6k tokens, small next to what a coding agent reads itself


@lru_cache(maxsize=None)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False, trim_blocks=False,
    )


_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def run_interpreter(command: str, task_dir: Path, python_dir: str | None = None) -> str:
    """The Python that `command` runs under, as the loop runs it, to tell the agent (seed 001,
    run 4: an agent that debugs the wrong virtual environment).

    The runs' PATH starts with the directory of the interpreter autoresearch runs under, so
    `python train.py` is that interpreter; a command that names its own (`.venv/bin/python
    train.py`) gets that one; for anything else (`bash run.sh`), what `python` means on that PATH.
    """
    path = f"{python_dir or Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    while words and (words[0] == "env" or _ASSIGNMENT.fullmatch(words[0])):
        words.pop(0)  # `CUDA_VISIBLE_DEVICES=0 python train.py`, `env X=1 python ...`
    first = words[0] if words else ""
    if os.path.basename(first) == "uv" and words[1:2] == ["run"]:
        return f"{os.path.join(task_dir, '.venv', 'bin', 'python')} through `uv run` (the uv project's own environment)"
    if "/" in first:
        return os.path.normpath(os.path.join(task_dir, first))
    if _PYTHON_NAME.fullmatch(first):
        return shutil.which(first, path=path) or first
    return shutil.which("python", path=path) or sys.executable


def _python_dir(task) -> str | None:
    chosen = getattr(task, "interpreter", None)
    return chosen.bin_dir if chosen is not None else None


def render(template: str, **data) -> str:
    return _env().get_template(template).render(**data)


@dataclass(frozen=True)
class Extras:
    """Optional sections: each is empty when it does not apply."""

    memo: str = ""
    hints: str = ""
    plateau: int = 0
    repair: dict | None = None
    repeats: tuple[str, ...] = ()  # this iteration's proposals that repeated earlier code (Repeat.text)
    max_repeats: int = 0


def render_prompt(task, tag: str, iteration: int, history: Sequence[Experiment], best: Experiment,
                  runs_dir: Path | None = None, extras: Extras = Extras(), budget: int = DEFAULT_BUDGET,
                  recent: int = RECENT, interpreter: str | None = None, ledger: Ledger | None = None) -> str:
    """The worker prompt. Over `budget` characters, the oldest one-line entries go first,
    then long explanations, log tails, memo and hints are cut, in that order. `ledger`: the
    one `history` is from (its adopted configs re-judged the bests the prompt lists)."""
    program_path = task.dir / "program.md"
    program = program_path.read_text(encoding="utf-8") if program_path.is_file() else f"# Task in {task.dir.name}"
    primary = task.metrics.primary
    view = view_history(history, best, primary, task.metrics.direction, runs_dir or task.dir, recent=recent,
                        ledger=ledger)
    data = dict(
        program=mark_handled(program.rstrip()), iteration=iteration, branch=f"autoresearch/{tag}",
        editable=task.editable, readonly=task.readonly, run_command=task.run, task_dir=str(task.dir),
        interpreter=interpreter or run_interpreter(task.run, task.dir, _python_dir(task)), time_budget=f"{task.time_budget:g}", timeout=f"{task.timeout:g}",
        direction=task.metrics.direction, primary=primary, best_value=fmt(best.metrics.get(primary)),
        best_commit=best.commit[:7], best_iteration=best.iteration,
        recent=view.recent, older=view.older, older_omitted=0, stats=view.stats,
        memo=extras.memo.strip(), hints=extras.hints.strip(), plateau=extras.plateau, repair=extras.repair,
        repeats=extras.repeats, max_repeats=extras.max_repeats,
    )
    text = render("prompt.md.j2", **data)
    for shrink in _shrinkers(data):
        if len(text) <= budget:
            break
        shrink(len(text) - budget)
        text = render("prompt.md.j2", **data)
    return text


def _shrinkers(data: dict):
    """Ways to make the prompt shorter, least valuable first."""

    def drop_older(excess: int) -> None:
        older = data["older"]
        cut, freed = 0, 0
        while cut < len(older) and freed < excess:
            freed += len(older[cut]) + 1
            cut += 1
        data["older"] = older[cut:]
        data["older_omitted"] += cut

    def cut_field(key: str, limit: int):
        def shrink(excess: int) -> None:
            for e in data["recent"]:
                if len(e[key]) > limit:
                    e[key] = e[key][:limit].rstrip() + " [...]"
        return shrink

    def cut_text(key: str, limit: int):
        def shrink(excess: int) -> None:
            if len(data[key]) > limit:
                data[key] = data[key][:limit].rstrip() + "\n[...]"
        return shrink

    def cut_program(excess: int) -> None:
        keep = max(2000, len(data["program"]) - excess)
        if keep < len(data["program"]):
            data["program"] = data["program"][:keep].rstrip() + "\n[... program.md cut to fit the prompt budget]"

    return [drop_older, cut_field("log_tail", 600), cut_field("explanation", 400), cut_text("hints", 2000),
            cut_text("memo", 2000), cut_field("explanation", 150), cut_program]
