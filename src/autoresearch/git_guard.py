"""Git's own files an agent or a run could turn against the loop or the user, guarded across workers.

`.git/hooks` (a post-commit hook our commit or the user's would run), `.git/config`
(core.fsmonitor, an alias, a credential helper) and `.git/info/exclude` (a file hidden from
status) live in the repository's common git directory, which every worker's worktree shares:
a change one worker's agent makes is seen by all of them. So the known-good state is kept once
per night (in loop.Shared), and every agent call and every run is a *window*: when it closes,
the files are compared with the known-good state, put back, and the change is recorded with
when it was made (the modification time of what changed). A window is blamed for every change
made while it was open, whoever saw it first:

- the worker that made the change is always blamed (its experiment a `guard` crash), even when
  another worker's window closed first and put the files back;
- without the sandbox, another worker whose agent or run was open at that moment is blamed too,
  the reason saying so: which process wrote a file cannot be told afterwards. A worker whose
  windows were all closed (or not yet open) then is never blamed;
- with the sandbox ([sandbox] mode), agents and runs see these files read-only: nothing can
  change, and nobody is blamed for another's attempt.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SLACK = 0.05  # seconds: file times run a clock tick behind time.time()


@dataclass
class _Window:
    who: str  # "w1's agent", "the run of iteration 4"
    start: float
    end: float | None = None


@dataclass
class _Change:
    paths: list[str]
    at: float  # when it was made (the newest modification time among what changed)
    seen: float  # when a window's check found it (and put it back)


@dataclass
class GitGuard:
    """The known-good state of one repository's guarded git files, and the windows open on it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    baseline: dict | None = None
    windows: list[_Window] = field(default_factory=list)
    changes: list[_Change] = field(default_factory=list)

    @contextlib.contextmanager
    def window(self, git, who: str):
        """Open a window for `who` while the body runs; on leaving, the list it yielded holds the
        guarded files changed while it was open (put back), each with a note when another window
        was open then too."""
        with self.lock:
            if self.baseline is None:
                self.baseline = git.guarded_state()
            mine = _Window(who, time.time())
            self.windows.append(mine)
        found: list[str] = []
        try:
            yield found
        finally:
            with self.lock:
                self._check(git)
                mine.end = time.time()
                for change in self.changes:
                    # Found and put back before this window opened: not its doing, however close in
                    # time (an agent's next call can open within SLACK of the last one's change).
                    if change.seen >= mine.start and mine.start - SLACK <= change.at <= mine.end:
                        others = sorted({w.who for w in self.windows if w is not mine and _open_at(w, change.at)})
                        note = f" (made while {', '.join(others)} ran too; without the sandbox which one did it cannot be told)" \
                            if others else ""
                        found += [p + note for p in change.paths]
                self._prune()

    def _check(self, git) -> None:
        """Compare with the known-good state; put back and record what changed."""
        after = git.guarded_state()
        keys = sorted(k for k in set(self.baseline) | set(after) if self.baseline.get(k) != after.get(k))
        if not keys:
            return
        common = Path(git.common_dir())
        at = max(_changed_at(common / k.rstrip("/")) for k in keys)
        changed = git.restore_guarded(self.baseline)
        now = time.time()
        self.changes.append(_Change(changed, min(at, now), now))

    def _prune(self) -> None:
        """Forget closed windows and changes older than every window still open."""
        still = [w for w in self.windows if w.end is None]
        oldest = min((w.start for w in still), default=time.time()) - SLACK
        self.windows = [w for w in self.windows if w.end is None or w.end >= oldest]
        self.changes = [c for c in self.changes if c.at >= oldest]


def _open_at(window: _Window, at: float) -> bool:
    # A file's time is never ahead of the clock: only the start needs the slack.
    return window.start - SLACK <= at and (window.end is None or at <= window.end)


def _changed_at(path: Path) -> float:
    """When `path` changed: its own time, or (deleted) its folder's."""
    for candidate in (path, *path.parents):
        try:
            return os.lstat(candidate).st_mtime
        except OSError:
            continue
    return time.time()
