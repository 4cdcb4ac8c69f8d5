"""Scratch folders in the temporary directory that a killed orchestrator does not leave for good.

`make(prefix)` is `tempfile.mkdtemp` with an owner mark (`.owner`: this process's pid, its start
time and the host). Whoever makes one still removes it when done (a finalizer, a `finally`); a
SIGKILL runs neither, so `sweep()`, at every start or resume of a loop, removes the marked folders
whose owner is dead: the pristine evaluation checkout a killed night left in /tmp, say.

Never someone else's: a folder without a mark (another program's, or one being made), another
user's, another host's (a /tmp shared between machines or containers), or one whose owner still
runs (same pid and start time: a pid reused by another process does not count as the owner).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import psutil

from autoresearch.atomic import write_json
from autoresearch.execution.supervise import CREATE_TIME_TOLERANCE

PREFIX = "autoresearch-"
MARK = ".owner"


def make(prefix: str) -> Path:
    """A new folder in the temporary directory, marked as this process's."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"a scratch prefix starts with {PREFIX!r}: {prefix!r}")
    path = Path(tempfile.mkdtemp(prefix=prefix))
    write_json(path / MARK, {"pid": os.getpid(), "create_time": psutil.Process().create_time(),
                             "host": socket.gethostname()}, durable=False)
    return path


def sweep() -> list[Path]:
    """The marked folders of dead owners in the temporary directory, removed; returns them."""
    root = Path(tempfile.gettempdir())
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(PREFIX)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or not _orphaned(Path(entry.path)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def _orphaned(path: Path) -> bool:
    """The folder's mark names a process of this host that is gone."""
    mark = path / MARK
    try:
        if not stat.S_ISREG(os.lstat(mark).st_mode):
            return False
        owner = json.loads(mark.read_text())
        pid, started, host = int(owner["pid"]), float(owner["create_time"]), owner["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no mark (yet), or not ours: never touched
    if host != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(pid).create_time() - started) > CREATE_TIME_TOLERANCE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # cannot tell: kept
