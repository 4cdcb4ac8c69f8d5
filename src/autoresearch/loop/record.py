"""The record and announce stages: the ledger row, the branch moved, then everyone told.

    record    the Experiment built from the Attempt, appended to the ledger (the commit point
              of an iteration), the branch advanced on a keep or reset to the best, results.tsv
    announce  the line on the terminal, the live views (`events`), the observers, the memo;
              outside the workers' lock, so a slow report never holds up a decision
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from autoresearch import guard
from autoresearch.gains import gain_of
from autoresearch.loop.attempt import Attempt
from autoresearch.records import Experiment, Proposal
from autoresearch.verdict import Status

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop


def build_record(loop: "Loop", attempt: Attempt) -> Experiment:
    """The ledger row of a judged Attempt: what it was, what ran, what it means."""
    verdict, proposal, result = attempt.verdict, attempt.proposal, attempt.result
    ran = result is not None
    return Experiment(
        iteration=attempt.n, commit=attempt.commit, parent=attempt.parent, status=verdict.status,
        reason=verdict.render(), description=proposal.description, explanation=proposal.explanation,
        metrics=attempt.metrics, memory_gb=memory_gb(loop, attempt) if verdict.status is not Status.CRASH else 0.0,
        exit_code=result.exit_code if ran else None,
        wall_seconds=round(result.wall_seconds, 3) if ran else 0.0,
        peak_rss_mb=round(result.peak_rss_mb, 1) if ran else 0.0,
        agent=loop.agent.name if attempt.n else "baseline",
        cost_usd=proposal.cost_usd, tokens=proposal.tokens, agent_data=proposal.data,
        changed_files=tuple(attempt.changed), content_hash=guard.content_hash(loop.task.dir, loop.task.editable),
        started_at=attempt.started, finished_at=time.time(),
        repair_of=proposal.data.get("repair_of") if isinstance(proposal.data, dict) else None,
        startup_seconds=result.startup_seconds if ran else None, warm=result.warm if ran else False,
        sandboxed=result.sandboxed if ran else False,
        startup_saved_seconds=result.startup_saved_seconds if ran else None,
        node=result.node if ran else "",
        gpu_util=attempt.gpu.utilisation if ran else None,
        gpu_peak_mb=attempt.gpu.peak_mb if ran else None,
        stopped_at=round(attempt.stop.at, 4) if attempt.stop is not None and verdict.stopped_early else None,
    )


def memory_gb(loop: "Loop", attempt: Attempt) -> float:
    """The footer's memory (`[metrics] memory_key`, MB), else the run's measured peak; in GB.

    A footer 0 (a CUDA counter read on a CPU run) says nothing was measured there: the peak counts."""
    if attempt.result is None:
        return 0.0
    mb = attempt.metrics.get(loop.task.metrics.memory_key)
    if not isinstance(mb, float) or not math.isfinite(mb) or mb <= 0:
        mb = attempt.result.peak_rss_mb  # no footer value: the measured peak of the process tree
    return round(mb / 1024, 1)


def record(loop: "Loop", attempt: Attempt) -> list[Experiment]:
    """Under the workers' lock: the attempt's row (and its confirmation's, second), recorded."""
    attempt.record = build_record(loop, attempt)
    check = attempt.confirmation
    if check is None:
        return [loop._finish(attempt.record, True, created=attempt.created)]
    check.proposal = Proposal(
        f"confirm #{attempt.n}: {attempt.proposal.description}", f"Iteration {attempt.n} again under seed {check.n}.")
    check.record = build_record(loop, check)
    # It is recorded second; a resume records it from pending.json if we die between the two.
    loop.store.set_pending(confirmation=check.record.to_json())
    first = loop._finish(attempt.record, False, created=attempt.created)
    return [first, loop._finish(check.record, True, created=attempt.created)]


def finish(loop: "Loop", record: Experiment, last: bool = True, created: list[str] | None = None) -> Experiment:
    """Append to the ledger, then move the branch: keep advances it, anything else resets to the best.

    `last` False: another record of this iteration follows (a confirmation); pending.json stays."""
    loop.write_explanation(record)
    if record.status is Status.CRASH and record.commit == record.parent and record.iteration:
        record = replace(record, content_hash="")  # nothing was tried: never a duplicate
    if loop.worker is not None:
        record = replace(record, worker=loop.worker.index)
    with loop.shared.lock:
        loop.store.ledger.append(record)
        loop.shared.in_flight.pop(record.iteration, None)
        if record.status is not Status.KEEP:
            pending = loop.store.pending()
            loop.restore_tree(pending.untracked if pending else (), created)
        elif loop.worker is not None:
            loop.main_git.reset_hard(record.commit)  # the tag's branch always holds the global best
        if last:
            loop.store.clear_pending()
        repaired = loop.table.add(record)
        loop.mirror_tsv()
    if repaired:
        loop.say(f"warning: {repaired}")
    return record


def announce(loop: "Loop", record: Experiment) -> None:
    """Say it, tell the live views and the observers (analysis refresh, ...), refresh the memo when due."""
    loop.say(line(loop, record))
    loop.emit("recorded", record, loop.store.ledger.best())
    for observer in loop.observers:
        try:
            observer(loop, record)
        except Exception as exc:  # a failing report must not end the night's experiments
            loop.say(f"warning: {getattr(observer, '__name__', observer)} failed: {type(exc).__name__}: {exc}")
    from autoresearch import outer
    outer.refresh_memo_if_due(loop.task, loop.store, loop.agent, loop.say)


def line(loop: "Loop", r: Experiment) -> str:
    """The terminal's line for one record."""
    primary = loop.rules.primary
    value = r.metrics.get(primary)
    shown = f"{value:.6f}" if isinstance(value, float) and r.status is not Status.CRASH else "-"
    if r.status is Status.CRASH or r.stopped_at is not None:  # why it crashed, or did not train its budget
        extra = f"  ({r.reason})"
    else:  # the noise floor next to the gain, as status and the report show it
        gain = gain_of(loop.store.ledger.records, loop.task.metrics, r.iteration, loop.store.ledger)
        extra = f"  {gain}" if gain is not None else ""
    who = f"[{loop.worker.name}] " if loop.worker else ""
    return f"{who}#{r.iteration:<4} {r.commit[:7]}  {primary}={shown}  {r.status.value:<7} {r.description}{extra}"

