"""The executor seam: `Executor.run(spec) -> RunResult`. Local processes by default."""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from autoresearch.records import RunResult, RunSpec
from autoresearch.runner import run_process


class Executor(Protocol):
    def run(self, spec: RunSpec, *, on_start: Callable[[int], None] | None = None,
            stop_event: threading.Event | None = None) -> RunResult: ...


class LocalExecutor:
    """Runs the training command on this machine, in its own process group."""

    def run(self, spec: RunSpec, *, on_start=None, stop_event=None) -> RunResult:
        return run_process(spec, on_start=on_start, stop_event=stop_event)
