"""The sandbox of an agent's processes (issue 11): what a coding CLI or a command agent may change.

An agent process runs inside bubblewrap (sandbox.View) under the same modes as the runs
(`[sandbox] mode`; off, or unavailable under "auto": no sandbox, as before), with the network on
(it needs its API). What it sees:

- the task directory as a *mirror*: a scratch folder in its place that holds copies of the
  editable files, with every other entry bound read-only from the real folder (the read-only
  files, the config, program.md, `.git`, the run store, data). The agent may write there as
  editors do, by renaming a new file over the old one, and create temporary files; after the
  call only the editable files come back (`Call.copy_back`), whatever else it wrote is dropped;
- read-only: everything else, the run store (the prompt and earlier runs' logs are there to be
  read), `.git`, the rest of the repository (a `../shared/helper.py`), the rest of the home;
- the home directory as a mirror too: the backend's own state (AGENT_HOME: its settings,
  sessions, logs and login, which it needs to work and keeps between calls) writable, its state
  files copied in and back (Claude Code replaces ~/.claude.json by renaming), the credential
  files of the home (sandbox.CREDENTIALS) absent but for the backend's own;
- the call's scratch folder (the CLI's stdout and stderr, aider's history files) writable, a
  private /tmp, and its own PID namespace: a daemon it leaves dies when the call ends.

The HTTP backend (`openai`) starts no process: the model only sends text, which our own code in
this process applies to the editable files alone (edit_blocks.apply_blocks, knobs.apply).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from autoresearch.atomic import write_bytes
from autoresearch.execution.sandbox import CREDENTIALS, View

# What each backend writes in the home directory, from its documentation:
#   claude  ~/.claude (settings.json, sessions, todos, shell snapshots, backups) and ~/.claude.json
#           (its state and the approved keys), both moved by CLAUDE_CONFIG_DIR
#   codex   ~/.codex (config.toml, auth.json, sessions/, log/, history.jsonl), moved by CODEX_HOME
#   gemini  ~/.gemini (settings.json, oauth_creds.json, tmp/, history); GEMINI_CLI_HOME moves its parent
#   aider   ~/.aider (caches, the analytics id); its history files go to the call's scratch folder
AGENT_HOME: dict[str, tuple[str, ...]] = {
    "claude": (".claude", ".claude.json", ".claude.json.backup"),
    "codex": (".codex",),
    "gemini": (".gemini",),
    "aider": (".aider", ".aider.conf.yml"),
}
# Environment variables naming the backend's own state folder instead of the home's.
AGENT_HOME_ENV: dict[str, tuple[str, ...]] = {
    "claude": ("CLAUDE_CONFIG_DIR",),
    "codex": ("CODEX_HOME", "CODEX_SQLITE_HOME"),
}
_STATE_FILES = (".json", ".backup", ".yml", ".yaml", ".toml")  # AGENT_HOME names that are files


def state_paths(kind: str, env: dict[str, str]) -> list[str]:
    """The backend's own state (absolute paths) outside the home's AGENT_HOME names: CODEX_HOME and the like."""
    paths = [env[name] for name in AGENT_HOME_ENV.get(kind, ()) if env.get(name)]
    if kind == "gemini" and env.get("GEMINI_CLI_HOME"):
        paths.append(os.path.join(env["GEMINI_CLI_HOME"], ".gemini"))
    return [os.path.abspath(os.path.expanduser(p)) for p in paths]


class Mirror:
    """`real` as the agent sees it: `scratch` in its place, holding copies of `copied` (paths
    relative to `real`) and, bound from `real`, every other entry: read-only, or writable when
    named in `writable`; entries named in `omit` are not there at all. `copy_back` brings the
    copies' changes (an edit, a new or deleted file) back into `real`."""

    def __init__(self, real: Path, scratch: Path, copied=(), writable=(), omit=()):
        self.real, self.scratch = Path(real), Path(scratch)
        self.copied = {PurePosixPath(p) for p in copied}
        self.writable = {PurePosixPath(p) for p in writable}
        self.omit = {PurePosixPath(p) for p in omit}
        self.existed: set[PurePosixPath] = set()

    def args(self) -> list[str]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return ["--bind", str(self.scratch), str(self.real), *self._entries(PurePosixPath())]

    def _entries(self, rel: PurePosixPath) -> list[str]:
        real, scratch = self.real / rel, self.scratch / rel
        args: list[str] = []
        try:
            names = sorted(os.listdir(real))
        except OSError:
            return args
        deeper = self.copied | self.omit | self.writable
        for name in names:
            path = rel / name
            src, dst = real / name, scratch / name
            if path in self.omit:
                continue
            if path in self.copied:
                if src.is_symlink() or src.is_file():
                    self.existed.add(path)
                    _copy(src, dst)
                else:
                    args += ["--ro-bind", str(src), str(src)]
                continue
            if src.is_symlink():  # the link itself, pointing where it did; a writable one's target opened up
                os.symlink(os.readlink(src), dst)
                if path in self.writable and os.path.exists(src):
                    target = os.path.realpath(src)
                    args += ["--bind", target, target]
                continue
            if src.is_dir() and path not in self.writable and any(p.is_relative_to(path) for p in deeper):
                dst.mkdir(exist_ok=True)
                args += self._entries(path)
                continue
            args += ["--bind" if path in self.writable else "--ro-bind", str(src), str(src)]
        return args

    def copy_back(self) -> list[str]:
        """The copied paths the agent changed, created or deleted, now changed in `real` too."""
        changed = []
        for rel in sorted(self.copied):
            src, dst = self.scratch / rel, self.real / rel
            if src.is_symlink() or src.is_file():
                if _same(src, dst):
                    continue
                if not dst.parent.is_dir():
                    continue  # its folder is not there: nothing the loop could commit
                if src.is_symlink() or dst.is_symlink():
                    dst.unlink(missing_ok=True)
                    _copy(src, dst)
                else:
                    write_bytes(dst, src.read_bytes(), durable=False)
                    os.chmod(dst, src.stat().st_mode & 0o7777)
            elif rel in self.existed and (dst.is_file() or dst.is_symlink()):
                dst.unlink()  # the agent deleted it
            else:
                continue
            changed.append(str(rel))
        return changed


def _copy(src: Path, dst: Path) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    try:
        return b.is_file() and a.read_bytes() == b.read_bytes() and a.stat().st_mode == b.stat().st_mode
    except OSError:
        return False


@dataclass
class Call:
    """One sandboxed agent call: its view, and the mirrors whose copies come back afterwards."""

    view: View
    mirrors: list[Mirror] = field(default_factory=list)

    def copy_back(self) -> list[str]:
        return [p for m in self.mirrors for p in m.copy_back()]


@dataclass(frozen=True)
class AgentSandbox:
    """What the loop hands an agent (Context.sandbox): its task, from which each call's view is made."""

    task_dir: Path
    repo_root: Path
    store_root: Path
    editable: tuple[str, ...]
    readonly: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()  # [sandbox] agent_writable: more paths, absolute or relative to the task
    git_dir: Path | None = None  # the repository's common git directory (a worker's worktree points into it)

    @contextlib.contextmanager
    def call(self, kind: str, env: dict[str, str], scratch=(), *, edits: bool = True, programs=()):
        """The View of one call of backend `kind` with environment `env` (to give RunSpec.sandbox);
        on leaving, the editable files the agent changed come back. `scratch`: the call's own
        folders, writable. `edits` False: a read-only call (the strategy memo). `programs`: the
        binaries it runs, whose folders stay visible (read-only) even under the private /tmp."""
        with tempfile.TemporaryDirectory(prefix="autoresearch-agent-view-") as tmp:
            call = self.prepare(kind, env, Path(tmp), scratch=scratch, edits=edits, programs=programs)
            try:
                yield call.view
            finally:
                call.copy_back()  # the editable files (none for `edits` False), the backend's state files

    def prepare(self, kind: str, env: dict[str, str], tmp: Path, scratch=(), *, edits: bool = True,
                programs=()) -> Call:
        task_dir, repo_root = Path(self.task_dir).resolve(), Path(self.repo_root).resolve()
        home = Path(env.get("HOME") or os.path.expanduser("~"))
        own = AGENT_HOME.get(kind, ())
        files, folders = [o for o in own if o.endswith(_STATE_FILES)], [o for o in own if not o.endswith(_STATE_FILES)]
        for name in folders:
            if not (home / name).exists():
                with contextlib.suppress(OSError):
                    (home / name).mkdir(parents=True)  # in a read-only home it could not
        mirrors, opened = [], []
        if home.is_dir() and home.resolve() != Path("/") and not home.resolve().is_relative_to(task_dir):
            hidden = [str(home / c) for c in CREDENTIALS if "/" in c and c not in own]
            mirrors.append(Mirror(home, tmp / "home", copied=files, writable=folders,
                                  omit=[c for c in CREDENTIALS if "/" not in c and c not in own]))
        else:  # the home is the task folder, or holds it, or is not there: credentials hidden where they are
            hidden = [str(home / c) for c in CREDENTIALS if c not in own]
            opened = [str(home / o) for o in own]
        mirrors.append(Mirror(task_dir, tmp / "task", copied=self.editable if edits else ()))
        # The programs' folders under /tmp (the private /tmp hides them) first: the mirrors go on top.
        folders = {os.path.dirname(p) for prog in programs for p in (os.path.abspath(prog), os.path.realpath(prog))}
        mounts = [a for f in sorted(folders) if Path(f).is_relative_to("/tmp") for a in ("--ro-bind", f, f)]
        # The store (the prompt, earlier runs) and git's directory, read-only, even where the
        # worker's worktree is the root and they lie under the private /tmp.
        for path in (Path(self.store_root), self.git_dir):
            if path is not None and Path(path).is_dir():
                mounts += ["--ro-bind", str(Path(path).resolve()), str(Path(path).resolve())]
        mounts += [a for m in mirrors for a in m.args()]
        extra = [p if os.path.isabs(p) else str(task_dir / p) for p in (os.path.expanduser(w) for w in self.writable)]
        own_elsewhere = state_paths(kind, env)
        for path in own_elsewhere:
            with contextlib.suppress(OSError):
                os.makedirs(path, exist_ok=True)
        protected = [task_dir / n for n in (*self.readonly, "autoresearch.toml", "program.md", ".git")]
        protected.append(repo_root / ".git")
        store = Path(self.store_root).resolve().parent  # `.autoresearch/`: read-only again if a writable path holds it
        if not task_dir.is_relative_to(store) and any(store.is_relative_to(w) for w in extra):
            protected.append(store)
        view = View(root=str(repo_root), hidden=tuple(hidden), mounts=tuple(mounts), credentials=False,
                    writable=(*map(str, scratch), *opened, *own_elsewhere, *extra),
                    readonly=tuple(map(str, protected)), network=True, home=str(home))
        return Call(view, mirrors)

