"""`[task] setup` on a node runs sandboxed where the runs are (ray_node.setup_view): the network on,
its own tree writable, the home read-only and its credentials hidden; the run after it has no
network and still reads what the setup made."""

import os
import shutil
import socket
import subprocess
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from autoresearch.execution import sandbox
from autoresearch.execution.ray_node import NodeJob, run_on_node
from autoresearch.records import RunSpec

pytestmark = pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")

SETUP = '''\
import os, socket
os.makedirs("data", exist_ok=True)
open("data/x.txt", "w").write("prepared")
home = os.path.expanduser("~")
for name, act in (("home", lambda: open(os.path.join(home, "planted"), "w").write("x")),
                  ("netrc", lambda: print("netrc says", open(os.path.join(home, ".netrc")).read()))):
    try:
        act()
        print(name, "OK")
    except OSError as exc:
        print(name, "refused", type(exc).__name__)
s = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), timeout=5)
print("setup network OK", s.recv(10).decode())
'''
TRAIN = '''\
import os, socket
print(open("data/x.txt").read())
try:
    socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), timeout=2)
    print("run network OK")
except OSError:
    print("run network refused")
print("---")
print("score: 1.0")
'''


@pytest.fixture
def server():
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.sendall(b"hello")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    srv.close()


def test_setup_is_sandboxed_with_the_network_and_the_run_without(tmp_path, server, monkeypatch):
    home = Path(os.path.expanduser("~/.cache/autoresearch-test-home")) / uuid.uuid4().hex
    home.mkdir(parents=True)
    (home / ".netrc").write_text("machine x password NETRC-SECRET\n")
    monkeypatch.setenv("HOME", str(home))
    try:
        repo = tmp_path / "repo"
        for name, text in {"task/train.py": TRAIN, "task/prepare.py": SETUP}.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(textwrap.dedent(text))
        subprocess.run("git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t commit -qm init",
                       shell=True, cwd=repo, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
        tree = subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo, capture_output=True, check=True).stdout
        view = sandbox.run_view(repo / "task", repo, repo / ".autoresearch" / "t", readonly=("prepare.py",))
        job = NodeJob(setup="python prepare.py", cache_dir=str(tmp_path / "cache"), cache_key="k")
        spec = RunSpec("python train.py", str(repo), {**os.environ, "PORT": str(server)}, 30, str(tmp_path / "log"),
                       commit=commit, repo_dir=str(repo), task_subdir="task", sandbox=view)
        out = run_on_node(tree, spec, job, "here")
        text = out.log.decode()
        assert out.result.exit_code == 0 and out.result.sandboxed, text
        assert "prepared" in text and "run network refused" in text
        (setup_log,) = (tmp_path / "cache").rglob("setup.log")
        said = setup_log.read_text()
        assert "setup network OK hello" in said and "home refused" in said and "netrc refused" in said, said
        assert "NETRC-SECRET" not in said and not (home / "planted").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)
