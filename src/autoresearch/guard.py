"""Guards: only editable files may change, read-only files stay byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from autoresearch.environment import safe_path
from autoresearch.errors import AutoresearchError


def file_hashes(directory: Path, names: Iterable[str]) -> dict[str, str]:
    out = {}
    for name in names:
        p = directory / name
        out[name] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing"
    return out


def changed_readonly(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))


def outside_scope(changed: Iterable[str], editable: Iterable[str]) -> list[str]:
    allowed = {str(Path(e)) for e in editable}
    return sorted(p for p in changed if str(Path(p)) not in allowed)


def escaping(directory: Path, changed: Iterable[str]) -> list[str]:
    """Changed paths that resolve outside `directory`: an editable file the agent turned into a
    symlink to /etc/passwd or to a file beyond the task is refused, not committed and run."""
    out = []
    for p in changed:
        try:
            safe_path(directory, p)
        except AutoresearchError:
            out.append(p)
    return sorted(out)


def content_hash(directory: Path, editable: Iterable[str]) -> str:
    """One hash of the editable files' contents: identical code, identical hash."""
    h = hashlib.sha256()
    for name in sorted(editable):
        p = directory / name
        h.update(name.encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"\0missing\0")
    return h.hexdigest()
