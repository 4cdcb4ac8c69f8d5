"""The agent seam: `Agent.propose(context) -> Proposal`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from autoresearch.errors import AutoresearchError
from autoresearch.records import Experiment, Proposal


@dataclass(frozen=True)
class Context:
    """Everything an agent may look at when proposing the next experiment.

    `prompt` is the rendered text for LLM-style agents; structured agents (the tuner)
    read the fields instead.
    """

    task_dir: Path
    iteration: int  # 1, 2, ... (0 is the baseline and never reaches an agent)
    editable: tuple[str, ...]
    readonly: tuple[str, ...]
    history: Sequence[Experiment]  # every earlier experiment of the tag, oldest first
    best: Experiment  # the current best (the code in the work tree is its code)
    primary: str
    direction: str  # "minimize" | "maximize"
    prompt: str = ""
    prompt_file: Path | None = None
    seed: int = 0
    stop_event: threading.Event | None = None  # set on Ctrl-C: stop the agent's process too
    on_process_start: Callable[[int], None] | None = None  # report a started pid, for cleanup after a crash
    extra: dict = field(default_factory=dict)


class Agent(Protocol):
    """Edits the editable files in `context.task_dir` and says what it did."""

    name: str

    def propose(self, context: Context) -> Proposal: ...


@dataclass(frozen=True)
class Memo:
    """What an LLM agent's `write_memo(request)` returns: the strategy memo and what it cost.

    The memo call is not an iteration, so its cost has no ledger row; the outer loop records
    it beside the ledger (outer.record_memo_call), and status totals and --max-cost-usd count it.
    A plain `str` from `write_memo` is a memo that cost nothing.
    """

    text: str
    cost_usd: float = 0.0
    tokens: int = 0


class MemoFailed(AutoresearchError):
    """`write_memo` got no usable memo; what the attempt spent still counts."""

    def __init__(self, message: str, *, cost_usd: float = 0.0, tokens: int = 0):
        super().__init__(message)
        self.cost_usd = cost_usd
        self.tokens = tokens
