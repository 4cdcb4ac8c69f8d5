"""The confirm and judge stages: from a measured Attempt to its Verdict.

    judge    guard after the run, the run's crash, the noise repeat, the baseline, the
             seed-only rule, then the task's rules (decision.decide) against the best
    confirm  a candidate that beats the best (with `[metrics] confirm`) runs again under another
             seed as an Attempt of its own; it stays a keep if both runs beat the best and their
             mean clears the noise floor of a two-run mean
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from autoresearch import crash, guard, integrity
from autoresearch.execution import pristine
from autoresearch.decision import check_primary, decide, rounded, total_code_lines, within_noise
from autoresearch.loop.attempt import Attempt, Kind
from autoresearch.loop.measure import measure, run_timeout
from autoresearch.records import Experiment
from autoresearch.verdict import Reason, Status, Verdict

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop


def judge(loop: "Loop", attempt: Attempt, best: Experiment | None, run: Attempt | None = None,
          *, single_run: bool = True) -> Verdict:
    """The verdict on `attempt`'s change given the current `best`; `run`: whose run to judge it by
    (a confirmation's, for the same change), by default its own.

    `single_run` False: judge one run of a pair that is confirmed together (`settle`): it must
    beat the best, and the pair's mean clears the noise floor, not each run alone."""
    run = run or attempt
    broken = _run_failed(loop, attempt, run)
    if broken is not None:
        return broken
    if attempt.kind is Kind.REPEAT:
        return Verdict(Status.DISCARD, Reason.NOISE_REPEAT, of=attempt.repeat)
    if attempt.kind is Kind.BASELINE:
        return Verdict(Status.KEEP, Reason.BASELINE, flag=run.flag)
    task = loop.task
    floor = integrity.decision_floor(loop.store.ledger.records, task.metrics)
    if floor.value > 0 and integrity.seed_only_change(loop.git, attempt.parent, task.dir, task.editable):
        return Verdict(Status.DISCARD, Reason.SEED_ONLY, f"{floor.value:.6f}", flag=run.flag)
    simpler = total_code_lines(task.dir, task.editable) < attempt.lines_before
    decision = decide(run.metrics, best.metrics, loop.rules, simpler=simpler,
                      floor=floor.value if single_run else task.metrics.min_delta, floor_source=floor.source())
    return replace(decision.verdict, flag=run.flag)


def _run_failed(loop: "Loop", attempt: Attempt, run: Attempt) -> Verdict | None:
    """The crash of a run that gives no usable number, else None."""
    task = loop.task
    touched = guard.changed_readonly(attempt.readonly_before, guard.file_hashes(task.dir, task.readonly))
    touched = sorted({*touched, *pristine.touched(attempt), *pristine.touched(run)})  # at any moment
    if touched:
        return Verdict.crash(Reason.GUARD, f"the run modified read-only file(s) {', '.join(touched)}")
    tampered = attempt.run_tampered or run.run_tampered
    if tampered:
        return Verdict.crash(Reason.GUARD, f"the run changed {', '.join(tampered)}; put back")
    if run.stop is not None:  # behind the earlier runs at the same time, with no way to catch up
        return Verdict(Status.DISCARD, Reason.STOPPED_EARLY, run.stop.reason)
    result = run.result
    if result.node_lost:  # the machine died, twice: says nothing about the idea
        return Verdict.crash(Reason.NODE_LOST, "the node running it died (retried once)")
    if not run.trained:
        return crash_verdict(loop, run)
    missing = pristine.guard_detail(run.left) if run.left is not None else None
    if missing:
        return Verdict.crash(Reason.GUARD, missing)
    if run.eval_failure is not None:
        return run.eval_failure
    if check_primary(run.metrics, loop.rules.primary):
        return crash_verdict(loop, run)
    return None


def crash_verdict(loop: "Loop", run: Attempt) -> Verdict:
    """Why a run crashed, from its exit and log tail: timeout, oom, env, disk, syntax, nan, ..."""
    task = loop.task
    found = crash.classify_run(run.result, run.metrics, primary=loop.rules.primary, editable=task.editable,
                               task_dir=task.dir, timeout=run_timeout(loop),
                               memory_limit_mb=task.config.task.memory_limit_mb)
    return found.verdict if found else Verdict.crash(Reason.EXIT_CODE, str(run.result.exit_code))


def confirm(loop: "Loop", attempt: Attempt) -> None:
    """With `[metrics] confirm`: a candidate that beats the best, even within the noise floor, runs
    again under another seed as an Attempt of its own (`settle` weighs the two runs together)."""
    if not loop.task.metrics.confirm or attempt.kind is not Kind.AGENT:
        return
    if judge(loop, attempt, loop.store.ledger.best(), single_run=False).status is not Status.KEEP:
        return
    m = loop.shared.take_iteration(loop.store.ledger)
    loop.store.set_pending(confirming=m)  # a resume sets its run folder aside too
    check = Attempt(n=m, kind=Kind.CONFIRMATION, parent=attempt.parent, run_dir=loop.store.run_dir(m),
                    started=attempt.started, untracked=attempt.untracked, of=attempt.n, commit=attempt.commit,
                    changed=attempt.changed, created=attempt.created, readonly_before=attempt.readonly_before)
    loop.emit("stage", m, "confirm", description=f"confirm #{attempt.n}: {attempt.proposal.description}")
    measure(loop, check)
    failed = not check.trained or check_primary(check.metrics, loop.rules.primary)
    check.verdict = (Verdict.crash(Reason.CONFIRMATION, "the run failed") if failed
                     else Verdict(Status.DISCARD, Reason.CONFIRMATION))
    check.verdict = replace(check.verdict, of=attempt.n)
    attempt.confirmation = check


def settle(loop: "Loop", attempt: Attempt, best: Experiment | None) -> Verdict:
    """The final verdict, under the workers' lock: judged against the best of this moment.

    A candidate with a confirmation run stands when both runs beat the best and, where the primary
    improved, the two runs' mean gain clears the floor of a two-run mean (floor / sqrt(2)): a keep
    beats the best by more than the measured spread, or passes a confirmation run."""
    check = attempt.confirmation
    if check is None:
        return judge(loop, attempt, best)
    first = judge(loop, attempt, best, single_run=False)
    if first.status is not Status.KEEP:  # a worker's keep moved the best meanwhile
        return judge(loop, attempt, best)
    if judge(loop, attempt, best, run=check, single_run=False).status is not Status.KEEP:
        return Verdict(Status.DISCARD, Reason.NOT_CONFIRMED, of=check.n)
    if first.reason is Reason.IMPROVED:
        floor = integrity.decision_floor(loop.store.ledger.records, loop.task.metrics)
        pair = floor.value / math.sqrt(2)
        primary = loop.rules.primary
        sign = 1 if loop.rules.direction == "maximize" else -1
        mean = sum(sign * (rounded(r.metrics[primary]) - rounded(best.metrics[primary])) for r in (attempt, check)) / 2
        if floor.value > loop.task.metrics.min_delta and mean <= pair:
            return Verdict(Status.DISCARD, Reason.WITHIN_NOISE, within_noise(
                primary, mean, pair, f"the mean gain of iterations {attempt.n} and {check.n}, against "
                                     f"{floor.source()} / sqrt(2)"), flag=first.flag)
    return replace(first, confirmed_by=check.n)
