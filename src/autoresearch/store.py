"""The run store: `.autoresearch/<tag>/` under the task directory.

    ledger.jsonl       one record per finished experiment (the source of truth)
    pending.json       the iteration in flight; present only between its start and its record
    run-tree.json      while a run is under way: what the task tree may keep after it (a resume
                       after a kill removes the rest: execution/pristine.py)
    runs/0007/         log.txt, diff.patch, metrics.json, explanation.md, prompt.md
    results.tsv        this tag's copy of the table (the task directory holds the latest run's)
    strategy.md        the strategy memo (outer.py); memo_calls.jsonl: what its LLM calls cost
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from autoresearch.atomic import write_json
from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger

STORE_DIR = ".autoresearch"


@dataclass(frozen=True)
class Process:
    """A process group an iteration started (its agent or its run), for a resume to kill."""

    role: str  # "agent" | "run"
    pid: int  # 0 until known: the token still finds it
    create_time: float = 0.0
    token: str | None = None  # AUTORESEARCH_RUN_TOKEN of every process of a run


@dataclass(frozen=True)
class Pending:
    """pending.json: the iteration in flight, written as it goes, so a resume can undo or finish it.

    Only the keys set so far are in the file (as earlier versions wrote them)."""

    iteration: int
    parent: str = ""
    untracked: tuple[str, ...] = ()  # the user's untracked files when it began: never deleted
    started: float = 0.0
    commit: str = ""  # once the change is committed
    processes: tuple[Process, ...] = ()
    confirming: int | None = None  # the iteration number of its confirmation run, once under way
    confirmation: dict | None = None  # the confirmation's ledger record, when it is to be recorded second

    @classmethod
    def from_json(cls, data: dict) -> "Pending | None":
        """None for a file that is not one (hand-edited, from elsewhere)."""
        if not isinstance(data, dict) or not isinstance(data.get("iteration"), int):
            return None
        known = {k: v for k, v in data.items() if k in _PENDING_KEYS}
        known["untracked"] = tuple(known.get("untracked") or ())
        known["processes"] = tuple(Process(**{k: v for k, v in p.items() if k in _PROCESS_KEYS})
                                   for p in known.get("processes") or () if isinstance(p, dict) and "role" in p
                                   and "pid" in p)
        return cls(**known)

    def to_json(self) -> dict:
        out: dict = {"iteration": self.iteration}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "iteration" and value != f.default:
                out[f.name] = value
        out.pop("processes", None)
        if self.processes:
            out["processes"] = [dataclasses.asdict(p) for p in self.processes]
        if "untracked" in out:
            out["untracked"] = list(self.untracked)
        return out


_PENDING_KEYS = frozenset(f.name for f in dataclasses.fields(Pending))
_PROCESS_KEYS = frozenset(f.name for f in dataclasses.fields(Process))
# What a run writes into the task directory besides its store: derived from the ledger, never the
# user's, so .git/info/exclude lists them (with the store and what a killed atomic write leaves).
DERIVED_FILES = ("results.tsv", "analysis_summary.json", "analysis_summary.md", "progress.png", "curves.png",
                 "report.html", "config/auto/")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


CURVE_NAME = "metrics.jsonl"  # a learning curve the task may write, one JSON object per line
MTIME_SLACK = 1.0  # seconds: file systems with coarse timestamps


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime in ns) of a file, None when there is none: taken before a run, it
    tells a file the run left untouched from one it wrote, however soon after the last run."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def capture_curve(task_dir: Path, run_dir: Path, started_at: float,
                  before: tuple[int, int, int] | None = None) -> bool:
    """Copy the task's metrics.jsonl into the run directory when this run wrote it.

    A metrics.jsonl older than the run's start was left by an earlier run (a crash
    before the first epoch leaves the previous one in place): it is not this run's curve.
    Nor is one whose `file_stamp` is still `before` (taken as the run started): a run stopped
    early is followed at once by the next, well inside the timestamp slack.
    """
    source, target = Path(task_dir) / CURVE_NAME, Path(run_dir) / CURVE_NAME
    if target.exists() or not source.is_file():
        return False
    if source.stat().st_mtime + MTIME_SLACK < started_at:
        return False
    if before is not None and file_stamp(source) == before:
        return False
    shutil.copy2(source, target)
    return True


def check_tag(tag: str) -> str:
    if not _TAG.match(tag) or ".." in tag or tag.endswith(".lock"):
        raise AutoresearchError(
            f"--tag {tag!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit), e.g. nov23"
        )
    return tag


class RunStore:
    def __init__(self, task_dir: Path, tag: str, worker: int | None = None, ledger: Ledger | None = None):
        self.task_dir = Path(task_dir)
        self.tag = check_tag(tag)
        self.worker = worker
        self.root = self.task_dir / STORE_DIR / tag
        self.ledger = ledger or Ledger(self.root / "ledger.jsonl")
        self._tracked: dict[str, bool] = {}  # derived file name -> tracked by git in the task directory

    @property
    def branch(self) -> str:
        return f"autoresearch/{self.tag}"

    def ref(self, iteration: int) -> str:
        return f"refs/autoresearch/{self.tag}/{iteration:04d}"

    @property
    def results_tsv(self) -> Path:
        return self.shown("results.tsv")

    def shown(self, name: str) -> Path:
        """Where a derived file (results.tsv, progress.png, report.html) goes: the task directory,
        unless git tracks a file of that name there (a README image, say): then the run store,
        so the loop never writes over the user's file nor dirties their tree."""
        return self.root / name if self.is_tracked(name) else self.task_dir / name

    def is_tracked(self, name: str) -> bool:
        if name not in self._tracked:
            import subprocess

            done = subprocess.run(["git", "ls-files", "--error-unmatch", "--", name], cwd=self.task_dir,
                                  capture_output=True, text=True) if self.task_dir.is_dir() else None
            self._tracked[name] = done is not None and done.returncode == 0
        return self._tracked[name]

    def results_table(self, columns, worker_column: bool = False):
        """The task directory's results.tsv, kept in step with this tag's ledger.

        A file that matches neither the ledger nor another tag's copy (edited by hand, or torn)
        is backed up into the store before it is rewritten from the ledger."""
        from autoresearch.results_tsv import Table

        def other_tags() -> list[Path]:
            return [p for p in self.root.parent.glob("*/results.tsv") if p.parent != self.root]

        return Table(self.results_tsv, columns, backup_dir=self.root, others=other_tags, worker_column=worker_column)

    @property
    def hints_path(self) -> Path:
        """The analysis's hints for the next prompt, as text: written by the analysis observer,
        read by the loop (which never imports the analysis)."""
        return self.root / "analysis_hints.md"

    @property
    def pending_path(self) -> Path:
        # One file per worker: each has its own iteration in flight.
        return self.root / ("pending.json" if self.worker is None else f"pending-w{self.worker}.json")

    @property
    def run_tree_path(self) -> Path:
        return self.root / ("run-tree.json" if self.worker is None else f"run-tree-w{self.worker}.json")

    def worker_branch(self, index: int) -> str:
        return f"autoresearch/{self.tag}-w{index}"

    def worktree(self, index: int) -> Path:
        return self.root / "worktrees" / f"w{index}"

    @staticmethod
    def derived_files() -> tuple[str, ...]:
        """Paths relative to the task directory that the loop writes and git must ignore."""
        return (DERIVED_FILES[0], f"{STORE_DIR}/", *DERIVED_FILES[1:],
                ".*.tmp.*", ".*.link.*")  # what a writer killed mid-write leaves (atomic.py)

    def run_path(self, iteration: int) -> Path:
        """The run folder of `iteration` (runs/0007), whether or not it exists; creates nothing."""
        return self.root / "runs" / f"{iteration:04d}"

    def create(self) -> None:
        (self.root / "runs").mkdir(parents=True, exist_ok=True)
        self.ledger.path.touch()  # an empty ledger marks the tag as begun: a killed baseline resumes

    def run_dir(self, iteration: int) -> Path:
        """The run folder of `iteration`, created: for writing. Readers use `run_path`."""
        path = self.run_path(iteration)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- the iteration in flight ---------------------------------------------------------
    def pending(self) -> "Pending | None":
        try:
            data = json.loads(self.pending_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # written atomically, so this is only a hand-edited file: ignore it
        return Pending.from_json(data)

    def set_pending(self, **fields) -> None:
        """Add `fields` (Pending's names) to the iteration in flight; unknown names are an error."""
        unknown = set(fields) - _PENDING_KEYS
        if unknown:
            raise TypeError(f"pending.json has no field(s) {', '.join(sorted(unknown))}")
        if "processes" in fields:
            fields["processes"] = [dataclasses.asdict(p) if isinstance(p, Process) else p for p in fields["processes"]]
        if "untracked" in fields:
            fields["untracked"] = list(fields["untracked"])
        current = self.pending()
        # Not fsync'd: it guards against a killed process, which leaves the page cache intact.
        write_json(self.pending_path, {**(current.to_json() if current else {}), **fields}, durable=False)

    def clear_pending(self) -> None:
        self.pending_path.unlink(missing_ok=True)

    def set_aside(self, iteration: int) -> None:
        """Keep what an interrupted iteration left, out of the way of its redo."""
        path = self.run_path(iteration)
        if path.exists():
            shutil.move(str(path), str(path.with_name(f"{path.name}.interrupted-{int(time.time())}")))
