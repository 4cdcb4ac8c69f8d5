"""Runs on a Ray cluster: the orchestrator stays on the head, each run is a Ray task on some node.

    autoresearch run path/to/task --tag nov23 --executor ray --ray-address auto --workers 16

Git, the agents, the ledger, results.tsv and the analysis stay where autoresearch runs. Per run:

1. `git archive` of the experiment's commit (never the work tree) goes into the object store;
2. a Ray task asking for `[executor]` resources (default one GPU) unpacks it in a scratch folder
   on its node, runs `[task] setup` first if this node has not (ray_node.py), then the run
   command under the same process control as a local run, and removes the scratch folder;
3. the log comes back to the run's log path, the result gets `node` (where it ran), and files
   the run wrote in its tree are written into the head's work tree as a local run leaves them.

A node that dies mid-run (NodeDiedError, the worker killed with it, the result lost with it) is
retried once; Ray schedules only on live nodes, so a dead node is never chosen again. If the
second attempt is lost too, the result has `node_lost` set: a crash that says nothing about the
idea. Ctrl-C cancels the task by force; the node's reaper then kills the run's process group.

There is no local pid, so `on_start` is never called and a resume cannot kill a remote run by
pid. It need not: when the driver dies, Ray ends its job's workers, and each worker's reaper
kills its run (tested by killing a driver with SIGKILL).

Every node needs the same Python environment as the head, autoresearch included (the task runs
with the node's `python`, and the Ray task imports autoresearch), and its data: either
`[task] setup` (once per node, ray_node.py says how) or a shared filesystem the task reads by
absolute path.

Ray is imported only when a RayExecutor first runs: autoresearch works without it installed.
"""

from __future__ import annotations

import os
import tempfile
import re
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from autoresearch.errors import AutoresearchError
from autoresearch.execution.executor import Executor
from autoresearch.execution.ray_node import NodeJob, NodeOutcome, cache_key, run_on_node
from autoresearch.records import RunResult, RunSpec

DEFAULT_RESOURCES = {"num_gpus": 1}
ATTEMPTS = 2  # a run whose node dies is retried once
STOP_WAIT = 10.0  # seconds to wait for a cancelled task to end before returning anyway
_NODE_ID = re.compile(r"node ID: ([0-9a-f]{8})")
_NO_RAY = "--executor ray needs Ray on every node: pip install 'autoresearch[ray]'"


class RayExecutor(Executor):
    """An Executor whose runs are Ray tasks; safe to share between workers (threads).

    `address`: "auto" joins the cluster `ray start` made on this machine; "host:6379" or
    "ray://host:10001" another; None uses the connection this process already has or starts a
    local one-node cluster (tests, benchmarks). `resources`: the options of each Ray task
    (`num_gpus`, `num_cpus`, `memory`, `resources={...}`). `setup`: `[task] setup`.
    """

    name = "ray"

    def __init__(self, address: str | None = "auto", resources: dict[str, Any] | None = None,
                 setup: str | None = None, *, preload: tuple[str, ...] = (),
                 cache_dir: str = NodeJob.cache_dir, poll_interval: float = 0.2):
        self.address = address
        self.resources = dict(DEFAULT_RESOURCES if resources is None else resources)
        self.setup = setup or None
        self.preload = tuple(preload)
        self.cache_dir = cache_dir
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._remote = None
        self._keys: dict[str, str] = {}

    @classmethod
    def from_task(cls, task, address: str | None = None) -> "RayExecutor":
        """The executor `[executor]` and `[task] setup` describe; `address` overrides the config's."""
        ex = task.config.executor
        return cls(address or ex.address, ex.ray_options(), task.config.task.setup,
                   preload=task.config.task.preload if task.config.task.warm else (), cache_dir=ex.cache_dir)

    def run(self, spec: RunSpec, *, on_start=None, stop_event: threading.Event | None = None) -> RunResult:
        # on_start is not called: the run's processes live on another machine (see the module doc).
        remote = self._connect()
        import ray

        start = time.monotonic()
        tree = ray.put(self._archive(spec))
        job = NodeJob(self.setup, self.cache_dir, self._cache_key(spec), self.preload)
        notes: list[str] = []
        for attempt in range(1, ATTEMPTS + 1):
            if stop_event is not None and stop_event.is_set():
                return self._stopped(spec, start, notes)
            ref = remote.options(**self.resources).remote(tree, spec, job)
            outcome = self._wait(ref, stop_event)
            if outcome is None:
                return self._stopped(spec, start, notes)
            if isinstance(outcome, NodeOutcome):
                return self._finish(spec, outcome, notes)
            notes.append(f"attempt {attempt} lost: {outcome}")
        notes.append(f"the run is recorded as node_lost after {ATTEMPTS} attempts; it says nothing about the code")
        text = _write_log(spec.log_path, notes, b"")
        return RunResult(exit_code=None, timed_out=False, wall_seconds=time.monotonic() - start, peak_rss_mb=0.0,
                         log_path=spec.log_path, output_tail=text, node_lost=True)

    def close(self) -> None:
        """Let go of the Ray connection; the last executor out disconnects if one of them connected."""
        with self._lock:
            if self._remote is None:
                return
            self._remote = None
        _Connection.release()

    # -- connection -----------------------------------------------------------------------
    def check(self) -> None:
        """Ray must be importable here (and on every node) before anything else happens."""
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise AutoresearchError(_NO_RAY)

    def connect(self) -> None:
        """Join the cluster and check a run fits on some node; the loop calls it before the baseline."""
        self._connect()

    def _connect(self):
        with self._lock:
            if self._remote is None:
                _Connection.acquire(self.address)
                import ray

                try:
                    self._check_feasible(ray)
                except BaseException:
                    _Connection.release()
                    raise
                # max_retries=0: a lost node is retried here, once, so the log can say where it went.
                self._remote = ray.remote(max_retries=0)(_run_remote)
            return self._remote

    def _check_feasible(self, ray) -> None:
        """Fail now, not after a night of runs pending forever, when no node can ever run one."""
        need = {"CPU": self.resources.get("num_cpus", 1), "GPU": self.resources.get("num_gpus", 0),
                "memory": self.resources.get("memory", 0), **self.resources.get("resources", {})}
        need = {k: v for k, v in need.items() if v}
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        if not any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
            raise AutoresearchError(
                f"no node of the Ray cluster offers what each run asks for ({need}); on a CPU-only cluster "
                "set [executor] num_gpus = 0 (and num_cpus = 1) in autoresearch.toml")

    # -- one run --------------------------------------------------------------------------
    def _archive(self, spec: RunSpec) -> bytes:
        if not spec.commit or not spec.repo_dir:
            raise AutoresearchError("the Ray executor needs the run's commit and repository (RunSpec.commit, repo_dir)")
        proc = subprocess.run(["git", "archive", "--format=tar", spec.commit], cwd=spec.repo_dir, capture_output=True)
        if proc.returncode != 0:
            raise AutoresearchError(f"git archive {spec.commit[:12]} failed in {spec.repo_dir}: "
                                    f"{proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def _cache_key(self, spec: RunSpec) -> str:
        """One setup per node and task: the same for every worker's worktree of one repository."""
        if spec.repo_dir not in self._keys:
            common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                    cwd=spec.repo_dir, capture_output=True, text=True).stdout.strip()
            self._keys[spec.repo_dir] = cache_key(socket.gethostname(), common or spec.repo_dir,
                                                  spec.task_subdir, self.setup or "")
        return self._keys[spec.repo_dir]

    def _wait(self, ref, stop_event) -> NodeOutcome | str | None:
        """The outcome; a line saying why the attempt was lost; or None when stopped."""
        import ray
        from ray import exceptions as rex

        while not ray.wait([ref], timeout=self.poll_interval)[0]:
            if stop_event is not None and stop_event.is_set():
                ray.cancel(ref, force=True)  # the worker dies; its reaper kills the run's group
                ray.wait([ref], timeout=STOP_WAIT)
                return None
        try:
            return ray.get(ref)
        except (rex.NodeDiedError, rex.WorkerCrashedError, rex.ObjectLostError) as exc:
            found = _NODE_ID.search(str(exc))
            where = f" on node {found.group(1)}" if found else ""
            return f"{type(exc).__name__}{where}: {str(exc).splitlines()[0][:200]}"
        except rex.OutOfMemoryError as exc:
            from autoresearch.crash import MEMORY_LIMIT_MARKER

            # Ray's memory monitor killed the worker because the node ran out: the run's doing.
            return NodeOutcome(RunResult(exit_code=-9, timed_out=False, wall_seconds=0.0, peak_rss_mb=0.0, log_path=""),
                               f"{MEMORY_LIMIT_MARKER}: Ray killed the run, its node ran out of memory: {exc}]\n".encode(),
                               "")
        except rex.RayTaskError as exc:
            # Our side failed on the node (its disk full, the tree unwritable): a crash whose log
            # holds the traceback, so crash.py can name it (`disk`, `env`) and the night goes on.
            text = f"[autoresearch: the Ray task failed around the run]\n{exc}\n"
            return NodeOutcome(RunResult(exit_code=1, timed_out=False, wall_seconds=0.0, peak_rss_mb=0.0, log_path="",
                                         output_tail=text[-4096:]), text.encode(), "")

    def _finish(self, spec: RunSpec, out: NodeOutcome, notes: list[str]) -> RunResult:
        notes = notes + list(out.notes)
        if notes and out.node:
            notes.append(f"ran on {out.node}")
        notes += _write_outputs(spec.repo_dir, out.outputs)
        _write_log(spec.log_path, notes, out.log)
        return replace(out.result, log_path=spec.log_path, node=out.node)

    def _stopped(self, spec: RunSpec, start: float, notes: list[str]) -> RunResult:
        text = _write_log(spec.log_path, notes + ["stopped: the Ray task was cancelled"], b"")
        return RunResult(exit_code=None, timed_out=False, wall_seconds=time.monotonic() - start, peak_rss_mb=0.0,
                         log_path=spec.log_path, output_tail=text)


class _Connection:
    """One Ray connection per process, shared by every executor (each worker's loop has one).

    Counted, so that a worker's loop that ends and closes its executor does not disconnect the
    others; Ray is shut down only if an executor connected it, when the last one closes.
    """

    _lock = threading.Lock()
    _users = 0
    _ours = False

    @classmethod
    def acquire(cls, address: str | None) -> None:
        with cls._lock:
            try:
                import ray
            except ImportError:
                raise AutoresearchError(_NO_RAY) from None
            if not ray.is_initialized():
                _reachable(address)
                kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
                if address is None:  # a private one-node cluster: loopback only, no dashboard
                    kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
                try:
                    ray.init(address=address, **kwargs)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise AutoresearchError(f"cannot join the Ray cluster at {address!r}: {exc}; "
                                            "start it with `ray start --head` or pass --ray-address") from None
                cls._ours = True
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._ours:
                import ray

                ray.shutdown()
                cls._ours = False


def _run_remote(tree: bytes, spec: RunSpec, job: NodeJob) -> NodeOutcome:
    """The Ray task's body, on the node."""
    import ray

    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    return run_on_node(tree, spec, job, node)


def _write_log(path: str, notes: list[str], log: bytes) -> str:
    """The node's log with our notes first: after the output they could be read as footer lines."""
    head = "".join(f"[autoresearch: {n}]\n" for n in notes)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head.encode() + log)
    return head


def _write_outputs(repo_dir: str, outputs) -> list[str]:
    """Put the files the run wrote where a local run would have left them; notes on refusals."""
    root = Path(repo_dir).resolve()
    refused = []
    for rel, data in outputs:
        target = (root / rel)
        if not target.resolve().is_relative_to(root) or target.is_symlink():
            refused.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of its own per call: two runs finishing at once in one process (threads
        # of the loop's workers) shared a pid-named one, and the second rename found it gone.
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".ray", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return [f"not copied back (outside the repository or a symlink): {', '.join(refused)}"] if refused else []


def _reachable(address: str | None, seconds: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when a host:port address answers nothing."""
    if not address or address == "auto" or address.startswith("ray://"):
        return  # "auto" fails fast by itself; a client address is Ray's to check
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AutoresearchError(f"--ray-address {address!r}: expected auto or host:port, e.g. 10.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise AutoresearchError(f"cannot join the Ray cluster at {address!r}: nothing answers there ({exc}); "
                                "start it with `ray start --head` or pass another --ray-address") from None
