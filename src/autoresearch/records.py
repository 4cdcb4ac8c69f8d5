"""Immutable records that flow through the loop, and the status enum."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autoresearch.verdict import Reason, Status, Verdict


# The outcome types live in verdict.py; `CrashReason` is the name earlier versions used.
CrashReason = Reason


@dataclass(frozen=True)
class RunSpec:
    """What to run for one experiment."""

    command: str
    cwd: str
    env: dict[str, str]
    timeout: float
    log_path: str
    max_log_bytes: int = 50 * 1024 * 1024
    # Where the code comes from, for executors that run elsewhere (Ray): the experiment's commit,
    # the repository root, and the task directory inside it ("" at the root).
    commit: str = ""
    repo_dir: str = ""
    task_subdir: str = ""
    memory_limit_mb: float | None = None  # kill the run's tree above this resident memory
    # execution.sandbox.View: run inside bubblewrap with that view of the machine; None: unsandboxed.
    sandbox: Any = None


@dataclass(frozen=True)
class RunResult:
    """What happened when the training command ran."""

    exit_code: int | None  # None when killed at the timeout
    timed_out: bool
    wall_seconds: float
    peak_rss_mb: float  # peak resident memory of the whole process tree
    log_path: str
    log_truncated: bool = False
    output_tail: str = ""  # last part of the output, for footer parsing when the log is capped
    startup_seconds: float | None = None  # request to the script's first line; known for warm runs
    warm: bool = False  # forked from a preloaded server (warm.py) rather than a fresh process
    # warm: a fresh process's start (interpreter + preload imports, timed once by the server) less this fork's
    startup_saved_seconds: float | None = None
    node: str = ""  # where it ran, for executors that run elsewhere (Ray: "host:nodeid8"); "" here
    node_lost: bool = False  # every attempt's node died mid-run: nothing is known about the code
    sandboxed: bool = False  # it ran inside the bubblewrap sandbox (execution/sandbox.py)


@dataclass(frozen=True)
class Proposal:
    """What an agent did in one iteration.

    The agent edits the files in the work tree itself; the proposal says what and why.
    `ok` False means the agent failed (non-zero exit, timeout): nothing is trained.
    """

    description: str
    explanation: str
    ok: bool = True
    error: str = ""
    cost_usd: float = 0.0
    tokens: int = 0
    data: dict[str, Any] = field(default_factory=dict)  # agent-specific, kept in the ledger


@dataclass(frozen=True)
class Experiment:
    """One row of the ledger: everything recorded about one iteration."""

    iteration: int
    commit: str
    parent: str
    status: Status
    description: str
    explanation: str = ""
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    memory_gb: float = 0.0
    exit_code: int | None = None
    wall_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    agent: str = ""
    cost_usd: float = 0.0
    tokens: int = 0
    agent_data: dict[str, Any] = field(default_factory=dict)
    changed_files: tuple[str, ...] = ()
    content_hash: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    worker: int | None = None
    repair_of: int | None = None  # the crashed iteration this one repairs
    startup_seconds: float | None = None  # until the script's first line (warm starts make it short)
    warm: bool = False  # the run was forked from a preloaded server
    startup_saved_seconds: float | None = None  # warm: a fresh process's start less this fork's (RunResult)
    node: str = ""  # the machine it ran on, when not this one (Ray)
    gpu_util: float | None = None  # mean GPU utilisation sampled during the run (NVML), percent
    gpu_peak_mb: float | None = None  # peak GPU memory in use (NVML), when no footer says it
    # Early-stopped (early_stop.py): the fraction of the budget it trained; its metrics are partial.
    stopped_at: float | None = None
    sandboxed: bool = False  # its run ran inside the bubblewrap sandbox ([sandbox] mode)

    @property
    def verdict(self) -> Verdict:
        """What `status` and `reason` mean (parsed once per distinct string)."""
        return Verdict.of_record(self)

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["status"] = self.status.value
        d["changed_files"] = list(self.changed_files)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Experiment":
        """The record a ledger line holds; unknown keys (from a newer version) are ignored.

        Built without calling __init__, which for a frozen dataclass sets every field through
        object.__setattr__: that was three quarters of the time to read a ledger (16 of 20 µs a
        record), and `summarize` reads all of it. The result equals the record __init__ builds.
        """
        known = dict(d) if _FIELDS.issuperset(d) else {k: v for k, v in d.items() if k in _FIELDS}
        missing = _REQUIRED.difference(known)
        if missing:
            raise TypeError(f"missing field(s): {', '.join(sorted(missing))}")
        status = _STATUS.get(known["status"])
        known["status"] = status if status is not None else Status(known["status"])  # raises ValueError
        known["changed_files"] = tuple(known.get("changed_files", ()))
        record = object.__new__(cls)
        fields = record.__dict__
        fields.update(_DEFAULTS)
        for name, factory in _FACTORIES:
            fields[name] = factory()  # a fresh dict per record, as __init__ makes
        fields.update(known)
        return record


_FIELDS = frozenset(Experiment.__dataclass_fields__)
_REQUIRED = frozenset(f.name for f in dataclasses.fields(Experiment)
                      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Experiment) if f.default is not dataclasses.MISSING}
_FACTORIES = tuple((f.name, f.default_factory) for f in dataclasses.fields(Experiment)
                   if f.default_factory is not dataclasses.MISSING)
_STATUS = {s.value: s for s in Status}
