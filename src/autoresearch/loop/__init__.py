"""The research loop: one experiment at a time, from proposal to ledger record.

One iteration is an `Attempt` (attempt.py) passed through named stages, each a function
`stage(loop, attempt)` that reads what the earlier ones wrote and adds its part:

    begin            core.Loop.begin     number, parent (the best commit), pending.json
    propose          propose.py          the agent edits the work tree (or repairs a crash)
    screen           propose.py          failed / no change: ends it untrained; code that repeats an
                                         earlier experiment goes back to the agent (`propose_new`)
    commit and guard propose.py          commit, keep it reachable, reject out-of-scope edits
    measure          measure.py          run under the limits, footer, trusted eval, GPU facts
    confirm          judge.py            a keep candidate again under another seed (its own Attempt)
    judge            judge.py            the Verdict against the best of this moment (under the lock)
    record           record.py           the ledger row (the commit point), branch moved, results.tsv
    announce         record.py           terminal line, live views (`events`), observers, memo

A stage ends an attempt early by setting `attempt.verdict`; the rest is skipped and the
attempt is recorded. session.py holds what is around the iterations: start, resume, recover,
and the stop rules.

The ledger record is the commit point of an iteration. Before it, an interrupted iteration is
rolled back on the next start; after it, only the git reset and results.tsv remain to be
brought in line, and both are derived from the ledger.

Seams for other parts: the live views are `events` sinks (live/events.py) told of each stage;
the analysis is an observer handed in (`observers=[analysis.observer.BackgroundRefresh()]`),
never imported by the loop's decisions; an observer with `drain()` is waited for before a prompt
and at the loop's end (Loop.drain_observers); the executor is `Executor.run(spec, on_start, stop_event)`,
its RunSpec built in one place (measure.run_spec: the hook for timeouts and early stopping).

May import: the core modules (records, verdict, decision, gains, guard, crash, integrity, gitrepo,
store, ledger, agents.base, executor, runner's kill helpers, live). Never `analysis` at import
time (measure loads the curve capture lazily, once a run has run).
"""

from autoresearch.loop.attempt import Attempt, GpuFacts, Kind
from autoresearch.loop.core import Loop
from autoresearch.loop.session import Limits, Shared, Stopped, Worker, default_executor

__all__ = ["Attempt", "GpuFacts", "Kind", "Limits", "Loop", "Shared", "Stopped", "Worker", "default_executor"]
