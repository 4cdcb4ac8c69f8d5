"""What a Ray task does on its node, without Ray: tree, setup cache, outputs, environment, reaper."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.execution import ray_node
from autoresearch.execution.ray_node import NodeJob, Reaper, changed_files, extract, link_outputs, new_paths, node_env, run_on_node, snapshot
from autoresearch.records import RunSpec
from autoresearch.execution.supervise import RUN_TOKEN_ENV

from helpers import committed_repo
from process_helpers import wait_dead


def archive(tmp_path, files: dict[str, str]) -> tuple[bytes, str, str]:
    repo, commit = committed_repo(tmp_path, files)
    tree = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo, capture_output=True, check=True).stdout
    return tree, commit, str(repo)


def test_setup_outputs_are_the_new_top_level_paths_and_are_linked_unless_tracked(tmp_path):
    tree, _, _ = archive(tmp_path, {"task/train.py": "", "task/prepare.py": "", "task/data/README": ""})
    setup = tmp_path / "setup"
    members = extract(tree, str(setup))
    assert {"task", "task/train.py", "task/data", "task/data/README"} <= members
    (setup / "task" / "data" / "train.bin").write_text("x")  # new file in a tracked folder
    (setup / "task" / "tok").mkdir()  # a new folder: linked as a whole
    (setup / "task" / "tok" / "vocab.json").write_text("{}")
    (setup / "task" / "__pycache__").mkdir()
    assert new_paths(str(setup), members) == ["task/tok", "task/data/train.bin"]

    run = tmp_path / "run"
    extract(tree, str(run))
    (run / "task" / "tok").mkdir()  # this experiment tracks the path itself: its own version wins
    link_outputs(str(setup), new_paths(str(setup), members), str(run))
    assert (run / "task" / "data" / "train.bin").read_text() == "x"
    assert (run / "task" / "data" / "train.bin").is_symlink() and not (run / "task" / "tok").is_symlink()


def test_changed_files_skip_links_caches_and_whatever_is_over_the_cap(tmp_path, monkeypatch):
    root = tmp_path / "t"
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("old")
    (tmp_path / "setup-data").mkdir()
    (root / "data").symlink_to(tmp_path / "setup-data")
    before = snapshot(str(root))
    (root / "train.py").write_text("new!")  # a run that edits a tracked file: it travels back
    (root / "metrics.jsonl").write_text("{}\n")
    (root / "big.pt").write_bytes(b"0" * 100)
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"c")
    (root / "data" / "cache.bin").write_text("through the link")
    monkeypatch.setattr(ray_node, "MIRROR_BYTES", 50)
    out, skipped = changed_files(str(root), snapshot(str(root)), before)
    assert dict(out) == {"metrics.jsonl": b"{}\n", "train.py": b"new!"}
    assert skipped == ["big.pt (0.0 MB)"]


def test_node_env_takes_the_machine_from_the_node_and_the_experiment_from_the_head(monkeypatch):
    monkeypatch.setenv("PATH", "/node/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = node_env({"PATH": "/head/bin", "CUDA_VISIBLE_DEVICES": "3", "AUTORESEARCH_ITERATION": "4", "MY_FLAG": "1"}, "tok")
    assert env["PATH"] == f"{os.path.dirname(sys.executable)}{os.pathsep}/node/bin"
    assert "CUDA_VISIBLE_DEVICES" not in env  # the head's GPU means nothing here; Ray sets the node's
    assert env["AUTORESEARCH_ITERATION"] == "4" and env["MY_FLAG"] == "1" and env[RUN_TOKEN_ENV] == "tok"


PREPARE = '''\
import os
os.makedirs("data", exist_ok=True)
open("data/x.txt", "w").write("prepared")
open(os.environ["COUNT"], "a").write("setup\\n")
'''
TRAIN = '''\
import os
print("cwd", os.getcwd())
print(open("data/x.txt").read())
open("curve.jsonl", "w").write("{}")
print("---")
print("score: 1.0")
'''


def test_run_on_node_sets_up_once_runs_in_scratch_and_removes_it(tmp_path):
    tree, commit, repo = archive(tmp_path, {"task/train.py": TRAIN, "task/prepare.py": PREPARE})
    count = tmp_path / "count"
    job = NodeJob(setup="python prepare.py", cache_dir=str(tmp_path / "cache"), cache_key="k")
    for i in range(2):
        spec = RunSpec("python train.py", repo, {**os.environ, "COUNT": str(count)}, 30, str(tmp_path / f"l{i}"),
                       commit=commit, repo_dir=repo, task_subdir="task")
        out = run_on_node(tree, spec, job, "here")
        text = out.log.decode()
        assert out.result.exit_code == 0 and out.node == "here" and "prepared" in text
        scratch = text.split("cwd ", 1)[1].split("\n", 1)[0]
        assert scratch.endswith("/tree/task") and not os.path.exists(scratch.removesuffix("/tree/task"))
        assert dict(out.outputs) == {"task/curve.jsonl": b"{}"}  # the setup's data/ is not sent back
    assert count.read_text() == "setup\n"


def test_a_failed_setup_is_the_run_result_and_leaves_no_marker(tmp_path):
    tree, commit, repo = archive(tmp_path, {"train.py": "print('never')\n"})
    job = NodeJob(setup="echo missing; exit 5", cache_dir=str(tmp_path / "cache"), cache_key="k")
    spec = RunSpec("python train.py", repo, dict(os.environ), 30, str(tmp_path / "log"), commit=commit, repo_dir=repo)
    out = run_on_node(tree, spec, job, "here")
    assert out.result.exit_code == 5 and b"missing" in out.log and b"never" not in out.log
    assert b"[task] setup `echo missing; exit 5` failed on here" in out.log
    assert not list((tmp_path / "cache").rglob("ready.json"))


HOLDER = '''\
import os, sys
from autoresearch.ray_node import Reaper
from autoresearch.records import RunSpec
from autoresearch.runner import RUN_TOKEN_ENV, run_process
token, log, scratch = sys.argv[1:4]
reaper = Reaper(token, scratch)
spec = RunSpec(f"{sys.executable} forks.py", os.getcwd(), {**os.environ, RUN_TOKEN_ENV: token}, 60, log)
run_process(spec, on_start=reaper.watch)
'''
FORKS = '''\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open("pid", "w").write(str(child.pid))
time.sleep(60)
'''


def test_the_reaper_kills_the_run_when_its_parent_is_killed(tmp_path):
    (tmp_path / "forks.py").write_text(FORKS)
    pidfile, scratch = tmp_path / "pid", tmp_path / "scratch"
    (scratch / "tree").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "reaper-test-token", str(tmp_path / "log"), str(scratch)],
                              cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        holder.send_signal(signal.SIGKILL)  # like a Ray worker cancelled by force or losing its raylet
        holder.wait()
        assert wait_dead(child, 10)
        deadline = time.monotonic() + 10
        while scratch.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not scratch.exists()  # the worker's `finally` never ran: the reaper cleans up
    finally:
        holder.kill()


def test_a_released_reaper_leaves_everything_alone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                               env={**os.environ, RUN_TOKEN_ENV: "released-token"})
    try:
        reaper = Reaper("released-token")
        reaper.watch(sleeper.pid)
        reaper.release()
        time.sleep(1.0)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_released_reaper_imports_nothing():
    """Every run starts one: it costs a bare interpreter, not an import of autoresearch (~0.15 s CPU)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # autoresearch cannot be imported
    # stderr is held by the forked reaper, so this returns once the reaper itself has exited.
    done = subprocess.run([sys.executable, "-c", ray_node._REAPER, "token", ""], input=b"1 2.0\ndone\n",
                          capture_output=True, env=env, cwd="/", timeout=20)
    assert done.returncode == 0 and done.stderr == b""


@pytest.mark.parametrize("preload", [(), ("json",)])
def test_executor_for_reuses_one_warm_server_per_preload(preload):
    a, b = ray_node.executor_for(preload), ray_node.executor_for(preload)
    assert (a is b) == bool(preload)


def test_a_sandboxed_spec_is_sandboxed_on_the_node_over_its_scratch_tree(tmp_path):
    """Where bubblewrap works, a sandboxed spec is sandboxed on the node too. Where it does not,
    the head makes no sandboxed spec ("auto" finds no bwrap): the run goes on over the node's
    scratch tree, so the repository it came from is still never written."""
    from autoresearch.execution import sandbox

    sandboxed = not sandbox.probe()
    train = '''\
import os
try:
    open("prepare.py", "a").write("tampered")
    print("readonly written")
except OSError:
    print("readonly refused")
open("out.txt", "w").write("made")
print("pid", os.getpid())
'''
    tree, commit, repo = archive(tmp_path, {"task/train.py": train, "task/prepare.py": PREPARE})
    view = sandbox.run_view(Path(repo) / "task", Path(repo), Path(repo) / "task" / ".autoresearch" / "t",
                            readonly=("prepare.py",)) if sandboxed else None
    spec = RunSpec("python train.py", repo, dict(os.environ), 30, str(tmp_path / "log"), commit=commit,
                   repo_dir=repo, task_subdir="task", sandbox=view)
    out = run_on_node(tree, spec, NodeJob(cache_dir=str(tmp_path / "cache")), "here")
    text = out.log.decode()
    assert out.result.exit_code == 0, text
    assert (Path(repo) / "task" / "prepare.py").read_text() == PREPARE  # only the scratch tree was there to write
    if sandboxed:
        assert "readonly refused" in text
        assert int(text.split("pid ")[1].split()[0]) < 10  # its own PID namespace: bwrap, sh, then the script
        assert dict(out.outputs) == {"task/out.txt": b"made"}
    else:
        assert "readonly written" in text  # no sandbox: the head's guard is what catches this (test_hostile)
        assert dict(out.outputs)["task/out.txt"] == b"made"
