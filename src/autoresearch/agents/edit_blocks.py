"""SEARCH/REPLACE edit blocks (aider style): parse them from a model's answer, apply them.

    train.py
    ```python
    <<<<<<< SEARCH
    LR = 1e-3
    =======
    LR = 3e-3
    >>>>>>> REPLACE
    ```

The orchestrator, not the model, touches the files, so every rule is enforced here: the
SEARCH text must match the file exactly once, only editable files inside the task directory
may change (symlinks resolved), and every edited Python file must still parse. A set of
blocks applies completely or not at all; an `EditError` carries reasons written for the
model, which gets them back to try again.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

# Models miscount the marker characters now and then; aider accepts 5-9 as well.
_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_PATHLIKE = re.compile(r"^[\w./\\-]+$")
_CLOSEST_MAX_LINES = 5000  # beyond this the fuzzy hint costs more than it helps


@dataclass(frozen=True)
class EditBlock:
    path: str
    search: str
    replace: str


class EditError(Exception):
    """Blocks that cannot be applied; `reasons` are addressed to the model."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


def parse_blocks(text: str, default_path: str | None = None) -> list[EditBlock]:
    """The edit blocks in `text`, in order.

    The path is the last non-fence line before the SEARCH marker; when the model left it
    out, the previous block's path or else `default_path` (the only editable file) is used.
    Raises EditError for a block that is not closed or names no file.
    """
    lines = text.splitlines(keepends=True)
    blocks: list[EditBlock] = []
    errors: list[str] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        number = len(blocks) + len(errors) + 1
        path = _path_before(lines, i) or (blocks[-1].path if blocks else default_path)
        j = i + 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            j += 1
        k = j + 1
        while k < len(lines) and not _REPLACE.match(lines[k]):
            k += 1
        if j >= len(lines) or k >= len(lines):
            errors.append(f"edit block {number} is not closed: it needs `=======` and `>>>>>>> REPLACE` lines")
            break
        if path is None:
            errors.append(f"edit block {number} names no file: put the file path alone on the line before `<<<<<<< SEARCH`")
        else:
            blocks.append(EditBlock(path, "".join(lines[i + 1:j]), "".join(lines[j + 1:k])))
        i = k + 1
    if errors:
        raise EditError(errors)
    return blocks


def _path_before(lines: list[str], i: int) -> str | None:
    for line in reversed(lines[max(0, i - 3):i]):
        if _FENCE.match(line) or not line.strip():
            continue
        name = line.strip().strip("`*'\":").strip()
        name = re.sub(r"^(#+\s*|file(name)?\s*:\s*)", "", name, flags=re.IGNORECASE).strip("`*'\" ")
        # Prose ("Here is the change:") is not a path; a path has a dot or a slash.
        return name if _PATHLIKE.match(name) and ("." in name or "/" in name) else None
    return None


def apply_blocks(task_dir: Path, blocks: Sequence[EditBlock], editable: Iterable[str],
                 readonly: Iterable[str] = ()) -> list[str]:
    """Apply every block or none; returns the task-relative paths that changed.

    Raises EditError with one reason per problem found; the files are then untouched.
    """
    root = Path(task_dir).resolve()
    allowed = {_relative(root, root / e): e for e in editable}
    protected = {_relative(root, root / r) for r in readonly}
    original: dict[str, str | None] = {}  # rel -> content before (None: did not exist)
    current: dict[str, str | None] = {}
    reasons: list[str] = []
    for number, block in enumerate(blocks, 1):
        rel, why = _target(root, block.path, allowed, protected)
        if not why and rel not in current:
            original[rel], why = _read(root / rel)
            current[rel] = original[rel]
        if not why:
            updated, why = _replace(current[rel], block)
        if why:
            reasons.append(f"edit block {number} ({rel or block.path}): {why}")
            continue
        current[rel] = updated
    if reasons:
        raise EditError(reasons)
    changed = [rel for rel in current if current[rel] != original[rel]]
    if not changed:
        raise EditError(["the blocks change nothing: each REPLACE is identical to its SEARCH"])
    for rel in changed:
        if rel.endswith(".py"):
            why = _syntax_error(current[rel])
            if why:
                reasons.append(f"{rel} would no longer parse as Python: {why}")
    if reasons:
        raise EditError(reasons)
    _write_all(root, {rel: current[rel] for rel in changed}, original)
    return changed


def _read(path: Path) -> tuple[str | None, str]:
    if not path.exists():
        return None, ""
    if not path.is_file():
        return None, "not a regular file"
    try:
        # newline="": see the file's own line endings, so CRLF files stay CRLF.
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read(), ""
    except UnicodeDecodeError:
        return None, "not a UTF-8 text file; it cannot be edited with blocks"


def _relative(root: Path, path: Path) -> str | None:
    resolved = path.resolve()  # follows symlinks: a link out of the task is outside it
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else None


def _target(root: Path, name: str, allowed: dict, protected: set) -> tuple[str | None, str]:
    path = Path(name)
    rel = _relative(root, path if path.is_absolute() else root / path)
    shown = ", ".join(sorted(v for v in allowed.values()))
    if rel is None:
        return None, f"the path is outside the task directory; edit only {shown}"
    if rel in protected:
        return None, f"{rel} is read-only (checked byte for byte) and must not change; edit only {shown}"
    if rel not in allowed:
        return None, f"{rel} is not an editable file; edit only {shown}"
    return rel, ""


def _replace(content: str | None, block: EditBlock) -> tuple[str | None, str]:
    """(new content, "") or (content, reason); None content means the file does not exist."""
    search, replace = block.search, block.replace
    exists, content = content is not None, content or ""
    if "\r\n" in content:  # keep the file's own line endings
        search, replace = (s.replace("\r\n", "\n").replace("\n", "\r\n") for s in (search, replace))
    if not search.strip():
        if not exists or not content.strip():
            return replace, ""
        return content, "the SEARCH part is empty but the file is not; copy the lines to replace into SEARCH"
    if not exists:
        return content, "the file does not exist; to create it, leave the SEARCH part empty"
    count = content.count(search)
    if count == 0 and search.endswith("\n") and not content.endswith("\n") and content.endswith(search[:-1]):
        # The file's last line has no newline; the model's SEARCH always ends with one.
        search, replace, count = search[:-1], replace.removesuffix("\n").removesuffix("\r"), 1
    if count == 1:
        return content.replace(search, replace, 1), ""
    if count > 1:
        starts = _match_lines(content, search)
        return content, (f"the SEARCH text matches {count} times (lines {', '.join(map(str, starts[:5]))}); "
                         "include more surrounding lines so that it matches exactly once")
    return content, "the SEARCH text was not found exactly (every character and space must match)" + _closest(content, search)


def _match_lines(content: str, search: str) -> list[int]:
    out, start = [], content.find(search)
    while start != -1:
        out.append(content.count("\n", 0, start) + 1)
        start = content.find(search, start + 1)
    return out


def _closest(content: str, search: str) -> str:
    """A hint naming the lines that look most like the SEARCH text, verbatim."""
    lines, wanted = content.splitlines(), search.splitlines()
    if not wanted or len(lines) > _CLOSEST_MAX_LINES:
        return ""
    size, target = len(wanted), "\n".join(w.strip() for w in wanted)
    windows = [(at, "\n".join(x.strip() for x in lines[at:at + size])) for at in range(max(1, len(lines) - size + 1))]
    # Character-level similarity; quick_ratio (an upper bound) keeps the exact ratio to a few windows.
    matcher = difflib.SequenceMatcher(None, b=target, autojunk=False)

    def quick(window):
        matcher.set_seq1(window[1])
        return matcher.quick_ratio()

    best, best_at = 0.0, 0
    for at, text in sorted(windows, key=quick, reverse=True)[:20]:
        matcher.set_seq1(text)
        if matcher.ratio() > best:
            best, best_at = matcher.ratio(), at
    if best < 0.6:
        return ""
    excerpt = "\n".join(lines[best_at:best_at + size])
    return f"; the closest lines are {best_at + 1}-{best_at + size}, which read exactly:\n{excerpt}"


def _syntax_error(source: str) -> str:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        line = (exc.text or "").rstrip()
        return f"line {exc.lineno}: {exc.msg}" + (f": {line.strip()}" if line else "")
    except ValueError as exc:  # null bytes
        return str(exc)
    return ""


def _write_all(root: Path, contents: dict[str, str], original: dict[str, str | None]) -> None:
    """Write each file atomically; if one write fails, put back the ones already written."""
    done: list[str] = []
    try:
        for rel, text in contents.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.edit.{os.getpid()}")
            tmp.unlink(missing_ok=True)  # a file (or a link out of the task) planted under that name
            # A new file of ours, never through a link; newline="" writes the text as it is.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with open(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            if target.exists():
                os.chmod(tmp, target.stat().st_mode)
            os.replace(tmp, target)
            done.append(rel)
    except OSError:
        for rel in done:
            before = original[rel]
            if before is None:
                (root / rel).unlink(missing_ok=True)
            else:
                with open(root / rel, "w", encoding="utf-8", newline="") as fh:
                    fh.write(before)
        raise
