"""Crash-safe file writes: a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


def _beside(path: Path, kind: str) -> Path:
    """A temporary name beside `path`, of this thread: workers are threads of one process, and
    two of them writing one file (the strategy memo, the analysis) must not share a temporary.
    The pid comes last: results_tsv.remove_stale_temporaries reads it there."""
    return path.with_name(f".{path.name}.{kind}.{threading.get_native_id()}.{os.getpid()}")


def write_bytes(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` atomically. `durable` also survives a power cut (fsync); a killed
    process never leaves a partial file either way."""
    path = Path(path)
    tmp = _beside(path, "tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_text(path: str | Path, text: str, *, durable: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), durable=durable)


def write_json(path: str | Path, data, *, durable: bool = True) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", durable=durable)


LINK_ATTEMPTS = 12  # then a copy: pauses from 0.1 ms doubling up to 20 ms, about 0.1 s in all
_FIRST_PAUSE = 0.0001
_LONGEST_PAUSE = 0.02


def mirror(source: str | Path, target: str | Path) -> None:
    """Make `target` show the content of `source` without copying it (a hard link, swapped in atomically).

    A writer replacing `source` at the same moment can make the link fail; it is retried with a
    growing pause, and after LINK_ATTEMPTS the content is copied (atomically) instead, so a busy
    source never fails the mirror. A missing source is an error."""
    target = Path(target)
    tmp = _beside(target, "link")
    tmp.unlink(missing_ok=True)
    if not _link_with_retries(Path(source), tmp):
        write_bytes(target, Path(source).read_bytes(), durable=False)
        return
    os.replace(tmp, target)
    # rename(2) does nothing when both names are links to one file (target already showed this
    # version): the temporary name would stay behind.
    tmp.unlink(missing_ok=True)


def _link_with_retries(source: Path, tmp: Path) -> bool:
    """True once `tmp` is a hard link to `source`; False when every attempt lost the race."""
    pause = _FIRST_PAUSE
    for _ in range(LINK_ATTEMPTS):
        try:
            os.link(source, tmp)
            return True
        except FileNotFoundError:
            # Linux refuses to link an inode that a concurrent atomic write just renamed away
            # (its link count is 0): the path already names the new file, so try again.
            if not os.path.exists(source):
                raise
        time.sleep(pause)  # let the writer finish its rename: retrying at once loses again on 2 cores
        pause = min(2 * pause, _LONGEST_PAUSE)
    return False


def append_line(path: str | Path, line: str) -> None:
    """Append one line with a single write(2) on an O_APPEND descriptor, then fsync.

    One write keeps concurrent appenders from interleaving; a kill mid-write can only
    leave a torn last line, which the reader detects (no newline) and drops.
    """
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # regular files write fully; this is belt and braces
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
