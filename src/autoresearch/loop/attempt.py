"""`Attempt`: everything one iteration knows, filled in stage by stage.

A stage takes the Attempt, reads what the earlier stages wrote and adds its own part; nothing of
an iteration lives on the Loop. A confirmation run is an Attempt of its own (kind CONFIRMATION,
`of` the iteration it confirms), so its run result and GPU facts never mix with the candidate's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.agents.base import Repeat
from autoresearch.records import Experiment, Proposal, RunResult
from autoresearch.verdict import Verdict


class Kind(str, enum.Enum):
    BASELINE = "baseline"  # the unmodified code, once, to set the bar
    REPEAT = "repeat"  # the baseline again under another seed: the noise estimate
    AGENT = "agent"  # an agent's proposal
    CONFIRMATION = "confirmation"  # a keep candidate's commit again under another seed

    @property
    def proposes(self) -> bool:
        """Only an agent iteration asks the agent and changes the code."""
        return self is Kind.AGENT


@dataclass(frozen=True)
class GpuFacts:
    """What NVML saw during one run (None where nothing was sampled)."""

    utilisation: float | None = None
    peak_mb: float | None = None


@dataclass
class Attempt:
    n: int  # the iteration number, its row in the ledger and its run folder
    kind: Kind
    parent: str  # the best commit when it began: the code it starts from
    run_dir: Path
    started: float
    untracked: tuple[str, ...] = ()  # the user's untracked files before it began: never the agent's doing
    readonly_before: dict = field(default_factory=dict)  # hashes of the read-only files
    repeat: int = 0  # REPEAT: its number (1, 2, ...)
    of: int | None = None  # CONFIRMATION: the iteration it confirms
    history: tuple[Experiment, ...] = ()
    best: Experiment | None = None
    lines_before: int = 0  # code lines of the editable files before the change (simplicity)
    repair: Experiment | None = None  # the crashed experiment this one repairs
    proposal: Proposal | None = None
    repeats: list[Repeat] = field(default_factory=list)  # its proposals that repeated earlier code (not run)
    rejected: list[Proposal] = field(default_factory=list)  # those proposals: what they cost still counts
    changed: list[str] = field(default_factory=list)
    created: list[str] | None = None  # new files of the agent's (deleted on a reset); None: unknown
    commit: str = ""
    result: RunResult | None = None
    metrics: dict = field(default_factory=dict)
    eval_failure: Verdict | None = None  # the trusted eval failed: a crash
    left: object | None = None  # execution.pristine.Left: its outputs, the read-only files it touched
    flag: str = ""  # the trusted eval disagrees with the run's own footer
    tampered: list[str] = field(default_factory=list)  # git files / files outside the task the agent changed (put back)
    run_tampered: list[str] = field(default_factory=list)  # git files its run (or eval) changed (put back)
    gpu: GpuFacts = GpuFacts()
    verdict: Verdict | None = None
    stop: object | None = None  # early_stop.Stop: the rule ended its run early (its metrics are partial)
    confirmation: "Attempt | None" = None
    record: Experiment | None = None

    @property
    def seed(self) -> str | None:
        """AUTORESEARCH_SEED of its run: repeats and confirmations run the same code under another seed."""
        if self.kind is Kind.REPEAT:
            return str(self.repeat)
        if self.kind is Kind.CONFIRMATION:
            return str(self.n)
        return None

    @property
    def trained(self) -> bool:
        """The command ran to an exit 0 within its time."""
        r = self.result
        return r is not None and r.exit_code == 0 and not r.timed_out
