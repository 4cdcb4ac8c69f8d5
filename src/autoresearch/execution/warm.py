"""Warm starts: a `python script.py ...` run forks from a server that has already imported torch.

`import torch` costs seconds per run; with short budgets that is a large share of the night.
`WarmExecutor(preload)` starts forkserver.py once (lazily, with this interpreter, by subprocess:
a fork of the orchestrator would copy its threads' locks), lets it import `preload`, and runs
each plain Python command as a fresh fork of that pristine server. A run cannot leak state into
the next: each is a new copy of a server that never runs user code and never touches CUDA.

Everything supervise.py guarantees for a fresh process holds here too, through the same code:
the child leads its own session; its output goes through a pipe to the same capped log reader;
it is killed as a group, with its tracked descendants and the processes carrying the run token,
at the timeout or stop; its tree's peak RSS is sampled; on_start gets its pid before the
script's first line runs. The child is the server's child, not ours, so its exit status comes
back over a socket (`_WarmLeader`), and the server reaps it only once we are done killing its
group (the group id stays ours until then).

Anything else falls back to a fresh process (LocalExecutor): commands with shell syntax, other
interpreters or options, `-m`/`-c`; and every run once the server cannot start (a preload module
missing: one warning naming it). A server serves one environment (per-run AUTORESEARCH_*
variables aside), since preloads may read it at import; another environment gets its own server.

Known differences from a fresh process: str hashes use the server's seed (the same in every
run); sys.flags and sys.executable are the server's (`-u` is honoured through the streams, other
options fall back); atexit handlers that preloaded modules registered run even if the script
never imports them; the script's own frames sit below a few of the server's.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import psutil

from autoresearch.execution.executor import Executor, LocalExecutor
from autoresearch.execution.sandbox import PRIVATE_CACHES, View, namespace_pid
from autoresearch.execution.supervise import (
    GRACE_SECONDS,
    RUN_TOKEN_ENV,
    alive,
    open_log,
    run_token,
    supervise,
)
from autoresearch.records import RunResult, RunSpec

SERVER_SCRIPT = Path(__file__).with_name("forkserver.py")
START_TIMEOUT = 300.0  # seconds the preloads may take (import torch: 2-8 s on a busy 2-core box)
SPAWN_TIMEOUT = 30.0  # seconds from a run request to the child's pid
MAX_SERVERS = 4  # idle servers kept for distinct environments; the oldest idle one goes first
MAX_SERVER_FAILURES = 3  # servers that died or failed before warm starts are given up
# Per-run variables (run token, iteration) are set in the child; any other difference in the
# environment gets its own server, since a preload may read the environment when imported.
PER_RUN_PREFIX = "AUTORESEARCH_"
# The server's stand-in for the run token; a child overwrites it in place (forkserver._mark_token),
# so it must be at least as long as any token (uuid4().hex: 32).
TOKEN_PLACEHOLDER = "warm-forkserver-" + "0" * 48
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\*?\[\]{}~!#\n\r]")
_PYTHON_NAME = re.compile(r"python(3(\.\d+)?)?")
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_DATA_CALL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class PlainPython:
    """A run command that is `python [-u] [-B] script.py args...` and nothing more."""

    argv: tuple[str, ...]  # sys.argv for the script: the script as written, then its arguments
    unbuffered: bool = False
    no_bytecode: bool = False


def parse_command(command: str, cwd: str, env: dict[str, str]) -> PlainPython | None:
    """The command as a plain Python script run by this interpreter, or None: then run it fresh."""
    if _SHELL_SYNTAX.search(command):
        return None  # pipes, redirections, globs, variables, &&: only a shell does them right
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or not _same_interpreter(words[0], cwd, env):
        return None
    flags, rest = set(), words[1:]
    while rest and rest[0].startswith("-") and len(rest[0]) > 1 and set(rest[0][1:]) <= {"u", "B"}:
        flags |= set(rest.pop(0)[1:])
    if not rest or rest[0].startswith("-") or not os.path.isfile(os.path.join(cwd, rest[0])):
        return None  # -m, -c, other options, stdin, a directory or zip, a missing file
    return PlainPython(tuple(rest), unbuffered="u" in flags, no_bytecode="B" in flags)


def _same_interpreter(word: str, cwd: str, env: dict[str, str]) -> bool:
    if "/" not in word:
        if not _PYTHON_NAME.fullmatch(word):
            return False
        found = shutil.which(word, path=env.get("PATH", os.defpath))
        if found is None:
            return False
        word = found
    path = os.path.join(cwd, word)
    ours = sys.executable
    try:
        # The same file *in the same directory*: a venv's python is a symlink to the base one,
        # but only the venv's path gives the venv's site-packages.
        return os.path.samefile(path, ours) and os.path.samefile(os.path.dirname(path), os.path.dirname(ours))
    except OSError:
        return False


@dataclass(frozen=True)
class PreloadData:
    """`[task] preload_data`: functions of the task's read-only modules the server calls once.

    `calls` are "module:function" (prepare:load_data), imported from `directory`; each run's
    call of such a function returns a deep copy of the server's result (forkserver.py)."""

    directory: str
    calls: tuple[str, ...]

    def __post_init__(self):
        for call in self.calls:
            if not _DATA_CALL.fullmatch(call):
                raise ValueError(f"preload_data: {call!r} is not module:function")


class ServerLost(Exception):
    """The server died or stopped answering before the run started; nothing of the run ran."""


class _Server:
    """One forkserver process, its control socket and its stderr (kept for error messages)."""

    def __init__(self, preload: Sequence[str], env: dict[str, str], timeout: float, view: View | None = None,
                 data: "PreloadData | None" = None):
        self.active = 0
        self.last_used = time.monotonic()
        self.view = view  # the sandbox it runs in (the runs' view), or None
        self._lock = threading.Lock()
        ctrl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._stderr = tempfile.TemporaryFile()
        # The placeholder token goes last: forkserver._mark_token needs it at the block's end.
        server_env = {k: v for k, v in env.items() if not k.startswith(PER_RUN_PREFIX)}
        server_env[RUN_TOKEN_ENV] = TOKEN_PLACEHOLDER
        modules = [*(["--data", data.directory, ",".join(data.calls)] if data else []), *preload]
        argv = [sys.executable, str(SERVER_SCRIPT), str(theirs.fileno()), *modules]
        if view is not None:
            # The server is the sandbox's init: when it exits (at the end of its control socket,
            # when we die or close it) the kernel kills every process in the sandbox. Its own
            # script stays visible even where the private /tmp covers it (a CI clone).
            inside = replace(view, readonly=(*view.readonly, str(SERVER_SCRIPT)))
            argv = inside.argv([argv[0], argv[1], argv[2], "--sandboxed", *modules], "/", as_init=True, env=env)
        launched = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                argv,
                env=server_env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, pass_fds=(theirs.fileno(),), start_new_session=True)
        finally:
            theirs.close()
        self._ctrl = ctrl
        ctrl.settimeout(timeout)
        try:
            reply = json.loads(ctrl.recv(65536) or b"{}")
        except (OSError, ValueError):
            reply = {}
        if "ready" in reply:
            self.seconds = float(reply["ready"])
            # What a fresh `python script.py` pays before its script has the preloads: the
            # interpreter's start (with the sandbox's, when the server runs in one) and the
            # imports. Not the preload data: a fresh run loads that once, in its script.
            self.fresh_start = float(reply["born"]) - launched + float(reply["imports"])
            ctrl.settimeout(None)
            if view is not None:
                self._find_sandbox()
            return
        self.close()
        if "error" in reply:
            module = reply.get("module")
            raise RuntimeError(f"preloading {module!r} failed: {reply['error']}" if module else reply["error"])
        raise RuntimeError(f"the warm-start server did not start within {timeout:g} s{self._last_words()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _find_sandbox(self) -> None:
        """The server as this machine sees it: the process bwrap started that is pid 1 inside."""
        self._init: psutil.Process | None = None
        try:
            self._init = next(p for p in psutil.Process(self.proc.pid).children(recursive=True)
                              if namespace_pid(p.pid) == 1)
        except (psutil.Error, StopIteration):
            pass  # it died meanwhile: spawn() says so

    def members(self) -> set[psutil.Process]:
        """Every process in the sandbox but the server: the one run's, however it forked or whatever
        it did to its environment (orphans are the server's, the init's; it serves one run at a time)."""
        if self._init is None:
            return set()
        try:
            return set(self._init.children(recursive=True))
        except psutil.Error:
            return set()

    def host_pid(self, pid: int) -> int:
        """This machine's pid of the server's child `pid` (a pid in the sandbox's namespace)."""
        if self.view is None:
            return pid
        try:
            for child in (self._init.children() if self._init is not None else ()):
                if namespace_pid(child.pid) == pid:
                    return child.pid
        except psutil.Error:
            pass
        raise ServerLost(f"the warm-start server's child {pid} is not to be found in its sandbox")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self) -> "_Child":
        """Fork a child; it waits for its request. Raises ServerLost if the server is gone."""
        srv, srv_theirs = socket.socketpair()
        kid, kid_theirs = socket.socketpair()
        log_r, log_w = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._ctrl, [b"run"], [srv_theirs.fileno(), kid_theirs.fileno(), log_w])
        except OSError as exc:
            for s in (srv, kid):
                s.close()
            os.close(log_r)
            raise ServerLost(f"the warm-start server is gone ({exc}){self._last_words()}") from None
        finally:
            srv_theirs.close()  # in flight, the server holds its own references now
            kid_theirs.close()
            os.close(log_w)
        child = _Child(srv, kid, log_r)
        if child.wait_for("pid", SPAWN_TIMEOUT) is None:
            child.close()
            raise ServerLost(f"the warm-start server did not fork a child within {SPAWN_TIMEOUT:g} s{self._last_words()}")
        try:
            child.host_pid = self.host_pid(int(child.msgs["pid"]))
        except ServerLost:
            child.close()
            raise
        return child

    def death(self) -> str:
        """What is known of the server's end, for a message."""
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "the warm-start server stopped answering"
        return f"the warm-start server died (exit code {code}){self._last_words()}"

    def close(self) -> None:
        try:
            self._ctrl.close()  # EOF: the server exits
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()

    def _last_words(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr: {text}" if text else ""


class _Child:
    """The two channels of one forked child: `kid` (the child's own) and `srv` (the server's)."""

    def __init__(self, srv: socket.socket, kid: socket.socket, log_fd: int):
        self.log_fd = log_fd
        self.host_pid = 0  # its pid on this machine (the server's view differs in a sandbox)
        self.msgs: dict[str, object] = {}
        self.server_lost = False  # srv ended without an exit status
        self._bufs = {srv: b"", kid: b""}
        self._sel = selectors.DefaultSelector()
        for s in (srv, kid):
            s.setblocking(False)
            self._sel.register(s, selectors.EVENT_READ)
        self._srv, self._kid = srv, kid

    @property
    def pid(self) -> int:
        return self.host_pid

    def send_request(self, request: dict) -> None:
        data = json.dumps(request).encode() + b"\n"
        self._kid.setblocking(True)
        try:
            self._kid.sendall(data)
        except OSError:  # the child died before its request; the server reports how
            pass
        finally:
            self._kid.setblocking(False)

    def pump(self, timeout: float) -> None:
        """Read whatever has arrived, waiting up to `timeout` seconds for something."""
        if not self._sel.get_map():
            time.sleep(timeout)
            return
        for key, _ in self._sel.select(timeout):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._sel.unregister(sock)
                if sock is self._srv and "exit" not in self.msgs:
                    self.server_lost = True
                continue
            buf = self._bufs[sock] + data
            *lines, self._bufs[sock] = buf.split(b"\n")
            for line in lines:
                try:
                    self.msgs.update(json.loads(line))
                except ValueError:
                    pass

    def wait_for(self, key: str, timeout: float):
        """Wait for `key` ("pid" from the child, "exit" from the server) while its channel is open."""
        sock = self._kid if key == "pid" else self._srv
        deadline = time.monotonic() + timeout
        while key not in self.msgs and sock in self._sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pump(min(left, 0.1))
        return self.msgs.get(key)

    def close(self) -> None:
        """Release the child: the server reaps it, its pid may then be reused."""
        self._sel.close()
        for s in (self._srv, self._kid):
            s.close()
        os.close(self.log_fd)


class WarmExecutor(Executor):
    """An Executor that runs plain Python commands as forks of a preloaded server.

    `say` gets the one-line notices (warm starts off, and why); default: warnings.warn.
    Call close() when done (or use it as a context manager); the server also exits by itself
    when this process dies, since it sees the end of its control socket.
    """

    name = "warm"

    def __init__(self, preload: Sequence[str] = (), *, say: Callable[[str], None] | None = None,
                 start_timeout: float = START_TIMEOUT, poll_interval: float = 0.1, grace: float = GRACE_SECONDS,
                 data: "PreloadData | None" = None):
        for name in preload:
            if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
                raise ValueError(f"preload: {name!r} is not a module name")
        self.preload = tuple(preload)
        self.data = data  # functions the server calls once, their results copied into every run
        self.off_reason = ""  # set once warm starts are given up; every run is fresh then
        self._say = say or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))
        self._start_timeout = start_timeout
        self._poll = poll_interval
        self._grace = grace
        self._fresh = LocalExecutor()
        self._servers: dict[tuple, _Server] = {}
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def server_pids(self) -> list[int]:
        return [s.pid for s in self._servers.values()]

    def run(self, spec: RunSpec, *, on_start: Callable[[int], None] | None = None,
            stop_event: threading.Event | None = None) -> RunResult:
        plain = parse_command(spec.command, spec.cwd, spec.env)
        server = self._server_for(spec.env, spec.sandbox) if plain is not None else None
        if server is not None:
            # The clock starts once the server is up: its start (seconds, once a night) is no
            # part of any run, and must not eat the first run's timeout.
            requested = time.monotonic()
            try:
                try:
                    child = server.spawn()
                except ServerLost as exc:  # nothing ran: the fresh process below is the run
                    self._drop(server, str(exc))
                else:
                    return self._supervise(server, child, plain, spec, on_start, stop_event, requested)
            finally:
                self._release(server)
        return self._fresh.run(spec, on_start=on_start, stop_event=stop_event)

    def close(self) -> None:
        """Stop every server. Runs still in flight lose their server (see RunResult's note)."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for s in servers:
            s.close()

    # -- servers ------------------------------------------------------------------------------
    def _server_for(self, env: dict[str, str], view: View | None = None) -> _Server | None:
        """The server for runs with this environment in this sandbox view; None: run fresh."""
        key = (view, tuple(sorted((k, v) for k, v in env.items() if not k.startswith(PER_RUN_PREFIX))))
        with self._lock:  # held while a server starts: concurrent runs wait rather than start twins
            if self.off_reason:
                return None
            server = self._servers.get(key)
            if server is not None and server.view is not None and server.active:
                return None  # its sandbox holds a run: this one gets a fresh sandbox of its own
            if server is not None and not server.alive():
                del self._servers[key]
                self._failed(server.death())
                server.close()
                server = None
                if self.off_reason:
                    return None
            if server is None:
                self._evict_idle()
                try:
                    server = _Server(self.preload, env, self._start_timeout, view, self.data)
                except (RuntimeError, OSError) as exc:
                    self._off(f"warm starts off: {exc}; runs start fresh processes")
                    return None
                self._servers[key] = server
            server.active += 1
            return server

    def _evict_idle(self) -> None:
        idle = sorted((s.last_used, k) for k, s in self._servers.items() if s.active == 0)
        while len(self._servers) >= MAX_SERVERS and idle:
            self._servers.pop(idle.pop(0)[1]).close()

    def _drop(self, server: _Server, why: str) -> None:
        """Forget a server that died; it counts as one failure however many runs notice it."""
        with self._lock:
            for k, s in list(self._servers.items()):
                if s is server:
                    del self._servers[k]
                    self._failed(why)

    def _release(self, server: _Server) -> None:
        with self._lock:
            server.active -= 1
            server.last_used = time.monotonic()
            orphan = server.active == 0 and server not in self._servers.values()
        if orphan:
            server.close()

    def _failed(self, why: str) -> None:
        self._failures += 1
        if self._failures >= MAX_SERVER_FAILURES:
            self._off(f"warm starts off after {self._failures} server failures (last: {why}); runs start fresh processes")

    def _off(self, message: str) -> None:
        if not self.off_reason:
            self.off_reason = message
            self._say(message)

    # -- one run ------------------------------------------------------------------------------
    def _supervise(self, server: _Server, child: _Child, plain: PlainPython, spec: RunSpec,
                   on_start, stop_event, start: float) -> RunResult:
        """A forked child under supervise.py: the same watch, kill and collect as a fresh process."""
        token = run_token(spec)
        try:
            log = open_log(spec)
        except BaseException:
            child.close()  # the child reads EOF instead of a request and exits
            raise
        request = {
            "argv": list(plain.argv), "orig_argv": shlex.split(spec.command), "cwd": spec.cwd,
            # The child's environment replaces the server's: the sandbox's cache paths again too.
            "env": {**(PRIVATE_CACHES if server.view is not None else {}), **spec.env, RUN_TOKEN_ENV: token},
            "unbuffered": plain.unbuffered,
            "no_bytecode": plain.no_bytecode, "executable": sys.executable, "t_request": start,
        }
        leader = _WarmLeader(child)
        try:
            seen = supervise(leader, spec, child.log_fd, log, token=token, start=start, on_start=on_start,
                             begin=lambda: child.send_request(request), stop_event=stop_event,
                             poll_interval=self._poll, grace=self._grace, known=leader.known,
                             members=server.members if server.view is not None else None)
        finally:
            child.close()
        notes = []
        if child.server_lost:
            why = server.death()
            self._drop(server, why)
            if seen.why == "lost":
                notes.append(f"\n[autoresearch: {why} during the run; the run's exit status is unknown]\n")
        startup = child.msgs.get("startup")
        startup = float(startup) if isinstance(startup, (int, float)) else None
        code = child.msgs.get("exit")
        return seen.result(
            spec, int(code) if code is not None else None, notes=notes, memory_limit_mb=spec.memory_limit_mb,
            startup_seconds=startup, warm=True, sandboxed=server.view is not None,
            # This run's own saving: a fresh process's start less this fork's (unknown if it never began).
            startup_saved_seconds=server.fresh_start - startup if startup is not None else None)


class _WarmLeader:
    """supervise.Leader for a child of the server: its exit status comes over the `srv` socket."""

    def __init__(self, child: _Child):
        self.pid = child.pid
        self._child = child
        try:
            self._proc: psutil.Process | None = psutil.Process(self.pid)
        except psutil.Error:
            self._proc = None
        self.known = {self._proc} if self._proc else set()  # killed even if it left its group
        self.wait = child.pump  # waiting is reading what the child and the server send

    def exited(self) -> bool:
        return "exit" in self._child.msgs

    def lost(self) -> bool:
        """The server died: no exit status will come; the run is over once the child is gone."""
        return self._child.server_lost and (self._proc is None or not alive(self._proc))

    def reap(self, seconds: float) -> None:
        self._child.wait_for("exit", seconds)  # the server reaps it once we close the child
