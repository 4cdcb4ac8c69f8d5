"""The agent seam: `Agent.propose(context) -> Proposal`."""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from autoresearch.errors import AutoresearchError
from autoresearch.records import Experiment, Proposal


@dataclass(frozen=True)
class Repeat:
    """A proposal of this iteration that was not run: its code is that of an earlier experiment.

    The loop hands it back to the agent (`Context.repeats`, and a section of the prompt) and
    asks again; after `[agent] max_repeats` of them in a row the iteration ends as an `agent` crash.
    """

    iteration: int  # the experiment whose code it repeats
    commit: str  # that experiment's commit ("" while it still runs on another worker)
    score: float | None  # that experiment's primary metric (None: still running, or none recorded)
    description: str  # what the agent said of the proposal that was not run
    data: dict = field(default_factory=dict)  # that proposal's agent data (the tuner's params)
    running: bool = False  # the earlier experiment is running on another worker right now

    def text(self, primary: str) -> str:
        """One line for a person or a prompt."""
        if self.running:
            where = f"iteration {self.iteration}, which another worker is running right now"
        else:
            score = "no score" if self.score is None else f"{primary} = {self.score:.6g}"
            where = f"iteration {self.iteration} (commit {self.commit[:7]}, {score})"
        return f'"{self.description}" gives the same code as {where}'


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
    # execution.agent_sandbox.AgentSandbox: run the agent's processes inside bubblewrap, with the
    # view its `view(kind, env, scratch)` gives; None: not sandboxed ([sandbox] mode off, or unavailable).
    sandbox: Any = None
    extra: dict = field(default_factory=dict)
    # Proposals of this iteration that repeated earlier code and were not run, oldest first:
    # propose something else. The prompt says the same in its "Not run" section.
    repeats: tuple[Repeat, ...] = ()


class Agent(abc.ABC):
    """Edits the editable files in `context.task_dir` and says what it did.

    `propose` is the one method a backend must write; the hooks below are what the loop may
    ask of any agent, and their defaults say "nothing to do":

        name        shown in the ledger's `agent` column
        repairs     False: never asked to repair its own crashed change (the tuner only avoids it)
        check()     fail in a second, before the baseline trains (a missing binary, a bad key);
                    `sandbox` is what its processes run in (Context.sandbox), for any it starts
        write_memo  the strategy memo written by the agent (an LLM); None: the rules write it
        close()     let go of what it holds (a server, a session) when the run ends
    """

    name: str = "agent"
    repairs: bool = True

    @abc.abstractmethod
    def propose(self, context: Context) -> Proposal:
        """Edit the files of `context.task_dir` (editable ones only) and say what and why."""

    def check(self, sandbox=None) -> None:
        """Raise AutoresearchError with a fix when the agent cannot work here."""

    def write_memo(self, request: str) -> "Memo | str | None":
        """The strategy memo for `request` (the rendered memo prompt), or None: not this agent's job."""
        return None

    def close(self) -> None:
        """Called once when the run ends."""


class _Declared(Agent):
    """An agent written against the bare protocol (any object with `propose`): its optional
    methods, where it has them, behind the declared hooks. The one place that looks them up."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def name(self) -> str:  # read each time: a test or a caller may rename it after the loop starts
        return getattr(self.inner, "name", Agent.name)

    @property
    def repairs(self) -> bool:
        return getattr(self.inner, "repairs", True)

    def propose(self, context: Context) -> Proposal:
        return self.inner.propose(context)

    def check(self, sandbox=None) -> None:  # the bare protocol's check takes no sandbox
        hook = getattr(self.inner, "check", None)
        if hook is not None:
            hook()

    def write_memo(self, request: str):
        hook = getattr(self.inner, "write_memo", None)
        return hook(request) if hook is not None else None

    def close(self) -> None:
        hook = getattr(self.inner, "close", None)
        if hook is not None:
            hook()


def as_agent(agent) -> Agent:
    """`agent` itself when it is an Agent, else it behind the Agent hooks."""
    return agent if isinstance(agent, Agent) else _Declared(agent)


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
