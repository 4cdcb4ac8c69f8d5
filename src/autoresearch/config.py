"""The task config: `autoresearch.toml` in the task directory.

Loaded once, validated with pydantic, and turned into one frozen `Task`. Every problem
becomes a `ConfigError` naming the file, the key and what is expected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoresearch.errors import ConfigError

CONFIG_NAME = "autoresearch.toml"
Direction = Literal["minimize", "maximize"]


class _Section(BaseModel):
    # More keys are fine (later features read them); the known ones are checked strictly.
    model_config = ConfigDict(extra="allow", frozen=True, strict=False)


class TaskSection(_Section):
    run: str = Field(min_length=1)
    editable: tuple[str, ...] = Field(min_length=1)
    readonly: tuple[str, ...] = ()
    time_budget: float = Field(gt=0)
    timeout: float | None = Field(default=None, gt=0)

    @property
    def hard_timeout(self) -> float:
        return self.timeout if self.timeout is not None else 2 * self.time_budget + 60


class TieBreak(_Section):
    name: str = Field(min_length=1)
    direction: Direction | None = None


class MetricsSection(_Section):
    primary: str = Field(min_length=1)
    direction: Direction
    tie_break: tuple[TieBreak, ...] = ()
    columns: tuple[str, ...] | None = None
    memory_key: str = "peak_vram_mb"

    @field_validator("tie_break", mode="before")
    @classmethod
    def _names_to_tables(cls, v):
        # `tie_break = ["mc_acc"]` is shorthand for `[{name = "mc_acc"}]`.
        if isinstance(v, (list, tuple)):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v


class AgentSection(_Section):
    kind: str = "tuner"
    command: str = ""
    timeout: float = Field(default=3600.0, gt=0)  # wall-clock limit of one agent call, seconds
    recent: int = Field(default=10, ge=1)  # experiments shown in full in the prompt
    prompt_budget: int = Field(default=24_000, ge=2_000)  # characters the prompt may take
    memo_every: int = Field(default=5, ge=0)  # refresh the strategy memo every K iterations (0: never)
    plateau: int = Field(default=5, ge=0)  # iterations without a keep that make a plateau (0: off)
    max_fix_attempts: int = Field(default=2, ge=0)  # repairs of a crashed change before it is abandoned

    @model_validator(mode="after")
    def _command_needs_command(self):
        if self.kind == "command" and not self.command.strip():
            raise ValueError("kind = \"command\" needs a non-empty `command`")
        return self


class TaskConfig(_Section):
    task: TaskSection
    metrics: MetricsSection
    agent: AgentSection = AgentSection()


class Task:
    """A loaded task: its directory and its validated config, with derived values."""

    def __init__(self, directory: Path, config: TaskConfig, path: Path):
        self.dir = directory
        self.config = config
        self.path = path

    @property
    def run(self) -> str:
        return self.config.task.run

    @property
    def editable(self) -> tuple[str, ...]:
        return self.config.task.editable

    @property
    def readonly(self) -> tuple[str, ...]:
        return self.config.task.readonly

    @property
    def time_budget(self) -> float:
        return self.config.task.time_budget

    @property
    def timeout(self) -> float:
        return self.config.task.hard_timeout

    @property
    def metrics(self) -> MetricsSection:
        return self.config.metrics

    @property
    def columns(self) -> tuple[str, ...]:
        m = self.config.metrics
        return m.columns if m.columns else (m.primary, *(t.name for t in m.tie_break))

    @property
    def agent(self) -> AgentSection:
        return self.config.agent


def _describe(err: dict) -> tuple[str, str]:
    """Turn one pydantic error into (dotted key, what is expected)."""
    loc = [str(p) for p in err["loc"] if not str(p).isdigit() and not str(p).startswith("function-")]
    key = ".".join(loc)
    kind = err["type"]
    if kind == "missing":
        return key, "is required but missing"
    if kind == "literal_error":
        return key, f"must be one of {err['ctx']['expected']}, got {err.get('input')!r}"
    return key, f"{err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"


def load_task(task_dir: str | Path) -> Task:
    """Read and validate `autoresearch.toml` in `task_dir`."""
    directory = Path(task_dir).resolve()
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise ConfigError(directory, None, "task directory does not exist")
    if not path.is_file():
        raise ConfigError(path, None, "no task config here; create it with [task] run/editable/time_budget and [metrics] primary/direction")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    try:
        config = TaskConfig.model_validate(raw)
    except ValidationError as exc:
        key, problem = _describe(exc.errors()[0])
        raise ConfigError(path, key, problem) from None
    _check_files(path, directory, config)
    return Task(directory, config, path)


def _check_files(path: Path, directory: Path, config: TaskConfig) -> None:
    for key, names in (("task.editable", config.task.editable), ("task.readonly", config.task.readonly)):
        for name in names:
            p = (directory / name).resolve()
            if not p.is_relative_to(directory):
                raise ConfigError(path, key, f"{name!r} is outside the task directory")
            if not p.is_file():
                raise ConfigError(path, key, f"{name!r} does not exist in {directory}")
    both = set(config.task.editable) & set(config.task.readonly)
    if both:
        raise ConfigError(path, "task.readonly", f"{sorted(both)} are also editable; a file is one or the other")
