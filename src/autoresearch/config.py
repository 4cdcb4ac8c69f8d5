"""The task config: `autoresearch.toml` in the task directory.

Loaded once, validated with pydantic, and turned into one frozen `Task`. Every problem
becomes a `ConfigError` naming the file, the key and what is expected.

Keys this version does not know are allowed (later features read them), except one that looks
like a typo of a known key (`editabel`, `[metric]`) or a known key in the wrong section: those
are errors with a "did you mean" suggestion, since a silently ignored setting is worse.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoresearch.errors import AutoresearchError, ConfigError

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
    # Trusted evaluation, run after training in a separate process: the primary metric comes from
    # its footer, not from what the editable code printed (e.g. "python prepare.py --evaluate").
    eval: str | None = Field(default=None, min_length=1)
    # Held-out check run on the best commits at the end of a run, or by `autoresearch confirm`.
    final_eval: str | None = Field(default=None, min_length=1)
    # Modules imported once by a warm-start server that forks each `python script.py` run (warm.py).
    preload: tuple[str, ...] = ()
    # Stop after this many crashes in a row, of any kind; 0 never stops. --max-crashes overrides it.
    max_consecutive_crashes: int = Field(default=5, ge=0)
    # Pause after this many runs in a row that failed because of the setup (a missing package,
    # no GPU driver, a full disk), not the idea; 0 never pauses.
    pause_after_env_errors: int = Field(default=3, ge=0)
    # Kill a run whose processes together hold more resident memory than this many MB: crash `oom`.
    memory_limit_mb: float | None = Field(default=None, gt=0)
    # Environment variables the run gets besides the safe defaults (PATH, HOME, CUDA_*, ...).
    env: tuple[str, ...] = ()
    # With [executor] kind = "ray": a command run once per node, in the task directory, before the
    # node's first run (e.g. "python prepare.py" to download the data); see ray_node.py.
    setup: str | None = Field(default=None, min_length=1)

    @field_validator("env")
    @classmethod
    def _env_names(cls, v):
        return _check_env_names(v)

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
    # A keep must beat the best by more than this (in the primary's units) ...
    min_delta: float = Field(default=0.0, ge=0)
    # ... and by more than twice the run-to-run spread when the baseline is run noise_runs times.
    noise_runs: int = Field(default=1, ge=1)
    # Confirm a candidate keep with a second run under another seed (AUTORESEARCH_SEED) first.
    confirm: bool = False
    # Share of the most common class in the eval set: an accuracy equal to it is flagged as a
    # model that may predict one class (a run's footer may also print `majority_rate: ...`).
    majority_rate: float | None = Field(default=None, ge=0, le=1)

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
    # Environment variables the agent gets besides the safe defaults and its backend's API keys.
    env: tuple[str, ...] = ()

    @field_validator("env")
    @classmethod
    def _env_names(cls, v):
        return _check_env_names(v)
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


class ExecutorSection(_Section):
    # Where runs happen: "local" (this machine) or "ray" (a Ray task per run; ray_executor.py).
    kind: Literal["local", "ray"] = "local"
    # The Ray cluster: "auto" joins the one `ray start --head` started on this machine.
    address: str = "auto"
    # What each run asks Ray for. A CPU-only cluster: num_gpus = 0, num_cpus = 1.
    num_gpus: float = Field(default=1, ge=0)
    num_cpus: float | None = Field(default=None, ge=0)  # unset: Ray's default for a task (1)
    resources: dict[str, float] = {}  # custom Ray resources per run, e.g. {slot = 1}
    # Where each node keeps what [task] setup made; `~` is the node's home.
    cache_dir: str = "~/.cache/autoresearch/ray"

    def ray_options(self) -> dict:
        """The options of each run's Ray task."""
        options: dict = {"num_gpus": self.num_gpus}
        if self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


class EarlyStopSection(_Section):
    # Stop a run whose learning curve is hopelessly behind the earlier runs' at the same elapsed
    # training time (early_stop.py). Needs a curve: metrics.jsonl or `epoch ... <primary> ...` lines.
    enabled: bool = True
    percentile: float = Field(default=50.0, gt=0, le=100)  # stopped when worse than this % of earlier runs
    warmup: float = Field(default=0.25, ge=0, lt=1)  # fraction of the budget every run trains first
    min_curves: int = Field(default=3, ge=1)  # earlier curves at that time needed to judge a run
    interval: float = Field(default=1.0, gt=0)  # seconds between two looks at the curve


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_names(names):
    bad = [n for n in names if not _ENV_NAME.match(n)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an environment variable name (letters, digits, _)")
    return names


class TaskConfig(_Section):
    task: TaskSection
    metrics: MetricsSection
    agent: AgentSection = AgentSection()
    executor: ExecutorSection = ExecutorSection()
    early_stop: EarlyStopSection = EarlyStopSection()


class Task:
    """A loaded task: its directory and its validated config, with derived values."""

    def __init__(self, directory: Path, config: TaskConfig, path: Path):
        self.dir = directory
        self.config = config
        self.path = path

    def moved_to(self, directory: Path) -> "Task":
        """The same task in another checkout (a worker's worktree)."""
        return Task(Path(directory), self.config, self.path)

    def with_executor(self, kind: str | None = None, address: str | None = None) -> "Task":
        """The task with the command line's `--executor` / `--ray-address` over its [executor]."""
        if kind is None and address is None:
            return self
        if kind is not None and kind not in ("local", "ray"):
            raise AutoresearchError(f"--executor {kind!r}: must be 'local' or 'ray'")
        update = {k: v for k, v in (("kind", kind), ("address", address)) if v is not None}
        section = self.config.executor.model_copy(update=update)
        return Task(self.dir, self.config.model_copy(update={"executor": section}), self.path)

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
    _check_unknown_keys(path, raw, TaskConfig)
    try:
        config = TaskConfig.model_validate(raw)
    except ValidationError as exc:
        key, problem = _describe(exc.errors()[0])
        raise ConfigError(path, key, problem) from None
    _check_files(path, directory, config)
    return Task(directory, config, path)


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Field name -> the model of its table (or of its array of tables), for fields that have one."""
    out = {}
    for name, info in model.model_fields.items():
        todo = [info.annotation]
        while todo:
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                out[name] = t
                break
            todo.extend(typing.get_args(t))
    return out


def _close(key: str, candidates) -> str | None:
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.8)
    return by_lower[match[0]] if match else None


def _check_unknown_keys(path: Path, raw, model: type[BaseModel], prefix: str = "") -> None:
    """An unknown key that is a near miss of a known one, or a known one misplaced, is an error."""
    if not isinstance(raw, dict):
        return  # the schema validation reports the wrong type
    known, tables = set(model.model_fields), _sections(model)
    for key, value in raw.items():
        if key in tables:
            for item in value if isinstance(value, list) else [value]:
                _check_unknown_keys(path, item, tables[key], f"{prefix}{key}.")
        elif key not in known:
            problem = _misspelt(key, value, known - set(raw), tables, prefix) or _misplaced(key, prefix)
            if problem:
                raise ConfigError(path, f"{prefix}{key}", problem)


def _misspelt(key: str, value, candidates: set[str], tables: dict, prefix: str) -> str | None:
    suggestion = _close(key, candidates)
    if suggestion is None:
        return None
    shown = f"[{prefix}{suggestion}]" if suggestion in tables and isinstance(value, dict) else f"`{suggestion}`"
    return f"unknown key; did you mean {shown}?"


def _misplaced(key: str, prefix: str) -> str | None:
    """A key of a top-level section found elsewhere: at the top, or in another section."""
    if prefix.count(".") > 1:
        return None
    where = "at the top of the file" if not prefix else f"in [{prefix.rstrip('.')}]"
    others = [(section, model) for section, model in _sections(TaskConfig).items() if prefix != f"{section}."]
    for section, model in others:
        if key in model.model_fields:
            return f"unknown key {where}; `{key}` belongs in [{section}]"
    for section, model in others:
        suggestion = _close(key, model.model_fields)
        if suggestion is not None:
            return f"unknown key {where}; did you mean `{suggestion}`, which belongs in [{section}]?"
    return None


def _check_files(path: Path, directory: Path, config: TaskConfig) -> None:
    for key, names in (("task.editable", config.task.editable), ("task.readonly", config.task.readonly)):
        for name in names:
            if "\0" in name:
                raise ConfigError(path, key, f"{name!r} is not a file name")
            p = (directory / name).resolve()
            if not p.is_relative_to(directory):
                raise ConfigError(path, key, f"{name!r} is outside the task directory")
            if not p.is_file():
                raise ConfigError(path, key, f"{name!r} does not exist in {directory}; correct the name or create the file")
    both = set(config.task.editable) & set(config.task.readonly)
    if both:
        raise ConfigError(path, "task.readonly", f"{sorted(both)} are also editable; a file is one or the other")
