"""The git operations the loop needs, as one small wrapper over the git CLI."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil

from autoresearch.atomic import write_bytes
from autoresearch.errors import GitError

_FALLBACK_IDENTITY = ("-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost")
# Settings that make git run code of the repository's choosing are off for every git the loop runs:
# hooks (an agent's .git/hooks/post-commit would run with our whole environment), fsmonitor.
_HARDENED = ("-c", f"core.hooksPath={os.devnull}", "-c", "core.fsmonitor=false")
# Of the GIT_* variables, only the identity reaches our git: GIT_DIR, GIT_CONFIG_*, GIT_SSH_COMMAND,
# GIT_EXEC_PATH and the like could point it at another repository or make it run a program.
_GIT_IDENTITY = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_NAME",
                 "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE")
# Files under the git directory an agent could use to change what the loop's git (or the user's)
# does or sees; compared after every agent call and run and put back (git_guard.py).
GUARDED = ("info/exclude", "hooks", "config")


def git_env() -> dict[str, str]:
    """The environment of the loop's git: the allow-listed names (no API keys), the identity."""
    from autoresearch.environment import safe_env

    env = {k: v for k, v in safe_env().items() if not k.startswith("GIT_")}
    env.update({k: os.environ[k] for k in _GIT_IDENTITY if k in os.environ})
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return env


class Git:
    """Git commands run in the task directory (which may be a subfolder of the repository)."""

    def __init__(self, cwd: str | Path):
        self.cwd = Path(cwd)
        self._identity: tuple[str, ...] | None = None
        self._prefix: str | None = None
        self._root: str | None = None

    def __call__(self, *args: str, check: bool = True, input: str | None = None) -> str:
        env = git_env()
        proc = subprocess.run(
            ["git", *_HARDENED, *args], cwd=self.cwd, capture_output=True, text=True, env=env,
            input=input, stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed in {self.cwd}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    # -- facts ---------------------------------------------------------------------------
    def is_repo(self) -> bool:
        return self("rev-parse", "--is-inside-work-tree", check=False).strip() == "true"

    def head(self) -> str:
        return self("rev-parse", "HEAD").strip()

    def has_commits(self) -> bool:
        return bool(self("rev-parse", "--verify", "-q", "HEAD", check=False).strip())

    def current_branch(self) -> str:
        return self("rev-parse", "--abbrev-ref", "HEAD").strip()

    def branch_exists(self, branch: str) -> bool:
        return bool(self("rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False).strip())

    def rev(self, ref: str) -> str:
        return self("rev-parse", ref).strip()

    def root(self) -> str:
        if self._root is None:
            self._root = self("rev-parse", "--show-toplevel").strip()
        return self._root

    def prefix(self) -> str:
        """The task directory relative to the repository root ('' or 'sub/dir/')."""
        if self._prefix is None:
            self._prefix = self("rev-parse", "--show-prefix").strip()
        return self._prefix

    def dirty_tracked(self) -> list[str]:
        """Tracked files with uncommitted changes (staged or not), relative to the repo root."""
        out = self("status", "--porcelain=v1", "-z", "--untracked-files=no")
        return [entry[3:] for entry in out.split("\0") if entry]

    def changed_paths(self) -> list[str]:
        """Every path that differs from HEAD, untracked included, relative to the task directory."""
        return [path for _, path in self.status()]

    def status(self) -> list[tuple[str, str]]:
        """(two-letter porcelain code, path relative to the task directory) for every change;
        code '??' marks an untracked file."""
        out = self("status", "--porcelain=v1", "-z", "--untracked-files=all", ".")
        entries = [e for e in out.split("\0") if e]
        prefix = self.prefix()
        result, skip = [], False
        for entry in entries:
            if skip:  # the second path of a rename record
                skip = False
                continue
            if entry[0] in "RC":
                skip = True
            path = entry[3:]
            result.append((entry[:2], path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, prefix or ".")))
        return result

    def where(self) -> tuple[str, str]:
        """(symbolic HEAD, e.g. 'refs/heads/x' or 'HEAD' when detached; the commit), in one call."""
        # The flag applies to the arguments after it only: `--symbolic-full-name HEAD HEAD` gives the ref twice.
        out = self("rev-parse", "HEAD", "--symbolic-full-name", "HEAD", check=False).split()
        return (out[1], out[0]) if len(out) == 2 else ("", "")

    def index_path(self) -> Path:
        if not hasattr(self, "_index"):
            path = Path(self("rev-parse", "--git-path", "index").strip())
            self._index = path if path.is_absolute() else self.cwd / path
        return self._index

    def put_back(self, branch: str, commit: str) -> bool:
        """HEAD on `branch` at `commit`, index rebuilt, work tree untouched: undoes an agent's
        checkout, commit, reset or deleted index while keeping its edits. True if it had to."""
        ref, head = self.where()
        fixed = False
        if ref != f"refs/heads/{branch}":
            self("symbolic-ref", "HEAD", f"refs/heads/{branch}")
            fixed = True
        if head != commit or fixed:
            self("update-ref", f"refs/heads/{branch}", commit)
            fixed = True
        if fixed or not self.index_path().exists():
            self("reset", "-q", "--mixed", commit)
            fixed = True
        return fixed

    def snapshot(self) -> dict[Path, bytes]:
        """The small file git cannot work without, before an agent runs: this work tree's HEAD.

        An agent that rewrites it (garbage in HEAD) would leave a repository that git no longer
        recognises; `heal` puts it back. (The config is shared by every worker's work tree:
        git_guard.py puts it back.) The objects are out of reach: a deleted object store stays deleted."""
        if not hasattr(self, "_dirs"):
            git_dir = Path(self("rev-parse", "--absolute-git-dir").strip())
            common = Path(self("rev-parse", "--git-common-dir").strip())
            self._dirs = (git_dir, common if common.is_absolute() else (self.cwd / common).resolve())
        git_dir = self._dirs[0]
        return {path: path.read_bytes() for path in (git_dir / "HEAD",) if path.is_file()}

    def common_dir(self) -> Path:
        """The git directory every work tree of the repository shares (hooks, config, info/)."""
        self.snapshot()  # finds the directories
        return self._dirs[1]

    def heal(self, snapshot: dict[Path, bytes], branch: str) -> list[str]:
        """After an agent: HEAD back as `snapshot` had it, and the lock files it left
        on this work tree's index and HEAD and on `branch` deleted (its processes are gone, so no
        git of its own holds them). Returns what was fixed; `put_back` does the rest."""
        fixed = []
        for path, data in snapshot.items():
            try:
                same = path.read_bytes() == data
            except OSError:
                same = False
            if not same:
                write_bytes(path, data, durable=False)
                fixed.append(path.name)
        git_dir, common = self._dirs
        for lock in (git_dir / "index.lock", git_dir / "HEAD.lock", common / "refs" / "heads" / f"{branch}.lock"):
            if lock.is_file():
                lock.unlink(missing_ok=True)
                fixed.append(lock.name)
        return fixed

    def guarded_state(self) -> dict[str, bytes | None]:
        """The contents of GUARDED (relative to the common git directory; None: absent)."""
        self.snapshot()  # finds the directories
        common = self._dirs[1]
        state: dict[str, bytes | None] = {}
        for name in GUARDED:
            path = common / name
            if path.is_dir() and not path.is_symlink():
                for f in sorted(path.rglob("*")):
                    if not f.is_dir() or f.is_symlink():
                        state[str(f.relative_to(common))] = f.read_bytes() if f.is_file() and not f.is_symlink() else b"<link>"
                state[name + "/"] = b"<dir>"
            else:
                state[name] = path.read_bytes() if path.is_file() and not path.is_symlink() else (b"<link>" if path.is_symlink() else None)
        return state

    def restore_guarded(self, before: dict[str, bytes | None]) -> list[str]:
        """Put GUARDED back as `before` had it; returns what had changed ('hooks/post-commit', ...)."""
        common = self._dirs[1]
        after = self.guarded_state()
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        for name in changed:
            path = common / name.rstrip("/")
            old = before.get(name)
            if name.endswith("/"):
                if old is not None:
                    path.mkdir(parents=True, exist_ok=True)
                continue
            if path.is_symlink() or path.is_file():
                path.unlink()
            if old is not None and old != b"<link>":
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes(path, old, durable=False)
        return [c for c in changed if not c.endswith("/")] or changed

    def outside_changes(self) -> set[str]:
        """Paths changed or created anywhere in the repository outside the task directory (root-relative)."""
        prefix = self.prefix()
        if not prefix:  # the task directory is the repository's root: nothing is outside it
            return set()
        out = self("status", "--porcelain=v1", "-z", "--untracked-files=all", ":/")
        paths, skip = set(), False
        for entry in (e for e in out.split("\0") if e):
            if skip:
                skip = False
                continue
            if entry[0] in "RC":
                skip = True
            path = entry[3:]
            if prefix and not path.startswith(prefix):
                paths.add(path)
        return paths

    def revert_outside(self, paths: set[str]) -> None:
        """Undo changes outside the task directory: tracked files back as committed, new ones removed."""
        root = Path(self.root())
        tracked = set(self("ls-files", "-z", "--full-name", ":/").split("\0"))
        for rel in sorted(paths):
            if rel in tracked:
                self("checkout", "-q", "HEAD", "--", f":/{rel}")
            else:
                (root / rel).unlink(missing_ok=True)

    def show(self, commit: str, path: str) -> str:
        return self("show", f"{commit}:./{path}")

    # -- changes -------------------------------------------------------------------------
    def _ident(self) -> tuple[str, ...]:
        if self._identity is None:
            has = self("config", "user.email", check=False).strip() and self("config", "user.name", check=False).strip()
            self._identity = () if has else _FALLBACK_IDENTITY
        return self._identity

    def checkout_new_branch(self, branch: str) -> None:
        self("checkout", "-q", "-b", branch)

    def checkout(self, branch: str) -> None:
        self("checkout", "-q", branch)

    def commit(self, paths: list[str], message: str) -> str:
        """Commit exactly `paths` (added, changed or deleted) and return the new hash."""
        self("add", "-A", "--", *paths)
        self(*self._ident(), "commit", "-q", "--no-verify", "--allow-empty", "-F", "-", "--", *paths, input=message)
        return self.head()

    def existing_commits(self, commits) -> set[str]:
        """Those of `commits` that are commits in the repository (one gc'd, or never fetched, is not); one call."""
        wanted = sorted({c for c in commits if c})
        if not wanted:
            return set()
        out = self("cat-file", "--batch-check=%(objectname) %(objecttype)", input="\n".join(wanted) + "\n")
        return {line.split()[0] for line in out.splitlines() if line.endswith(" commit")}

    def keep_reachable(self, ref: str, commit: str) -> None:
        self("update-ref", ref, commit)

    def reset_hard(self, commit: str) -> None:
        self("reset", "-q", "--hard", commit)

    def restore(self, paths: list[str], commit: str = "HEAD") -> None:
        """Put tracked `paths` back as they are in `commit`; delete those it does not have."""
        tracked = set(self("ls-tree", "-r", "--name-only", "--full-name", commit, "--", *paths).splitlines()) if paths else set()
        prefix = self.prefix()
        for path in paths:
            if f"{prefix}{path}" in tracked:
                self("checkout", "-q", commit, "--", path)
            else:
                target = self.cwd / path
                self("rm", "-q", "--cached", "--ignore-unmatch", "--", path)
                if target.is_file() or target.is_symlink():
                    target.unlink()

    def diff(self, a: str, b: str) -> str:
        return self("diff", a, b, "--", ".")

    def remove_stale_locks(self, min_age: float = 1.0) -> list[Path]:
        """Delete the lock files a killed git left behind; returns them.

        A git killed mid-command (a reboot, the whole process tree killed) leaves `index.lock`,
        `HEAD.lock` or a ref's `.lock`, and every later git command then fails until someone
        deletes it. Nothing is deleted while a git process works in this repository (it may own
        the lock), nor a lock younger than `min_age` seconds.
        """
        git_dir = Path(self("rev-parse", "--absolute-git-dir").strip())
        common = Path(self("rev-parse", "--git-common-dir").strip())
        common = common if common.is_absolute() else (self.cwd / common).resolve()
        locks = {*git_dir.glob("*.lock"), *common.glob("*.lock"), *(common / "refs").rglob("*.lock")}
        now = time.time()
        locks = {p for p in locks if p.is_file() and now - p.stat().st_mtime >= min_age}
        if not locks or _git_running_in(Path(self.root()), common):
            return []
        for lock in locks:
            lock.unlink(missing_ok=True)
        return sorted(locks)

    def exclude(self, patterns: list[str]) -> None:
        """Add patterns to .git/info/exclude (never committed, never shown as untracked)."""
        path = Path(self("rev-parse", "--git-path", "info/exclude").strip())
        if not path.is_absolute():
            path = self.cwd / path
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.read_text().splitlines() if path.exists() else []
        missing = [p for p in patterns if p not in existing]
        if missing:
            with open(path, "a") as fh:
                if existing and existing[-1] != "":
                    fh.write("\n")
                fh.write("\n".join(missing) + "\n")


def _git_running_in(root: Path, common: Path) -> bool:
    """Whether a git process (other than ours, which are done) works in this repository now."""
    places = (str(root), str(common))
    for p in psutil.process_iter(["name"]):
        try:
            if p.info["name"] != "git" and not (p.info["name"] or "").startswith("git-"):
                continue
            cwd = p.cwd()
        except psutil.Error:
            continue
        if any(cwd == place or cwd.startswith(place + os.sep) for place in places):
            return True
    return False
