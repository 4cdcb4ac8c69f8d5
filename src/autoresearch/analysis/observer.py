"""The analysis refresh after every experiment, as a Loop observer.

    loop = Loop(task, tag, agent, observers=[BackgroundRefresh()])   # or the blocking `refresh`

It captures the run's learning curve, writes its meta-analysis, and rewrites the summary
the agent reads next. The summary pass is linear in the ledger already in memory and the
axes of earlier runs come from their cache, so the refresh costs milliseconds per
thousand experiments; `BackgroundRefresh` takes even that off the path between two runs.
"""

from __future__ import annotations

import threading
from typing import Sequence

from autoresearch.analysis.axes import untrained
from autoresearch.analysis.meta import META_NAME, analyze_run
from autoresearch.analysis.summary import summarize, write_summary
from autoresearch.decision import rounded
from autoresearch.records import Experiment, Status
from autoresearch.store import CURVE_NAME, MTIME_SLACK, capture_curve  # noqa: F401  (the store owns run folders)

BACKFILL = 200  # the summary reads the meta of the best and the latest run; the report may read more


def analyze_record(task, store, record: Experiment, records=None, *, capture: bool = True) -> dict | None:
    """Meta-analysis of one recorded experiment, compared with the other runs of its tag.

    `capture=False`: its curve was captured already (capture_run_curve)."""
    run_dir = store.run_path(record.iteration)
    if untrained(record) or not run_dir.is_dir():
        return None
    if capture:
        capture_run_curve(task, store, record)
    primary = task.metrics.primary
    others = [r.metrics.get(primary) for r in (records if records is not None else store.ledger.records)
              if r.iteration != record.iteration and r.status is not Status.CRASH and not untrained(r)
              and r.content_hash != record.content_hash and rounded(r.metrics.get(primary)) is not None]
    return analyze_run(run_dir, primary, task.metrics.direction, others=others,
                       majority_rate=getattr(task.metrics, "majority_rate", None))


def capture_run_curve(task, store, record: Experiment) -> bool:
    """The task directory's metrics.jsonl into the run's folder, when this run trained and wrote it."""
    run_dir = store.run_path(record.iteration)
    return not untrained(record) and run_dir.is_dir() and capture_curve(task.dir, run_dir, record.started_at)


def backfill(task, store, limit: int = BACKFILL) -> int:
    """Meta-analyse recent runs (and the best) that have none yet: runs recorded before the
    observer was attached, or by another tool. Returns how many were analysed."""
    records = store.ledger.records
    best = store.ledger.best()
    todo = list(records[-limit:]) + ([best] if best is not None and best not in records[-limit:] else [])
    done = 0
    for record in todo:
        if not (store.run_path(record.iteration) / META_NAME).exists():
            done += analyze_record(task, store, record, records) is not None
    return done


def refresh(loop, record: Experiment) -> None:
    """Loop observer: meta-analysis of the new run, then the summary of the whole tag."""
    analyze_record(loop.task, loop.store, record)
    write_summary(loop.task, loop.store)


class BackgroundRefresh:
    """`refresh` as a Loop observer the next run does not wait for.

    Called after a record, it captures the run's curve at once (the task directory's
    metrics.jsonl is the next run's as soon as that starts) and notes the ledger as it stands;
    the meta-analysis and the summary are then written on a thread of its own, in record order,
    while the loop goes on. `drain()` returns once everything handed over so far is written: the
    loop calls it before a prompt reads the hints and when it ends, so no prompt reads a summary
    that is behind and the command never exits with one half-done (the thread is not a daemon
    either). Records that pile up (parallel workers) are each analysed, and the summary is
    written once for the latest of them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jobs: list[tuple[object, Experiment, Sequence[Experiment]]] = []
        self._handed = self._done = 0
        self._thread: threading.Thread | None = None

    def __call__(self, loop, record: Experiment) -> None:
        capture_run_curve(loop.task, loop.store, record)
        records = tuple(loop.store.ledger.records)  # read here: the loop may append the next one meanwhile
        with self._cond:
            self._jobs.append((loop, record, records))
            self._handed += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="autoresearch-analysis")
                self._thread.start()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every record handed over before this call is analysed; False on a timeout."""
        with self._cond:
            target = self._handed
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                jobs, self._jobs = self._jobs, []
                if not jobs:
                    self._thread = None
                    return
            for i, (loop, record, records) in enumerate(jobs):
                try:
                    analyze_record(loop.task, loop.store, record, records, capture=False)
                    if i + 1 == len(jobs) or jobs[i + 1][0] is not loop:  # the latest summary of this loop's
                        write_summary(loop.task, loop.store, summarize(loop.task, loop.store, records))
                except Exception as exc:  # as the loop does for its observers: the night goes on
                    loop.say(f"warning: analysis refresh of #{record.iteration} failed: {type(exc).__name__}: {exc}")
                finally:
                    with self._cond:
                        self._done += 1
                        self._cond.notify_all()
