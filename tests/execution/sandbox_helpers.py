"""What the sandbox tests share: a repository with a store and a fake home, the view of a run
over it, a listener on 127.0.0.1. (The processes a run left are found by a marker, pids inside
the sandbox being its namespace's: helpers.survivors.)"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from autoresearch.execution.sandbox import View, run_view


@pytest.fixture
def repo(tmp_path):
    """A repository with a task folder, a run store holding a ledger, a fake home with credentials."""
    root = tmp_path / "repo"
    task = root / "task"
    (task / ".autoresearch" / "t" / "runs" / "0001").mkdir(parents=True)
    (task / ".autoresearch" / "t" / "ledger.jsonl").write_text('{"status": "keep"}\n')
    (root / ".git" / "hooks").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / "shared.py").write_text("HELPER = 1\n")
    (task / "train.py").write_text("X = 1\n")
    (task / "prepare.py").write_text("DATA = 'fixed'\n")
    (task / "autoresearch.toml").write_text("[task]\n")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    (home / ".netrc").write_text("machine x login u password p\n")
    return task


def view_for(task: Path, **kw) -> View:
    v = run_view(task, task.parent, task / ".autoresearch" / "t", readonly=("prepare.py",), **kw)
    return View(root=v.root, hidden=v.hidden, writable=v.writable, readonly=v.readonly, network=v.network,
                home=str(task.parent.parent / "home"))


def _listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    return server
