"""The outcome of an experiment as a value: `Verdict(status, reason, detail)`.

The ledger's and results.tsv's `reason` strings are renderings of a Verdict, and this module is
the one place that reads them back. Everything that asks "what happened" (the tuner, the crash
policy, the repair hook, the analysis) asks a predicate here, never a prefix of the string, so
rewording a message cannot silently change what the loop decides.

    Verdict.parse("crash", "oom: CUDA out of memory at train.py:88")
        -> Verdict(CRASH, Reason.OOM, "CUDA out of memory at train.py:88")
    Verdict(Status.DISCARD, Reason.DUPLICATE, of=3).render()
        -> "duplicate of iteration 3; not run again"

`parse(render(v)) == v` for every verdict the loop makes, and `parse(s).render() == s` for every
string an old ledger holds; a string this version does not know parses as `Reason.OTHER` and
renders back unchanged.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache


class Status(str, enum.Enum):
    KEEP = "keep"
    DISCARD = "discard"
    CRASH = "crash"
    IMPORTED = "imported"  # a run this tool did not make (`autoresearch import`): no commit, never the best


class Reason(str, enum.Enum):
    """Why an experiment ended as it did. A crash kind's value is the first word of its reason."""

    # Crashes read from the run (crash.classify): the value is the reason's first word.
    TIMEOUT = "timeout"
    OOM = "oom"
    ENV = "env"  # the setup, not the idea: missing package or interpreter, GPU driver
    DISK = "disk"  # no space left on device
    SYNTAX = "syntax"
    NAN = "nan"
    NO_METRIC = "no_metric"
    EXIT_CODE = "exit_code"
    # Crashes the loop decides before or around the run.
    GUARD = "guard"  # a file outside `editable` changed, or a read-only one
    AGENT = "agent"  # the agent failed or made no change: nothing was trained
    NODE_LOST = "node_lost"  # the machine running it died (Ray), twice: never the idea's fault
    EVAL = "eval"  # the trusted evaluation (`[task] eval`) failed
    # Rows that are not a judgement of a new idea.
    BASELINE = "baseline"
    NOISE_REPEAT = "noise_repeat"  # "noise: baseline repeat 2"
    CONFIRMATION = "confirmation"  # "confirmation run of iteration 7" (the same commit, another seed)
    DUPLICATE = "duplicate"  # "duplicate of iteration 3; not run again"
    # The decision rules (decision.decide and the noise floor).
    IMPROVED = "improved"
    WORSE = "worse"
    TIE_BREAK_IMPROVED = "tie_break_improved"
    TIE_BREAK_WORSE = "tie_break_worse"
    SIMPLER = "simpler"
    NO_IMPROVEMENT = "no_improvement"
    # "score gain 0.001000 is within the noise floor 0.004000[: 2 x the spread (std 0.002000) of 2 runs of the same code]"
    WITHIN_NOISE = "within_noise"
    # "val_acc gain 0.004000 does not pay for 2048 MB of peak_vram_mb above the soft limit 1024 MB (needs 0.020000)"
    MEMORY_COST = "memory_cost"
    SEED_ONLY = "seed_only"  # "a seed change alone is never a keep (noise floor ...)"
    NOT_CONFIRMED = "not_confirmed"  # "not confirmed by iteration 8 under another seed"
    STOPPED_EARLY = "stopped_early"  # "stopped at 38% of the budget: val_acc 0.71 while earlier runs had 0.9 ..."
    IMPORTED = "imported"  # "imported from runs/m0_adam": recorded by `autoresearch import`
    OTHER = "other"  # a string this version does not know (a newer one wrote it): kept verbatim

    @property
    def is_crash_kind(self) -> bool:
        """Rendered as `<value>: <detail>`."""
        return self in _CRASH_KINDS


_CRASH_KINDS = frozenset({Reason.TIMEOUT, Reason.OOM, Reason.ENV, Reason.DISK, Reason.SYNTAX, Reason.NAN,
                          Reason.NO_METRIC, Reason.EXIT_CODE, Reason.GUARD, Reason.AGENT, Reason.NODE_LOST,
                          Reason.EVAL})
_BY_WORD = {r.value: r for r in _CRASH_KINDS}
ENVIRONMENTAL = frozenset({Reason.ENV, Reason.DISK})
UNTRAINED = frozenset({Reason.AGENT, Reason.GUARD, Reason.NODE_LOST})  # crashes where nothing was trained
REPAIRABLE = frozenset({Reason.EXIT_CODE, Reason.NAN, Reason.NO_METRIC, Reason.SYNTAX})  # they point at the change
ENDS_STREAK = frozenset({Reason.NODE_LOST})  # says nothing about the ideas: a crash streak stops counting there
# Crash details that show the setup failed even where the kind is the code's (an exit code from a
# missing interpreter, say): "fix your code" would send the agent astray.
SETUP_HINTS = ("ModuleNotFoundError", "command not found", "No such file or directory: 'python",
               "CUDA driver", "libcuda", "cannot open shared object file")

NOISE_TEXT = "noise: baseline repeat"
IMPORTED_TEXT = "imported from"
CONFIRM_TEXT = "confirmation run of iteration"
_FLAG = "; flagged: "
_CONFIRMED = re.compile(r"; confirmed by iteration (\d+)$")
_DUPLICATE = re.compile(r"duplicate of iteration (\d+)(?: \((?P<why>[^)]*)\); not run|; not run again)$")
_CONFIRMATION = re.compile(re.escape(CONFIRM_TEXT) + r" (\d+)(?:: (?P<detail>.*))?$", re.S)
_NOISE = re.compile(re.escape(NOISE_TEXT) + r" (\d+)$")
_NOT_CONFIRMED = re.compile(r"not confirmed by iteration (\d+) under another seed$")
_SEED_ONLY = re.compile(r"a seed change alone is never a keep \(noise floor (?P<floor>[^)]*)\)$")
_DECISIONS = (  # (pattern over the whole sentence, reason); the sentence itself is the detail
    (re.compile(r"stopped at \d+% of the budget: .+ while earlier runs had .+ at that time"), Reason.STOPPED_EARLY),
    # Since noise-aware keeps became the default, the sentence ends with where the floor comes from.
    (re.compile(r".+ gain \S+ is within the noise floor [^\s:]+(?:: .+)?"), Reason.WITHIN_NOISE),
    (re.compile(r".+ gain \S+ does not pay for \S+ MB of .+ above the soft limit .+ MB \(needs \S+\)"),
     Reason.MEMORY_COST),
    (re.compile(r".+ equal, tie-break .+ improved"), Reason.TIE_BREAK_IMPROVED),
    (re.compile(r".+ equal, tie-break .+ worse"), Reason.TIE_BREAK_WORSE),
    (re.compile(r"all metrics equal and the code is simpler"), Reason.SIMPLER),
    (re.compile(r"no improvement"), Reason.NO_IMPROVEMENT),
    (re.compile(r".+ improved"), Reason.IMPROVED),
    (re.compile(r".+ worse"), Reason.WORSE),
)
# Reasons whose detail is the decision's whole sentence ("val_bpb improved").
_SENTENCES = frozenset(r for _, r in _DECISIONS)


@dataclass(frozen=True)
class Verdict:
    """One experiment's outcome. `detail`: what follows a crash kind, or the decision's sentence.

    `of`: the iteration it refers to (duplicate of, confirmation of, not confirmed by) or the
    repeat's number; `flag`: the trusted eval's disagreement; `confirmed_by`: the confirmation
    run that made a keep stand.
    """

    status: Status
    reason: Reason
    detail: str = ""
    of: int | None = None
    flag: str = ""
    confirmed_by: int | None = None

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def crash(cls, reason: Reason, detail: str = "") -> "Verdict":
        return cls(Status.CRASH, reason, detail)

    @classmethod
    def parse(cls, status: Status | str, text: str) -> "Verdict":
        """The Verdict a recorded (status, reason) pair means; never raises."""
        return _parse(Status(status), text)

    @classmethod
    def of_record(cls, record) -> "Verdict":
        """The Verdict of a ledger record (anything with `status` and `reason`)."""
        return _parse(record.status, record.reason)

    # -- rendering -----------------------------------------------------------------------
    def render(self) -> str:
        """The ledger's `reason` string, byte for byte as earlier versions wrote it."""
        r = self.reason
        if r.is_crash_kind:
            text = f"{r.value}: {self.detail}"
        elif r is Reason.BASELINE:
            text = "baseline"
        elif r is Reason.NOISE_REPEAT:
            text = f"{NOISE_TEXT} {self.of}"
        elif r is Reason.CONFIRMATION:
            text = f"{CONFIRM_TEXT} {self.of}" + (f": {self.detail}" if self.detail else "")
        elif r is Reason.DUPLICATE:
            text = (f"duplicate of iteration {self.of} ({self.detail}); not run" if self.detail
                    else f"duplicate of iteration {self.of}; not run again")
        elif r is Reason.NOT_CONFIRMED:
            text = f"not confirmed by iteration {self.of} under another seed"
        elif r is Reason.IMPORTED:
            text = f"{IMPORTED_TEXT} {self.detail}"
        elif r is Reason.SEED_ONLY:
            text = f"a seed change alone is never a keep (noise floor {self.detail})"
        else:  # the decisions' sentences, and strings kept verbatim
            text = self.detail
        if self.flag:
            text += f"{_FLAG}{self.flag}"
        if self.confirmed_by is not None:
            text += f"; confirmed by iteration {self.confirmed_by}"
        return text

    def __str__(self) -> str:
        return self.render()

    @property
    def kind(self) -> str:
        """The word a person reads first: the crash kind, else the text before any `:`."""
        return self.reason.value if self.reason.is_crash_kind else self.render().split(":", 1)[0].strip()

    # -- predicates ----------------------------------------------------------------------
    @property
    def crashed(self) -> bool:
        return self.status is Status.CRASH

    @property
    def untrained(self) -> bool:
        """Nothing was learnt about the change: an agent or guard failure, a lost node, or a
        duplicate that was not run again."""
        return (self.crashed and self.reason in UNTRAINED) or self.reason is Reason.DUPLICATE

    @property
    def environmental(self) -> bool:
        """The setup failed, not the idea (a missing package, no GPU driver, a full disk)."""
        return self.crashed and self.reason in ENVIRONMENTAL

    @property
    def repairable(self) -> bool:
        """A crash that points at the change itself, so the agent can be asked to fix it;
        timeouts, guards, agent failures and the setup's own failures are not."""
        return (self.crashed and self.reason in REPAIRABLE
                and not any(hint in self.detail for hint in SETUP_HINTS))

    @property
    def ends_streak(self) -> bool:
        """A row that ends a run of crashes: not a crash, or one that says nothing about the ideas."""
        return not self.crashed or self.reason in ENDS_STREAK

    @property
    def noise_repeat(self) -> bool:
        return self.reason is Reason.NOISE_REPEAT

    @property
    def confirmation(self) -> bool:
        return self.reason is Reason.CONFIRMATION

    @property
    def imported(self) -> bool:
        """A foreign run recorded by `autoresearch import`: evidence, but no commit to return to."""
        return self.status is Status.IMPORTED

    @property
    def stopped_early(self) -> bool:
        """Stopped before its budget ended, hopelessly behind (early_stop.py): its metric is partial."""
        return self.reason is Reason.STOPPED_EARLY

    @property
    def duplicate(self) -> bool:
        return self.reason is Reason.DUPLICATE


def _parse(status: Status, text: str) -> Verdict:
    if len(text) <= 512:
        return _parse_cached(status, text)
    return _parse_text(status, text)


@lru_cache(maxsize=8192)
def _parse_cached(status: Status, text: str) -> Verdict:
    return _parse_text(status, text)


def _parse_text(status: Status, text: str) -> Verdict:
    word, colon, rest = text.partition(":")
    kind = _BY_WORD.get(word) if colon else None
    if kind is not None:  # a crash kind keeps its meaning even where a hand edit lost the space
        return Verdict(status, kind, rest[1:] if rest.startswith(" ") else rest)
    found = _parse_other(status, text)
    # Only what renders back to the very same string is believed: anything else is kept verbatim.
    return found if found.render() == text else Verdict(status, Reason.OTHER, text)


def _parse_other(status: Status, text: str) -> Verdict:
    for pattern, reason in ((_NOISE, Reason.NOISE_REPEAT), (_NOT_CONFIRMED, Reason.NOT_CONFIRMED)):
        m = pattern.match(text)
        if m:
            return Verdict(status, reason, of=int(m.group(1)))
    m = _CONFIRMATION.match(text)
    if m:
        return Verdict(status, Reason.CONFIRMATION, m["detail"] or "", of=int(m.group(1)))
    if status is Status.IMPORTED and text.startswith(IMPORTED_TEXT + " "):
        return Verdict(status, Reason.IMPORTED, text[len(IMPORTED_TEXT) + 1:])
    m = _DUPLICATE.match(text)
    if m:
        return Verdict(status, Reason.DUPLICATE, m["why"] or "", of=int(m.group(1)))
    return _parse_judgement(status, text)


def _parse_judgement(status: Status, text: str) -> Verdict:
    """A baseline or a decision, with the suffixes a trusted eval and a confirmation add."""
    body, confirmed_by = text, None
    m = _CONFIRMED.search(body)
    if m:
        body, confirmed_by = body[:m.start()], int(m.group(1))
    body, _, flag = body.partition(_FLAG)
    if body == "baseline":
        return Verdict(status, Reason.BASELINE, flag=flag, confirmed_by=confirmed_by)
    m = _SEED_ONLY.match(body)
    if m:
        return Verdict(status, Reason.SEED_ONLY, m["floor"], flag=flag, confirmed_by=confirmed_by)
    for pattern, reason in _DECISIONS:
        if pattern.fullmatch(body):
            return Verdict(status, reason, body, flag=flag, confirmed_by=confirmed_by)
    return Verdict(status, Reason.OTHER, text)
