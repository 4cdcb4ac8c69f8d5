"""The warm-start server: imports the preload modules once, then forks one child per run.

Started by warm.py as `python forkserver.py CTRL_FD [--sandboxed] [--data DIR SPECS] MODULE...`, never imported. It imports only
the standard library, so that a child holds what a fresh `python script.py` would plus the
preloaded modules, and nothing of autoresearch's. It stays single-threaded: fork copies only
the calling thread, and a lock held by any other thread at that moment stays held forever in
the child. It never touches CUDA, so every child can initialise it for itself.

Protocol (warm.py is the other side):
- ctrl (SOCK_SEQPACKET): one JSON message after preloading, {"ready": seconds, "imports": seconds,
  "born": monotonic clock at this script's first line} or {"error": text, "module": name}; then one b"run" message per run carrying three fds: `srv`, `kid` (stream
  sockets) and `log` (the write end of the run's output pipe). EOF on ctrl: the orchestrator is
  gone or done, so the server exits (a pipe-EOF watch, not PR_SET_PDEATHSIG: that one fires when
  the *thread* that started us ends, and the orchestrator starts us from whichever thread runs).
- srv: the server sends {"exit": code} (negative: killed by that signal) once the child has
  exited, and reaps it only after the orchestrator closes srv. Until then the pid, and with it
  the child's process group id, cannot be reused, so the orchestrator's killpg cannot hit a
  stranger (runner.py keeps its leader unreaped for the same reason).
- kid: the child itself sends {"pid": pid} once it leads its own session, reads one request
  line (argv, cwd, env, ...), sends {"startup": seconds} just before the script's first line
  runs, and closes it. EOF instead of a request: the orchestrator gave up, the child exits.

--sandboxed: the server runs inside bubblewrap (warm.py starts it in the runs' view) as the
sandbox's init, pid 1: processes a run orphans become its children (it reaps them between runs),
and its exit kills every process in the sandbox. Its children share its sandbox, one run at a
time. Two things then keep one run from reaching the next: the server is not dumpable, so a run (same uid, no capabilities) cannot ptrace it or
write its memory; and the sandbox's private /tmp is emptied before each fork, as a fresh
sandbox would start with an empty one.

--data DIR SPECS (`[task] preload_data`, comma-separated `module:function`): after the preloads,
the server imports each module from DIR (the task folder), calls the function once and keeps the
result; the task's modules are then dropped from sys.modules, so each run imports them afresh,
with its own environment, and finds the function replaced by one returning a deep copy of the
cached result (called with arguments, the original runs). A module whose file no longer has the
bytes it had when loaded gets nothing cached.
"""

import sys

# `python forkserver.py` put the autoresearch package directory first on sys.path; its modules
# (secrets.py, ...) would shadow the standard library's for the preloads and for every script.
del sys.path[0]

import time  # noqa: E402  (built into the interpreter: nothing on sys.path can shadow it)

_BORN = time.monotonic()  # the interpreter is up: warm.py times a fresh process's start from this

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

TOKEN_VAR = b"AUTORESEARCH_RUN_TOKEN="  # runner.RUN_TOKEN_ENV; this file imports nothing of ours
POLL_MS = 50  # how often exits are polled where pidfd_open is missing
_die_by_signal = 0  # set for an uncaught KeyboardInterrupt: Python then dies by SIGINT
PR_SET_DUMPABLE = 4
_sandboxed = False  # --sandboxed (see above)
_tmp_dirty = False  # a run has ended since /tmp was last emptied


def main() -> None:
    global _sandboxed
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    modules = sys.argv[2:]
    if modules[:1] == ["--sandboxed"]:
        _sandboxed, modules = True, modules[1:]
        _set_dumpable(False)
    data_dir, data_specs = None, []
    if modules[:1] == ["--data"]:
        data_dir, data_specs, modules = modules[1], modules[2].split(","), modules[3:]
    # An ignored SIGCHLD survives exec and would make the kernel reap our children at once,
    # before their exit status could be read.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    started = time.monotonic()
    for name in modules:
        try:
            __import__(name)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt from an import count too
            _send_msg(ctrl, {"error": f"{type(exc).__name__}: {exc}", "module": name})
            os._exit(1)
    imported = time.monotonic() - started  # what a fresh run pays again; the data below it does not
    if data_specs:
        try:
            _load_data(data_dir, data_specs)
        except BaseException as exc:
            _send_msg(ctrl, {"error": f"{type(exc).__name__}: {exc}", "module": _loading})
            os._exit(1)
    problem = _fork_safety_problem()
    if problem:
        _send_msg(ctrl, {"error": problem, "module": ""})
        os._exit(1)
    _send_msg(ctrl, {"ready": time.monotonic() - started, "imports": imported, "born": _BORN})
    _serve(ctrl)


def _fork_safety_problem() -> str:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "a preloaded module initialised CUDA; a forked child could not use it"
    # Some libraries start native threads at import and stop them before a fork (OpenBLAS's
    # pool, through pthread_atfork). One throwaway fork shows what is left at a real fork.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    tasks = os.listdir("/proc/self/task")
    if len(tasks) > 1:
        names = sorted(_read(f"/proc/self/task/{t}/comm").strip() for t in tasks if int(t) != os.getpid())
        return f"the preloaded modules leave {len(tasks) - 1} other thread(s) running ({', '.join(names)}); forking would not be safe"
    return ""


class _Run:
    def __init__(self, srv: socket.socket, pidfd: int | None):
        self.srv = srv
        self.pidfd = pidfd
        self.exited = False
        self.released = False


def _serve(ctrl: socket.socket) -> None:
    runs: dict[int, _Run] = {}
    poller = select.poll()  # no fd of its own, unlike epoll: nothing for a child to close
    poller.register(ctrl, select.POLLIN)
    by_fd: dict[int, int] = {}  # srv socket or pidfd -> pid
    while True:
        polling = any(r.pidfd is None and not r.exited for r in runs.values())
        for fd, _ in poller.poll(POLL_MS if polling else None):
            if fd == ctrl.fileno():
                msg, fds, _, _ = socket.recv_fds(ctrl, 64, 3)
                if not msg:
                    os._exit(0)  # the orchestrator is gone; runs in flight are its resume's to kill
                if len(fds) != 3:
                    for f in fds:
                        os.close(f)
                    continue
                if _sandboxed:
                    _settle(runs, by_fd, poller)  # a run released just before: its /tmp goes first
                pid, run = _start(ctrl, runs, *fds)
                runs[pid] = run
                poller.register(run.srv, select.POLLIN)
                by_fd[run.srv.fileno()] = pid
                if run.pidfd is not None:
                    poller.register(run.pidfd, select.POLLIN)
                    by_fd[run.pidfd] = pid
                continue
            pid = by_fd.get(fd)
            run = runs.get(pid) if pid is not None else None
            if run is None:
                continue
            if fd == run.srv.fileno():
                if not _recv(run.srv):  # the orchestrator is done with this run
                    run.released = True
                    poller.unregister(fd)
            elif not run.exited:
                _check_exit(pid, run)
                if run.exited:
                    poller.unregister(fd)
            if run.exited and run.released:
                _reap(pid, run, runs, by_fd)
        for pid, run in list(runs.items()):
            if run.pidfd is None and not run.exited:
                _check_exit(pid, run)
            if run.exited and run.released:
                _reap(pid, run, runs, by_fd)


def _start(ctrl: socket.socket, runs: dict[int, _Run], srv_fd: int, kid_fd: int, log_fd: int) -> tuple[int, _Run]:
    global _tmp_dirty
    srv = socket.socket(fileno=srv_fd)
    if _sandboxed and _tmp_dirty and not runs:
        _empty("/tmp", os.lstat("/tmp").st_dev)
        _reap_orphans()
        _tmp_dirty = False
    pid = os.fork()
    if pid == 0:
        if _sandboxed:
            _set_dumpable(True)  # the run is a process like any other, for itself and its children
        # Nothing of the server's may stay open in the child: a run holding a srv socket would
        # hide the server's death from the orchestrator, one holding ctrl its own.
        ctrl.close()
        srv.close()
        for other in runs.values():
            other.srv.close()
            if other.pidfd is not None:
                os.close(other.pidfd)
        _child(socket.socket(fileno=kid_fd), log_fd)  # never returns
    os.close(kid_fd)
    os.close(log_fd)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # old kernel or a seccomp filter: poll instead
        pidfd = None
    return pid, _Run(srv, pidfd)


def _settle(runs: dict[int, _Run], by_fd: dict[int, int], poller) -> None:
    """Reap the runs whose end the orchestrator has already sent, though not yet read here."""
    for pid, run in list(runs.items()):
        if not run.released and select.select([run.srv], [], [], 0)[0] and not _recv(run.srv):
            run.released = True
            poller.unregister(run.srv)
        if run.released and not run.exited:
            _check_exit(pid, run)
            if run.exited and run.pidfd is not None:
                poller.unregister(run.pidfd)
        if run.exited and run.released:
            _reap(pid, run, runs, by_fd)


def _check_exit(pid: int, run: _Run) -> None:
    # WNOWAIT: learn the status but leave the child a zombie until the orchestrator releases it.
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped by someone else: gone, with its status
        info, code = None, None
    else:
        if info is None:
            return
        code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    run.exited = True
    try:
        run.srv.sendall(json.dumps({"exit": code}).encode() + b"\n")
    except OSError:
        pass


def _reap(pid: int, run: _Run, runs: dict[int, _Run], by_fd: dict[int, int]) -> None:
    global _tmp_dirty
    _tmp_dirty = True
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    by_fd.pop(run.srv.fileno(), None)
    run.srv.close()
    if run.pidfd is not None:
        by_fd.pop(run.pidfd, None)
        os.close(run.pidfd)  # closing an fd removes it from no poll set; it was unregistered at exit
    del runs[pid]


# -- data loaded once (`[task] preload_data`) ---------------------------------------------------
# module name -> (sha256 of its file, {function name: what it returned in the server})
_DATA: dict = {}
_loading = ""  # the "module:function" being loaded, for the error message


def _load_data(directory: str, specs: list) -> None:
    """Call each task function once; every run's call then returns a copy of its result.

    The task's modules are imported from `directory` for that, then dropped again: a run imports
    them afresh (its own environment, its own module state), and `_CachedData` gives the fresh
    module the cached result in place of the function (a call with arguments still runs it)."""
    global _loading
    import copy
    import importlib

    sys.path.insert(0, directory)
    try:
        for spec in specs:
            _loading = spec
            module_name, function = spec.split(":")
            module = importlib.import_module(module_name)
            result = getattr(module, function)()
            try:
                copy.deepcopy(result)  # what every run's call will do: fail here, once, with the name
            except Exception as exc:
                raise TypeError(f"its result cannot be copied for each run ({type(exc).__name__}: {exc})") from None
            entry = _DATA.setdefault(module_name, (_digest(module.__file__), {}))
            entry[1][function] = result
    finally:
        sys.path.remove(directory)
    root = os.path.realpath(directory) + os.sep
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and os.path.realpath(file).startswith(root):
            del sys.modules[name]


def _digest(path: str) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


class _CachedData:
    """A meta path finder: a cached module, imported afresh by the run, gets its cached results."""

    def find_spec(self, name, path=None, target=None):
        entry = _DATA.get(name)
        if entry is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        try:
            same = spec.origin is not None and hasattr(loader, "exec_module") and _digest(spec.origin) == entry[0]
        except OSError:
            same = False
        if not same:  # another file of that name, or it changed: imported as it is, nothing cached
            return spec
        real_exec = loader.exec_module

        def exec_module(module):
            real_exec(module)
            for function, result in entry[1].items():
                original = getattr(module, function, None)
                if callable(original):
                    setattr(module, function, _cached(original, result))

        loader.exec_module = exec_module  # this spec's own loader instance
        return spec


def _cached(original, result):
    import copy
    import functools

    @functools.wraps(original)
    def cached(*args, **kwargs):
        if args or kwargs:
            return original(*args, **kwargs)
        return copy.deepcopy(result)  # the run may change what it got: the next call gets the original

    return cached


# -- the child --------------------------------------------------------------------------------
def _child(kid: socket.socket, log_fd: int) -> None:
    try:
        os.setsid()  # its own session and process group, like runner.py's start_new_session
        kid.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
        with kid.makefile("rb") as reader:  # a makefile left open would keep the socket open
            line = reader.readline()
        if not line:
            os._exit(0)
        req = json.loads(line)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        os.chdir(req["cwd"])
        os.environ.clear()  # through unsetenv/putenv: C code and exec'd programs see it too
        os.environ.update(req["env"])
        _mark_token(req["env"].get(TOKEN_VAR[:-1].decode(), ""))
        _fresh_stdio(req["unbuffered"])
        _reseed()
        if req["no_bytecode"]:
            sys.dont_write_bytecode = True
        path = os.path.abspath(req["argv"][0])  # __file__ is absolute since Python 3.9
        sys.argv = list(req["argv"])
        sys.orig_argv = list(req["orig_argv"])
        sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
        if _DATA:
            sys.meta_path.insert(0, _CachedData())
        try:
            with open(path, "rb") as fh:
                code = compile(fh.read(), path, "exec", dont_inherit=True)
        except OSError as exc:
            print(f"{req['executable']}: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
            _exit(2)
        except SyntaxError:  # printed without a traceback, as the interpreter does
            _exit(_report_uncaught(*sys.exc_info(), skip=1))
        kid.sendall(json.dumps({"startup": time.monotonic() - req["t_request"]}).encode() + b"\n")
        kid.close()
    except BaseException:
        import traceback

        traceback.print_exc()  # fd 2 is the run's log once the dup2 above has happened
        _exit(1)
    _exit(_run_main(code, path))


def _run_main(code, path: str) -> int:
    """Run the script as `__main__` and wind down as the interpreter would; return the exit code."""
    import types
    from importlib.machinery import SourceFileLoader

    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __cached__=None, __builtins__=__builtins__,
                         __loader__=SourceFileLoader("__main__", path))
    sys.modules["__main__"] = main
    status = 0
    try:
        exec(code, main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException:
        status = _report_uncaught(*sys.exc_info(), skip=1)
    # What Py_Finalize does before it tears down: wait for non-daemon threads, run atexit.
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            status = _report_uncaught(*sys.exc_info(), skip=0)
    import atexit

    atexit._run_exitfuncs()
    return status


def _exit_status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): printed, exit status 1
    return 1


def _report_uncaught(typ, value, tb, *, skip: int) -> int:
    global _die_by_signal
    if issubclass(typ, SystemExit):
        return _exit_status(value.code)
    for _ in range(skip):  # our own frame: the traceback then reads as a fresh run's would
        tb = tb.tb_next if tb is not None else None
    try:
        sys.excepthook(typ, value.with_traceback(tb), tb)
    except BaseException:
        pass
    if issubclass(typ, KeyboardInterrupt):
        _die_by_signal = signal.SIGINT
    return 1


def _exit(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    if _die_by_signal:  # as the fresh process would have, so the parent sees the signal
        signal.signal(_die_by_signal, signal.SIG_DFL)
        os.kill(os.getpid(), _die_by_signal)
    # No interpreter teardown: nothing of the server's (its __main__, its objects) runs here.
    os._exit(status & 0xFF)


def _fresh_stdio(unbuffered: bool) -> None:
    """New std streams on fds 0-2, built the way the interpreter builds them at start-up."""
    unbuffered = unbuffered or bool(os.environ.get("PYTHONUNBUFFERED"))  # as the interpreter reads it
    enc = sys.stdout.encoding

    def writer(fd: int, errors: str, line_buffering: bool):
        raw = io.open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
        return io.TextIOWrapper(raw, encoding=enc, errors=errors, newline="\n",
                                line_buffering=line_buffering and not unbuffered, write_through=unbuffered)

    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding=enc,
                                                  errors=sys.stdin.errors, newline="\n")
    sys.stdout = sys.__stdout__ = writer(1, sys.stdout.errors, False)
    sys.stderr = sys.__stderr__ = writer(2, sys.stderr.errors, True)  # stderr is line-buffered since 3.9


def _reseed() -> None:
    # A fresh process seeds these from the OS; a fork would otherwise repeat the server's stream
    # in every run. (`random` reseeds itself at fork; the hash seed of str cannot be changed.)
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()
        except Exception:
            pass


def _mark_token(token: str) -> None:
    """Write the run's token into this process's original environment block.

    runner.py finds a run's processes by the token in /proc/PID/environ, which shows the block
    the kernel set up at exec, not os.environ: a forked child would still show the server's.
    The server was started with a placeholder token as its last variable; overwriting it in
    place (NUL-padded, which ends the block for readers) makes this child, and whatever it forks
    without exec, findable exactly like a fresh run. Best effort: without /proc, nothing happens.
    """
    new = TOKEN_VAR + token.encode()
    try:
        fields = _read("/proc/self/stat").rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            at = block.rfind(b"\0" + TOKEN_VAR) + 1
            slot = len(block) - at
            if at <= 0 or b"\0" in block[at:-1] or not token or len(new) >= slot:
                return
            mem.seek(start + at)
            mem.write(new.ljust(slot, b"\0"))
    except (OSError, ValueError, IndexError):
        pass


def _set_dumpable(on: bool) -> None:
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap_orphans() -> None:
    """As the sandbox's init we adopt what a run left: reap those the orchestrator killed."""
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                os.waitpid(int(name), os.WNOHANG)
            except ChildProcessError:  # not ours
                pass


def _empty(folder: str, device: int) -> None:
    """Delete what runs left in the sandbox's /tmp (a tmpfs of its own), never crossing a mount:
    the folders bound into it (the repository, the interpreter) are on other devices."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_dev != device:
                continue
            if entry.is_dir(follow_symlinks=False):
                _empty(entry.path, device)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # a mount point, or a folder holding one: it stays
            pass


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(64)
    except OSError:
        return b""


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _send_msg(sock: socket.socket, msg: dict) -> None:
    try:
        sock.send(json.dumps(msg).encode())
    except OSError:
        pass


if __name__ == "__main__":
    main()
