"""A training run as a fresh process on this machine: started here, supervised by supervise.py.

The command runs through the shell in a new session, so its process group can be signalled as a
whole; supervise.py watches it, caps its log and kills whatever it started (group, remembered
descendants, every process carrying the run token) at its end. With `spec.sandbox` (a
sandbox.View) the shell runs inside bubblewrap: the leader is bwrap, and killing it ends the
run's PID namespace, every process in it included; the run's own processes get the SIGTERM and
the grace first, as outside.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import replace
from typing import Callable

import psutil

from autoresearch.execution.sandbox import namespace_pid, sandboxed_argv
from autoresearch.execution.supervise import (
    GRACE_SECONDS,
    RUN_TOKEN_ENV,
    open_log,
    run_token,
    supervise,
)
from autoresearch.records import RunResult, RunSpec


def run_process(
    spec: RunSpec,
    *,
    poll_interval: float = 0.1,
    stop_event: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    grace: float = GRACE_SECONDS,
    memory_limit_mb: float | None = None,
) -> RunResult:
    """Run `spec.command` to completion, timeout or stop, and kill everything it started.

    exit_code is None when the timeout (timed_out True) or `stop_event` ended the run. A run
    killed over `memory_limit_mb` (default: `spec.memory_limit_mb`) gets the exit code of the
    kill and a MEMORY_LIMIT_MARKER line at the end of its log. Raises only when the command
    cannot be started at all (e.g. a missing cwd) or `on_start` raises; the process tree is
    killed in the latter case too.
    """
    if memory_limit_mb is not None:
        spec = replace(spec, memory_limit_mb=memory_limit_mb)
    token = run_token(spec)
    log = open_log(spec)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            sandboxed_argv(spec.sandbox, spec.command, spec.cwd, spec.env),
            shell=spec.sandbox is None,
            cwd=spec.cwd,
            env={**spec.env, RUN_TOKEN_ENV: token},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    assert proc.stdout is not None
    try:
        seen = supervise(_Fresh(proc, stop_event), spec, proc.stdout.fileno(), log, token=token, start=start,
                         on_start=on_start, stop_event=stop_event, poll_interval=poll_interval, grace=grace,
                         hold=(lambda: bwrap_processes(proc.pid)) if spec.sandbox is not None else None)
    finally:
        proc.stdout.close()
    return seen.result(spec, proc.returncode, memory_limit_mb=spec.memory_limit_mb, sandboxed=spec.sandbox is not None)


def bwrap_processes(pid: int) -> set[psutil.Process]:
    """bwrap (`pid`, ours), the sandbox's init (pid 1 inside) and the shell of the command (pid 2,
    unless it exec'd the command itself).

    The end of any of them ends the sandbox at once, so they are held while the run's own
    processes get their SIGTERM and grace (supervise.terminate)."""
    try:
        leader = psutil.Process(pid)
        held = {leader}
        for p in leader.children(recursive=True):
            inside = namespace_pid(p.pid)
            if inside == 1 or (inside == 2 and _is_shell(p)):
                held.add(p)
        return held
    except psutil.Error:
        return set()


def _is_shell(p: psutil.Process) -> bool:
    try:
        return os.path.realpath(p.exe()) == os.path.realpath("/bin/sh")
    except (psutil.Error, OSError):
        return False


class _Fresh:
    """supervise.Leader for a process we started ourselves."""

    def __init__(self, proc: subprocess.Popen, stop_event: threading.Event | None):
        self.pid = proc.pid
        self._proc = proc
        self.wait = stop_event.wait if stop_event is not None else time.sleep  # a stop wakes the poll

    def exited(self) -> bool:
        """True once the leader has exited, without reaping it: an unreaped leader keeps the group id ours."""
        if hasattr(os, "waitid"):
            try:
                return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                return True
        return self._proc.poll() is not None

    def lost(self) -> bool:
        return False  # we are its parent: its exit status cannot be lost

    def reap(self, seconds: float) -> None:
        try:
            self._proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:  # unkillable (D state); do not hang the loop on it
            pass
