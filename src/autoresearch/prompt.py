"""Render the agent's prompt from a template file and plain data."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import jinja2

from autoresearch.decision import rounded
from autoresearch.records import Experiment

TEMPLATES = Path(__file__).parent / "templates"
RECENT = 10


@lru_cache(maxsize=None)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, autoescape=False,
    )


def _value(exp: Experiment, primary: str) -> str:
    v = rounded(exp.metrics.get(primary))
    return f"{v:.6f}" if v is not None else "-"


def render_prompt(task, tag: str, iteration: int, history: Sequence[Experiment], best: Experiment,
                  template: str = "prompt.md.j2") -> str:
    program_path = task.dir / "program.md"
    program = program_path.read_text(encoding="utf-8") if program_path.is_file() else f"# Task in {task.dir.name}"
    primary = task.metrics.primary
    recent = [
        {"iteration": e.iteration, "commit": e.commit[:7], "value": _value(e, primary),
         "status": e.status.value, "description": e.description.replace("|", "/")}
        for e in history[-RECENT:]
    ]
    return _env().get_template(template).render(
        program=program.rstrip(), iteration=iteration, branch=f"autoresearch/{tag}",
        editable=task.editable, readonly=task.readonly, run_command=task.run, task_dir=str(task.dir),
        interpreter=sys.executable, time_budget=f"{task.time_budget:g}", timeout=f"{task.timeout:g}",
        direction=task.metrics.direction, primary=primary, best_value=_value(best, primary),
        best_commit=best.commit[:7], best_iteration=best.iteration, recent=recent,
    )
