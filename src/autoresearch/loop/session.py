"""A session of the loop: start or resume a tag, recover what a kill left, and the stop rules.

    start    a new tag: a clean tree, a new branch, an empty store
    resume   a tag that exists: its branch checked out, then `recover`
    recover  roll back an iteration interrupted before its record, finish one after it,
             the branch on the best commit, what a killed run left in the tree removed,
             results.tsv in step with the ledger
    stop     the rules between two iterations: time, cost, crash streaks, the stop button
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from autoresearch import crash_policy, outer, results_tsv, tag_config
from autoresearch.config import Task
from autoresearch.errors import AutoresearchError
from autoresearch.git_guard import GitGuard
from autoresearch.execution import Executor, executor_for_task, pristine, scratch
from autoresearch.ledger import Ledger
from autoresearch.loop.propose import agent_sandbox
from autoresearch.records import Experiment
from autoresearch.store import Pending
from autoresearch.execution.supervise import kill_token, kill_tree_if_alive

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop


class Stopped(Exception):
    """Raised at a checkpoint once a stop was requested (Ctrl-C)."""


@dataclass(frozen=True)
class Limits:
    iterations: int
    max_seconds: float | None = None
    max_consecutive_crashes: int | None = None
    max_cost_usd: float | None = None


@dataclass
class Shared:
    """What the workers of one run share: the lock around decisions, the table, the counters.

    A single loop has one of its own. The lock makes "compare with the best, record, move
    the branch" one step, so two workers can never both keep against the same best.
    """

    table: results_tsv.Table
    ledger: Ledger
    lock: threading.RLock = field(default_factory=threading.RLock)
    next_iteration: int = 0
    tickets: int | None = None  # agent iterations left for all workers together
    in_flight: dict[int, str] = field(default_factory=dict)  # iteration -> content hash
    # git's hooks, config and info/exclude, shared by every worker's worktree: who changed them (git_guard.py)
    git_guard: GitGuard = field(default_factory=GitGuard)
    # What the baseline created (files, folders), told to the workers' loops (pristine.py)
    pristine_baseline: tuple = field(default_factory=lambda: ({}, set()))

    def take_iteration(self, ledger) -> int:
        with self.lock:
            n = max(ledger.next_iteration(), self.next_iteration)
            self.next_iteration = n + 1
            return n

    def take_ticket(self) -> bool:
        with self.lock:
            if self.tickets is None:
                return True
            if self.tickets <= 0:
                return False
            self.tickets -= 1
            return True


@dataclass(frozen=True)
class Worker:
    """One worker of several: its own git worktree and branch, its own device."""

    index: int
    task_dir: Path  # the task directory inside the worker's worktree
    env: dict = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES for its runs

    @property
    def name(self) -> str:
        return f"w{self.index}"


def default_executor(task: Task, say: Callable[[str], None]) -> Executor:
    """What the task's config asks for: Ray, warm starts, or plain local processes."""
    return executor_for_task(task, say)


# -- start and resume ----------------------------------------------------------------------
def prepare(loop: "Loop") -> None:
    """Create the tag's branch and store, or resume them; leave a consistent state."""
    loop.sandbox.start(loop.say)  # one warning (auto) or a refusal (required) where bwrap cannot work
    git, store = loop.git, loop.store
    if loop.worker is None and not git.is_repo():
        raise AutoresearchError(f"{loop.task.dir}: not inside a git repository; run `git init && git add -A && git commit -m init` there first")
    if loop.worker is None and not git.has_commits():
        raise AutoresearchError(f"{loop.task.dir}: the repository has no commit yet; commit the task files first")
    # Fail in a second with a fix, not after the baseline has trained. Its CLI's `--help` runs
    # in the agent's sandbox: the binary is the user's, but not the orchestrator's rights.
    loop.agent.check(agent_sandbox(loop))
    loop.executor.check()
    loop.executor.connect()  # a cluster that is not there fails before a branch or a store is made
    if loop.worker is not None:
        recover(loop)  # the pool made the branch and the worktree; finish what this worker left
        return
    for folder in scratch.sweep():
        loop.say(f"start: removed {folder}, left behind by an autoresearch that was killed")
    if store.ledger.exists() or store.pending_path.exists():  # begun, maybe killed in its baseline
        _resume(loop)
    else:
        _start(loop)
    prefix = git.prefix()
    git.exclude([f"/{prefix}{name}" for name in store.derived_files()])


def _start(loop: "Loop") -> None:
    git, store = loop.git, loop.store
    if git.branch_exists(store.branch):
        raise AutoresearchError(
            f"branch {store.branch} exists but has no ledger at {store.ledger.path}; "
            f"pick another --tag or delete the branch (git branch -D {store.branch})")
    require_clean(loop)
    git.checkout_new_branch(store.branch)
    store.create()
    tag_config.save_started(store, loop.task.config)  # a resume's rules are checked against these


def _resume(loop: "Loop") -> None:
    git, store = loop.git, loop.store
    if not git.branch_exists(store.branch):
        raise AutoresearchError(f"{store.ledger.path} exists but branch {store.branch} is gone; restore the branch or pick another --tag")
    pending, on_branch = store.pending(), git.current_branch() == store.branch
    if pending is None or not on_branch:
        # Between iterations nothing uncommitted is the loop's: a resume would reset it away.
        # (With an iteration in flight on the run branch, its edits are the agent's, rolled back.)
        require_clean(loop)
    if pending is None:  # (in flight, the commits on the branch are the agent's, rolled back)
        tag_config.refuse_foreign(loop, on_branch)  # a commit of the user's is never reset away
    plan = tag_config.check(loop)  # the rules: the tag's, or adopted; else refused
    if not on_branch:
        git.checkout(store.branch)
    tag_config.before_recover(loop, plan)
    recover(loop)
    tag_config.after_recover(loop, plan)


def require_clean(loop: "Loop") -> None:
    dirty = loop.git.dirty_tracked()
    if dirty:
        raise AutoresearchError(
            f"{loop.task.dir}: uncommitted changes in {', '.join(dirty[:5])}; commit or stash them first "
            "(the loop resets the work tree to the best commit after every discarded experiment)")


# -- recover -------------------------------------------------------------------------------
def recover(loop: "Loop") -> None:
    """Undo an iteration that was interrupted before its record, finish one after it."""
    store, ledger = loop.store, loop.store.ledger
    if loop.worker is None:
        ledger.reload()  # also drops a torn last line
        for lock in loop.git.remove_stale_locks():
            loop.say(f"resume: removed {lock}, left behind by a git that was killed")
    pending = store.pending()
    if pending is not None:
        _kill_leftovers(pending)
        _settle_pending(loop, pending)
        restore_tree(loop, pending.untracked)
    best = ledger.best()
    if best is not None and loop.git.head() != best.commit:
        loop.git.reset_hard(best.commit)
    left = pristine.after_kill(loop)  # ignored files too, which restore_tree's git status never lists
    if left:
        loop.say(f"resume: removed what the interrupted run left in the task directory: {pristine.shown(left)}")
    store.clear_pending()
    if loop.worker is None:
        repaired = loop.table.reset(ledger.records)
        if repaired:
            loop.say(f"resume: {repaired}")
        loop.mirror_tsv()


def _kill_leftovers(pending: Pending) -> None:
    for proc in pending.processes:
        if proc.pid:
            kill_tree_if_alive(proc.pid, proc.create_time, token=proc.token)
        elif proc.token:  # killed before the pid was known: the token still finds it
            kill_token(proc.token)


def _settle_pending(loop: "Loop", pending: Pending) -> None:
    """An interrupted iteration is set aside; a confirmation recorded in pending.json is recorded."""
    store, ledger = loop.store, loop.store.ledger
    if ledger.find(pending.iteration) is None:
        loop.say(f"resume: iteration {pending.iteration} was interrupted; rolling it back")
        store.set_aside(pending.iteration)
        if pending.confirming is not None:  # its confirmation run was under way too
            store.set_aside(pending.confirming)
    elif pending.confirmation and ledger.find(pending.confirmation["iteration"]) is None:
        # Killed between the two records: the confirmation that decided the keep is recorded now.
        confirmation = Experiment.from_json(pending.confirmation)
        loop.write_explanation(confirmation)
        ledger.append(confirmation)
        loop.say(f"resume: recorded confirmation run {confirmation.iteration}")


def restore_tree(loop: "Loop", untracked_before, created: list[str] | None = None, to: str | None = None) -> None:
    """Back to the best commit (or `to`); files the agent created are deleted, the user's are kept.

    `created` (the new files, when known) spares a `git status` call.
    """
    git = loop.git
    best = loop.store.ledger.best()
    target = to or (best.commit if best else git.where()[1])
    git.put_back(loop.branch, target)
    git.reset_hard(target)
    before = set(untracked_before)
    leftovers = created if created is not None else git.changed_paths()  # after the reset: untracked only
    for path in leftovers:
        file = loop.task.dir / path
        if path not in before and (file.is_file() or file.is_symlink()):
            file.unlink()


# -- the stop rules ------------------------------------------------------------------------
def limit_reached(loop: "Loop", limits: Limits, started: float) -> str | None:
    """Why the session must not start another iteration (time or money), else None."""
    if limits.max_seconds is not None and time.monotonic() - started >= limits.max_seconds:
        return "time limit reached; stopping"
    if limits.max_cost_usd is not None:
        spent = outer.total_spend(loop.store)
        if spent >= limits.max_cost_usd:
            return f"cost limit reached: ${spent:.2f} of ${limits.max_cost_usd:.2f}; stopping"
    return None


def crashes_end_it(loop: "Loop", limits: Limits, this_session: list[Experiment]) -> str | None:
    """A message when this session's crashes end the night (the setup's, or too many in a row).

    Only this session's records count: a resumed run is not stopped again for yesterday's crashes."""
    section = loop.task.config.task
    limit = section.max_consecutive_crashes if limits.max_consecutive_crashes is None else limits.max_consecutive_crashes
    return (crash_policy.should_pause_for_agent(this_session, section.pause_after_env_errors)
            or crash_policy.should_pause(this_session, section.pause_after_env_errors)
            or crash_policy.should_stop(this_session, limit))
