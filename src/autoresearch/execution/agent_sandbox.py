"""The sandbox of an agent's processes (issue 11): what a coding CLI or a command agent may change.

An agent process runs inside bubblewrap (sandbox.View) with the same modes as the runs
(`[sandbox] mode`; off, or unavailable under "auto": no sandbox, as before). It sees:

- writable: the task's editable files (each file, in place: an editor that replaces a file by
  renaming a new one over it cannot), the call's scratch folder (the CLI's stdout and stderr,
  aider's history files), and the backend's own state in the home directory (AGENT_HOME: its
  settings, sessions, logs and login, which it needs to work and to keep between calls);
- read-only: everything else, the run store (the prompt and earlier runs' logs are there to be
  read), `.git`, the read-only files, the rest of the repository (a `../shared/helper.py`), the
  rest of the home directory;
- invisible: the home's credential files (sandbox.CREDENTIALS), except the backend's own; and a
  private /tmp;
- the network, which the agent needs for its API.

The agent's process tree lives in its own PID namespace: a daemon it leaves behind dies when the
call ends. The HTTP backend (`openai`) starts no process: the model only sends text, which our
own code in this process applies to the editable files alone (edit_blocks.apply_blocks, knobs.apply).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from autoresearch.execution.sandbox import View

# What each backend writes in the home directory, from its documentation:
#   claude  ~/.claude (settings.json, sessions, todos, shell snapshots, statsig) and ~/.claude.json
#           (its state and the approved keys), both moved by CLAUDE_CONFIG_DIR
#   codex   ~/.codex (config.toml, auth.json, sessions/, log/, history.jsonl), moved by CODEX_HOME
#   gemini  ~/.gemini (settings.json, oauth_creds.json, tmp/, history); GEMINI_CLI_HOME moves its parent
#   aider   ~/.aider (caches, the analytics id); its history files go to the call's scratch folder
AGENT_HOME: dict[str, tuple[str, ...]] = {
    "claude": (".claude", ".claude.json", ".claude.json.backup"),
    "codex": (".codex",),
    "gemini": (".gemini",),
    "aider": (".aider",),
}
# Read, never written: the settings file that may hold the backend's key.
AGENT_READS: dict[str, tuple[str, ...]] = {"aider": (".aider.conf.yml", ".env")}
# Environment variables naming the backend's own state folder instead of the home's.
AGENT_HOME_ENV: dict[str, tuple[str, ...]] = {
    "claude": ("CLAUDE_CONFIG_DIR",),
    "codex": ("CODEX_HOME", "CODEX_SQLITE_HOME"),
}


def state_paths(kind: str, env: dict[str, str]) -> list[str]:
    """The backend's own folders and files (absolute) that must stay writable for it to work."""
    home = env.get("HOME") or os.path.expanduser("~")
    paths = [os.path.join(home, p) for p in AGENT_HOME.get(kind, ())]
    if kind == "gemini" and env.get("GEMINI_CLI_HOME"):
        paths.append(os.path.join(env["GEMINI_CLI_HOME"], ".gemini"))
    paths += [env[name] for name in AGENT_HOME_ENV.get(kind, ()) if env.get(name)]
    return [os.path.abspath(os.path.expanduser(p)) for p in paths]


def prepare_state(paths) -> None:
    """Create the backend's folders that do not exist yet: in a read-only home it could not."""
    for path in paths:
        if not os.path.splitext(path)[1] and not os.path.lexists(path):  # a folder (".claude.json" is a file)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError:
                pass  # the CLI will say what it misses


def agent_view(kind: str, *, task_dir, repo_root, store_root, editable, readonly=(), env: dict[str, str],
               scratch=(), writable=()) -> View:
    """The view of one agent call of backend `kind` (execution/sandbox.py's View).

    `scratch`: the call's own folders (made writable); `writable`: more paths (`[sandbox]
    agent_writable`), absolute or relative to the task directory.
    """
    task_dir, repo_root = Path(task_dir).resolve(), Path(repo_root).resolve()
    home = env.get("HOME") or os.path.expanduser("~")
    own = state_paths(kind, env)
    prepare_state(own)
    reads = [os.path.join(home, p) for p in AGENT_READS.get(kind, ())]
    extra = [p if os.path.isabs(p) else str(task_dir / p) for p in (os.path.expanduser(w) for w in writable)]
    files = [str(task_dir / name) for name in editable]
    protected = [task_dir / n for n in (*readonly, "autoresearch.toml", "program.md", ".git")]
    protected.append(repo_root / ".git")
    store = Path(store_root).resolve().parent  # `.autoresearch/`: read-only again if a writable path holds it
    if not task_dir.is_relative_to(store) and any(store.is_relative_to(w) for w in extra):
        protected.append(store)
    # The reads are bound "writable" over their hidden place, then read-only again on top.
    return View(root=str(repo_root), hidden=(), writable=(*files, *map(str, scratch), *own, *reads, *extra),
                readonly=(*map(str, protected), *reads), network=True, home=home)


@dataclass(frozen=True)
class AgentSandbox:
    """What the loop hands an agent (Context.sandbox): its task, from which each call's view is made."""

    task_dir: Path
    repo_root: Path
    store_root: Path
    editable: tuple[str, ...]
    readonly: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()  # [sandbox] agent_writable

    def view(self, kind: str, env: dict[str, str], scratch=(), *, edits: bool = True) -> View:
        """The view of one call of backend `kind` with environment `env`; `edits` False: a read-only
        call (the strategy memo), the editable files read-only too."""
        return agent_view(kind, task_dir=self.task_dir, repo_root=self.repo_root, store_root=self.store_root,
                          editable=self.editable if edits else (), readonly=self.readonly, env=env,
                          scratch=scratch, writable=self.writable)
