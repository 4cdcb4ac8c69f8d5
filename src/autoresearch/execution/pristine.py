"""What a run leaves in the task tree, and the pristine copy the trusted evaluation runs on.

After every run (issue 11):

- the files it created in the task directory are removed, except the declared outputs
  (`[task] outputs` globs: they stay after every run, so the morning finds the keep's
  checkpoint) and the curve file the loop reads (metrics.jsonl). Files that were there when the
  night began (tracked or not, changed or not) are never removed; files the baseline and its
  noise repeats created (your committed code: a data cache, `__pycache__`) stay too, unless a
  later run changed them, which makes them the run's (a poisoned cache is removed and
  regenerated, never read by the next experiment);
- a read-only file, a committed file that is not editable, or a file of the task's interpreter
  environment under the task, whose inode, size, mtime or ctime moved during the run: the run
  modified it at some moment, even if it put the bytes back (sandbox or not): a guard crash;
- each output glob must match a regular file the run wrote (new or changed); symlinks, and code
  (.py, .pth, .so, ...), are never outputs.

What the tree may keep is written to the run store (run-tree.json) before each run starts, since
the orchestrator may be killed before the run ends: a resume then removes the rest (`after_kill`),
ignored files included, before anything runs again.

The trusted evaluation (`[task] eval`) then runs on a copy of the repository made by git, never
from the work tree: every file as committed at the tag's base (the baseline's commit, so the
read-only files are the ones the night began with), the editable files as committed in the
experiment, and only this run's declared outputs linked (or copied) in. The copy is one checkout
a night, put back to exactly that tree before each evaluation (git's stat check, ctime included,
finds what an evaluation changed; what git does not know there is removed), so nothing an
evaluation leaves reaches the next one. In the sandbox it runs in a view of that copy.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable

from autoresearch.atomic import write_json
from autoresearch.errors import AutoresearchError
from autoresearch.execution.scratch import make as make_scratch

STORE_DIR = ".autoresearch"
CURVES = ("metrics.jsonl",)  # the curve files the loop reads from the task directory (store.CURVE_NAME)
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pth", ".so", ".pyd", ".dylib")  # never an output: importable
_LOOP_FILES = ("autoresearch.toml", "program.md")


# -- globs -------------------------------------------------------------------------------------
def _glob_regex(glob: str) -> re.Pattern:
    """`**` any number of folders, `*` `?` `[...]` within one name; a match of a folder covers
    everything in it (`checkpoints` or `ckpt*` names the folder's files)."""
    parts, out = glob.strip("/").split("/"), []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        rx = _name_regex(part)
        out.append(rx + ("" if last else "/"))
    return re.compile("^" + "".join(out) + "(?:/.*)?$", re.S)


def _name_regex(part: str) -> str:
    """One path component of a glob as a regex: `*` and `?` never cross a `/`."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in part[i + 2:] or c == "[" and part[i + 1:i + 2] == "]":
            end = part.index("]", i + 2)
            body = part[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def matches(path: str, globs: Iterable[str]) -> bool:
    return any(_glob_regex(g).match(path) for g in globs)


def outputs_problem(globs: Iterable[str], protected: Iterable[str]) -> str | None:
    """Why `[task] outputs` cannot be used, with the fix; None when it can. `protected`: the
    editable and read-only files, which an output may never be (it would replace them in the
    evaluation's copy)."""
    protected = [*protected, *_LOOP_FILES]
    for glob in globs:
        if not glob.strip() or "\0" in glob:
            return f"{glob!r} is not a path; give globs relative to the task directory, e.g. \"checkpoints/*.pt\""
        path = PurePosixPath(glob)
        if path.is_absolute() or glob.startswith("~"):
            return f"{glob!r} is absolute; outputs live in the task directory: give it relative to it"
        if ".." in path.parts:
            return f"{glob!r} leaves the task directory (..); outputs live in it"
        if path.parts and path.parts[0] in (".git", STORE_DIR) or ".git" in path.parts:
            return f"{glob!r} names git's or the run store's files; outputs are the files your run writes"
        hit = next((p for p in protected if matches(p, [glob])), None)
        if hit is not None:
            return (f"{glob!r} matches {hit}, which is editable, read-only or the loop's own; an output would "
                    f"replace it in the evaluation's copy: name the run's files more narrowly, e.g. \"out/*.pt\"")
        if any(glob.endswith(s) for s in CODE_SUFFIXES):
            return f"{glob!r} names code; an output is data (a checkpoint, predictions), never an importable file"
    return None


# -- the task tree -----------------------------------------------------------------------------
def _stamp(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class Tree:
    """The files (path relative to the task directory -> lstat stamp) and folders of a task tree;
    `.git` and the run store left out."""

    files: dict[str, tuple]
    dirs: frozenset[str]


def scan(task_dir: Path) -> Tree:
    files, dirs = {}, set()
    todo = [("", str(task_dir))]
    while todo:
        rel, path = todo.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue  # unreadable or vanished: nothing of it can be judged, nothing removed
        for entry in entries:
            name = f"{rel}{entry.name}"
            if entry.name == ".git" or name == STORE_DIR:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                dirs.add(name)
                todo.append((name + "/", entry.path))
            else:
                files[name] = _stamp(st)
    return Tree(files, frozenset(dirs))


def _stamps(task_dir: Path, names: Iterable[str]) -> dict[str, tuple | None]:
    out = {}
    for name in names:
        try:
            out[name] = (_stamp(os.lstat(task_dir / name)), _stamp(os.stat(task_dir / name)))
        except OSError:
            out[name] = None
    return out


@dataclass
class Night:
    """What one loop knows across its runs: the tree when it began (never removed) and what the
    baseline's runs created (kept while unchanged)."""

    began: Tree | None = None
    baseline: dict[str, tuple] = field(default_factory=dict)
    baseline_dirs: set[str] = field(default_factory=set)
    readonly_hashes: dict[str, str] = field(default_factory=dict)  # untracked read-only files, as first seen
    tracked: frozenset[str] | None = None  # git's files in the task directory
    cache: "_Cache | None" = None  # the evaluation's checkout of the base


@dataclass
class Before:
    """The task tree as one run began."""

    tree: Tree
    readonly: dict[str, tuple | None]


@dataclass
class Left:
    """What one run left: its outputs, the read-only files it touched, what was removed."""

    outputs: list[str]
    missing: list[str]  # output globs no regular file of this run matched
    not_outputs: list[str]  # files matching a glob that can never be an output (symlinks, code)
    touched: list[str]  # read-only (or interpreter) files it modified at some moment
    removed: list[str]
    created: list[str] = field(default_factory=list)  # new files of this run that are not outputs


def interpreter_root(task) -> str | None:
    """The task's interpreter environment (a venv) relative to the task directory, when inside it."""
    try:
        python = Path(task.interpreter.python)
    except AutoresearchError:
        return None
    root = python.parent.parent
    task_dir = Path(task.dir)
    if not root.is_relative_to(task_dir) or root == task_dir:
        return None
    return root.relative_to(task_dir).as_posix()


def night_of(loop) -> Night:
    return loop.pristine_night


def before_run(loop) -> Before:
    tree = scan(loop.task.dir)
    night = night_of(loop)
    if night.began is None:
        night.began = tree
    write_json(loop.store.run_tree_path, {  # in the store, which no run can see or reach
        "began": sorted(night.began.files), "began_dirs": sorted(night.began.dirs),
        "baseline": {p: list(s) for p, s in night.baseline.items()}, "baseline_dirs": sorted(night.baseline_dirs)},
        durable=False)  # a killed orchestrator leaves the page cache intact
    return Before(tree, _stamps(loop.task.dir, loop.task.readonly))


def after_run(loop, before: Before, *, users_code: bool) -> Left:
    """Outputs checked, touched read-only files found, and what the run created removed.

    `users_code`: the run was the baseline's or a noise repeat's (the committed code): what it
    creates stays, as the night's files."""
    left = _left(loop, before, users_code)
    loop.store.run_tree_path.unlink(missing_ok=True)  # done: nothing for a resume to remove
    return left


def _left(loop, before: Before, users_code: bool) -> Left:
    task, night = loop.task, night_of(loop)
    task_dir = Path(task.dir)
    after = scan(task_dir)
    globs = tuple(task.config.task.outputs)
    touched = [n for n, s in _stamps(task_dir, task.readonly).items() if s != before.readonly.get(n)]
    # Every committed file but the editable ones is read-only to a run (a data file the eval reads).
    editable = {PurePosixPath(e).as_posix() for e in task.editable}
    touched += [p for p in _tracked(loop, night) if p not in editable and before.tree.files.get(p) != after.files.get(p)]
    venv = interpreter_root(task)
    if venv is not None:
        # Changed, or new (a .pth, a sitecustomize): the eval's `python` would run it. A new
        # bytecode file is Python's own caching, removed with the rest.
        touched += [p for p, s in after.files.items() if _under(p, venv) and before.tree.files.get(p) != s
                    and (p in before.tree.files or not p.endswith((".pyc", ".pyo")))]
        touched += [p for p in before.tree.files if _under(p, venv) and p not in after.files]
    produced = [p for p, s in after.files.items() if before.tree.files.get(p) != s and matches(p, globs)]
    outputs = [p for p in produced if _is_output(p, after.files[p], globs)]
    not_outputs = sorted(set(produced) - set(outputs))
    missing = [g for g in globs if not any(matches(p, [g]) for p in outputs)]
    created = sorted(p for p in after.files if p not in before.tree.files and p not in outputs and p not in CURVES
                     and not _derived(p) and not p.endswith((".pyc", ".pyo")))
    shared = _shared_baseline(loop)
    if users_code:
        for p, s in after.files.items():
            if p not in night.began.files:
                night.baseline[p] = s
        night.baseline_dirs |= set(after.dirs) - set(night.began.dirs)
        shared[0].update(night.baseline)
        shared[1].update(night.baseline_dirs)
        return Left(sorted(outputs), missing, not_outputs, sorted(touched), [], created)
    doomed = []
    for p, s in sorted(after.files.items()):
        if _kept(p, s, night.began.files, globs) or night.baseline.get(p) == s:
            continue
        if p in shared[0] and p not in night.baseline and p not in before.tree.files:
            night.baseline[p] = s  # a worker's tree: the file the baseline made in the main one, made here once
            night.baseline_dirs |= {d for d in shared[1] if d in after.dirs}
            continue
        doomed.append(p)
    removed = _remove(task_dir, doomed, after.dirs - night.began.dirs - night.baseline_dirs)
    return Left(sorted(outputs), missing, not_outputs, sorted(set(touched)), removed, created)


def after_kill(loop) -> list[str]:
    """What a run left when the orchestrator died under it (run-tree.json still there), removed as
    `after_run` would have: files that were not there when the night began, nor the baseline's
    unchanged, nor outputs, curves or the loop's own; git's files (after the resume's reset) stay.

    A run killed with the orchestrator had no `after_run`: without this, what it planted (an
    ignored json.pyc every later `import json` loads) would be part of the tree the next night began with."""
    path = loop.store.run_tree_path
    kept = _read_run_tree(path)
    if kept is None:
        path.unlink(missing_ok=True)
        return []
    began, baseline, kept_dirs = kept
    task_dir, globs = Path(loop.task.dir), tuple(loop.task.config.task.outputs)
    tracked = set(filter(None, loop.git("ls-files", "-z", "--", ".").split("\0")))
    now = scan(task_dir)
    doomed = [p for p, s in sorted(now.files.items())
              if not _kept(p, s, began | tracked, globs) and baseline.get(p) != s]
    removed = _remove(task_dir, doomed, now.dirs - kept_dirs)
    path.unlink(missing_ok=True)
    return removed


def _read_run_tree(path: Path) -> tuple[set[str], dict[str, tuple], set[str]] | None:
    """run-tree.json as `before_run` wrote it: (began, baseline stamps, kept folders); None when
    there is none, or it is not one (written atomically: only a hand edit tears it)."""
    try:
        kept = json.loads(path.read_text())
        return (set(kept["began"]), {p: tuple(s) for p, s in kept["baseline"].items()},
                {*kept["began_dirs"], *kept["baseline_dirs"]})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _kept(path: str, stamp: tuple, began, globs) -> bool:
    """Never a run's to lose: there when the night began, an output, a curve, the loop's own."""
    return path in began or path in CURVES or _derived(path) or _is_output(path, stamp, globs)


def _remove(task_dir: Path, files: Iterable[str], dirs: Iterable[str]) -> list[str]:
    """`files` removed (those that were), then the `dirs` left empty, deepest first."""
    removed = [p for p in files if _remove_file(task_dir / p)]
    for d in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        try:
            os.rmdir(task_dir / d)  # only when empty: a kept output keeps its folder
        except OSError:
            pass
    return removed


def _shared_baseline(loop) -> tuple[dict, set]:
    """What the baseline created, told to the workers' loops (their worktrees never ran it)."""
    shared = getattr(loop, "shared", None)
    if shared is None:
        return {}, set()
    return shared.pristine_baseline


def _is_output(path: str, stamp: tuple, globs) -> bool:
    """A regular file matching an output glob, and no code: it stays after every run (the
    checkpoint of a keep is there in the morning); only this run's go to its eval."""
    return stat.S_ISREG(stamp[2]) and not path.endswith(CODE_SUFFIXES) and matches(path, globs)


def _tracked(loop, night: Night) -> frozenset[str]:
    """The files git tracks in the task directory (relative to it), listed once a night."""
    if night.tracked is None:
        out = loop.git("ls-files", "-z", "--", ".")
        night.tracked = frozenset(p for p in out.split("\0") if p)
    return night.tracked


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _derived(path: str) -> bool:
    """The loop's own files in the task directory (store.derived_files): never a run's to lose."""
    from autoresearch.store import DERIVED_FILES

    name = path.rsplit("/", 1)[-1]
    return path in DERIVED_FILES or fnmatch.fnmatch(name, ".*.tmp.*") or fnmatch.fnmatch(name, ".*.link.*")


def _remove_file(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            return False
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return False


def guard_detail(left: Left) -> str | None:
    """The guard crash's detail for missing outputs, else None."""
    if not left.missing:
        return None
    detail = f"the run's declared output(s) {', '.join(left.missing)} are missing"
    if left.not_outputs:
        detail += f" ({', '.join(left.not_outputs[:3])}: a symlink or code is never an output)"
    return detail


# -- the pristine copy ---------------------------------------------------------------------------
class NotPristine(AutoresearchError):
    """The evaluation's copy could not be made as promised: a guard crash, never an evaluation."""


def base_commit(records, fallback: str) -> str:
    """The tag's base: the baseline's commit (the first keep), or `fallback` before it exists."""
    from autoresearch.verdict import Status

    return next((r.commit for r in records if r.status is Status.KEEP and r.commit), fallback)


_GIT_STAT = ("-c", "core.trustctime=true", "-c", "core.checkStat=default", "-c", "core.fileMode=true",
             "-c", "core.symlinks=true", "-c", "core.sparseCheckout=false", "-c", "core.untrackedCache=false")


def _git(root: Path, index: Path, *args: str, input: str | None = None, env: dict | None = None) -> str:
    from autoresearch.gitrepo import _HARDENED, git_env

    proc = subprocess.run(["git", *_HARDENED, *_GIT_STAT, *args], cwd=root, capture_output=True, text=True,
                          input=input, env={**git_env(), "GIT_INDEX_FILE": str(index), **(env or {})},
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise NotPristine(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Copy:
    root: Path  # the repository's copy
    task_dir: Path  # the task directory in it
    outputs: list[Path]  # the outputs as placed in the copy

    def close(self) -> None:
        for path in self.outputs:  # the rest is put back before the next evaluation
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass
class _Cache:
    """One checkout of the base per loop, put back to exactly the committed tree before each eval
    (git's stat check, ctime included, finds every file an evaluation changed; anything else there
    is removed): a repository of 20,000 files is checked out once a night, not once an experiment."""

    base: str
    scratch: Path
    index: Path
    root: Path
    env: dict


def _new_cache(loop, base: str) -> _Cache:
    scratch = make_scratch("autoresearch-eval-")  # a killed night's is swept at the next start (scratch.py)
    weakref.finalize(loop, shutil.rmtree, str(scratch), True)  # at the loop's end, or the process's
    root = scratch / "repo"
    root.mkdir()
    git_dir = loop.git("rev-parse", "--absolute-git-dir").strip()
    cache = _Cache(base, scratch, scratch / "index", root, {"GIT_DIR": git_dir, "GIT_WORK_TREE": str(root)})
    _git(root, cache.index, "read-tree", base, env=cache.env)
    _git(root, cache.index, "checkout-index", "-a", "-f", "-u", env=cache.env)
    return cache


def _put_back(cache: _Cache) -> bool:
    """The copy as its index says (True), else False: what changed checked out again, what is not
    git's removed, then both checked once more."""
    def changed() -> list[str]:
        out = _git(cache.root, cache.index, "diff-files", "--name-only", "-z", env=cache.env)
        return [p for p in out.split("\0") if p]

    def others() -> list[str]:
        out = _git(cache.root, cache.index, "ls-files", "-o", "-z", "--directory", env=cache.env)  # ignored ones too
        return [p for p in out.split("\0") if p]

    for rel in others():
        path = cache.root / rel.rstrip("/")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    paths = changed()
    if paths:
        _git(cache.root, cache.index, "checkout-index", "-f", "-u", "-z", "--stdin", input="\0".join(paths) + "\0",
             env=cache.env)
    return not changed() and not others()


def make_copy(loop, base: str, commit: str, outputs: Iterable[str]) -> Copy:
    """The repository as committed at `base`, the editable files as committed in `commit`, and
    the run's `outputs` (relative to the task directory) in; nothing else."""
    task, night = loop.task, night_of(loop)
    prefix = loop.git.prefix()
    editable = [f"{prefix}{name}" for name in task.editable]
    for fresh in (False, True):
        cache = night.cache
        if fresh or cache is None or cache.base != base or not cache.root.is_dir():
            if cache is not None:
                shutil.rmtree(cache.scratch, ignore_errors=True)
            cache = night.cache = _new_cache(loop, base)
        listed = _git(cache.root, cache.index, "ls-tree", "-z", "--full-tree", commit, "--", *editable, env=cache.env)
        found = {}
        for entry in filter(None, listed.split("\0")):
            meta, path = entry.split("\t", 1)
            mode, _, sha = meta.split()
            found[path] = f"{mode} {sha}\t{path}"
        lines = [found.get(p, f"0 {'0' * 40}\t{p}") for p in editable]  # mode 0: not in the commit
        _git(cache.root, cache.index, "update-index", "--index-info", input="\n".join(lines) + "\n", env=cache.env)
        if _put_back(cache):
            break
    else:  # not even a fresh checkout matches its index
        raise NotPristine("the evaluation's copy does not match the commit after a fresh checkout (git diff-files)")
    task_dir = cache.root / prefix if prefix else cache.root
    task_dir.mkdir(parents=True, exist_ok=True)
    _readonly_not_committed(loop, task_dir)
    placed = _place_outputs(Path(task.dir), task_dir, outputs)
    return Copy(cache.root, task_dir, placed)


def _readonly_not_committed(loop, task_dir: Path) -> None:
    """A read-only file git does not track (a data file the user keeps beside the code) comes from
    the work tree, only while it is byte-identical to what it was when the night began."""
    night = night_of(loop)
    for name in loop.task.readonly:
        target = task_dir / name
        if os.path.lexists(target):
            continue
        source = Path(loop.task.dir) / name
        if not source.is_file() or source.is_symlink():
            raise NotPristine(f"the read-only file {name} is neither committed nor a regular file in the task")
        digest = _file_hash(source)
        first = night.readonly_hashes.setdefault(name, digest)
        if digest != first:
            raise NotPristine(f"the read-only file {name} (not committed) changed since the night began; restore it")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _link(source: Path, target: Path) -> None:
    os.link(source, target, follow_symlinks=False)  # another file system: OSError, and a copy instead


def _place_outputs(source_dir: Path, task_dir: Path, outputs: Iterable[str]) -> list[Path]:
    outputs = list(outputs)
    placed, need = [], 0
    for rel in outputs:
        if os.path.lexists(task_dir / rel):
            raise NotPristine(f"the output {rel} has the name of a committed file; outputs never replace those")
        st = os.lstat(source_dir / rel)
        if not stat.S_ISREG(st.st_mode):
            raise NotPristine(f"the output {rel} is not a regular file")
        need += st.st_size
    copied = []
    for rel in outputs:
        source, target = source_dir / rel, task_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            _link(source, target)  # no bytes moved: a 20 GB checkpoint costs nothing
        except OSError:
            copied.append((source, target))
        placed.append(target)
    if copied:
        size = sum(os.lstat(s).st_size for s, _ in copied)
        free = shutil.disk_usage(task_dir).free
        if size > free - (64 << 20):
            raise NotPristine(f"the run's outputs ({size / 2**20:.0f} MB) do not fit in the evaluation's copy "
                              f"({free / 2**20:.0f} MB free in {tempfile.gettempdir()}); set TMPDIR to a disk with room")
        for source, target in copied:
            try:
                shutil.copyfile(source, target, follow_symlinks=False)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise NotPristine(f"no space left copying the output {source.name} into the evaluation's copy") from None
                raise
    return placed


def eval_hint(left: Left | None) -> str:
    """Said with a failed eval: the files the run wrote that the eval's copy did not get."""
    if left is None or not left.created:
        return ""
    return f" (it runs on a pristine copy with only [task] outputs; the run also wrote {shown(left.created)})"


def shown(paths: list[str]) -> str:
    """The first three paths, and how many more."""
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def touched(attempt) -> list[str]:
    """The read-only files an attempt's run modified at some moment (its Left), else []."""
    left = attempt.left
    return list(left.touched) if left is not None else []
