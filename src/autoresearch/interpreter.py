"""Which Python a task's runs use: the repository's own environment when it has one.

In order:

1. `[task] python = "path/to/python"`: that interpreter (relative to the task directory);
2. a `.venv/bin/python` in the task directory (or the repository root above it);
3. the interpreter autoresearch runs under.

The runs' PATH starts with the chosen interpreter's directory, so `python` in the run command
is that one. A uv project (a `uv.lock`, or `[tool.uv]` in pyproject.toml) is run as
`uv run train.py` when the config is inferred and `uv` is installed (`pip install uv`); uv then
uses the project's `.venv`. `describe` is what the agent and the user are told.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import ConfigError


@dataclass(frozen=True)
class Interpreter:
    kind: str  # "config" ([task] python) | "venv" (the repository's .venv) | "ours"
    python: str  # absolute path of the interpreter `python` means in the runs
    source: str = ""  # where it came from, for the user: "[task] python", ".venv"

    @property
    def bin_dir(self) -> str:
        """The directory the runs' PATH starts with."""
        return os.path.dirname(self.python)

    def describe(self) -> str:
        if self.kind == "config":
            return f"{self.python} ([task] python)"
        if self.kind == "venv":
            return f"{self.python} (the repository's {self.source})"
        return f"{self.python} (the interpreter autoresearch runs under)"


def detect(task_dir: Path, configured: str | None = None, config_path: Path | None = None) -> Interpreter:
    """The interpreter of the task's runs; a `[task] python` that is not there is a ConfigError."""
    task_dir = Path(task_dir)
    if configured:
        path = Path(os.path.expanduser(configured))
        path = path if path.is_absolute() else task_dir / path
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(config_path or task_dir, "task.python",
                              f"{configured!r} is not an executable file (resolved to {path}); name the python of the "
                              "task's environment, e.g. \".venv/bin/python\"")
        python = _absolute_without_resolving(path)
        if os.path.basename(python) != "python" and not (Path(python).parent / "python").exists():
            raise ConfigError(config_path or task_dir, "task.python",
                              f"{python}: its directory has no `python`, so `python` in the run command would not be "
                              "it; name the `python` of a virtual environment, or use its path in `run`")
        return Interpreter("config", python, "[task] python")
    for root in _roots(task_dir):
        venv = root / ".venv" / "bin" / "python"
        if venv.is_file() and os.access(venv, os.X_OK):
            rel = os.path.relpath(root / ".venv", task_dir)
            return Interpreter("venv", _absolute_without_resolving(venv), rel)
    return Interpreter("ours", sys.executable)


def _absolute_without_resolving(path: Path) -> str:
    # A venv's python is a symlink to the base interpreter; only the venv's path gives its packages.
    return os.path.normpath(os.path.abspath(path))


def _roots(task_dir: Path) -> list[Path]:
    """The task directory, then the directories above it up to the repository root (if any)."""
    here = task_dir.resolve()
    if (here / ".git").exists():
        return [here]
    above = []
    for parent in here.parents:
        above.append(parent)
        if (parent / ".git").exists():
            return [here, *above]
    return [here]


def is_uv_project(task_dir: Path) -> bool:
    """A uv.lock, or a pyproject.toml with a [tool.uv] table."""
    task_dir = Path(task_dir)
    if (task_dir / "uv.lock").is_file():
        return True
    try:
        data = tomllib.loads((task_dir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("tool"), dict) and "uv" in data["tool"]


def find_uv() -> str | None:
    """The `uv` program: on PATH, or beside our interpreter (`pip install uv` puts it there)."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")
