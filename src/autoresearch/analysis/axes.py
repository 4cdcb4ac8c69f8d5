"""What each experiment changed: its axes of change, from the diff and the description.

An experiment's change is described by
- constant moves: `LR down` (0.001 -> 0.0005), `ARCH = cnn`, `USE_BN on`, `EXTRA added`;
- code regions: `def MLP.forward`, `class CNN`, `top-level code`, `file conf.yaml`;
- description words, used only when the diff says nothing (a ledger imported from a
  hand-kept results.tsv has no diff): words are noisy, a diff is not.

Extraction reads diff.patch and, for Python files, the file before and after the change
(one `git cat-file --batch` for all new experiments), so a changed line is mapped to the
innermost def or class by `ast` rather than by git's hunk header, which only knows
top-level names. It runs once per experiment: the result is cached in runs/NNNN/axes.json
and in one `axes.jsonl` index per tag, which the summary reads in a single pass (10,000
small files take seconds to open; one file takes milliseconds).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from autoresearch.atomic import append_line, write_json
from autoresearch.constants import find_constants
from autoresearch.records import Experiment, Status

AXES_VERSION = 1
INDEX_NAME = "axes.jsonl"
_NONE = {"commit": None}
TOP_LEVEL = "top-level code"
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@ ?(.*)$")
_SCOPE_LINE = re.compile(r"^(?:async\s+)?(def|class)\s+([A-Za-z_]\w*)")
_CONSTANT_LINE = re.compile(r"^[A-Z][A-Z0-9_]*\s*(?::[^=]*)?=")
_ARROW = re.compile(r"\b([A-Z][A-Z0-9_]*)\s*[:=]?\s*([^\s,;]+?)\s*->\s*([^\s,;]+)")
_SET = re.compile(r"\b([A-Z][A-Z0-9_]*)\s*->\s*([^\s,;]+)")
_WORD_MOVE = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(up|down|on|off)\b")
_VERB_MOVE = re.compile(r"\b(raise|increase|higher|double|lower|decrease|reduce|halve)d?\s+(?:the\s+)?([A-Z][A-Z0-9_]*)\b",
                        re.IGNORECASE)
_UP_VERBS = {"raise", "increase", "higher", "double"}
_WORD = re.compile(r"[a-z][a-z0-9_]{2,}")
STOPWORDS = frozenset("""
    the and for with from into onto than then that this use using used try tried trying add added
    adding remove removed change changed changes more less new old same also via per all but not
    instead back keep run runs again only just bit much slightly vs was were are its it's
""".split())
MAX_WORDS = 6


@dataclass
class FileDiff:
    old_path: str | None
    new_path: str | None
    removed: list[tuple[int, str, str]] = field(default_factory=list)  # (old line, text, hunk scope)
    added: list[tuple[int, str, str]] = field(default_factory=list)  # (new line, text, hunk scope)


def parse_diff(text: str) -> list[FileDiff]:
    """The changed lines of a `git diff`, per file, with the top-level scope each sits in
    according to the hunk (the fallback when the file itself cannot be read)."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    old_no = new_no = 0
    scope = TOP_LEVEL
    in_hunk = False
    for line in text.split("\n"):
        if line.startswith("diff --git "):
            current, in_hunk = FileDiff(None, None), False
            files.append(current)
            parts = line.split(" ")
            if len(parts) >= 4:  # paths without spaces; `---`/`+++` below refine them
                current.old_path, current.new_path = _strip_prefix(parts[2]), _strip_prefix(parts[3])
            continue
        if current is None:
            continue
        if not in_hunk and line.startswith("--- "):
            current.old_path = _strip_prefix(line[4:].strip())
            continue
        if not in_hunk and line.startswith("+++ "):
            current.new_path = _strip_prefix(line[4:].strip())
            continue
        match = _HUNK.match(line)
        if match:
            old_no, new_no, in_hunk = int(match.group(1)), int(match.group(2)), True
            header = _SCOPE_LINE.match(match.group(3).strip())
            scope = f"{header.group(1)} {header.group(2)}" if header else TOP_LEVEL
            continue
        if not in_hunk or not line or line[0] not in " +-":
            continue
        body = line[1:]
        scope = _hunk_scope(body, scope)
        if line[0] == "-":
            current.removed.append((old_no, body, scope))
            old_no += 1
        elif line[0] == "+":
            current.added.append((new_no, body, scope))
            new_no += 1
        else:
            old_no += 1
            new_no += 1
    return files


def _strip_prefix(path: str) -> str | None:
    if path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def _hunk_scope(body: str, scope: str) -> str:
    """Follow top-level `def`/`class` lines through a hunk; any other top-level statement ends them."""
    if not body or body[0] in " \t#@)]}" or not body.strip():
        return scope
    match = _SCOPE_LINE.match(body)
    return f"{match.group(1)} {match.group(2)}" if match else TOP_LEVEL


def scopes(source: str) -> list[tuple[int, int, str, str]] | None:
    """(first line, last line, kind, qualified name) of every def and class, outer first."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found: list[tuple[int, int, str, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                kind = "class" if isinstance(child, ast.ClassDef) else "def"
                found.append((first, child.end_lineno or child.lineno, kind, name))
                visit(child, f"{name}.")
            elif not isinstance(child, (ast.expr, ast.expr_context)):
                visit(child, prefix)  # defs inside `if`/`try` blocks at any level

    visit(tree, "")
    return found


def _region(line: int, spans: list[tuple[int, int, str, str]]) -> str:
    inner = None
    for first, last, kind, name in spans:  # outer spans come first, so the last match is innermost
        if first <= line <= last:
            inner = (kind, name)
    return f"{inner[0]} {inner[1]}" if inner else TOP_LEVEL


def _constant(text: str) -> tuple[str, Any] | None:
    """(NAME, value) when `text` is a module-level `NAME = literal` line."""
    if not _CONSTANT_LINE.match(text):
        return None
    try:
        found = find_constants(text)
    except Exception:  # a malformed `# search:` comment: still a changed line, just not a constant
        return None
    return (found[0].name, found[0].value) if found else None


def _is_code(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#")


def move_of(old: Any, new: Any) -> str:
    """How a constant moved: up, down, on, off, added, removed, or `= value` for text."""
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if isinstance(old, bool) and isinstance(new, bool):
        return "on" if new else "off"
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    if numbers:
        return "up" if new > old else "down"
    return f"= {new}"


def changes_from_diff(diff: str, sources: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Constant moves and code regions of one diff. `sources` maps `rev:path` keys
    ("old:train.py", "new:train.py") to file text, when it could be read."""
    sources = sources or {}
    constants: dict[str, list] = {}
    code: dict[str, None] = {}
    for f in parse_diff(diff):
        path = f.new_path or f.old_path or ""
        if not path.endswith(".py"):
            keys = _config_key_moves(sources.get(f"old:{f.old_path}"), sources.get(f"new:{f.new_path}"), path)
            if keys is None:
                code[f"file {path}"] = None
            for move in keys or ():
                constants[move["name"]] = move
            continue
        old_spans = _spans(sources.get(f"old:{f.old_path}"))
        new_spans = _spans(sources.get(f"new:{f.new_path}"))
        removed: dict[str, Any] = {}
        added: dict[str, Any] = {}
        for side, lines, spans, bucket in (("old", f.removed, old_spans, removed), ("new", f.added, new_spans, added)):
            for number, text, hunk_scope in lines:
                const = _constant(text)
                if const is not None:
                    bucket[const[0]] = const[1]
                elif _is_code(text):
                    if spans is not None:
                        code[_region(number, spans)] = None
                    else:
                        code[hunk_scope] = None
        for name in dict.fromkeys([*removed, *added]):
            old, new = removed.get(name), added.get(name)
            if name in removed and name in added and old == new and type(old) is type(new):
                continue  # only its comment or spacing changed
            constants[name] = {"name": name, "old": old, "new": new, "move": move_of(old, new)}
    return {"constants": list(constants.values()), "code": list(code)}


def _config_key_moves(old: str | None, new: str | None, path: str) -> list[dict] | None:
    """The keys of a YAML/JSON/TOML config file that changed, as constant moves (`optimizer.lr up`).

    None when the file is no config file or either side cannot be read: then it is a changed file."""
    from autoresearch import configfile

    if configfile.format_of(path) is None or old is None or new is None:
        return None
    try:
        before = configfile.flatten(configfile.load(old, path))
        after = configfile.flatten(configfile.load(new, path))
    except Exception:  # a broken revision of the user's file: a changed file, not a crash of the analysis
        return None
    return [{"name": k, "old": before.get(k), "new": after.get(k), "move": move_of(before.get(k), after.get(k))}
            for k in dict.fromkeys([*before, *after])
            if before.get(k) != after.get(k) or type(before.get(k)) is not type(after.get(k))]


def _spans(source: str | None):
    return scopes(source) if source is not None else None


def changes_from_description(description: str, metric_names: Iterable[str] = ()) -> dict[str, Any]:
    """Constant moves a description states (`LR 0.001 -> 0.0005`, `X -> 2`, `LR down`, `lower LR`), else its words."""
    constants: dict[str, dict] = {}
    for name, old, new in _ARROW.findall(description):
        a, b = _literal(old), _literal(new)
        constants[name] = {"name": name, "old": a, "new": b, "move": move_of(a, b)}
    for name, new in _SET.findall(description):  # `X -> 2.0`: the value, not the direction
        constants.setdefault(name, {"name": name, "old": None, "new": _literal(new), "move": "set"})
    for name, word in _WORD_MOVE.findall(description):
        constants.setdefault(name, {"name": name, "old": None, "new": None, "move": word})
    for verb, name in _VERB_MOVE.findall(description):
        if name.isupper():
            move = "up" if verb.lower() in _UP_VERBS else "down"
            constants.setdefault(name, {"name": name, "old": None, "new": None, "move": move})
    if constants:
        return {"constants": list(constants.values()), "code": [], "words": []}
    skip = STOPWORDS | {m.lower() for m in metric_names}
    words = [w for w in dict.fromkeys(_WORD.findall(description.lower())) if w not in skip]
    return {"constants": [], "code": [], "words": words[:MAX_WORDS]}


def _literal(text: str) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")
    return value if isinstance(value, (int, float, str, bool)) else text


# -- per-experiment entries and their cache ------------------------------------------------


def axes_of(entry: dict) -> list[str]:
    """The axes an entry touches: constant names, code regions, or `topic word`s."""
    return [c["name"] for c in entry.get("constants", ())] + list(entry.get("code", ())) + \
        [f"topic {w}" for w in entry.get("words", ())]


def moves_of(entry: dict) -> list[str]:
    """Constant moves with their direction (`LR down`): finer than axes, for losing regions."""
    return [f"{c['name']} {c['move']}" for c in entry.get("constants", ())]


def labels_of(entry: dict) -> list[str]:
    """What changed, for people: moves, then code regions, then description words."""
    return moves_of(entry) + list(entry.get("code", ())) + [f"topic {w}" for w in entry.get("words", ())]


def untrained(record: Experiment) -> bool:
    """Nothing learnt about the change: an agent or guard failure, a run whose node died (Ray),
    or a duplicate that was not run again."""
    return record.verdict.untrained


_loaded: dict[Path, tuple[int, int, dict[int, dict]]] = {}  # path -> (inode, bytes read, entries)


def load_index(path: Path) -> dict[int, dict]:
    """The cached entries of a tag by iteration (a later line wins; an entry is valid for
    the ledger record with the same commit: an interrupted iteration redone has another).

    The index only grows, so within one process (the loop's observer) only the lines
    appended since the last call are parsed: the refresh after an iteration stays cheap
    however long the run. A replaced or shrunk file is read again from the start.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        _loaded.pop(path, None)
        return {}
    inode, offset, entries = _loaded.get(path, (stat.st_ino, 0, {}))
    if inode != stat.st_ino or stat.st_size < offset:
        offset, entries = 0, {}
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read()
    complete = raw[: raw.rfind(b"\n") + 1]  # a torn last line is read again next time
    for entry in _parse_lines(complete.decode("utf-8", errors="replace").splitlines()):
        if isinstance(entry, dict) and entry.get("v") == AXES_VERSION:
            entries[entry.get("iteration")] = entry
    _loaded[path] = (stat.st_ino, offset + len(complete), entries)
    return dict(entries)


def _parse_lines(lines: list[str]) -> list:
    """The JSON value of every line, skipping lines that are not JSON. One parse of them all
    as an array when it can (a third faster), else line by line."""
    filled = [line for line in lines if line.strip()]
    try:
        values = json.loads("[" + ",".join(filled) + "]")
        if len(values) == len(filled):
            return values
    except ValueError:
        pass
    values = []
    for line in filled:
        try:
            values.append(json.loads(line))
        except ValueError:
            continue
    return values


def ensure_axes(task, store, records: Sequence[Experiment]) -> dict[int, dict]:
    """Every record's entry, by iteration: read from the index, the missing ones extracted
    (and cached) now. Costs one git process when anything is missing, none otherwise."""
    index_path = store.root / INDEX_NAME
    cached = load_index(index_path)
    missing = [r for r in records if cached.get(r.iteration, _NONE)["commit"] != r.commit]
    if missing:
        fresh = extract(task, store, missing)
        store.root.mkdir(parents=True, exist_ok=True)
        for record, entry in zip(missing, fresh):
            cached[entry["iteration"]] = entry
            append_line(index_path, json.dumps(entry, sort_keys=True))
            run_dir = store.run_path(record.iteration)
            if run_dir.is_dir():
                write_json(run_dir / "axes.json", entry, durable=False)
    return {r.iteration: cached[r.iteration] for r in records}


def extract(task, store, records: Sequence[Experiment]) -> list[dict]:
    """Entries for `records`, reading every file version they need in one git call."""
    diffs = {}
    wanted: dict[str, None] = {}
    python_editable = [p for p in getattr(task, "editable", ()) if _has_knobs(p)]  # and config files
    for r in records:
        patch = store.run_path(r.iteration) / "diff.patch"
        diff = patch.read_text(encoding="utf-8", errors="replace") if patch.is_file() else ""
        diffs[r.iteration] = diff
        for f in parse_diff(diff) if r.commit != r.parent else ():
            if f.old_path and _has_knobs(f.old_path):
                wanted[f"{r.parent}:{f.old_path}"] = None
            if f.new_path and _has_knobs(f.new_path):
                wanted[f"{r.commit}:{f.new_path}"] = None
        if r.status is Status.KEEP:
            for path in python_editable:  # the best's constants, for "never tried" hints
                wanted[f"{r.commit}:./{path}"] = None
    blobs = read_blobs(task.dir, list(wanted)) if wanted else {}
    metric_names = {n for r in records for n in r.metrics}
    entries = []
    for r in records:
        entry: dict[str, Any] = {"v": AXES_VERSION, "iteration": r.iteration, "commit": r.commit}
        diff = diffs[r.iteration]
        changes = None
        if diff and r.commit != r.parent:
            sources = {}
            for f in parse_diff(diff):
                sources[f"old:{f.old_path}"] = blobs.get(f"{r.parent}:{f.old_path}")
                sources[f"new:{f.new_path}"] = blobs.get(f"{r.commit}:{f.new_path}")
            changes = changes_from_diff(diff, sources)
            entry["source"] = "diff"
        if not changes or not (changes["constants"] or changes["code"]):
            changes = changes_from_description(r.description, metric_names) if r.iteration else \
                {"constants": [], "code": [], "words": []}  # the baseline changes nothing
            entry["source"] = "description"
        entry.update({k: v for k, v in changes.items() if v})
        if r.status is Status.KEEP:
            snapshot = {}
            for path in python_editable:
                source = blobs.get(f"{r.commit}:./{path}")
                if source is not None:
                    snapshot.update(_constant_values(source) if path.endswith(".py") else _config_values(source, path))
            if snapshot:
                entry["snapshot"] = snapshot
        entries.append(entry)
    return entries


def _has_knobs(path: str) -> bool:
    from autoresearch.knob_sources import has_knobs

    return has_knobs(path)


def _config_values(source: str, path: str) -> dict[str, Any]:
    from autoresearch.knob_sources import values

    return values(source, path)


def _constant_values(source: str) -> dict[str, Any]:
    try:
        return {c.name: c.value for c in find_constants(source)}
    except Exception:  # unparsable at that commit: no snapshot rather than no summary
        return {}


def read_blobs(cwd: Path, specs: list[str]) -> dict[str, str]:
    """`rev:path` -> text for every spec git can resolve, in one `git cat-file --batch`."""
    try:
        proc = subprocess.run(["git", "cat-file", "--batch"], cwd=cwd, input="\n".join(specs).encode() + b"\n",
                              capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return {}
    if proc.returncode != 0:
        return {}
    out, pos, blobs = proc.stdout, 0, {}
    for spec in specs:
        end = out.find(b"\n", pos)
        if end < 0:
            break
        header = out[pos:end].split(b" ")
        pos = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            blobs[spec] = out[pos:pos + size].decode("utf-8", errors="replace")
            pos += size + 1
        elif len(header) == 3 and header[2].isdigit():
            pos += int(header[2]) + 1  # a tree or commit: skip its body
    return blobs
