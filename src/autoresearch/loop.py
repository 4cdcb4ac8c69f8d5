"""The research loop: one experiment at a time, from proposal to ledger record.

    propose -> guard -> commit -> run -> metrics -> decide -> record -> keep or reset

The ledger record is the commit point of an iteration. Before it, an interrupted iteration
is rolled back on the next start; after it, only the git reset and results.tsv remain to
be brought in line, and both are derived from the ledger.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import psutil

from autoresearch import crash, crash_policy, early_stop, environment, guard, integrity, outer, results_tsv
from autoresearch.agents.base import Agent, Context
from autoresearch.atomic import mirror, write_json, write_text
from autoresearch.config import Task
from autoresearch.decision import Rules, check_primary, decide, total_code_lines
from autoresearch.errors import AutoresearchError
from autoresearch.executor import Executor, LocalExecutor
from autoresearch.footer import parse_footer_report
from autoresearch.gitrepo import Git
from autoresearch.gpu import GpuSampler
from autoresearch.ledger import Ledger
from autoresearch.prompt import render_prompt
from autoresearch.records import CrashReason, Experiment, Proposal, RunResult, RunSpec, Status
from autoresearch.runner import RUN_TOKEN_ENV, kill_token, kill_tree_if_alive
from autoresearch.secrets import redact, redact_file, secret_values
from autoresearch.store import STORE_DIR, RunStore

_FULL_PARSE_BYTES = 8 * 1024 * 1024


def default_executor(task: Task, say: Callable[[str], None]) -> Executor:
    """What the task's config asks for: Ray, warm starts, or plain local processes."""
    section = task.config.executor
    if section.kind == "ray":
        from autoresearch.ray_executor import RayExecutor
        return RayExecutor.from_task(task)
    if task.config.task.preload:
        from autoresearch.warm import WarmExecutor
        return WarmExecutor(task.config.task.preload, say=say)
    return LocalExecutor()


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


class Loop:
    def __init__(self, task: Task, tag: str, agent: Agent, *, executor: Executor | None = None,
                 say: Callable[[str], None] = print, stop_event: threading.Event | None = None,
                 observers: list[Callable[["Loop", Experiment], None]] | None = None,
                 shared: Shared | None = None, worker: Worker | None = None):
        self.agent = agent
        self._owns_executor = executor is None
        self.executor = executor or default_executor(task, say)
        self.say = say
        self.stop_event = stop_event or threading.Event()
        self.store = RunStore(task.dir, tag, worker=worker.index if worker else None,
                              ledger=shared.ledger if shared else None)
        self.main_git = Git(task.dir)
        self.worker = worker
        # A worker edits, commits and trains in its own worktree; the store stays in the main one.
        self.task = task.moved_to(worker.task_dir) if worker else task
        self.git = Git(self.task.dir) if worker else self.main_git
        self.branch = self.store.worker_branch(worker.index) if worker else self.store.branch
        self.rules = Rules.from_metrics(task.metrics)
        self.shared = shared or Shared(self.store.results_table(task.columns), self.store.ledger)
        self.table = self.shared.table
        # Called after every recorded experiment (analysis refresh, strategy memo, ...).
        self.observers = list(observers or [])

    # -- start ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the tag's branch and store, or resume them; leave a consistent state."""
        git, store = self.git, self.store
        check = getattr(self.agent, "check", None)
        if check is not None:
            check()  # fail in a second with a fix, not after the baseline has trained
        connect = getattr(self.executor, "connect", None)
        if connect is not None:
            connect()  # a cluster that is not there fails before a branch or a store is made
        if self.worker is not None:
            self.recover()  # the pool made the branch and the worktree; finish what this worker left
            return
        if not git.is_repo():
            raise AutoresearchError(f"{self.task.dir}: not inside a git repository; run `git init && git add -A && git commit -m init` there first")
        if not git.has_commits():
            raise AutoresearchError(f"{self.task.dir}: the repository has no commit yet; commit the task files first")
        if store.ledger.exists() or store.pending_path.exists():  # begun, maybe killed in its baseline
            if not git.branch_exists(store.branch):
                raise AutoresearchError(f"{store.ledger.path} exists but branch {store.branch} is gone; restore the branch or pick another --tag")
            if git.current_branch() != store.branch:
                self._require_clean()
                git.checkout(store.branch)
            self.recover()
        else:
            if git.branch_exists(store.branch):
                raise AutoresearchError(
                    f"branch {store.branch} exists but has no ledger at {store.ledger.path}; "
                    f"pick another --tag or delete the branch (git branch -D {store.branch})")
            self._require_clean()
            git.checkout_new_branch(store.branch)
            store.create()
        prefix = git.prefix()
        git.exclude([f"/{prefix}{name}" for name in ("results.tsv", f"{STORE_DIR}/", "analysis_summary.json",
                                                      "analysis_summary.md", "progress.png", "curves.png", "report.html", "config/auto/",
                                                      # what a writer killed mid-write leaves (atomic.py)
                                                      ".*.tmp.*", ".*.link.*")])

    def _require_clean(self) -> None:
        dirty = self.git.dirty_tracked()
        if dirty:
            raise AutoresearchError(
                f"{self.task.dir}: uncommitted changes in {', '.join(dirty[:5])}; commit or stash them first "
                "(the loop resets the work tree to the best commit after every discarded experiment)")

    def recover(self) -> None:
        """Undo an iteration that was interrupted before its record, finish one after it."""
        store, ledger = self.store, self.store.ledger
        if self.worker is None:
            ledger.reload()  # also drops a torn last line
            for lock in self.git.remove_stale_locks():
                self.say(f"resume: removed {lock}, left behind by a git that was killed")
        pending = store.pending()
        if pending:
            for proc in pending.get("processes", []):
                if proc["pid"]:
                    kill_tree_if_alive(proc["pid"], proc["create_time"], token=proc.get("token"))
                elif proc.get("token"):  # killed before the pid was known: the token still finds it
                    kill_token(proc["token"])
            if ledger.find(pending["iteration"]) is None:
                self.say(f"resume: iteration {pending['iteration']} was interrupted; rolling it back")
                store.set_aside(pending["iteration"])
                if pending.get("confirming") is not None:  # its confirmation run was under way too
                    store.set_aside(pending["confirming"])
            elif pending.get("confirmation") and ledger.find(pending["confirmation"]["iteration"]) is None:
                # Killed between the two records: the confirmation that decided the keep is recorded now.
                confirmation = Experiment.from_json(pending["confirmation"])
                self._write_explanation(confirmation)
                ledger.append(confirmation)
                self.say(f"resume: recorded confirmation run {pending['confirmation']['iteration']}")
            self._restore_tree(pending.get("untracked", []))
        best = ledger.best()
        if best is not None and self.git.head() != best.commit:
            self.git.reset_hard(best.commit)
        store.clear_pending()
        if self.worker is None:
            repaired = self.table.reset(ledger.records)
            if repaired:
                self.say(f"resume: {repaired}")
            self._mirror_tsv()

    def _restore_tree(self, untracked_before: list[str], created: list[str] | None = None) -> None:
        """Back to the best commit; files the agent created are deleted, the user's are kept.

        `created` (the new files, when known) spares a `git status` call.
        """
        best = self.store.ledger.best()
        target = best.commit if best else self.git.where()[1]
        self.git.put_back(self.branch, target)
        self.git.reset_hard(target)
        before = set(untracked_before)
        leftovers = created if created is not None else self.git.changed_paths()  # after the reset: untracked only
        for path in leftovers:
            target = self.task.dir / path
            if path not in before and (target.is_file() or target.is_symlink()):
                target.unlink()

    # -- the loop ------------------------------------------------------------------------
    def run(self, limits: Limits) -> list[Experiment]:
        """Run the baseline if needed, then `limits.iterations` agent iterations."""
        self.prepare()
        started = time.monotonic()
        done: list[Experiment] = []
        try:
            if self.store.ledger.best() is None:
                baseline = self._iteration(self.shared.take_iteration(self.store.ledger), baseline=True)
                done.append(baseline)
                if baseline.status is Status.CRASH:
                    raise AutoresearchError(
                        f"the baseline run crashed ({baseline.reason}); fix the task so `{self.task.run}` works "
                        f"unmodified, see {self.store.run_dir(baseline.iteration) / 'log.txt'}")
            while integrity.repeats_done(self.store.ledger.records) < self.task.metrics.noise_runs - 1:
                # The baseline again under other seeds: the run-to-run spread is the noise floor.
                done.append(self._iteration(self.shared.take_iteration(self.store.ledger), baseline=True,
                                            repeat=integrity.repeats_done(self.store.ledger.records) + 1))
            this_session: list[Experiment] = []
            for _ in range(limits.iterations):
                if not self.shared.take_ticket():
                    break
                if limits.max_seconds is not None and time.monotonic() - started >= limits.max_seconds:
                    self.say("time limit reached; stopping")
                    break
                spent = sum(r.cost_usd for r in self.store.ledger.records) + outer.memo_spend(self.store)[0]
                if limits.max_cost_usd is not None and spent >= limits.max_cost_usd:
                    self.say(f"cost limit reached: ${spent:.2f} of ${limits.max_cost_usd:.2f}; stopping")
                    break
                record = self._iteration(self.shared.take_iteration(self.store.ledger))
                done.append(record)
                this_session.append(record)  # a resumed run is not stopped again for yesterday's crashes
                limit = limits.max_consecutive_crashes
                message = (crash_policy.should_pause(this_session, self.task.config.task.pause_after_env_errors)
                           or crash_policy.should_stop(this_session, self.task.config.task.max_consecutive_crashes
                                                       if limit is None else limit))
                if message:
                    self.say(message)
                    break
        except Stopped:
            self.say("stopped: the interrupted iteration was rolled back")
            self.recover()
        finally:
            if self._owns_executor:
                getattr(self.executor, "close", lambda: None)()  # a warm-start server, a Ray connection
        return done

    def _checkpoint(self) -> None:
        if self.stop_event.is_set():
            raise Stopped()

    def _iteration(self, n: int, *, baseline: bool = False, repeat: int = 0) -> Experiment:
        task, store, git = self.task, self.store, self.git
        self._checkpoint()
        self._n = n
        with self.shared.lock:
            history = list(store.ledger.records)
            best = store.ledger.best()
        if self.worker is not None and best is not None and git.head() != best.commit:
            # Another worker's keep is the best now: continue from it (documented policy: reset).
            git.reset_hard(best.commit)
        parent = best.commit if best else git.head()
        untracked = git.changed_paths()  # the user's own untracked files: not the agent's doing
        self._created: list[str] | None = None
        store.set_pending(iteration=n, parent=parent, untracked=untracked, started=time.time())
        run_dir = store.run_dir(n)
        started = time.time()
        ro_before = guard.file_hashes(task.dir, task.readonly)

        if baseline:
            proposal = (Proposal("baseline", "The unmodified code, run once to set the bar.") if not repeat else
                        Proposal(f"baseline repeat {repeat} of {task.metrics.noise_runs - 1} (noise estimate)",
                                 "The unmodified code under another seed, to measure the run-to-run spread."))
            commit, changed = parent, []
        else:
            lines_before = total_code_lines(task.dir, task.editable)
            repair = outer.repair_target(history, self.agent, task.agent.max_fix_attempts)
            if repair is not None:
                # The agent repairs the crashed change itself, so the work tree holds that code.
                git("checkout", "-q", repair.commit, "--", *task.editable)
            before_agent = git.snapshot()
            proposal = self._propose(n, history, best, run_dir, repair)
            healed = git.heal(before_agent, self.branch)  # a rewritten HEAD or config, a lock it left
            if healed:
                self.say(f"note: iteration {n}: the agent broke git's {', '.join(healed)}; put back")
            self._checkpoint()
            if git.put_back(self.branch, parent):  # the agent moved HEAD, the branch or the index
                self.say(f"note: iteration {n}: the agent changed git state; the branch is back at {parent[:7]}")
            entries = [(code, p) for code, p in git.status() if p not in set(untracked)]
            changed = [p for _, p in entries]
            self._created = [p for code, p in entries if code == "??"]
            early = self._early_outcome(proposal, changed, history)
            if early is not None:
                status, reason, metrics = early
                return self._finish(self._record(n, parent, parent, status, reason, proposal, started,
                                                 changed=changed, metrics=metrics))
            outside = guard.outside_scope(changed, task.editable)
            escaped = guard.escaping(task.dir, changed)  # a symlink out of the task, say
            commit = git.commit(changed, proposal.description or "experiment")
            git.keep_reachable(store.ref(n), commit)
            store.set_pending(commit=commit)
            write_text(run_dir / "diff.patch", git.diff(parent, commit), durable=False)
            bad = sorted(set(outside) | set(guard.changed_readonly(ro_before, guard.file_hashes(task.dir, task.readonly))))
            if bad or escaped:
                what = [f"changed non-editable file(s) {', '.join(bad)}"] if bad else []
                what += [f"made {', '.join(escaped)} lead outside the task directory"] if escaped else []
                reason = f"{CrashReason.GUARD.value}: {'; '.join(what)}; reverted"
                return self._finish(self._record(n, commit, parent, Status.CRASH, reason, proposal, started, changed=changed))

        seed = str(repeat) if repeat else None
        result, metrics, problem = self._measure(n, run_dir, commit, seed, may_stop=not baseline)
        stop = self._early_stop
        if stop is not None:  # stopped early: its metrics are the curve's so far
            metrics = {**metrics, self.rules.primary: stop.value}
        memory_gb = self._memory_gb(metrics, result)
        judged = dict(ro_before=ro_before, baseline=baseline, repeat=repeat, problem=problem, parent=parent,
                      lines_before=lines_before if not baseline else 0, stop=stop)
        confirmation = None
        if self.task.metrics.confirm and not baseline:
            status, _ = self._judge(result, metrics, best=store.ledger.best(), **judged)
            if status is Status.KEEP:  # a candidate: run it again under another seed before believing it
                confirmation = self._confirm(n, commit, parent, proposal, started, changed)
        with self.shared.lock:
            best_now = store.ledger.best()  # other workers may have kept something while this trained
            status, reason = self._judge(result, metrics, best=best_now, **judged)
            if confirmation is not None and status is Status.KEEP:
                c_status, _ = self._judge(confirmation[1], confirmation[2], best=best_now, **{**judged, "problem": confirmation[3]})
                status = c_status
                reason = f"{reason}; confirmed by iteration {confirmation[0]}" if c_status is Status.KEEP else \
                    f"not confirmed by iteration {confirmation[0]} under another seed"
            record = self._record(n, commit, parent, status, reason, proposal, started, changed=changed,
                                  metrics=metrics, result=result, memory_gb=memory_gb)
            if stop is not None and status is Status.DISCARD:
                record = replace(record, stopped_at=round(stop.at, 4))
            if confirmation is not None:  # it is recorded second; a resume records it if we die between
                store.set_pending(confirmation=confirmation[4].to_json())
            recorded = [self._finish(record, last=confirmation is None, announce=False)]
            if confirmation is not None:
                recorded.append(self._finish(confirmation[4], announce=False))
        # Observers and the memo outside the lock: an analysis refresh or an LLM writing the memo
        # must not hold up the other workers' decisions.
        for r in recorded:
            self._announce(r)
        return recorded[0]

    def _measure(self, n: int, run_dir: Path, commit: str, seed: str | None, may_stop: bool = False):
        """Run the training (and the trusted eval): (result, metrics, crash reason or '' or a flag).

        `may_stop`: the run may be stopped early (self._early_stop says why); never a baseline."""
        env = self._run_env(n, seed)
        with self.shared.lock:
            history = list(self.store.ledger.records)
        watcher = early_stop.watcher_for(self.task, self.store, history, run_dir, may_stop=may_stop,
                                         cache=self.__dict__.setdefault("_traces", {}))
        result = self._run(n, run_dir, commit, env, watcher)
        self._early_stop = None
        if watcher is not None:
            early_stop.save_trace(run_dir, watcher.trace, self.rules.primary, self.task.time_budget, watcher.decision)
            if watcher.decision is not None and result.exit_code is None and not result.timed_out \
                    and not self.stop_event.is_set():
                self._early_stop = watcher.decision  # the rule ended it, not the timeout or a Ctrl-C
        secrets = secret_values(env)  # keys the task's [task] env hands its runs: kept out of the log we keep
        if secrets and redact_file(result.log_path, secrets):
            result = replace(result, output_tail=redact(result.output_tail, secrets))
        from autoresearch.analysis.observer import capture_curve  # the analysis loads only once a run has run
        capture_curve(self.task.dir, run_dir, time.time() - result.wall_seconds)  # before any reset
        self._checkpoint()
        metrics = self._metrics(result)
        problem = ""
        eval_command = self.task.config.task.eval
        if eval_command and result.exit_code == 0 and not result.timed_out:
            eval_metrics, error = integrity.trusted_eval(eval_command, self.task.dir, env, self.task.timeout,
                                                         run_dir / "eval.log")
            self._checkpoint()
            if error:
                problem = error
            else:
                metrics, problem = integrity.merge_trusted(metrics, eval_metrics, self.rules.primary)
        write_json(run_dir / "metrics.json", metrics, durable=False)
        return result, metrics, problem

    def _confirm(self, n: int, commit: str, parent: str, proposal: Proposal, started: float, changed):
        """The same commit under another seed, recorded as its own (discard) row."""
        m = self.shared.take_iteration(self.store.ledger)
        self.store.set_pending(confirming=m)  # a resume sets its run folder aside too
        run_dir = self.store.run_dir(m)
        result, metrics, problem = self._measure(m, run_dir, commit, seed=str(m))
        note = Proposal(f"confirm #{n}: {proposal.description}", f"Iteration {n} again under seed {m}.")
        record = self._record(m, commit, parent, Status.DISCARD, f"{integrity.CONFIRM_REASON} {n}", note, started,
                              changed=changed, metrics=metrics, result=result,
                              memory_gb=self._memory_gb(metrics, result))
        if result.exit_code != 0 or result.timed_out or check_primary(metrics, self.rules.primary):
            record = replace(record, status=Status.CRASH, reason=f"{integrity.CONFIRM_REASON} {n}: the run failed")
        return m, result, metrics, problem, record

    def _propose(self, n: int, history, best: Experiment, run_dir: Path, repair: Experiment | None) -> Proposal:
        extras = outer.prompt_extras(self.task, self.store, history, repair)
        prompt = render_prompt(self.task, self.store.tag, n, history, best, runs_dir=self.store.root / "runs",
                               extras=extras, budget=self.task.agent.prompt_budget, recent=self.task.agent.recent)
        prompt_file = run_dir / "prompt.md"
        write_text(prompt_file, prompt, durable=False)
        context = Context(
            task_dir=self.task.dir, iteration=n, editable=self.task.editable, readonly=self.task.readonly,
            history=tuple(history), best=best, primary=self.rules.primary, direction=self.rules.direction,
            prompt=prompt, prompt_file=prompt_file, seed=0, stop_event=self.stop_event,
            on_process_start=lambda pid: self._track(pid, "agent"),
        )
        try:
            proposal = self.agent.propose(context)
            if repair is None:
                return proposal
            root = repair.repair_of if repair.repair_of is not None else repair.iteration  # the change being repaired
            return replace(proposal, data={**proposal.data, "repair_of": root})
        except AutoresearchError as exc:
            return Proposal("agent failed", "", ok=False, error=str(exc))
        except Exception as exc:  # a bug in an agent must not end the night
            return Proposal("agent failed", "", ok=False, error=f"{type(exc).__name__}: {exc}")

    def _early_outcome(self, proposal: Proposal, changed: list[str], history):
        """(status, reason, metrics) when the proposal must not be trained, else None."""
        if not proposal.ok:
            self._restore_tree(self.store.pending().get("untracked", []))
            return Status.CRASH, f"{CrashReason.AGENT.value}: {proposal.error}", {}
        if not changed:
            return Status.CRASH, f"{CrashReason.AGENT.value}: no change to the editable files", {}
        if guard.outside_scope(changed, self.task.editable) or guard.escaping(self.task.dir, changed):
            return None  # committed so the attempt can be inspected, then rejected by the guard
        digest = guard.content_hash(self.task.dir, self.task.editable)
        with self.shared.lock:
            for old in self.store.ledger.records:
                if old.content_hash == digest and old.status is not Status.CRASH:
                    self._restore_tree(self.store.pending().get("untracked", []))
                    # Same code, same result: show the earlier metrics rather than train it again.
                    return Status.DISCARD, f"duplicate of iteration {old.iteration}; not run again", old.metrics
            for other, running in self.shared.in_flight.items():
                if running == digest:
                    self._restore_tree(self.store.pending().get("untracked", []))
                    return Status.DISCARD, f"duplicate of iteration {other} (running on another worker); not run", {}
            self.shared.in_flight[self._n] = digest  # other workers must not run the same code now
        return None

    def _run_env(self, n: int, seed: str | None = None) -> dict:
        env = {
            **environment.run_env(self.task),  # an allow-list: API keys never reach the training
            "AUTORESEARCH_TIME_BUDGET": f"{self.task.time_budget:g}",
            "AUTORESEARCH_ITERATION": str(n),
            "PYTHONUNBUFFERED": "1",
            **(self.worker.env if self.worker else {}),  # e.g. CUDA_VISIBLE_DEVICES: this worker's GPU only
            # Every process of the run inherits this, so a resume finds even those that left the group.
            RUN_TOKEN_ENV: uuid.uuid4().hex,
            # `python` in the run command means the interpreter autoresearch runs under (seed 001, run 4).
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        if seed is not None:
            env["AUTORESEARCH_SEED"] = seed  # repeats and confirmations: the same code, another seed
        return env

    def _run(self, n: int, run_dir: Path, commit: str, env: dict, watcher=None) -> RunResult:
        spec = RunSpec(command=self.task.run, cwd=str(self.task.dir), env=env,
                       timeout=self.task.timeout, log_path=str(run_dir / "log.txt"),
                       commit=commit, repo_dir=self._repo_root(), task_subdir=self.git.prefix().rstrip("/"),
                       memory_limit_mb=self.task.config.task.memory_limit_mb)

        self._track(0, "run", env[RUN_TOKEN_ENV])  # the token first: a kill before the pid is known still finds it
        watching = watcher.watching(self.stop_event) if watcher is not None else contextlib.nullcontext(self.stop_event)
        with GpuSampler(env.get("CUDA_VISIBLE_DEVICES")) as sampler, watching as run_stop:
            result = self.executor.run(spec, on_start=lambda pid: self._track(pid, "run", env[RUN_TOKEN_ENV]),
                                       stop_event=run_stop)
        self._gpu = sampler
        return result

    def _repo_root(self) -> str:
        if not hasattr(self, "_root"):
            self._root = self.git.root()
        return self._root

    def _track(self, pid: int, role: str, token: str | None = None) -> None:
        """Note a started process group in pending.json, so a resume can kill what it left."""
        try:
            create_time = psutil.Process(pid).create_time() if pid else 0.0
        except psutil.Error:
            create_time = 0.0
        processes = (self.store.pending() or {}).get("processes", [])
        entry = {"role": role, "pid": pid, "create_time": create_time, "token": token}
        self.store.set_pending(processes=[*processes, entry])

    def _metrics(self, result: RunResult) -> dict:
        log = Path(result.log_path)
        if log.exists() and log.stat().st_size <= _FULL_PARSE_BYTES:
            text = log.read_text(encoding="utf-8", errors="replace")
        else:
            text = result.output_tail
        report = parse_footer_report(text)
        if report.duplicates:
            self.say(f"warning: {result.log_path}: the footer gives {', '.join(report.duplicates)} more than once; "
                     f"the last value counts (print each key once after the `---` line in {', '.join(self.task.editable)})")
        return report.metrics

    def _judge(self, result: RunResult, metrics: dict, *, ro_before, best, baseline: bool, lines_before: int,
               repeat: int = 0, problem: str = "", parent: str = "", stop=None):
        ro_after = guard.file_hashes(self.task.dir, self.task.readonly)
        bad = guard.changed_readonly(ro_before, ro_after)
        if bad:
            return Status.CRASH, f"{CrashReason.GUARD.value}: the run modified read-only file(s) {', '.join(bad)}"
        if stop is not None:  # behind the earlier runs at the same time, with no way to catch up
            return Status.DISCARD, stop.reason
        if result.node_lost:  # the machine died, twice: says nothing about the idea
            return Status.CRASH, f"{CrashReason.NODE_LOST.value}: the node running it died (retried once)"
        if result.timed_out or result.exit_code != 0:
            return Status.CRASH, self._crash_reason(result, metrics)
        if problem.startswith("eval:"):
            return Status.CRASH, problem
        flag = f"; {problem}" if problem else ""
        if check_primary(metrics, self.rules.primary):
            return Status.CRASH, self._crash_reason(result, metrics)
        if repeat:
            return Status.DISCARD, f"{integrity.NOISE_REASON} {repeat}"
        if baseline:
            return Status.KEEP, "baseline" + flag
        history = self.store.ledger.records
        floor = integrity.noise_floor(history, self.rules.primary, self.task.metrics.min_delta)
        if floor > 0 and integrity.seed_only_change(self.git, parent, self.task.dir, self.task.editable):
            return Status.DISCARD, f"a seed change alone is never a keep (noise floor {floor:.6f})" + flag
        simpler = total_code_lines(self.task.dir, self.task.editable) < lines_before
        decision = decide(metrics, best.metrics, self.rules, simpler=simpler, floor=floor)
        return decision.status, decision.reason + flag

    def _crash_reason(self, result: RunResult, metrics: dict) -> str:
        """Why a run crashed, from its exit and log tail: timeout, oom, env, disk, syntax, nan, ..."""
        found = crash.classify_run(result, metrics, primary=self.rules.primary, editable=self.task.editable,
                                   task_dir=self.task.dir, timeout=self.task.timeout,
                                   memory_limit_mb=self.task.config.task.memory_limit_mb)
        return found.reason if found else f"{CrashReason.EXIT_CODE.value}: {result.exit_code}"

    def _memory_gb(self, metrics: dict, result: RunResult) -> float:
        mb = metrics.get(self.task.metrics.memory_key)
        if not isinstance(mb, float) or not math.isfinite(mb):
            mb = result.peak_rss_mb  # no footer value: the measured peak of the process tree
        return round(mb / 1024, 1)

    def _record(self, n, commit, parent, status, reason, proposal: Proposal, started, *, changed,
                metrics=None, result: RunResult | None = None, memory_gb: float = 0.0) -> Experiment:
        return Experiment(
            iteration=n, commit=commit, parent=parent, status=status, reason=reason,
            description=proposal.description, explanation=proposal.explanation,
            metrics=metrics or {}, memory_gb=memory_gb if status is not Status.CRASH else 0.0,
            exit_code=result.exit_code if result else None,
            wall_seconds=round(result.wall_seconds, 3) if result else 0.0,
            peak_rss_mb=round(result.peak_rss_mb, 1) if result else 0.0,
            agent=getattr(self.agent, "name", "baseline") if n else "baseline",
            cost_usd=proposal.cost_usd, tokens=proposal.tokens, agent_data=proposal.data,
            changed_files=tuple(changed), content_hash=guard.content_hash(self.task.dir, self.task.editable),
            started_at=started, finished_at=time.time(),
            repair_of=proposal.data.get("repair_of") if isinstance(proposal.data, dict) else None,
            startup_seconds=result.startup_seconds if result else None, warm=result.warm if result else False,
            startup_saved_seconds=result.startup_saved_seconds if result else None,
            node=result.node if result else "",
            gpu_util=self._gpu.utilisation if result and getattr(self, "_gpu", None) else None,
            gpu_peak_mb=round(self._gpu.peak_mb, 1) if result and getattr(self, "_gpu", None) and self._gpu.peak_mb else None,
        )

    def _finish(self, record: Experiment, last: bool = True, announce: bool = True) -> Experiment:
        """Record, then move the branch: keep advances it, anything else resets to the best.

        `last` False: another record of this iteration follows (a confirmation); pending.json stays.
        `announce` False: the caller holds the workers' lock and calls `_announce` once it is free."""
        self._write_explanation(record)
        if record.status is Status.CRASH and record.commit == record.parent and record.iteration:
            record = replace(record, content_hash="")  # nothing was tried: never a duplicate
        if self.worker is not None:
            record = replace(record, worker=self.worker.index)
        with self.shared.lock:
            self.store.ledger.append(record)
            self.shared.in_flight.pop(record.iteration, None)
            if record.status is not Status.KEEP:
                self._restore_tree((self.store.pending() or {}).get("untracked", []), self._created)
            elif self.worker is not None:
                self.main_git.reset_hard(record.commit)  # the tag's branch always holds the global best
            if last:
                self.store.clear_pending()
            repaired = self.table.add(record)
            self._mirror_tsv()
        if repaired:
            self.say(f"warning: {repaired}")
        if announce:
            self._announce(record)
        return record

    def _announce(self, record: Experiment) -> None:
        """Say it, tell the observers (analysis refresh, ...), refresh the strategy memo when due."""
        self._say(record)
        for observer in self.observers:
            try:
                observer(self, record)
            except Exception as exc:  # a failing report must not end the night's experiments
                self.say(f"warning: {getattr(observer, '__name__', observer)} failed: {type(exc).__name__}: {exc}")
        outer.refresh_memo_if_due(self.task, self.store, self.agent, self.say)

    def _write_explanation(self, record: Experiment) -> None:
        write_text(self.store.run_dir(record.iteration) / "explanation.md",
                   f"# {record.description}\n\n{record.explanation}\n", durable=False)

    def _mirror_tsv(self) -> None:
        # The task directory's results.tsv shows the tag run last; the store keeps each tag's own.
        mirror(self.store.results_tsv, self.store.root / "results.tsv")

    def _say(self, r: Experiment) -> None:
        value = r.metrics.get(self.rules.primary)
        shown = f"{value:.6f}" if isinstance(value, float) and r.status is not Status.CRASH else "-"
        extra = f"  ({r.reason})" if r.status is Status.CRASH else ""
        who = f"[{self.worker.name}] " if self.worker else ""
        self.say(f"{who}#{r.iteration:<4} {r.commit[:7]}  {self.rules.primary}={shown}  {r.status.value:<7} {r.description}{extra}")
