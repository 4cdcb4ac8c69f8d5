"""When crashes should end the night: pure functions of the experiments recorded so far.

Both look only at the experiments recorded since this start (not the whole ledger), so a user
who fixed the setup and resumes is not stopped again by the crashes that made them look.
"""

from __future__ import annotations

from typing import Sequence

from autoresearch.records import Experiment
from autoresearch.verdict import ENDS_STREAK, Reason

DEFAULT_PAUSE_AFTER_ENV_ERRORS = 3
DEFAULT_MAX_CONSECUTIVE_CRASHES = 5
# Crashes that say nothing about the ideas end a streak (Verdict.ends_streak); earlier import path.
NOT_THE_IDEAS = ENDS_STREAK


def crash_streak(history: Sequence[Experiment]) -> list[Experiment]:
    """The crashes at the end of `history`, oldest first; a lost node ends the streak."""
    streak: list[Experiment] = []
    for record in reversed(history):
        if record.verdict.ends_streak:
            break
        streak.append(record)
    return streak[::-1]


def should_pause(history: Sequence[Experiment], after: int = DEFAULT_PAUSE_AFTER_ENV_ERRORS) -> str | None:
    """A message when the last `after` experiments all crashed because of the setup; else None.

    `after` 0 never pauses. An environment error (missing package, no GPU driver, full disk) is
    not the idea's fault: running more ideas into it only burns the night.
    """
    if after <= 0 or len(history) < after:
        return None
    last = list(history[-after:])
    if not all(r.verdict.environmental for r in last):
        return None
    detail = last[-1].verdict.detail.strip()
    return (f"paused after {after} runs in a row that did not start because of the setup, not the idea: "
            f"{detail}; fix it and run again (the same --tag resumes)")


def should_stop(history: Sequence[Experiment], limit: int | None = DEFAULT_MAX_CONSECUTIVE_CRASHES) -> str | None:
    """A message when the last `limit` experiments are all crashes, of any kind; else None.

    `limit` 0 or None never stops.
    """
    if not limit:
        return None
    streak = crash_streak(history)
    if len(streak) < limit:
        return None
    kinds = sorted({r.verdict.kind for r in streak[-limit:]})
    return (f"stopped after {len(streak)} crashes in a row ({', '.join(kinds)}; the last: {streak[-1].reason}); "
            "see the logs in the run store, fix what they share and run again, "
            "or raise [task] max_consecutive_crashes")


# The agent failures no retry or new idea can fix (agents/cli_agent.FATAL): the same kind in a
# row pauses, whatever the wording of each message.
AGENT_SETUP_FAILURES = frozenset({"auth", "offline", "login", "model", "write"})
# The loop's own reason when an agent answered without editing: the idea failed, not the setup.
_NO_CHANGE = "no change to the editable files"


def should_pause_for_agent(history: Sequence[Experiment], after: int = DEFAULT_PAUSE_AFTER_ENV_ERRORS) -> str | None:
    """A message when the last `after` experiments are the same agent failure; else None.

    The same failure means: the same known cause (not logged in, no network, a browser login,
    an unknown model, a failed write), or the very same reason string. Nothing was trained in
    any of them, so running on would only repeat it until the crash limit. `after` 0 never pauses.
    """
    if after <= 0 or len(history) < after:
        return None
    last = list(history[-after:])
    if not all(r.verdict.kind == Reason.AGENT.value for r in last):
        return None
    kinds = {(r.agent_data or {}).get("failure") for r in last}
    same_cause = len(kinds) == 1 and kinds <= AGENT_SETUP_FAILURES
    same_text = len({r.reason for r in last}) == 1 and _NO_CHANGE not in last[-1].reason
    if not (same_cause or same_text):
        return None
    detail = last[-1].verdict.detail.strip()
    return (f"paused after {after} identical agent failures in a row (nothing was trained): {detail}; "
            "fix it and run again (the same --tag resumes)")
