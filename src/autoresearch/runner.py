"""Process control for one training run: start it, watch it, cap its log, leave nothing behind.

The command runs in a new session, so its process group can be signalled as a whole. Processes
that leave the group (setsid, start_new_session, daemonizing) are still found two ways: every
descendant seen by the periodic psutil scan is remembered, and at the end every process whose
environment carries this run's token (inherited from the command) is killed too.

An optional memory limit is enforced the same way: when the sampled resident memory of the whole
tree exceeds it, the group is killed and a marker line ends the log (crash.py reads it as `oom`).
Sampling, not RLIMIT_AS: an address-space limit breaks CUDA, which maps far more than it uses.

POSIX only: sessions, process groups and signals are what makes the cleanup reliable.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
import uuid
from typing import BinaryIO, Callable, Iterable

import psutil

from autoresearch.crash import MEMORY_LIMIT_MARKER
from autoresearch.records import RunResult, RunSpec

GRACE_SECONDS = 2.0
RUN_TOKEN_ENV = "AUTORESEARCH_RUN_TOKEN"  # a caller may set it in spec.env to know the token itself
CHUNK_BYTES = 64 * 1024
LOG_TAIL_BYTES = 1024 * 1024
OUTPUT_TAIL_BYTES = 64 * 1024
READER_JOIN_SECONDS = 2.0
# The recursive descendants scan reads /proc/*/stat for every process on the machine; it is spaced
# out so that it uses at most this share of one core, however many processes the machine runs.
SCAN_CPU_SHARE = 0.05
# psutil derives create_time from boot time and clock ticks; two readings can differ slightly.
CREATE_TIME_TOLERANCE = 1.0


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
    killed over `memory_limit_mb` (default: `spec.memory_limit_mb` when RunSpec has it) gets the
    exit code of the kill and a MEMORY_LIMIT_MARKER line at the end of its log. Raises only
    when the command cannot be started at all (e.g. a missing cwd) or `on_start` raises; the
    process tree is killed in the latter case too.
    """
    if memory_limit_mb is None:
        memory_limit_mb = getattr(spec, "memory_limit_mb", None)
    limit_bytes = memory_limit_mb * 1024 * 1024 if memory_limit_mb else None
    log_dir = os.path.dirname(os.path.abspath(spec.log_path))
    os.makedirs(log_dir, exist_ok=True)
    token = spec.env.get(RUN_TOKEN_ENV) or uuid.uuid4().hex
    log = open(spec.log_path, "wb")
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            spec.command,
            shell=True,
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
    reader = _LogReader(proc.stdout.fileno(), log, spec.max_log_bytes)
    reader.start()
    watch = _TreeWatch(proc.pid)
    timed_out = exited = over_memory = False
    ended: float | None = None
    try:
        if on_start is not None:
            on_start(proc.pid)
        pause = stop_event.wait if stop_event is not None else time.sleep
        why = watch_until_done(watch, lambda: _has_exited(proc), start + spec.timeout, pause, poll_interval,
                               limit_bytes=limit_bytes, stop_event=stop_event)
        exited, timed_out, over_memory = why == "exit", why == "timeout", why == "memory"
        if exited:
            ended = time.monotonic()
    finally:
        # Every path goes through here, an exception in on_start or a KeyboardInterrupt included.
        # The leader is not reaped yet, so its pid still names our group and killpg cannot hit a
        # stranger's group that reused the number.
        _terminate(proc.pid, watch.procs | set(_processes_with_token(token)), grace)
        # Anything a dying process spawned during the grace period gets no second grace.
        _signal_all(None, _processes_with_token(token), signal.SIGKILL)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # unkillable (D state); do not hang the loop on it
            pass
        if ended is None:
            ended = time.monotonic()
        reader.join(READER_JOIN_SECONDS)
        if reader.is_alive():  # a process we could not kill still holds the pipe open
            reader.abandon.set()
            reader.join()
        proc.stdout.close()

    tail = bytes(reader.tail[-OUTPUT_TAIL_BYTES:]).decode("utf-8", errors="replace")
    if over_memory:
        note = memory_note(watch.last_bytes, memory_limit_mb)
        append_quietly(spec.log_path, note.encode())
        tail += note
    return RunResult(
        exit_code=proc.returncode if exited or over_memory else None,
        timed_out=timed_out,
        wall_seconds=ended - start,
        peak_rss_mb=watch.peak_bytes / (1024 * 1024),
        log_path=spec.log_path,
        log_truncated=reader.truncated,
        output_tail=tail,
    )


def append_quietly(path: str, data: bytes) -> None:
    """Append to a log; a full disk must not hide the run's result."""
    try:
        with open(path, "ab") as fh:
            fh.write(data)
    except OSError:
        pass


def kill_process_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every process in the group, wait up to `grace` seconds, then SIGKILL what is left."""
    _terminate(pgid, set(), grace)


def kill_tree_if_alive(pid: int, create_time: float, *, token: str | None = None, grace: float = GRACE_SECONDS) -> bool:
    """Kill a run left behind by an orchestrator that died, if `pid` is still that run's leader.

    `create_time` is psutil's create_time of the leader as recorded at start: a different process
    that got the same pid is never touched. With `token` (the run's RUN_TOKEN_ENV value), processes
    that carry it are killed even when the leader is gone. Returns True if anything was signalled.
    """
    procs: set[psutil.Process] = set(_processes_with_token(token)) if token else set()
    pgid: int | None = None
    try:
        leader = psutil.Process(pid)
        if abs(leader.create_time() - create_time) <= CREATE_TIME_TOLERANCE:
            procs.add(leader)
            procs.update(leader.children(recursive=True))
            # The run was started with its own session, so a leader still heading a group with
            # its own pid is our group; a verified leader alive pins the group id.
            if os.getpgid(pid) == pid:
                pgid = pid
    except (psutil.Error, OSError):
        pass
    if pgid is None and not procs:
        return False
    _terminate(pgid, procs, grace)
    return True


def watch_until_done(watch: "_TreeWatch", has_exited: Callable[[], bool], deadline: float,
                     pause: Callable[[float], object], poll_interval: float, *, limit_bytes: float | None = None,
                     stop_event: threading.Event | None = None,
                     lost: Callable[[], bool] | None = None) -> str:
    """Sample a run's process tree until something ends the run, and say what:
    'exit', 'lost' (the warm-start server died), 'memory', 'stop' or 'timeout'."""
    while True:
        watch.sample()
        if has_exited():
            return "exit"
        if lost is not None and lost():
            return "lost"
        if limit_bytes is not None and watch.last_bytes > limit_bytes:
            return "memory"
        if stop_event is not None and stop_event.is_set():
            return "stop"
        now = time.monotonic()
        if now >= deadline:
            return "timeout"
        pause(min(poll_interval, deadline - now))


def memory_note(used_bytes: float, limit_mb: float) -> str:
    """The line a run killed over its memory limit gets at the end of its log (crash.py reads it)."""
    return (f"\n{MEMORY_LIMIT_MARKER}: {used_bytes / 2**20:.0f} MB in use, the limit is "
            f"{limit_mb:g} MB ([task] memory_limit_mb); the run was killed]\n")


def kill_token(token: str, grace: float = GRACE_SECONDS) -> bool:
    """Kill every process carrying this run token; True if there were any."""
    procs = set(_processes_with_token(token))
    if procs:
        _terminate(None, procs, grace)
    return bool(procs)


class _LogReader(threading.Thread):
    """Copies the output to the log up to a cap; past it keeps only a rolling tail in memory.

    Bytes, never text: training output may be any bytes. The pipe is always drained, even when
    the log cannot be written (full disk), so the command never blocks on a full pipe.
    """

    def __init__(self, fd: int, log: BinaryIO, cap: int):
        super().__init__(name="autoresearch-log-reader", daemon=True)
        self.abandon = threading.Event()
        self.truncated = False
        self.tail = bytearray()  # the last LOG_TAIL_BYTES..2*LOG_TAIL_BYTES of the output
        self._fd = fd
        self._log = log
        self._cap = cap
        self._total = 0
        self._written = 0
        self._log_ok = True

    def run(self) -> None:
        try:
            self._pump()
            self._write_tail()
        finally:
            try:
                self._log.close()
            except OSError:
                pass

    def _pump(self) -> None:
        # select() with a timeout rather than a blocking read, so the thread can be abandoned when
        # an escaped process keeps the pipe open (closing an fd under a blocked read is unsafe).
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while not self.abandon.is_set():
                if not sel.select(timeout=0.25):
                    continue
                chunk = os.read(self._fd, CHUNK_BYTES)
                if not chunk:
                    return
                self._total += len(chunk)
                room = self._cap - self._written
                if room > 0:
                    head = chunk if len(chunk) <= room else chunk[:room]
                    self._write(head)
                    self._written += len(head)
                self.tail += chunk
                if len(self.tail) > 2 * LOG_TAIL_BYTES:  # trim in big steps: amortized O(1) per byte
                    del self.tail[:-LOG_TAIL_BYTES]

    def _write_tail(self) -> None:
        unwritten = self._total - self._written
        if unwritten <= 0:
            return
        tail = self.tail[-min(unwritten, LOG_TAIL_BYTES):]
        omitted = unwritten - len(tail)
        if omitted:
            # The footer with the metrics is at the end of the output; it must survive the cap.
            self.truncated = True
            self._write(f"\n[autoresearch: log truncated, {omitted} bytes omitted]\n".encode())
        self._write(tail)

    def _write(self, data: bytes | bytearray) -> None:
        if not self._log_ok:
            return
        try:
            self._log.write(data)
            self._log.flush()  # the log is read while the run goes on (early stopping, live view)
        except OSError:
            self._log_ok = False


class _TreeWatch:
    """Samples the tree's total RSS and remembers every descendant ever seen, to kill it later."""

    def __init__(self, pid: int):
        self.procs: set[psutil.Process] = set()  # hashed by (pid, create_time): reuse-safe
        self.peak_bytes = 0
        self.last_bytes = 0
        self._next_scan = 0.0
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._root = None

    def sample(self) -> None:
        if self._root is None:
            return
        now = time.monotonic()
        if now >= self._next_scan:
            try:
                self.procs.update(self._root.children(recursive=True))
            except psutil.Error:
                pass
            cost = time.monotonic() - now
            self._next_scan = now + cost / SCAN_CPU_SHARE
        rss = 0
        for p in [self._root, *self.procs]:
            try:
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                # Gone for good ((pid, create_time) never comes back): no need to sample or kill
                # it, and a run that spawns many short-lived helpers must not slow the poll down.
                self.procs.discard(p)
            except psutil.Error:
                pass
        self.last_bytes = rss
        self.peak_bytes = max(self.peak_bytes, rss)


def _has_exited(proc: subprocess.Popen) -> bool:
    """True once the leader has exited, without reaping it: an unreaped leader keeps the group id ours."""
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def _terminate(pgid: int | None, procs: set[psutil.Process], grace: float) -> None:
    """SIGTERM the group and `procs`, give them `grace` seconds, then SIGKILL whatever is left."""
    _signal_all(pgid, procs, signal.SIGTERM)
    _signal_all(pgid, procs, signal.SIGCONT)  # a stopped process only acts on SIGTERM once continued
    if _wait_gone(pgid, procs, grace):
        return
    _signal_all(pgid, procs, signal.SIGKILL)
    _wait_gone(pgid, procs, 1.0)  # SIGKILL is not instant; callers expect the processes gone


def _signal_all(pgid: int | None, procs: Iterable[psutil.Process], sig: int) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.send_signal(sig)  # psutil refuses if the pid now belongs to another process
        except psutil.Error:
            pass


def _wait_gone(pgid: int | None, procs: set[psutil.Process], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not (pgid is not None and _group_alive(pgid)) and not any(_alive(p) for p in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is in the group.

    Not killpg(pgid, 0): it also counts zombies, such as our unreaped leader and orphans that an
    init which never reaps (common in containers) leaves behind.
    """
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and _alive(psutil.Process(pid)):
                return True
        except (OSError, psutil.Error):
            pass
    return False


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _processes_with_token(token: str) -> list[psutil.Process]:
    """Every other process whose environment carries the run's token: escaped descendants included."""
    me = os.getpid()
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != me and p.environ().get(RUN_TOKEN_ENV) == token:
                found.append(p)
        except psutil.Error:  # other users' processes, zombies, processes that just exited
            pass
    return found
