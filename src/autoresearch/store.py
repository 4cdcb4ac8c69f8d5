"""The run store: `.autoresearch/<tag>/` under the task directory.

    ledger.jsonl       one record per finished experiment (the source of truth)
    pending.json       the iteration in flight; present only between its start and its record
    runs/0007/         log.txt, diff.patch, metrics.json, explanation.md, prompt.md
    results.tsv        this tag's copy of the table (the task directory holds the latest run's)
    strategy.md        the strategy memo (outer.py); memo_calls.jsonl: what its LLM calls cost
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from autoresearch.atomic import write_json
from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger

STORE_DIR = ".autoresearch"
# What a run writes into the task directory besides its store: derived from the ledger, never the
# user's, so .git/info/exclude lists them (with the store and what a killed atomic write leaves).
DERIVED_FILES = ("results.tsv", "analysis_summary.json", "analysis_summary.md", "progress.png", "curves.png",
                 "report.html", "config/auto/")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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

    @property
    def branch(self) -> str:
        return f"autoresearch/{self.tag}"

    def ref(self, iteration: int) -> str:
        return f"refs/autoresearch/{self.tag}/{iteration:04d}"

    @property
    def results_tsv(self) -> Path:
        return self.task_dir / "results.tsv"

    def results_table(self, columns, worker_column: bool = False):
        """The task directory's results.tsv, kept in step with this tag's ledger.

        A file that matches neither the ledger nor another tag's copy (edited by hand, or torn)
        is backed up into the store before it is rewritten from the ledger."""
        from autoresearch.results_tsv import Table

        def other_tags() -> list[Path]:
            return [p for p in self.root.parent.glob("*/results.tsv") if p.parent != self.root]

        return Table(self.results_tsv, columns, backup_dir=self.root, others=other_tags, worker_column=worker_column)

    @property
    def pending_path(self) -> Path:
        # One file per worker: each has its own iteration in flight.
        return self.root / ("pending.json" if self.worker is None else f"pending-w{self.worker}.json")

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
    def pending(self) -> dict | None:
        try:
            return json.loads(self.pending_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # written atomically, so this is only a hand-edited file: ignore it

    def set_pending(self, **fields) -> None:
        # Not fsync'd: it guards against a killed process, which leaves the page cache intact.
        write_json(self.pending_path, {**(self.pending() or {}), **fields}, durable=False)

    def clear_pending(self) -> None:
        self.pending_path.unlink(missing_ok=True)

    def set_aside(self, iteration: int) -> None:
        """Keep what an interrupted iteration left, out of the way of its redo."""
        path = self.run_path(iteration)
        if path.exists():
            shutil.move(str(path), str(path.with_name(f"{path.name}.interrupted-{int(time.time())}")))
