"""The analysis refresh after every experiment, as a Loop observer.

    loop = Loop(task, tag, agent, observers=[refresh])

It captures the run's learning curve, writes its meta-analysis, and rewrites the summary
the agent reads next. The summary pass is linear in the ledger already in memory and the
axes of earlier runs come from their cache, so the refresh costs milliseconds per
thousand experiments: nothing next to a training run.
"""

from __future__ import annotations

from autoresearch.analysis.axes import untrained
from autoresearch.analysis.meta import META_NAME, analyze_run
from autoresearch.analysis.summary import write_summary
from autoresearch.decision import rounded
from autoresearch.records import Experiment, Status
from autoresearch.store import CURVE_NAME, MTIME_SLACK, capture_curve  # noqa: F401  (the store owns run folders)

BACKFILL = 200  # the summary reads the meta of the best and the latest run; the report may read more


def analyze_record(task, store, record: Experiment, records=None) -> dict | None:
    """Meta-analysis of one recorded experiment, compared with the other runs of its tag."""
    if untrained(record):
        return None
    run_dir = store.run_path(record.iteration)
    if not run_dir.is_dir():
        return None
    capture_curve(task.dir, run_dir, record.started_at)
    primary = task.metrics.primary
    others = [r.metrics.get(primary) for r in (records if records is not None else store.ledger.records)
              if r.iteration != record.iteration and r.status is not Status.CRASH and not untrained(r)
              and r.content_hash != record.content_hash and rounded(r.metrics.get(primary)) is not None]
    return analyze_run(run_dir, primary, task.metrics.direction, others=others,
                       majority_rate=getattr(task.metrics, "majority_rate", None))


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
