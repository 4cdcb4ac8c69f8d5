"""The executor seam: `Executor.run(spec) -> RunResult`, with hooks the loop calls on every executor.

An executor runs one experiment's command and returns how it went; it never decides anything
about the experiment. The loop calls, in this order: `check()` and `connect()` before the
baseline, `run()` once per run (from several threads with workers), `close()` at the end when
the loop made the executor. The hooks do nothing by default; a subclass overrides what it needs.
"""

from __future__ import annotations

import abc
import threading
from typing import Callable

from autoresearch.execution.runner import run_process
from autoresearch.records import RunResult, RunSpec


class Executor(abc.ABC):
    """Base class of every executor; `run` is the only method a subclass must write (an
    executor without it cannot be made: TypeError at construction, not at the first run)."""

    name = "executor"  # a word for messages and records: "local", "warm", "ray"
    # Set once the executor gave up on what it was asked for (warm starts off, and why); its runs
    # still happen, the fallback way. Read by whoever reports on it (ray_node, status).
    off_reason = ""

    @abc.abstractmethod
    def run(self, spec: RunSpec, *, on_start: Callable[[int], None] | None = None,
            stop_event: threading.Event | None = None) -> RunResult:
        """Run `spec` to its exit, timeout or `stop_event`, leaving no process behind.

        `on_start(pid)` gets the leader's pid before the command's first line runs (executors
        whose runs live elsewhere never call it); an exception from it kills the run and
        propagates. Raises only when the command cannot be started at all.
        """

    def check(self) -> None:
        """Fail in a second, with the fix, when this executor cannot work at all (nothing started)."""

    def connect(self) -> None:
        """Acquire what runs need (a cluster connection) before the baseline; fail early if not there."""

    def close(self) -> None:
        """Release what the executor holds (a warm-start server, a Ray connection); safe to call twice."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """Runs the training command on this machine, in its own process group."""

    name = "local"

    def run(self, spec: RunSpec, *, on_start=None, stop_event=None) -> RunResult:
        return run_process(spec, on_start=on_start, stop_event=stop_event)


class _Adapted(Executor):
    """An object with only a `run` method (a test double, an older plug-in) as an Executor."""

    def __init__(self, inner):
        self.inner = inner
        self.name = type(inner).__name__

    def run(self, spec, *, on_start=None, stop_event=None) -> RunResult:
        return self.inner.run(spec, on_start=on_start, stop_event=stop_event)


def as_executor(obj) -> Executor:
    """`obj` itself when it is an Executor; otherwise its `run` behind the base class's no-op hooks."""
    return obj if isinstance(obj, Executor) else _Adapted(obj)


def executor_for_task(task, say: Callable[[str], None]) -> Executor:
    """What the task's config asks for: Ray, warm starts, or plain local processes."""
    if task.config.executor.kind == "ray":
        from autoresearch.execution.ray_executor import RayExecutor

        return RayExecutor.from_task(task)
    section = task.config.task
    if (section.preload or section.preload_data) and section.warm:
        from autoresearch.execution.warm import PreloadData, WarmExecutor

        data = PreloadData(str(task.dir), section.preload_data) if section.preload_data else None
        return WarmExecutor(section.preload, say=say, data=data)
    return LocalExecutor()
