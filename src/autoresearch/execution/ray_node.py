"""One run on a Ray node: the experiment's tree in a scratch folder, the data beside it, nothing left.

The driver side is ray_executor.py; this module never imports Ray, so everything here is plain
files and processes, tested like the rest of process control.

    tree (git archive of the commit) -> scratch/tree -> [setup outputs linked in] -> run -> outcome

- The tree is exactly the committed tree of the experiment, never the head's work tree.
- `[task] setup` runs once per machine and task, under a file lock, in a persistent copy of the
  tree in the node's cache (`<cache_dir>/<hostname>/<key>/tree`; Ray nodes on one machine share
  it). What it creates there that git does not track
  (data/, tokenizer files) is symlinked into each run's scratch tree at the same path, unless the
  experiment's tree has that path itself. Setup's outputs are shared by later runs on the node,
  as data/ is shared by runs in a local work tree. Output written outside the tree (~/.cache)
  is node-local and persists by itself. Where runs are sandboxed, so is the setup (setup_view):
  the network on, its tree writable, the home read-only. `ready.json` marks success; a failed setup runs again
  before the next run there. Delete the cache folder to make a node set up again.
- The run goes through runner.run_process (or warm.WarmExecutor with `preload`), supervised by
  supervise.py like a local run: own process group, hard timeout, capped log, peak memory, the
  run token in its environment.
- A reaper process (its own session) holds a pipe from this worker: when the Ray worker dies
  without saying goodbye (ray.cancel(force=True), its node's raylet killed, the driver gone),
  the pipe closes and the reaper kills the run's group and every process carrying its token,
  and removes the scratch folder.
- Files the run wrote or changed in the tree (learning curves, a run that edits a read-only
  file) come back, up to MIRROR_BYTES, so the head sees what a local run would have left.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, replace

from autoresearch.execution.runner import run_process
from autoresearch.execution.supervise import (
    GRACE_SECONDS,
    RUN_TOKEN_ENV,
    kill_tree_if_alive,
    processes_with_token,
    run_token,
    terminate,
)
from autoresearch.records import RunResult, RunSpec

SETUP_TIMEOUT = 3600.0  # seconds `[task] setup` may take on one node (a dataset download)
MIRROR_BYTES = 32 * 1024 * 1024  # files the run wrote that travel back to the head, in total
SKIP_DIRS = frozenset({"__pycache__", ".git"})  # never mirrored nor linked: caches, not results
# Variables that describe the machine, not the experiment: the node's own values win (the head's
# PATH or HOME may not exist there), and Ray's CUDA_VISIBLE_DEVICES is the GPU Ray gave this run.
NODE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "PYTHONPATH",
            "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class NodeJob:
    """What the driver sends with each run besides the tree and the RunSpec."""

    setup: str | None = None
    cache_dir: str = "~/.cache/autoresearch/ray"  # `~` is the node's home
    cache_key: str = ""  # one folder per task (repository, task dir, setup command)
    preload: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeOutcome:
    """What comes back from the node: the result, the log, and the files the run left."""

    result: RunResult
    log: bytes
    node: str
    outputs: tuple[tuple[str, bytes], ...] = ()  # (path relative to the repository root, content)
    notes: tuple[str, ...] = ()  # one-line remarks for the head's log (files not sent back, ...)


def run_on_node(tree: bytes, spec: RunSpec, job: NodeJob, node: str) -> NodeOutcome:
    """Materialise `tree`, set the node up if needed, run `spec` there, and clean up."""
    token = run_token(spec)
    env = node_env(spec.env, token)
    scratch = tempfile.mkdtemp(prefix="autoresearch-run-")
    reaper = Reaper(token, scratch)
    try:
        root = os.path.join(scratch, "tree")
        members = extract(tree, root)
        notes: list[str] = []
        if job.setup:
            setup = ensure_setup(tree, members, spec, job, env, node, reaper)
            if isinstance(setup, NodeOutcome):
                return setup
            link_outputs(*setup, root)
        before = snapshot(root)
        # The head's sandbox view, moved onto the scratch tree: sandboxed there as it would be here.
        view = spec.sandbox.moved(os.path.realpath(spec.repo_dir), os.path.realpath(root)) if spec.sandbox else None
        if view is not None and job.setup:  # the setup's outputs (linked in) readable, even from under /tmp
            view = replace(view, readonly=(*view.readonly, os.path.realpath(setup[0])))
        local = replace(spec, cwd=os.path.join(root, spec.task_subdir), env=env,
                        log_path=os.path.join(scratch, "log.txt"), sandbox=view)
        executor = executor_for(job.preload)
        result = executor.run(local, on_start=reaper.watch)
        if executor.off_reason:
            notes.append(f"{executor.off_reason} (on {node})")
        outputs, skipped = changed_files(root, snapshot(root), before)
        if skipped:
            notes.append(f"not copied back from {node} (over {MIRROR_BYTES >> 20} MB in all): {', '.join(skipped)}")
        return NodeOutcome(result, _read(local.log_path), node, outputs, tuple(notes))
    finally:
        reaper.release()
        shutil.rmtree(scratch, ignore_errors=True)


def node_env(driver_env: dict[str, str], token: str) -> dict[str, str]:
    """The run's environment: the experiment's variables from the head, the machine's from here."""
    env = {k: v for k, v in driver_env.items() if k not in NODE_ENV}
    env.update({k: os.environ[k] for k in NODE_ENV if k in os.environ})
    # `python` in the run command means the interpreter autoresearch runs under: here, Ray's.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", os.defpath)
    env[RUN_TOKEN_ENV] = token
    return env


# -- the tree -------------------------------------------------------------------------------
def extract(tree: bytes, root: str) -> set[str]:
    """Unpack a `git archive` tar into `root`; returns every path in it, parent folders included."""
    os.makedirs(root, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tree)) as tar:
        members = tar.getmembers()
        if hasattr(tarfile, "tar_filter"):
            # "tar", not "data": a repository may track a symlink that points outside itself.
            tar.extractall(root, members=members, filter="tar")
        else:  # pragma: no cover - Python before 3.11.4
            tar.extractall(root, members=members)
    names: set[str] = set()
    for m in members:
        path = m.name.strip("/").removeprefix("./")
        while path and path not in names:
            names.add(path)
            path = os.path.dirname(path)
    return names


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every regular file under `root`; symlinks (setup data) are not followed."""
    found = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not os.path.islink(os.path.join(top, d))]
        for name in files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return found


def changed_files(root: str, after: dict, before: dict) -> tuple[tuple[tuple[str, bytes], ...], list[str]]:
    """The files the run created or changed, smallest first up to MIRROR_BYTES; and those left out."""
    changed = sorted((after[p][0], p) for p in after if after[p] != before.get(p))
    out, skipped, total = [], [], 0
    for size, path in changed:
        if total + size > MIRROR_BYTES:
            skipped.append(f"{path} ({size / 2**20:.1f} MB)")
            continue
        try:
            with open(os.path.join(root, path), "rb") as fh:
                data = fh.read(MIRROR_BYTES - total + 1)
        except OSError:
            continue
        if total + len(data) > MIRROR_BYTES:  # it grew since the snapshot (a process we could not kill)
            skipped.append(path)
            continue
        total += len(data)
        out.append((path, data))
    return tuple(out), skipped


# -- setup ----------------------------------------------------------------------------------
def ensure_setup(tree: bytes, members: set[str], spec: RunSpec, job: NodeJob, env: dict, node: str,
                 reaper: "Reaper") -> tuple[str, list[str]] | NodeOutcome:
    """(the setup tree, its outputs) once setup has succeeded on this node; a failed outcome if not.

    The lock serialises runs that start together on one node: one sets up, the others wait and
    then reuse its outputs.
    """
    # Per host too: a cache_dir on a shared filesystem must not spare a machine its setup, since
    # setup may also write outside the tree (/tmp, a local disk).
    base = os.path.join(os.path.expanduser(job.cache_dir), socket.gethostname(), job.cache_key or "default")
    os.makedirs(base, exist_ok=True)
    setup_tree, ready = os.path.join(base, "tree"), os.path.join(base, "ready.json")
    with open(os.path.join(base, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(ready):
            with open(ready, encoding="utf-8") as fh:
                return setup_tree, json.load(fh)["outputs"]
        shutil.rmtree(setup_tree, ignore_errors=True)  # what a failed or interrupted setup left
        extract(tree, setup_tree)
        log = os.path.join(base, "setup.log")
        result = run_process(RunSpec(command=job.setup, cwd=os.path.join(setup_tree, spec.task_subdir), env=env,
                                     timeout=SETUP_TIMEOUT, log_path=log, max_log_bytes=spec.max_log_bytes,
                                     sandbox=setup_view(spec, setup_tree)),
                             on_start=reaper.watch)
        if result.exit_code != 0:
            how = f"timed out after {SETUP_TIMEOUT:g} s" if result.timed_out else f"exit code {result.exit_code}"
            note = (f"[autoresearch: [task] setup `{job.setup}` failed on {node} ({how}); "
                    f"it runs again before the next run there. Its output:]\n").encode()
            return NodeOutcome(replace(result, log_path=spec.log_path), note + _read(log), node)
        outputs = new_paths(setup_tree, members)
        tmp = ready + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"setup": job.setup, "commit": spec.commit, "outputs": outputs}, fh)
        os.replace(tmp, ready)
        return setup_tree, outputs


def setup_view(spec: RunSpec, setup_tree: str):
    """The sandbox of `[task] setup` where the runs are sandboxed (spec.sandbox), else None: the
    runs' view moved onto the setup's tree, the whole tree writable (it is the setup's own copy;
    its new files are the outputs), and the network on (a download is what setups do)."""
    if spec.sandbox is None:
        return None
    tree = os.path.realpath(setup_tree)
    moved = spec.sandbox.moved(os.path.realpath(spec.repo_dir), tree)
    return replace(moved, network=True, writable=(tree, *(w for w in moved.writable if w != tree)))


def new_paths(root: str, members: set[str]) -> list[str]:
    """The top-most paths under `root` that are not in the tree: what setup created."""
    found = []
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        for name in sorted(dirs + files):
            rel = name if rel_top == "." else os.path.join(rel_top, name)
            if name not in SKIP_DIRS and rel not in members:
                found.append(rel)
        dirs[:] = [d for d in dirs if (d if rel_top == "." else os.path.join(rel_top, d)) in members]
    return found


def link_outputs(setup_tree: str, outputs: list[str], root: str) -> None:
    for rel in outputs:
        target = os.path.join(root, rel)
        if os.path.lexists(target):
            continue  # this experiment's commit tracks that path: its own version wins
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.path.join(setup_tree, rel), target)


# -- process control ------------------------------------------------------------------------
_WARM: dict[tuple[str, ...], object] = {}
_WARM_LOCK = threading.Lock()


def executor_for(preload: tuple[str, ...]):
    """A fresh-process executor, or one warm-start server per Ray worker process and preload list.

    A Ray worker lives on between tasks, so its server (and the imported torch) serves later runs.
    """
    from autoresearch.execution.executor import LocalExecutor

    if not preload:
        return LocalExecutor()
    from autoresearch.execution.warm import WarmExecutor

    with _WARM_LOCK:
        if preload not in _WARM:
            _WARM[preload] = WarmExecutor(preload, say=lambda msg: print(msg, file=sys.stderr))
        return _WARM[preload]


# The reaper forks away from its parent before anything else: Ray kills the direct children of a
# worker that exits, and the reaper must outlive the worker to do its job. It imports nothing
# until it has to kill: importing autoresearch costs ~0.15 s of CPU, paid by every run otherwise
# (a tenth of a core at four runs a second, seen as lost throughput on a busy node).
_REAPER = ("import os, signal, sys\n"
           "if os.fork():\n    os._exit(0)\n"
           "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
           "started = []\n"
           "for line in sys.stdin:\n"
           "    if line.strip() == 'done':\n        sys.exit(0)\n"
           "    started.append(line)\n"
           "from autoresearch.execution.ray_node import reap\nreap(sys.argv[1], sys.argv[2], started)\n")


class Reaper:
    """A watchdog that kills the run when this process dies before release().

    Its stdin is a pipe from us: each started process is one `pid create_time` line, `done`
    says goodbye. End of file without `done` means we died (SIGKILL included): it kills the
    groups it was told about and every process carrying the run token, then removes `scratch`
    (our `finally` never ran). It runs in its own session, and is not our child: see _REAPER.
    """

    def __init__(self, token: str, scratch: str = ""):
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        env.pop(RUN_TOKEN_ENV, None)  # the reaper must never look like part of the run
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER, token, scratch], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, env=env, cwd="/")
        self._proc.wait()  # the fork is done: the reaper holds the pipe from now on

    def watch(self, pid: int) -> None:
        import psutil

        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            create_time = 0.0
        self._send(f"{pid} {create_time!r}\n")

    def release(self) -> None:
        self._send("done\n")
        try:
            self._proc.stdin.close()
        except OSError:
            pass

    def _send(self, line: str) -> None:
        try:
            self._proc.stdin.write(line.encode())
            self._proc.stdin.flush()
        except (OSError, ValueError):  # the reaper died: nothing we can do but run on
            pass


def reap(token: str, scratch: str, lines: list[str]) -> None:
    """The reaper's work once its worker died: `lines` are the `pid create_time` it was sent."""
    for line in lines:
        pid, create_time = line.split()
        kill_tree_if_alive(int(pid), float(create_time), token=token)
    terminate(None, set(processes_with_token(token)), GRACE_SECONDS)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""
