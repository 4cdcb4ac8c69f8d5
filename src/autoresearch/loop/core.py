"""`Loop`: what one research session holds, and the iteration read top to bottom.

The Loop holds only collaborators (task, store, git, agent, executor, the shared table and lock,
the live views and observers), all set in the constructor. Everything one iteration knows is an
`Attempt`, passed through the stages.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import psutil

from autoresearch import guard, integrity, tag_config
from autoresearch.agents.base import Agent, as_agent
from autoresearch.atomic import mirror, write_text
from autoresearch.config import Task
from autoresearch.decision import Rules
from autoresearch.errors import AutoresearchError
from autoresearch.execution import Executor, as_executor, pristine, sandbox
from autoresearch.gitrepo import Git
from autoresearch.live.publisher import Publisher
from autoresearch.live.state import clear_stop, stop_requested
from autoresearch.loop import session
from autoresearch.loop.attempt import Attempt, Kind
from autoresearch.loop.judge import confirm, settle
from autoresearch.loop.measure import measure
from autoresearch.loop.propose import baseline_proposal, commit_and_guard, propose_new
from autoresearch.loop.record import announce, finish, record
from autoresearch.loop.session import Limits, Shared, Stopped, Worker, default_executor
from autoresearch.records import Experiment
from autoresearch.store import Process, RunStore
from autoresearch.verdict import Status


class Loop:
    def __init__(self, task: Task, tag: str, agent: Agent, *, executor: Executor | None = None,
                 say: Callable[[str], None] = print, stop_event: threading.Event | None = None,
                 observers: list[Callable[["Loop", Experiment], None]] | None = None,
                 shared: Shared | None = None, worker: Worker | None = None, events: list | None = None):
        self.store = RunStore(task.dir, tag, worker=worker.index if worker else None,
                              ledger=shared.ledger if shared else None)
        self.main_git = Git(task.dir)
        if worker is None:  # resumed from its branch, a tag runs under the rules it adopted (tag_config.py)
            task = tag_config.resolved(task, self.store, self.main_git)
        self.agent = as_agent(agent)
        self.owns_executor = executor is None
        self.executor = as_executor(executor) if executor is not None else default_executor(task, say)
        self.sandbox = sandbox.Policy(task.config.sandbox)  # decided in prepare(): bwrap works here or not
        self.say = say
        self.stop_event = stop_event or threading.Event()
        self.worker = worker
        # A worker edits, commits and trains in its own worktree; the store stays in the main one.
        self.task = task.moved_to(worker.task_dir) if worker else task
        self.git = Git(self.task.dir) if worker else self.main_git
        self.branch = self.store.worker_branch(worker.index) if worker else self.store.branch
        self.rules = Rules.from_metrics(task.metrics)
        self.shared = shared or Shared(self.store.results_table(task.columns), self.store.ledger)
        self.table = self.shared.table
        # Called after every recorded experiment (analysis refresh, strategy memo, ...). One that
        # finishes its work in the background has `drain()`, called before a prompt reads what
        # observers write (the hints) and when the loop ends (drain_observers).
        self.observers = list(observers or [])
        # Told of every stage (live/events.py); the publisher keeps the store's live.json current.
        self.events = [Publisher(self.store.root, worker=worker.index if worker else None, tag=tag,
                                 primary=self.rules.primary, direction=self.rules.direction,
                                 budget=self.task.time_budget, timeout=self.task.timeout, task_dir=self.task.dir),
                       *(events or [])]
        # What the loop learns across its runs: the tree before the night and what the baseline
        # left (pristine.py), and the curves earlier runs drew (early_stop.py, read once each).
        self.pristine_night = pristine.Night()
        self.early_stop_traces: dict = {}

    # -- the session ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the tag's branch and store, or resume them; leave a consistent state."""
        session.prepare(self)

    def recover(self) -> None:
        """Undo an iteration that was interrupted before its record, finish one after it."""
        self.drain_observers()  # it reloads the ledger: nothing may be reading it meanwhile
        session.recover(self)

    def run(self, limits: Limits) -> list[Experiment]:
        """Run the baseline (and its noise repeats) if needed, then `limits.iterations` agent iterations."""
        self.prepare()
        done: list[Experiment] = []
        ended = "done"
        if self.worker is None:
            clear_stop(self.store.root)  # a request left from before this run began is not for it
        self.emit("session", planned=self._planned(limits), max_seconds=limits.max_seconds,
                  remaining=(lambda: self.shared.tickets or 0) if self.worker is not None else None)
        try:
            self._baselines(done)
            ended = self._agent_iterations(limits, done)
        except Stopped:
            ended = "stopped"
            self.say("stopped: the interrupted iteration was rolled back")
            self.recover()
        except BaseException as exc:
            ended = f"error: {type(exc).__name__}"
            raise
        finally:
            self.drain_observers()  # what they write is complete once the loop returns
            self.emit("finished", ended)
            if self.worker is None and ended == "stop requested":
                clear_stop(self.store.root)  # honoured: a resume runs normally
            if self.owns_executor:
                self.executor.close()  # a warm-start server, a Ray connection
        return done

    def _planned(self, limits: Limits) -> int:
        records = self.store.ledger.records
        repeats = max(0, self.task.metrics.noise_runs - 1 - integrity.repeats_done(records))
        return limits.iterations + (self.store.ledger.best() is None) + repeats

    def _baselines(self, done: list[Experiment]) -> None:
        """The unmodified code first, then again under other seeds: the noise floor."""
        if self.store.ledger.best() is None:
            baseline = self.iteration(Kind.BASELINE)
            done.append(baseline)
            if baseline.status is Status.CRASH:
                raise AutoresearchError(
                    f"the baseline run crashed ({baseline.reason}); fix the task so `{self.task.run}` works "
                    f"unmodified, see {self.store.run_dir(baseline.iteration) / 'log.txt'}")
        wanted = self.task.metrics.noise_runs - 1
        if not done and integrity.repeats_done(self.store.ledger.records) < wanted:
            # A tag begun when one baseline was the default: its noise floor is measured now, on
            # the best code of this moment, before any further keep is judged.
            self.say(f"resume: measuring the noise floor first ([metrics] noise_runs = {wanted + 1}; "
                     "deterministic = true or noise_runs = 1 skips it)")
        while integrity.repeats_done(self.store.ledger.records) < wanted:
            done.append(self.iteration(Kind.REPEAT, repeat=integrity.repeats_done(self.store.ledger.records) + 1))

    def _agent_iterations(self, limits: Limits, done: list[Experiment]) -> str:
        """Agent iterations until the limit or a stop rule; returns why it ended."""
        started = time.monotonic()
        this_session: list[Experiment] = []
        for _ in range(limits.iterations):
            if stop_requested(self.store.root):  # the dashboard's stop button
                self.say("stop requested: stopping after the iteration that finished")
                return "stop requested"
            if not self.shared.take_ticket():
                break
            message = session.limit_reached(self, limits, started)
            if message:
                self.say(message)
                break
            recorded = self.iteration(Kind.AGENT)
            done.append(recorded)
            this_session.append(recorded)
            message = session.crashes_end_it(self, limits, this_session)
            if message:
                self.say(message)
                return message
        return "done"

    # -- one iteration -------------------------------------------------------------------
    def iteration(self, kind: Kind, repeat: int = 0) -> Experiment:
        """One experiment: propose, screen, commit and guard, measure, confirm, judge, record, announce."""
        attempt = self.begin(kind, repeat)
        if kind.proposes:
            propose_new(self, attempt)  # a repeat of earlier code goes back to the agent
            if attempt.verdict is None:
                commit_and_guard(self, attempt)
        else:
            attempt.proposal = baseline_proposal(attempt, self.task.metrics.noise_runs)
            attempt.commit = attempt.parent
        if attempt.verdict is None:  # nothing ended it before the run
            measure(self, attempt)
            confirm(self, attempt)
            self.emit("stage", attempt.n, "judge")
        with self.shared.lock:
            if attempt.verdict is None:
                attempt.verdict = settle(self, attempt, self.store.ledger.best())  # the best of this moment
            recorded = record(self, attempt)
        # Observers and the memo outside the lock: an analysis refresh or an LLM writing the memo
        # must not hold up the other workers' decisions.
        for r in recorded:
            announce(self, r)
        return recorded[0]

    def begin(self, kind: Kind, repeat: int = 0) -> Attempt:
        """A new Attempt on the current best, noted in pending.json before anything changes."""
        self.checkpoint()
        n = self.shared.take_iteration(self.store.ledger)
        with self.shared.lock:
            history = tuple(self.store.ledger.records)
            best = self.store.ledger.best()
        if self.worker is not None and best is not None and self.git.head() != best.commit:
            # Another worker's keep is the best now: continue from it (documented policy: reset).
            self.git.reset_hard(best.commit)
        parent = best.commit if best else self.git.head()
        untracked = tuple(self.git.changed_paths())  # the user's own untracked files: not the agent's doing
        self.store.set_pending(iteration=n, parent=parent, untracked=untracked, started=time.time())
        self.emit("stage", n, "propose", **({} if kind.proposes else
                                            {"description": "baseline" if not repeat else f"baseline repeat {repeat}"}))
        return Attempt(n=n, kind=kind, parent=parent, run_dir=self.store.run_dir(n), started=time.time(),
                       untracked=untracked, repeat=repeat, history=history, best=best,
                       readonly_before=guard.file_hashes(self.task.dir, self.task.readonly))

    # -- what the stages use -------------------------------------------------------------
    def _finish(self, record: Experiment, last: bool = True, created: list[str] | None = None) -> Experiment:
        """The record stage's commit point (a seam tests use to kill the loop between two records)."""
        return finish(self, record, last, created)

    def drain_observers(self) -> None:
        """Wait for the observers that work in the background to finish what they were handed."""
        for observer in self.observers:
            drain = getattr(observer, "drain", None)
            if drain is not None:
                drain()

    def checkpoint(self) -> None:
        if self.stop_event.is_set():
            raise Stopped()

    def emit(self, what: str, *args, **info) -> None:
        for sink in self.events:
            try:
                getattr(sink, what)(*args, **info)  # the Events protocol's methods, by name
            except Exception as exc:  # a view must not end the night's experiments
                self.say(f"warning: live view {type(sink).__name__}.{what} failed: {type(exc).__name__}: {exc}")

    def track(self, pid: int, role: str, token: str | None = None) -> None:
        """Note a started process group in pending.json, so a resume can kill what it left."""
        try:
            create_time = psutil.Process(pid).create_time() if pid else 0.0
        except psutil.Error:
            create_time = 0.0
        pending = self.store.pending()
        processes = pending.processes if pending else ()
        self.store.set_pending(processes=[*processes, Process(role, pid, create_time, token)])

    @property
    def repo_root(self) -> str:
        return self.git.root()

    def restore_tree(self, untracked_before, created: list[str] | None = None, to: str | None = None) -> None:
        session.restore_tree(self, untracked_before, created, to)

    def write_explanation(self, record: Experiment) -> None:
        write_text(self.store.run_dir(record.iteration) / "explanation.md",
                   f"# {record.description}\n\n{record.explanation}\n", durable=False)

    def mirror_tsv(self) -> None:
        # The task directory's results.tsv shows the tag run last; the store keeps each tag's own.
        if self.store.results_tsv != self.store.root / "results.tsv":  # a tracked results.tsv: the table is the store's
            mirror(self.store.results_tsv, self.store.root / "results.tsv")
