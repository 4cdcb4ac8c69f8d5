"""The task config: `autoresearch.toml` in the task directory.

Loaded once, validated with pydantic, and turned into one frozen `Task`. Every problem
becomes a `ConfigError` naming the file, the key and what is expected.

Keys this version does not know are allowed (later features read them), except one that looks
like a typo of a known key (`editabel`, `[metric]`) or a known key in the wrong section: those
are errors with a "did you mean" suggestion, since a silently ignored setting is worse.
"""

from __future__ import annotations

import math

import difflib
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.memo import DEFAULT_PLATEAU  # the one plateau rule's default

CONFIG_NAME = "autoresearch.toml"
STORE_DIR = ".autoresearch"  # the run store (store.py), where an inferred config is kept per tag
_UNSET = object()
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
    # Globs (relative to the task directory) of the files a run writes that stay after it and that the
    # trusted eval gets in its pristine copy (a checkpoint, predictions); everything else a run creates
    # in the task directory is removed after it (execution/pristine.py). Each must match a file the run wrote.
    outputs: tuple[str, ...] = ()
    # Modules imported once by a warm-start server that forks each `python script.py` run (warm.py).
    preload: tuple[str, ...] = ()
    # Warm starts for plain `python script.py` runs when `preload` names modules; false: every run
    # is a fresh process (a script that must set the environment before its imports, say).
    warm: bool = True
    # Functions of the task's read-only modules ("prepare:load_data") the warm-start server calls
    # once; each run's call then returns a copy of that result instead of loading the data again.
    preload_data: tuple[str, ...] = ()
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
    # The interpreter `python` means in the run command (relative to the task directory); unset: the
    # repository's .venv when it has one, else the interpreter autoresearch runs under (interpreter.py).
    python: str | None = Field(default=None, min_length=1)

    @field_validator("env")
    @classmethod
    def _env_names(cls, v):
        return _check_env_names(v)

    @field_validator("outputs", mode="before")
    @classmethod
    def _a_list_of_globs(cls, v):
        if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(g, str) for g in v):
            raise ValueError("must be a list of globs relative to the task directory, e.g. [\"checkpoints/*.pt\"]")
        return v

    @field_validator("run", "eval", "final_eval", "setup")
    @classmethod
    def _not_blank(cls, v):
        if v is not None and not v.strip():
            raise ValueError("is blank; give the shell command, e.g. \"python train.py\"")
        return v

    @field_validator("time_budget", "timeout", "memory_limit_mb", mode="before")
    @classmethod
    def _a_real_number(cls, v):
        if isinstance(v, bool):  # TOML true is not 1 second
            raise ValueError("must be a number, not true/false")
        if isinstance(v, (int, float)) and not math.isfinite(v):
            raise ValueError("must be a finite number (inf would mean no limit at all)")
        return v

    @field_validator("preload_data")
    @classmethod
    def _data_calls(cls, v):
        for call in v:
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", call):
                raise ValueError(f"{call!r} is not module:function, e.g. \"prepare:load_data\"")
        return v

    @model_validator(mode="after")
    def _data_from_readonly_files(self):
        for call in self.preload_data:
            file = call.split(":")[0].replace(".", "/") + ".py"
            if file not in self.readonly:
                raise ValueError(f"preload_data {call!r}: {file} must be listed in readonly (the warm-start server "
                                 f"loads its data once for the night, so the file must not change); add it there")
        return self

    @model_validator(mode="after")
    def _timeout_covers_the_budget(self):
        if self.timeout is not None and self.timeout < self.time_budget:
            raise ValueError(f"timeout ({self.timeout:g} s) is below time_budget ({self.time_budget:g} s): every run "
                             "would be killed before its budget; raise it or leave it out (2 x time_budget + 60)")
        return self

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
    # Memory as a soft constraint (memory_cost.py): up to this many MB of memory_key is free ...
    memory_soft_limit_mb: float | None = Field(default=None, gt=0)
    # ... and every GB beyond it (and beyond the best's) must buy this much primary gain.
    memory_gain_per_gb: float | None = Field(default=None, ge=0)
    # A keep must beat the best by more than this (in the primary's units) ...
    min_delta: float = Field(default=0.0, ge=0)
    # ... and by more than twice the run-to-run spread: the baseline runs noise_runs times (under
    # AUTORESEARCH_SEED 1, 2, ... after the first), and each confirmation run adds to the estimate.
    noise_runs: int = Field(default=2, ge=1)
    # A fixed step count and seeded training: the same code gives the same number, so the baseline
    # runs once and the floor is min_delta (noise_runs defaults to 1).
    deterministic: bool = False
    # Confirm a candidate keep with a second run under another seed (AUTORESEARCH_SEED) first.
    confirm: bool = False
    # Share of the most common class in the eval set: an accuracy equal to it is flagged as a
    # model that may predict one class (a run's footer may also print `majority_rate: ...`).
    majority_rate: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _memory_pair(self):
        if (self.memory_soft_limit_mb is None) != (self.memory_gain_per_gb is None):
            raise ValueError("memory_soft_limit_mb and memory_gain_per_gb go together: set both (the MB that "
                             "are free, and the primary gain each GB beyond them must buy) or neither")
        return self

    @model_validator(mode="after")
    def _deterministic_runs_once(self):
        if not self.deterministic:
            return self
        if "noise_runs" in self.model_fields_set and self.noise_runs > 1:
            raise ValueError(f"deterministic = true says a second run of the same code gives the same number, "
                             f"noise_runs = {self.noise_runs} asks to measure how much it differs; keep one: "
                             "drop noise_runs, or set deterministic = false")
        object.__setattr__(self, "noise_runs", 1)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _primary_is_no_tie_break(self):
        if any(t.name == self.primary for t in self.tie_break):
            raise ValueError(f"tie_break lists the primary {self.primary!r}; a tie-break decides only when the "
                             "primary is equal, so name other metrics there")
        return self

    @field_validator("tie_break", mode="before")
    @classmethod
    def _names_to_tables(cls, v):
        # `tie_break = ["mc_acc"]` is shorthand for `[{name = "mc_acc"}]`.
        if isinstance(v, (list, tuple)):
            return [{"name": x} if isinstance(x, str) else x for x in v]
        return v


class AgentSection(_Section):
    # Keys the coding-CLI backends read from this section (agents/cli_agent.py COMMON_KEYS): never
    # taken for a typo of another section's key (`model` is not `[sandbox] mode`).
    EXTRAS: typing.ClassVar[frozenset[str]] = frozenset({"binary", "model", "extra_args", "retries", "backoff",
                                                          "preflight"})
    kind: str = "tuner"
    command: str = ""
    # Wall-clock limit of one agent call, seconds: long enough for a real edit by a coding CLI; known
    # failures (no login, no network) end a call at once, so this only bounds a true hang.
    timeout: float = Field(default=1200.0, gt=0)
    # Environment variables the agent gets besides the safe defaults and its backend's API keys.
    env: tuple[str, ...] = ()

    @field_validator("env")
    @classmethod
    def _env_names(cls, v):
        return _check_env_names(v)
    recent: int = Field(default=10, ge=1)  # experiments shown in full in the prompt
    prompt_budget: int = Field(default=24_000, ge=2_000)  # characters the prompt may take
    memo_every: int = Field(default=5, ge=0)  # refresh the strategy memo every K iterations (0: never)
    plateau: int = Field(default=DEFAULT_PLATEAU, ge=0)  # iterations without a keep that make a plateau (0: off)
    max_fix_attempts: int = Field(default=2, ge=0)  # repairs of a crashed change before it is abandoned
    # Proposals in a row whose code repeats an earlier experiment: each goes back to the agent
    # with what it repeats; this many end the iteration as an `agent` crash (nothing is run).
    max_repeats: int = Field(default=3, ge=1)

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
    percentile: float = Field(default=10.0, gt=0, le=100)  # stopped when worse than this % of earlier runs
    warmup: float = Field(default=0.2, ge=0, lt=1)  # fraction of the budget every run trains first
    min_curves: int = Field(default=3, ge=1)  # earlier curves at that time needed to judge a run
    interval: float = Field(default=0.5, gt=0)  # seconds between two looks at the curve


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_names(names):
    bad = [n for n in names if not _ENV_NAME.match(n)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an environment variable name (letters, digits, _)")
    return names


class SandboxSection(_Section):
    """`[sandbox]`: bubblewrap around the runs (execution/sandbox.py)."""

    # auto: sandboxed where bwrap works, one warning where not; required: refuse to start without
    # it; off: never.
    mode: Literal["auto", "required", "off"] = "auto"
    network: bool = False  # runs get the network (W&B and the like); setup always has it
    writable: tuple[str, ...] = ()  # more paths runs may write, relative to the task directory or absolute
    # more paths agent processes may write (a command agent's own tool state, ~/.mytool), as `writable`
    agent_writable: tuple[str, ...] = ()


class TaskConfig(_Section):
    task: TaskSection
    metrics: MetricsSection
    agent: AgentSection = AgentSection()
    executor: ExecutorSection = ExecutorSection()
    early_stop: EarlyStopSection = EarlyStopSection()
    sandbox: SandboxSection = SandboxSection()


class Task:
    """A loaded task: its directory and its validated config, with derived values.

    `inferred` is set when no autoresearch.toml was there and the config was read from a
    karpathy-layout repository (layout.py); `baseline_wall` once the baseline's wall time is
    known, which the hard timeout is derived from when none is configured (budget.py).
    """

    def __init__(self, directory: Path, config: TaskConfig, path: Path, *, inferred=None,
                 interpreter=None, harness=_UNSET, baseline_wall: float | None = None, adopt_config: bool = False):
        self.dir = directory
        # A resume may adopt rules that differ from the tag's (tag_config.py); else it refuses them.
        self.adopt_config = adopt_config
        self.config = config
        self.path = path
        self.inferred = inferred
        self._interpreter = interpreter
        self._harness = harness
        self.baseline_wall = baseline_wall

    def _copy(self, **changes) -> "Task":
        fields = dict(directory=self.dir, config=self.config, path=self.path, inferred=self.inferred,
                      interpreter=self._interpreter, harness=self._harness, baseline_wall=self.baseline_wall,
                      adopt_config=self.adopt_config)
        fields.update(changes)
        return Task(fields.pop("directory"), fields.pop("config"), fields.pop("path"), **fields)

    def moved_to(self, directory: Path) -> "Task":
        """The same task in another checkout (a worker's worktree): the same interpreter and budget,
        which were found in the main checkout (a worktree has no untracked .venv)."""
        return self._copy(directory=Path(directory), interpreter=self.interpreter, harness=self.harness)

    def with_config(self, config: TaskConfig) -> "Task":
        """The same task under another validated config (a tag's stored rules, tag_config.py)."""
        return self._copy(config=config, harness=_UNSET)

    def adopting_config(self, adopt: bool = True) -> "Task":
        """The task whose resume adopts rules that differ from the tag's (`run --adopt-config`)."""
        return self._copy(adopt_config=adopt)

    def with_baseline_wall(self, seconds: float | None) -> "Task":
        """The task once its baseline took `seconds` of wall time: the timeout follows it (budget.py)."""
        return self._copy(baseline_wall=seconds)

    @property
    def interpreter(self):
        """The interpreter `python` means in the runs (interpreter.py)."""
        if self._interpreter is None:
            from autoresearch.interpreter import detect
            self._interpreter = detect(self.dir, self.config.task.python, self.path)
        return self._interpreter

    @property
    def harness(self):
        """The budget the editable script imports from the read-only harness, or None (budget.py)."""
        if self._harness is _UNSET:
            from autoresearch.budget import harness_budget
            self._harness = harness_budget(self.dir, self.editable, self.readonly)
        return self._harness

    def with_executor(self, kind: str | None = None, address: str | None = None) -> "Task":
        """The task with the command line's `--executor` / `--ray-address` over its [executor]."""
        if kind is None and address is None:
            return self
        if kind is not None and kind not in ("local", "ray"):
            raise AutoresearchError(f"--executor {kind!r}: must be 'local' or 'ray'")
        update = {k: v for k, v in (("kind", kind), ("address", address)) if v is not None}
        section = self.config.executor.model_copy(update=update)
        return self._copy(config=self.config.model_copy(update={"executor": section}))

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
        """The seconds a run trains: the harness's TIME_BUDGET when the script reads that, else the config's."""
        harness = self.harness
        return harness.seconds if harness is not None else self.config.task.time_budget

    @property
    def timeout(self) -> float:
        return self.timeout_choice.seconds

    @property
    def timeout_choice(self):
        """The hard limit of the next run and, when it was derived rather than configured, why (budget.py).

        A configured `timeout` wins. Else, once the baseline's wall time is known, 2 x that + 60 s
        when more than the default; before it, a generous limit where start-up and evaluation are
        known to sit outside the budget (the script trains for the harness's TIME_BUDGET, or the
        config was inferred from the karpathy layout); the default 2 x budget + 60 s otherwise."""
        from autoresearch import budget

        configured = self.config.task.timeout
        if configured is not None or self.baseline_wall is not None:
            return budget.hard_timeout(configured, self.time_budget, self.baseline_wall)
        if self.harness is not None or self.inferred is not None:
            return budget.hard_timeout(None, self.time_budget, None)
        return budget.Timeout(budget.default_timeout(self.time_budget))

    def notes(self) -> list[str]:
        """What the user should know before the first run: an inferred config, the budget's source."""
        out = []
        if self.inferred is not None:
            out.append(f"no {CONFIG_NAME} in {self.dir}: recognised the karpathy/autoresearch layout "
                       "(program.md, train.py, prepare.py); inferred:")
            out.extend(self.inferred.summary())
        elif STORE_DIR in self.path.parts:
            out.append(f"config: the one inferred when this run began, kept in {self.path}")
        harness = self.harness
        if harness is not None and self.inferred is None:
            configured = self.config.task.time_budget
            if configured != harness.seconds:
                out.append(f"budget: {harness.describe()} (read-only), so time_budget = {configured:g} in "
                           f"{self.path.name} cannot change it; the agent is told {harness.seconds:g} s and the "
                           f"time limits follow it (to train for less, the harness would have to change)")
            else:
                out.append(f"budget: {harness.describe()} (read-only)")
        choice = self.timeout_choice
        if choice.note:
            out.append(f"timeout: {choice.note}")
        return out

    @property
    def metrics(self) -> MetricsSection:
        return self.config.metrics

    @property
    def columns(self) -> tuple[str, ...]:
        return columns_of(self.config.metrics)

    @property
    def agent(self) -> AgentSection:
        return self.config.agent


def columns_of(metrics: MetricsSection) -> tuple[str, ...]:
    """results.tsv's metric columns: `columns`, else the primary and the tie-breaks."""
    return metrics.columns if metrics.columns else (metrics.primary, *(t.name for t in metrics.tie_break))


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


def stored_config(directory: Path, tag: str) -> Path:
    """Where a run keeps the config it inferred: `.autoresearch/<tag>/autoresearch.toml`."""
    return Path(directory) / STORE_DIR / tag / CONFIG_NAME


def load_task(task_dir: str | Path, tag: str | None = None) -> Task:
    """Read and validate `autoresearch.toml` in `task_dir`.

    Without one: the config a run with `tag` inferred and kept in its store, or, for a
    karpathy-layout repository (program.md, train.py, prepare.py), the config inferred now
    (layout.py); `Task.inferred` then says so."""
    directory = Path(task_dir).resolve()
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise ConfigError(directory, None, "task directory does not exist")
    if not path.is_file():
        kept = stored_config(directory, tag) if tag and "/" not in tag and ".." not in tag else None
        if kept is not None and kept.is_file():
            path = kept
        else:
            from autoresearch.layout import infer
            inferred = infer(directory)
            if inferred is None:
                raise ConfigError(path, None, "no task config here; create it with [task] run/editable/time_budget and "
                                              "[metrics] primary/direction (`autoresearch init` writes a commented one)")
            return _validated(directory, path, inferred.raw, inferred=inferred)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    return _validated(directory, path, raw)


def _validated(directory: Path, path: Path, raw: dict, inferred=None) -> Task:
    _check_unknown_keys(path, raw, TaskConfig)
    try:
        config = TaskConfig.model_validate(raw)
    except ValidationError as exc:
        key, problem = _describe(exc.errors()[0])
        raise ConfigError(path, key, problem) from None
    _check_files(path, directory, config)
    task = Task(directory, config, path, inferred=inferred)
    task.interpreter  # a `[task] python` that is not there fails here, naming the key
    return task


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
        elif key not in known and key not in getattr(model, "EXTRAS", ()):
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
            if ".git" in Path(name).parts or ".git" in p.relative_to(directory).parts:
                raise ConfigError(path, key, f"{name!r} is inside .git; list the task's own files, never git's")
            if not p.is_file():
                raise ConfigError(path, key, f"{name!r} does not exist in {directory}; correct the name or create the file")
    from autoresearch.execution.pristine import outputs_problem

    problem = outputs_problem(config.task.outputs, (*config.task.editable, *config.task.readonly))
    if problem:
        raise ConfigError(path, "task.outputs", problem)
    both = set(config.task.editable) & set(config.task.readonly)
    if both:
        raise ConfigError(path, "task.readonly", f"{sorted(both)} are also editable; a file is one or the other")
