"""The Ray executor on a real multi-node Ray cluster on this machine, kept on loopback.

One cluster for the module (a head and one worker node, one `slot` each); the node-loss tests
add and remove their own nodes, which carry a resource nothing else asks for. Starting Ray
costs tens of seconds on a busy 2-core machine, hence `slow` on every test that needs it.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

# Read when Ray is imported: without it Ray binds to the machine's outward address even when
# told 127.0.0.1, and a node added later looks for the head there.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")

from autoresearch.config import load_task  # noqa: E402
from autoresearch.errors import AutoresearchError  # noqa: E402
from autoresearch.loop import Limits, Loop  # noqa: E402
from autoresearch.execution.ray_executor import RayExecutor  # noqa: E402
from autoresearch.records import RunSpec  # noqa: E402
from autoresearch.workers import parse_slots, run_workers  # noqa: E402

from conftest import tiny_config  # noqa: E402
from helpers import SharedScript, committed_repo, errors_in_threads  # noqa: E402
from process_helpers import wait_dead  # noqa: E402

slow = pytest.mark.slow  # the tests on the cluster; the module's first one pays for starting it

LOOPBACK = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
SLOT = {"num_cpus": 0, "resources": {"slot": 1}}  # runs take a slot, never the CPU Ray's own workers need


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={**LOOPBACK, "include_dashboard": False, "resources": {"slot": 1}})
    try:
        c.add_node(**LOOPBACK, resources={"slot": 1})
        ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def short(node) -> str:
    return node.node_id[:8]


def spec_for(repo, commit, tmp_path, name="run", timeout=60.0, **env) -> RunSpec:
    return RunSpec(command="python train.py", cwd=str(repo), env={**os.environ, **env}, timeout=timeout,
                   log_path=str(tmp_path / name / "log.txt"), commit=commit, repo_dir=str(repo))


def wait_for(path: Path, seconds: float = 60.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


def cleaned(pidfile: Path, seconds: float = 20.0) -> bool:
    """The run's child process (the pid FORKS wrote) is dead and its scratch folder removed."""
    pid, scratch = pidfile.read_text().split()
    deadline = time.monotonic() + seconds
    while Path(scratch).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return "autoresearch-run-" in scratch and wait_dead(int(pid), seconds) and not Path(scratch).exists()


def in_thread(fn, *args, **kw):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("result", fn(*args, **kw)))
    t.start()
    return t, box


# -- spreading, scratch, outputs, setup ------------------------------------------------------
SPREAD_TRAIN = '''\
import os, time
print("cwd", os.getcwd())
print("data", open("data/x.txt").read().strip())
open("metrics.jsonl", "w").write('{"step": 1}\\n')
time.sleep(1.0)
print("---")
print("score: 1.5")
'''
PREPARE = '''\
import os
os.makedirs("data", exist_ok=True)
open("data/x.txt", "w").write("prepared\\n")
with open(os.environ["SETUP_COUNT"], "a") as fh:
    fh.write("setup\\n")
'''


@slow
def test_runs_spread_over_both_nodes_with_setup_once_per_machine(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": SPREAD_TRAIN, "prepare.py": PREPARE, ".gitignore": "data/\n"})
    count = tmp_path / "setups.txt"
    ex = RayExecutor(None, SLOT, "python prepare.py", cache_dir=str(tmp_path / "cache"))
    runs = [in_thread(ex.run, spec_for(repo, commit, tmp_path, f"r{i}", SETUP_COUNT=str(count))) for i in range(2)]
    for t, _ in runs:
        t.join(120)
    results = [box["result"] for _, box in runs]
    assert all(r.exit_code == 0 and not r.node_lost for r in results), results
    assert len({r.node for r in results}) == 2  # one run per node: each asked for the only slot there
    assert {r.node.split(":")[1] for r in results} == {short(n) for n in [cluster.head_node, *cluster.worker_nodes]}
    # a third run reuses its node's setup
    third = ex.run(spec_for(repo, commit, tmp_path, "r2", SETUP_COUNT=str(count)))
    assert third.exit_code == 0 and third.node in {r.node for r in results}
    assert count.read_text().count("setup") == 1  # two Ray nodes, one machine, one cache
    for i, r in enumerate([*results, third]):
        log = (tmp_path / f"r{i}" / "log.txt").read_text()
        assert "data prepared" in log and log.rstrip().endswith("score: 1.5")
        scratch = re.search(r"^cwd (.*)$", log, re.M).group(1)
        assert "autoresearch-run-" in scratch and not Path(scratch).exists()  # removed afterwards
    # what the run wrote in its tree is where a local run would have left it; the data is not
    assert (repo / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert not (repo / "data").exists()


@slow
def test_the_run_gets_the_committed_tree_not_the_work_tree(cluster, tmp_path):
    committed = "import os\nprint(sorted(os.listdir('.')))\nprint('---')\nprint('score: 1')\n"
    repo, commit = committed_repo(tmp_path, {"train.py": committed})
    (repo / "train.py").write_text("print('---')\nprint('score: 2')\n")  # uncommitted: must not travel
    (repo / "untracked.py").write_text("")
    r = RayExecutor(None, SLOT).run(spec_for(repo, commit, tmp_path))
    assert r.exit_code == 0 and r.output_tail.rstrip().endswith("score: 1")
    assert "['train.py']" in r.output_tail


@slow
def test_a_failed_setup_is_a_failed_run_and_runs_again_next_time(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": "print('---')\nprint('score: 1')\n"})
    ex = RayExecutor(None, SLOT, "echo no data; exit 4", cache_dir=str(tmp_path / "cache"))
    for name in ("a", "b"):
        r = ex.run(spec_for(repo, commit, tmp_path, name))
        assert r.exit_code == 4 and r.node
        log = (tmp_path / name / "log.txt").read_text()
        assert "[task] setup `echo no data; exit 4` failed" in log and "no data" in log
    assert not list((tmp_path / "cache").rglob("ready.json"))


@slow
def test_a_remote_failure_and_warm_start(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": "import json, sys\nprint('half', flush=True)\nsys.exit(3)\n"})
    r = RayExecutor(None, SLOT, preload=("json",)).run(spec_for(repo, commit, tmp_path))
    assert r.exit_code == 3 and not r.timed_out and r.warm and r.node
    assert "half" in (tmp_path / "run" / "log.txt").read_text()


@slow
def test_a_failure_of_ours_on_the_node_is_a_crash_with_its_traceback(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": "print('---')\nprint('score: 1')\n"})
    spec = replace(spec_for(repo, commit, tmp_path), task_subdir="no/such/dir")  # no cwd to run in on the node
    r = RayExecutor(None, SLOT).run(spec)
    assert r.exit_code == 1 and not r.node_lost
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "the Ray task failed around the run" in log and "FileNotFoundError" in log


@slow
def test_resources_no_node_offers_fail_at_once_with_the_fix(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": "print('---')\nprint('score: 1')\n"})
    with pytest.raises(AutoresearchError, match="num_gpus = 0"):
        RayExecutor(None).run(spec_for(repo, commit, tmp_path))  # one GPU by default; this cluster has none


def test_executors_share_one_connection_and_the_last_one_out_closes_it(monkeypatch):
    import types

    from autoresearch.execution import ray_executor

    calls = []
    fake = types.SimpleNamespace(is_initialized=lambda: bool(calls) and calls[-1] == "init",
                                 init=lambda **kw: calls.append("init"), shutdown=lambda: calls.append("shutdown"),
                                 nodes=lambda: [{"Alive": True, "Resources": {"CPU": 1.0}}],
                                 remote=lambda **kw: (lambda fn: fn))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(ray_executor._Connection, "_users", 0)
    monkeypatch.setattr(ray_executor._Connection, "_ours", False)
    one, two = RayExecutor(None, {"num_gpus": 0}), RayExecutor(None, {"num_gpus": 0})
    one._connect()
    two._connect()
    one.close()
    one.close()  # twice is once
    assert calls == ["init"]  # the other worker's executor still runs on it
    two.close()
    assert calls == ["init", "shutdown"]


def test_from_task_reads_executor_and_setup(make_task):
    task = load_task(make_task(config=CONFIG.replace("timeout = 3", 'timeout = 3\nsetup = "python prepare.py"\npreload = ["json"]')
                               + '[executor]\nkind = "ray"\nnum_gpus = 0\nresources = {slot = 1}\ncache_dir = "/c"\n'))
    ex = RayExecutor.from_task(task, address="ray://elsewhere:10001")
    assert (ex.address, ex.setup, ex.preload, ex.cache_dir) == ("ray://elsewhere:10001", "python prepare.py", ("json",), "/c")
    assert ex.resources == {"num_gpus": 0, "resources": {"slot": 1}}
    assert RayExecutor.from_task(task).address == "auto"


# -- process control on the node ------------------------------------------------------------
FORKS = '''\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(os.environ["PIDFILE"], "w").write(f"{child.pid} {os.path.dirname(os.getcwd())}")
time.sleep(120)
'''


@slow
def test_timeout_on_a_remote_node_kills_the_process_group(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": FORKS})
    pidfile = tmp_path / "pid"
    r = RayExecutor(None, SLOT).run(spec_for(repo, commit, tmp_path, timeout=3.0, PIDFILE=str(pidfile)))
    assert r.timed_out and r.exit_code is None and r.node
    assert cleaned(pidfile, 5.0)


@slow
def test_stop_cancels_the_task_and_the_reaper_kills_the_run(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": FORKS})
    pidfile, stop = tmp_path / "pid", threading.Event()
    t, box = in_thread(RayExecutor(None, SLOT).run, spec_for(repo, commit, tmp_path, PIDFILE=str(pidfile)),
                       stop_event=stop)
    wait_for(pidfile)
    stop.set()
    t.join(30)
    r = box["result"]
    assert r.exit_code is None and not r.timed_out and not r.node_lost
    assert cleaned(pidfile)


DRIVER = '''\
import os, sys
import ray
from autoresearch.ray_executor import RayExecutor
from autoresearch.records import RunSpec
ray.init(address=sys.argv[1], log_to_driver=False)
repo, commit, log = sys.argv[2:5]
RayExecutor(None, {"num_cpus": 0, "resources": {"slot": 1}}).run(
    RunSpec("python train.py", repo, dict(os.environ), 120, log, commit=commit, repo_dir=repo))
'''


@slow
def test_a_dead_driver_takes_its_remote_runs_with_it(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": FORKS})
    pidfile = tmp_path / "pid"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.address, str(repo), commit, str(tmp_path / "log")],
                              env={**os.environ, "PIDFILE": str(pidfile)})
    try:
        wait_for(pidfile, 90)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert cleaned(pidfile, 60)  # Ray ends the dead job's workers; each worker's reaper kills its run
    finally:
        driver.kill()


# -- lost nodes ------------------------------------------------------------------------------
LOSSY = '''\
import os, time
marker = os.environ["MARKER"]
attempt = len(open(marker).read().split()) + 1 if os.path.exists(marker) else 1
with open(marker, "a") as fh:
    fh.write(f"{os.getpid()}\\n")
if attempt <= int(os.environ["HANG_ATTEMPTS"]):
    time.sleep(120)
print("---")
print(f"score: {attempt}")
'''


def attempts(marker: Path, n: int) -> list[int]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pids = marker.read_text().split() if marker.exists() else []
        if len(pids) >= n:
            return [int(p) for p in pids]
        time.sleep(0.1)
    raise AssertionError(f"attempt {n} never started")


@ray.remote(num_cpus=0, resources={"lossy": 1})
def hold(started: str, release: str) -> None:
    """Keeps its node's only `lossy` slot busy until `release` exists: steers runs elsewhere."""
    Path(started).write_text("1")
    while not os.path.exists(release):
        time.sleep(0.05)


def held(node, tmp_path: Path, name: str) -> Path:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    release = tmp_path / f"release-{name}"
    hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)).remote(
        str(tmp_path / f"started-{name}"), str(release))
    wait_for(tmp_path / f"started-{name}")
    return release


@slow
def test_a_run_whose_node_dies_is_retried_on_another_then_recorded_as_node_lost(cluster, tmp_path):
    repo, commit = committed_repo(tmp_path, {"train.py": LOSSY})
    ex = RayExecutor(None, {"num_cpus": 0, "resources": {"lossy": 1}})
    x, y, z = (cluster.add_node(wait=False, **LOOPBACK, resources={"lossy": 1}) for _ in range(3))
    cluster.wait_for_nodes()
    free_y, free_z = held(y, tmp_path, "y"), held(z, tmp_path, "z")

    # the run starts on x, the only free node; x dies; the retry runs on y
    marker = tmp_path / "m1"
    t, box = in_thread(ex.run, spec_for(repo, commit, tmp_path, "a", MARKER=str(marker), HANG_ATTEMPTS="1"))
    [pid] = attempts(marker, 1)
    cluster.remove_node(x, allow_graceful=False)
    free_y.write_text("")
    t.join(120)
    r = box["result"]
    assert r.exit_code == 0 and not r.node_lost and r.node.endswith(short(y))
    assert r.output_tail.rstrip().endswith("score: 2")
    log = (tmp_path / "a" / "log.txt").read_text()
    assert f"attempt 1 lost: NodeDiedError on node {short(x)}" in log and log.rstrip().endswith("score: 2")
    assert wait_dead(pid, 20)  # the first attempt's training died with its worker

    # both attempts lost (on y, then z): a node_lost crash
    marker = tmp_path / "m2"
    t, box = in_thread(ex.run, spec_for(repo, commit, tmp_path, "b", MARKER=str(marker), HANG_ATTEMPTS="2"))
    attempts(marker, 1)
    cluster.remove_node(y, allow_graceful=False)
    free_z.write_text("")
    attempts(marker, 2)
    cluster.remove_node(z, allow_graceful=False)
    t.join(120)
    r = box["result"]
    assert r.node_lost and r.exit_code is None and not r.timed_out
    log = (tmp_path / "b" / "log.txt").read_text()
    assert "attempt 1 lost" in log and "attempt 2 lost" in log and "node_lost" in log
    assert all(wait_dead(p, 20) for p in attempts(marker, 2))


# -- the same results as the local executor --------------------------------------------------
TRAIN = '''\
X = 1.0
print("training")
print("---")
print(f"score: {X:.6f}")
'''
CONFIG = tiny_config(time_budget=1, timeout=3)


def edits():
    """keep, discard, crash, hang, guard: each decision is the same whatever order runs finish in."""
    def x(v):
        def edit(d):
            (d / "train.py").write_text(TRAIN.replace("X = 1.0", f"X = {v}"))
            return f"X -> {v}"
        return edit

    def crash(d):
        (d / "train.py").write_text("import sys\nprint('---')\nprint('score: 9')\nsys.exit(3)\n")
        return "exit 3"

    def hang(d):
        (d / "train.py").write_text("import time\ntime.sleep(60)\n")
        return "hang"

    def guard(d):
        (d / "prepare.py").write_text("changed\n")
        (d / "train.py").write_text(TRAIN.replace("X = 1.0", "X = 7.0"))
        return "touches prepare.py"

    return [x(2.0), x(0.5), crash, hang, guard]


def rows(task_dir: Path) -> list[tuple[str, str, str]]:
    """(description, status, score) per row of results.tsv; commit hashes and order differ."""
    lines = [line.split("\t") for line in (task_dir / "results.tsv").read_text().splitlines()]
    head = lines[0]
    at = {name: head.index(name) for name in ("description", "status", "score")}
    return sorted((r[at["description"]], r[at["status"]], r[at["score"]]) for r in lines[1:])


def scenario(tmp_path, name, executor=None, workers=0, config=CONFIG):
    task_dir, _ = committed_repo(tmp_path, {"train.py": TRAIN, "prepare.py": "DATA = 1\n", "autoresearch.toml": config},
                                 name=name)
    agent_lock, todo = threading.Lock(), edits()
    task = load_task(task_dir)
    if workers:
        records = run_workers(task, "s", lambda i: SharedScript(todo, agent_lock), parse_slots(None, workers),
                              Limits(iterations=5), say=lambda s: None,
                              **({"make_executor": lambda i: executor} if executor else {}))
    else:
        records = Loop(task, "s", SharedScript(todo, agent_lock), executor=executor, say=lambda s: None).run(
            Limits(iterations=5))
    return task_dir, records


@slow
def test_same_results_as_the_local_executor_in_a_loop_and_with_two_workers(cluster, tmp_path):
    local, _ = scenario(tmp_path, "local")
    expected = rows(local)
    assert [s for _, s, _ in expected].count("crash") == 3 and len(expected) == 6
    remote, records = scenario(tmp_path, "ray", RayExecutor(None, SLOT))
    assert rows(remote) == expected
    assert {r.reason.split(":")[0] for r in records if r.status.value == "crash"} == {"exit_code", "timeout", "guard"}
    assert {r.node for r in records if r.exit_code is not None} <= {f"{os.uname().nodename}:{short(n)}" for n in
                                                                     [cluster.head_node, *cluster.worker_nodes]}
    # two workers sharing the executor the config asks for (as `autoresearch run --workers 2` makes it)
    ray_config = CONFIG + '\n[executor]\nkind = "ray"\nnum_gpus = 0\nnum_cpus = 0\nresources = {slot = 1}\n'
    pooled, records = scenario(tmp_path, "workers", workers=2, config=ray_config)
    assert rows(pooled) == expected
    assert all(r.node for r in records if r.exit_code is not None) and ray.is_initialized()


def test_outputs_of_runs_finishing_at_once_in_one_process_all_land(tmp_path):
    """Two runs' outputs written back at the same moment by threads of one process (CI saw the
    second rename miss a temporary file the first had already moved: they shared its name)."""
    from autoresearch.execution.ray_executor import _write_outputs

    def write(i):
        for _ in range(200):
            _write_outputs(str(tmp_path), [("metrics.jsonl", f"run {i}\n".encode())])

    assert errors_in_threads(write) == []
    assert (tmp_path / "metrics.jsonl").read_text() in {f"run {i}\n" for i in range(4)}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary file left behind
