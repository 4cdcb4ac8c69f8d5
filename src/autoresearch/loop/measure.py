"""The measure stage: run the training command under its limits, read the footer, the trusted eval.

It fills `result`, `metrics`, `gpu` and, with a trusted eval, `eval_failure` or `flag` of the
Attempt it is given; a confirmation run is measured on its own Attempt, so each run keeps its own
GPU facts. (Early stopping hooks in here: the run's spec and its on_start are built in one place.)
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch import budget, environment, integrity
from autoresearch.atomic import write_json
from autoresearch.footer import parse_footer_report
from autoresearch.gpu import GpuSampler
from autoresearch.loop.attempt import Attempt, GpuFacts, Kind
from autoresearch.records import RunResult, RunSpec
from autoresearch.execution import pristine
from autoresearch.execution.supervise import RUN_TOKEN_ENV
from autoresearch.verdict import Reason, Verdict
from autoresearch.secrets import redact, redact_file, secret_values
from autoresearch.store import CURVE_NAME, capture_curve, file_stamp

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop

_FULL_PARSE_BYTES = 8 * 1024 * 1024


def measure(loop: "Loop", attempt: Attempt) -> None:
    """Train the attempt's commit, then read what it reports (and what the trusted eval says).

    Git's hooks, config and info/exclude must not change meanwhile (git_guard.py): what did is
    put back and noted in `run_tampered`."""
    who = f"{loop.worker.name}'s " if loop.worker is not None else "the "
    with loop.shared.git_guard.window(loop.git, f"{who}run (iteration {attempt.n})") as git_changed:
        _measure(loop, attempt)
    attempt.run_tampered = [f"git's {p}" for p in git_changed]


def _measure(loop: "Loop", attempt: Attempt) -> None:
    env = run_env(loop, attempt.n, attempt.seed)
    watcher = _watcher(loop, attempt)
    curve_before = file_stamp(loop.task.dir / CURVE_NAME)  # an earlier run's curve, if it is still there
    before = pristine.before_run(loop)  # what the tree held: what the run creates there is removed after it
    result = _run(loop, attempt, env, watcher)
    secrets = secret_values(env)  # keys the task's [task] env hands its runs: kept out of the log we keep
    if secrets and redact_file(result.log_path, secrets):
        result = replace(result, output_tail=redact(result.output_tail, secrets))
    capture_curve(loop.task.dir, attempt.run_dir, time.time() - result.wall_seconds, curve_before)  # before any reset
    attempt.left = pristine.after_run(loop, before, users_code=attempt.kind in (Kind.BASELINE, Kind.REPEAT))
    loop.checkpoint()
    attempt.result = result
    attempt.metrics = _metrics(loop, result)
    if watcher is not None:
        _early_stop_outcome(loop, attempt, watcher)
    if loop.task.config.task.eval and attempt.trained:
        _trusted_eval(loop, attempt, env)
    write_json(attempt.run_dir / "metrics.json", attempt.metrics, durable=False)


def _trusted_eval(loop: "Loop", attempt: Attempt, env: dict) -> None:
    """The eval in a fresh sandbox on a pristine copy of the commit (execution/pristine.py), never on
    the work tree; a run whose outputs are missing, or that touched a read-only file, is not evaluated."""
    task = loop.task
    if pristine.guard_detail(attempt.left) or pristine.touched(attempt):
        return  # a guard crash already (judge.py): nothing of it is evaluated
    try:
        copy = pristine.make_copy(loop, pristine.base_commit(loop.store.ledger.records, attempt.commit),
                                  attempt.commit, attempt.left.outputs)
    except pristine.NotPristine as exc:
        attempt.eval_failure = Verdict.crash(Reason.GUARD, str(exc))
        return
    try:
        view = loop.sandbox.run_view(copy.task_dir, copy.root, loop.store.root,
                                     (*task.readonly, *(str(p) for p in copy.outputs)))
        eval_metrics, failure = integrity.trusted_eval(task.config.task.eval, copy.task_dir, env, task.timeout,
                                                       attempt.run_dir / "eval.log", sandbox=view)
    finally:
        copy.close()
    loop.checkpoint()
    if failure is not None:
        hint = pristine.eval_hint(attempt.left) if failure.reason is Reason.EVAL else ""
        attempt.eval_failure = replace(failure, detail=failure.detail + hint) if hint else failure
    else:
        attempt.metrics, attempt.flag = integrity.merge_trusted(attempt.metrics, eval_metrics, loop.rules.primary)


def run_env(loop: "Loop", n: int, seed: str | None = None) -> dict:
    env = {
        **environment.run_env(loop.task),  # an allow-list: API keys never reach the training
        "AUTORESEARCH_TIME_BUDGET": f"{loop.task.time_budget:g}",
        "AUTORESEARCH_ITERATION": str(n),
        "PYTHONUNBUFFERED": "1",
        **(loop.worker.env if loop.worker else {}),  # e.g. CUDA_VISIBLE_DEVICES: this worker's GPU only
        # Every process of the run inherits this, so a resume finds even those that left the group.
        RUN_TOKEN_ENV: uuid.uuid4().hex,
        # `python` in the run command means the task's interpreter (seed 001, run 4; interpreter.py).
        "PATH": f"{environment.python_dir(loop.task)}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if seed is not None:
        env["AUTORESEARCH_SEED"] = seed  # repeats and confirmations: the same code, another seed
    return env


def run_spec(loop: "Loop", attempt: Attempt, env: dict) -> RunSpec:
    task = loop.task
    return RunSpec(command=task.run, cwd=str(task.dir), env=env, timeout=run_timeout(loop),
                   log_path=str(attempt.run_dir / "log.txt"), commit=attempt.commit, repo_dir=loop.repo_root,
                   task_subdir=loop.git.prefix().rstrip("/"), memory_limit_mb=task.config.task.memory_limit_mb,
                   sandbox=sandbox_view(loop))


def sandbox_view(loop: "Loop"):
    """The sandbox view of this loop's runs (execution/sandbox.py), or None when runs are not sandboxed.

    The task's interpreter environment, when it lies in the task directory, is read-only too: the
    trusted eval's `python` is that one."""
    venv = pristine.interpreter_root(loop.task)
    return loop.sandbox.run_view(loop.task.dir, loop.repo_root, loop.store.root,
                                 (*loop.task.config.task.readonly, *([venv] if venv else [])))


def run_timeout(loop: "Loop") -> float:
    """The hard limit of a run: configured, or derived from the baseline's wall time (budget.py)."""
    return budget.run_timeout(loop.task, loop.store.ledger.records).seconds


def _watcher(loop: "Loop", attempt: Attempt):
    """The run's curve watcher (early_stop.py), or None when `[early_stop]` is off. Every run's
    curve is recorded; only an agent's change may be stopped, never a baseline, repeat or confirmation."""
    from autoresearch import early_stop

    with loop.shared.lock:
        history = list(loop.store.ledger.records)
    return early_stop.watcher_for(loop.task, loop.store, history, attempt.run_dir,
                                  may_stop=attempt.kind is Kind.AGENT,
                                  cache=loop.early_stop_traces)


def _early_stop_outcome(loop: "Loop", attempt: Attempt, watcher) -> None:
    from autoresearch import early_stop

    stop, result = watcher.decision, attempt.result
    early_stop.save_trace(attempt.run_dir, watcher.trace, loop.rules.primary, loop.task.time_budget, stop)
    # The rule ended it only when the run did not end itself, time out, or meet a Ctrl-C.
    if stop is not None and result.exit_code is None and not result.timed_out and not loop.stop_event.is_set():
        attempt.stop = stop
        attempt.metrics = {**attempt.metrics, loop.rules.primary: stop.value}  # partial: the curve so far


def _run(loop: "Loop", attempt: Attempt, env: dict, watcher=None) -> RunResult:
    spec = run_spec(loop, attempt, env)
    token = env[RUN_TOKEN_ENV]
    loop.track(0, "run", token)  # the token first: a kill before the pid is known still finds it
    loop.emit("stage", attempt.n, "measure", log_path=spec.log_path, run_started_at=time.time(),
              curve_dir=loop.task.dir)
    watching = watcher.watching(loop.stop_event) if watcher is not None else contextlib.nullcontext(loop.stop_event)
    with GpuSampler(env.get("CUDA_VISIBLE_DEVICES")) as sampler, watching as run_stop:
        result = loop.executor.run(spec, on_start=lambda pid: loop.track(pid, "run", token),
                                   stop_event=run_stop)
    attempt.gpu = GpuFacts(sampler.utilisation, round(sampler.peak_mb, 1) if sampler.peak_mb else None)
    return result


def _metrics(loop: "Loop", result: RunResult) -> dict:
    log = Path(result.log_path)
    if log.exists() and log.stat().st_size <= _FULL_PARSE_BYTES:
        text = log.read_text(encoding="utf-8", errors="replace")
    else:
        text = result.output_tail
    report = parse_footer_report(text)
    if report.duplicates:
        loop.say(f"warning: {result.log_path}: the footer gives {', '.join(report.duplicates)} more than once; "
                 f"the last value counts (print each key once after the `---` line in {', '.join(loop.task.editable)})")
    return report.metrics
