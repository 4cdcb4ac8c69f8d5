"""Several workers on one machine: one per GPU (or per CPU slot), one ledger.

Each worker has its own git worktree and branch (`autoresearch/<tag>-w<i>`), its own agent
and its own device (`CUDA_VISIBLE_DEVICES`). They share the ledger, results.tsv and the lock
around decisions. A keep must beat the global best at the moment it is recorded, so the
ledger's last keep is always the global best; before each iteration a worker whose branch is
behind it resets onto it (the documented policy: reset, not merge), and the tag's own branch
`autoresearch/<tag>` follows every keep. No two workers run the same code: the content of
the editable files in flight is checked across workers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

from autoresearch import tag_config
from autoresearch.agents.base import Agent
from autoresearch.config import Task
from autoresearch.errors import AutoresearchError
from autoresearch.execution import Executor
from autoresearch.gitrepo import Git
from autoresearch.loop import Limits, Loop, Shared, Worker, default_executor
from autoresearch.records import Experiment
from autoresearch.store import RunStore


def parse_slots(gpus: str | None, workers: int | None) -> list[dict]:
    """The environment of each worker's runs: one GPU each with --gpus, else plain CPU slots."""
    if gpus:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if not ids or len(set(ids)) != len(ids):
            raise AutoresearchError(f"--gpus {gpus!r}: give distinct device ids separated by commas, e.g. --gpus 0,1,2,3")
        return [{"CUDA_VISIBLE_DEVICES": g} for g in ids]
    if workers is None or workers < 1:
        raise AutoresearchError("--workers must be at least 1")
    return [{} for _ in range(workers)]


def _worktree(main: Loop, index: int, commit: str) -> Path:
    """The worker's worktree at `commit`, created or reused; returns its task directory."""
    store, git = main.store, main.main_git
    path = store.worktree(index)
    prefix = git.prefix()
    if not (path / ".git").exists():
        git("worktree", "prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "-q", "-f", "-B", store.worker_branch(index), str(path), commit)
    return path / prefix if prefix else path


def run_workers(task: Task, tag: str, make_agent: Callable[[int], Agent], slots: Sequence[dict], limits: Limits,
                *, say: Callable[[str], None] = print, stop_event: threading.Event | None = None,
                make_executor: Callable[[int], Executor | None] | None = None,
                observers=None) -> list[Experiment]:
    """Run `limits.iterations` agent iterations in total, spread over one worker per slot.

    `make_executor(i)`: worker i's executor; by default each loop makes the one its config asks
    for, except Ray: one executor for the whole pool, so that the cluster is joined once, from
    this thread, and not left after the baseline to be joined again by every worker thread.
    """
    pool = None
    if make_executor is None:
        if task.config.executor.kind == "ray":
            pool = default_executor(task, say)
        make_executor = lambda i: pool  # noqa: E731
    try:
        return _run_pool(task, tag, make_agent, slots, limits, say, stop_event or threading.Event(),
                         make_executor, observers)
    finally:
        if pool is not None:
            pool.close()


def _run_pool(task, tag, make_agent, slots, limits, say, stop_event, make_executor, observers) -> list[Experiment]:
    probe = RunStore(task.dir, tag)
    task = tag_config.resolved(task, probe, Git(task.dir))  # the rules a resume from the run branch runs under
    shared = Shared(probe.results_table(task.columns, worker_column=True), probe.ledger)
    main = Loop(task, tag, make_agent(0), say=say, stop_event=stop_event, shared=shared,
                executor=make_executor(0), observers=observers)
    done = main.run(Limits(iterations=0))  # branch, store, resume checks, and the baseline on a new tag
    if stop_event.is_set():
        return done
    best = shared.ledger.best()
    loops = []
    for i, env in enumerate(slots):
        worker = Worker(i, _worktree(main, i, best.commit), env=dict(env))
        loops.append(Loop(task, tag, make_agent(i), say=say, stop_event=stop_event, shared=shared,
                          worker=worker, executor=make_executor(i), observers=observers))
    shared.tickets = limits.iterations
    per_worker = Limits(iterations=limits.iterations, max_seconds=limits.max_seconds,
                        max_consecutive_crashes=limits.max_consecutive_crashes, max_cost_usd=limits.max_cost_usd)
    results: list[list[Experiment]] = [[] for _ in loops]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = loops[i].run(per_worker)
        except BaseException as exc:  # reported after every worker has stopped
            errors.append(exc)
            stop_event.set()

    threads = [threading.Thread(target=work, args=(i,), name=f"autoresearch-w{i}") for i in range(len(loops))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep the main thread responsive to Ctrl-C
    main.recover()  # the main worktree back on the global best, results.tsv in step with the ledger
    if errors:
        raise errors[0]
    return done + sorted((r for rs in results for r in rs), key=lambda r: r.iteration)
