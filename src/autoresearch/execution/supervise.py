"""Supervision of one started run: its log, its process tree, its end, and nothing left behind.

Every way of starting a run (a fresh process in runner.py, a fork of the warm-start server in
warm.py, a process on a Ray node through ray_node.py) hands the started leader to `supervise`,
which does the rest the same way for all of them:

- the output goes through a pipe to a `LogReader`: copied to the log up to `max_log_bytes`, past
  that a rolling tail that is written at the end, so the footer with the metrics survives;
- a `TreeWatch` samples the tree's resident memory (peak, and the memory limit) and remembers
  every descendant it ever saw, so that processes leaving the group are still killed;
- the run ends at the leader's exit, its timeout, a stop request, the memory limit or the loss
  of whoever reports its exit (the warm server), and then `terminate` kills the group, every
  remembered descendant and every process carrying the run token (RUN_TOKEN_ENV), which every
  process of the run inherits: SIGTERM, `grace` seconds, SIGKILL;
- the log reader is joined (abandoned if a process we could not kill holds the pipe) and the
  result says how it ended.

An optional memory limit is enforced by sampling, not RLIMIT_AS: an address-space limit breaks
CUDA, which maps far more than it uses. POSIX only: sessions, process groups and signals are
what makes the cleanup reliable.
"""

from __future__ import annotations

import os
import selectors
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Protocol

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


# -- one run, from its leader to its result ----------------------------------------------------
class Leader(Protocol):
    """What `supervise` needs of a started run; runner.py and warm.py each have one."""

    pid: int  # leads its own session: its pid is the process group to kill

    def exited(self) -> bool:
        """True once the leader has exited; it must stay unreaped (its pid names our group)."""

    def wait(self, seconds: float) -> None:
        """Pause up to `seconds` (reading what the leader's side sends, if anything)."""

    def lost(self) -> bool:
        """True when whoever reports the exit is gone and the run's end cannot be known."""

    def reap(self, seconds: float) -> None:
        """After the kill: wait up to `seconds` for the exit status, then let the pid go."""


@dataclass(frozen=True)
class Supervised:
    """How a supervised run ended, and what was seen of it; `result()` makes the RunResult."""

    why: str  # "exit", "lost", "memory", "stop" or "timeout"
    seconds: float  # from the start to the exit (to the kill, when it did not exit)
    peak_bytes: int
    last_bytes: int
    truncated: bool
    tail: str  # the last OUTPUT_TAIL_BYTES of the output, decoded

    def result(self, spec: RunSpec, exit_code: int | None, *, notes: Iterable[str] = (),
               memory_limit_mb: float | None = None, **extra) -> RunResult:
        """The RunResult; `exit_code` is kept only for 'exit' and 'memory'. `notes` (and the
        memory-limit line crash.py reads) are appended to the log and the tail."""
        notes = list(notes)
        if self.why == "memory":
            notes.append(memory_note(self.last_bytes, memory_limit_mb or 0))
        tail = self.tail
        for note in notes:
            append_quietly(spec.log_path, note.encode())
            tail += note
        return RunResult(
            exit_code=exit_code if self.why in ("exit", "memory") else None,
            timed_out=self.why == "timeout",
            wall_seconds=self.seconds,
            peak_rss_mb=self.peak_bytes / (1024 * 1024),
            log_path=spec.log_path,
            log_truncated=self.truncated,
            output_tail=tail,
            **extra,
        )


def run_token(spec: RunSpec) -> str:
    """The run's token: the caller's (spec.env[RUN_TOKEN_ENV]) or a new one."""
    return spec.env.get(RUN_TOKEN_ENV) or uuid.uuid4().hex


def memory_limit_of(spec: RunSpec) -> float | None:
    return spec.memory_limit_mb or None


def open_log(spec: RunSpec) -> BinaryIO:
    """The run's log, truncated, its folder made; raises before anything is started.

    Unbuffered: `tail -f` (and the live view) sees each chunk of output as it arrives."""
    os.makedirs(os.path.dirname(os.path.abspath(spec.log_path)), exist_ok=True)
    return open(spec.log_path, "wb", buffering=0)


def supervise(leader: Leader, spec: RunSpec, output_fd: int, log: BinaryIO, *, token: str, start: float,
              on_start: Callable[[int], None] | None = None, begin: Callable[[], None] | None = None,
              stop_event: threading.Event | None = None, poll_interval: float = 0.1,
              grace: float = GRACE_SECONDS, known: Iterable[psutil.Process] = (),
              members: Callable[[], set[psutil.Process]] | None = None,
              hold: Callable[[], set[psutil.Process]] | None = None) -> Supervised:
    """Watch a started run until it ends, kill everything it started, and say how it went.

    `output_fd` is the read end of the run's output (closed by the caller afterwards), `log` is
    from open_log (closed here). `on_start(pid)` is called first, then `begin()` (warm.py sends
    the child its request there). `known`: processes to kill besides the group and the ones
    found. `members()`: the run's processes a scan of the leader's tree misses (those a warm
    sandbox's init adopted); they count for memory and are killed. `hold()`: processes that get
    no SIGTERM but are stopped, then killed after the others (see `terminate`). The tree is
    killed whatever happens, an exception in on_start or a KeyboardInterrupt included; those
    propagate.
    """
    limit_mb = memory_limit_of(spec)
    reader = LogReader(output_fd, log, spec.max_log_bytes)
    reader.start()
    watch = TreeWatch(leader.pid, members)
    why = ""
    ended: float | None = None
    try:
        if on_start is not None:
            on_start(leader.pid)
        if begin is not None:
            begin()
        why = watch_until_done(watch, leader.exited, start + spec.timeout, leader.wait, poll_interval,
                               limit_bytes=limit_mb * 1024 * 1024 if limit_mb else None,
                               stop_event=stop_event, lost=leader.lost)
        if why in ("exit", "lost"):
            ended = time.monotonic()
    finally:
        # The leader is not reaped yet, so its pid still names our group and killpg cannot hit a
        # stranger's group that reused the number.
        held = hold() if hold is not None else set()
        if held:
            watch.scan()  # no SIGTERM to the group: every process in it must be known by name
        terminate(leader.pid, watch.procs | set(known) | set(processes_with_token(token)), grace, held)
        # Anything a dying process spawned during the grace period gets no second grace.
        signal_all(None, processes_with_token(token), signal.SIGKILL)
        if members is not None:
            sweep(members)
        leader.reap(EXIT_WAIT_SECONDS)  # unkillable (D state): do not hang the loop on it
        if ended is None:
            ended = time.monotonic()
        reader.finish()
    return Supervised(why=why, seconds=ended - start, peak_bytes=watch.peak_bytes, last_bytes=watch.last_bytes,
                      truncated=reader.truncated,
                      tail=bytes(reader.tail[-OUTPUT_TAIL_BYTES:]).decode("utf-8", errors="replace"))


EXIT_WAIT_SECONDS = 5.0  # after the kill, how long to wait for the leader's exit status


def watch_until_done(watch: "TreeWatch", has_exited: Callable[[], bool], deadline: float,
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


def append_quietly(path: str, data: bytes) -> None:
    """Append to a log; a full disk must not hide the run's result."""
    try:
        with open(path, "ab") as fh:
            fh.write(data)
    except OSError:
        pass


# -- killing what a run left ------------------------------------------------------------------
def kill_process_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every process in the group, wait up to `grace` seconds, then SIGKILL what is left."""
    terminate(pgid, set(), grace)


def kill_tree_if_alive(pid: int, create_time: float, *, token: str | None = None, grace: float = GRACE_SECONDS) -> bool:
    """Kill a run left behind by an orchestrator that died, if `pid` is still that run's leader.

    `create_time` is psutil's create_time of the leader as recorded at start: a different process
    that got the same pid is never touched. With `token` (the run's RUN_TOKEN_ENV value), processes
    that carry it are killed even when the leader is gone. Returns True if anything was signalled.
    """
    procs: set[psutil.Process] = set(processes_with_token(token)) if token else set()
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
    terminate(pgid, procs, grace)
    return True


def kill_token(token: str, grace: float = GRACE_SECONDS) -> bool:
    """Kill every process carrying this run token; True if there were any."""
    procs = set(processes_with_token(token))
    if procs:
        terminate(None, procs, grace)
    return bool(procs)


def terminate(pgid: int | None, procs: set[psutil.Process], grace: float,
              hold: set[psutil.Process] = frozenset()) -> None:
    """SIGTERM the group and `procs`, give them `grace` seconds, then SIGKILL whatever is left.

    `hold`: a sandbox's bwrap and the first process inside (runner.bwrap_processes). A SIGTERM
    would end bwrap, and with it the whole sandbox at once, so the run would get no grace; they
    are stopped instead (nor does a stopped shell start the command's next step), the others get
    the SIGTERM and the grace, and everything is killed once they are gone."""
    if hold:
        gentle = procs - set(hold)
        signal_all(None, hold, signal.SIGSTOP)
        signal_all(None, gentle, signal.SIGTERM)
        signal_all(None, gentle, signal.SIGCONT)
        _wait_gone(None, gentle, grace)
        signal_all(pgid, procs | set(hold), signal.SIGKILL)
        _wait_gone(pgid, procs, 1.0)
        return
    signal_all(pgid, procs, signal.SIGTERM)
    signal_all(pgid, procs, signal.SIGCONT)  # a stopped process only acts on SIGTERM once continued
    if _wait_gone(pgid, procs, grace):
        return
    signal_all(pgid, procs, signal.SIGKILL)
    _wait_gone(pgid, procs, 1.0)  # SIGKILL is not instant; callers expect the processes gone


def sweep(members: Callable[[], set[psutil.Process]], rounds: int = 50) -> None:
    """SIGKILL `members()` until none is left: each round kills what the last one's forks made."""
    for _ in range(rounds):
        left = {p for p in members() if alive(p)}
        if not left:
            return
        signal_all(None, left, signal.SIGKILL)
        _wait_gone(None, left, 0.2)


def signal_all(pgid: int | None, procs: Iterable[psutil.Process], sig: int) -> None:
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
        if not (pgid is not None and _group_alive(pgid)) and not any(alive(p) for p in procs):
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
            if os.getpgid(pid) == pgid and alive(psutil.Process(pid)):
                return True
        except (OSError, psutil.Error):
            pass
    return False


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_with_token(token: str) -> list[psutil.Process]:
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


# -- the log and the tree -------------------------------------------------------------------
class LogReader(threading.Thread):
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

    def finish(self) -> None:
        """Wait for the end of the output; abandon it if a process we could not kill holds the pipe."""
        self.join(READER_JOIN_SECONDS)
        if self.is_alive():
            self.abandon.set()
            self.join()

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


class TreeWatch:
    """Samples the tree's total RSS and remembers every descendant ever seen, to kill it later."""

    def __init__(self, pid: int, members: Callable[[], set[psutil.Process]] | None = None):
        self.procs: set[psutil.Process] = set()  # hashed by (pid, create_time): reuse-safe
        self._members = members  # the run's processes outside the tree (supervise's `members`)
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
            self.scan()
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

    def scan(self) -> None:
        """Remember every process of the run there is now."""
        if self._root is not None:
            try:
                self.procs.update(self._root.children(recursive=True))
            except psutil.Error:
                pass
        if self._members is not None:
            self.procs.update(self._members())
