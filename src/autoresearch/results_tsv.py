"""results.tsv: the karpathy-style table, derived from the ledger and rewritten atomically.

The ledger is the truth and results.tsv a view of it: a table that was hand-edited, truncated
or corrupted is rewritten from the ledger (never the reverse), and what was there is kept
as `results.tsv.bak-<time>` so no hand-written note is lost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from autoresearch.atomic import write_text
from autoresearch.decision import rounded
from autoresearch.records import Experiment, Status


def header(columns: Sequence[str], worker_column: bool = False) -> str:
    return "\t".join(["commit", *columns, "memory_gb", "status", "description", *(["worker"] if worker_column else [])])


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


NO_COMMIT = "-"  # the commit cell of a crash that committed nothing (an agent failure)
CRASH_VALUE = "0.000000"  # a crash's metric cells: the seeds' contract ("use 0.000000 for crashes")
MISSING = ""  # a metric the run did not record (a column added later, a NaN): no number, not a made-up zero


def commit_cell(exp: Experiment, legacy: bool = False) -> str:
    """The row's commit: the experiment's own, never another's. An agent crash committed nothing
    (its ledger `commit` is the code it started from): `-`. `legacy`: as earlier versions wrote it (the parent's commit)."""
    if not legacy and exp.iteration and exp.commit == exp.parent and exp.verdict.crashed and exp.verdict.untrained:
        return NO_COMMIT
    return exp.commit[:7]


def row(exp: Experiment, columns: Sequence[str], worker_column: bool = False, legacy: bool = False) -> str:
    """`legacy`: as earlier versions wrote it (see `commit_cell`; a missing value as 0.000000 too)."""
    crashed = exp.status is Status.CRASH
    cells = [commit_cell(exp, legacy)]
    for name in columns:
        value = None if crashed else rounded(exp.metrics.get(name))
        cells.append(f"{value:.6f}" if value is not None else CRASH_VALUE if crashed or legacy else MISSING)
    cells.append(f"{0.0 if crashed else exp.memory_gb:.1f}")
    cells.append(exp.status.value)
    cells.append(_clean(exp.description))
    if worker_column:  # several workers: which one ran it (the baseline belongs to none)
        cells.append("" if exp.worker is None else f"w{exp.worker}")
    return "\t".join(cells)


def render(experiments: Iterable[Experiment], columns: Sequence[str], worker_column: bool = False,
           legacy: bool = False) -> str:
    return "\n".join([header(columns, worker_column),
                      *(row(e, columns, worker_column, legacy) for e in experiments)]) + "\n"


def write(path: str | Path, experiments: Iterable[Experiment], columns: Sequence[str]) -> None:
    write_text(path, render(experiments, columns))


def check_and_repair(path: str | Path, experiments: Sequence[Experiment], columns: Sequence[str], *,
                     backup_dir: str | Path | None = None, others: Iterable[str | Path] = (),
                     worker_column: bool = False) -> str | None:
    """Make `path` show exactly the ledger's `experiments`; a message when it had to be repaired.

    A file that differs is first copied to `results.tsv.bak-<time>` (in `backup_dir`, default
    beside it). A missing file is simply written; it is a message only when rows were lost.
    `others` are files that may rightly be what `path` shows (other tags' copies: the task
    directory's table shows the tag run last); `path` being one of them is no damage.
    """
    path = Path(path)
    experiments = list(experiments)
    expected = render(experiments, columns, worker_column)
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        write_text(path, expected)
        return f"{path} was missing; rebuilt it from the ledger ({len(experiments)} experiments)" if experiments else None
    if (current == expected.encode("utf-8") or _is_one_of(path, others)
            or current == render(experiments, columns, worker_column, legacy=True).encode("utf-8")):
        # An earlier version's table (agent crashes showing the parent's commit) is no damage either.
        write_text(path, expected)
        return None
    backup = _backup(path, current, backup_dir)
    write_text(path, expected)
    return (f"{path} did not match the ledger ({_difference(current, expected)}); rewrote it from the ledger, "
            f"the old file is kept as {backup}")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the `.results.tsv.tmp.<pid>` files that a writer killed mid-write left beside `path`.

    atomic.write_text writes to that name and renames it over `path`; a SIGKILL between the two
    leaves it behind, an untracked file in the user's task directory. Only the files of writers
    that are gone are removed: another live orchestrator may be writing its own right now.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp.*"):
        pid = tmp.name.rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_one_of(path: Path, others: Iterable[str | Path]) -> bool:
    for other in others:
        try:
            if os.path.samefile(path, other):
                return True
        except OSError:
            pass
    return False


def _difference(current: bytes, expected: str) -> str:
    try:
        text = current.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    have, want = text.splitlines(), expected.splitlines()
    if text and not text.endswith("\n"):
        return f"torn last line {len(have)}"
    if len(have) != len(want):
        return f"{max(len(have) - 1, 0)} rows for {len(want) - 1} experiments"
    first = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
    return f"line {first + 1} differs"


def _backup(path: Path, data: bytes, backup_dir: str | Path | None) -> Path:
    directory = Path(backup_dir) if backup_dir is not None else path.parent
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = directory / f"{path.name}.bak-{stamp}" if n == 0 else directory / f"{path.name}.bak-{stamp}-{n}"
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return target
    raise FileExistsError(f"{directory}: too many backups of {path.name} this second")


class Table:
    """results.tsv kept in step with a growing ledger: each row is formatted once.

    With a `backup_dir`, a file that does not match the ledger at `reset`, or that was changed
    behind the table's back (hand-edited while the loop runs), is backed up there before it is
    rewritten; `reset`, `add` and `flush` return the message saying so, else None. `others`
    (paths, or a function returning them) are the other tags' copies, see `check_and_repair`.
    """

    def __init__(self, path: str | Path, columns: Sequence[str], *, backup_dir: str | Path | None = None,
                 others: Iterable[str | Path] | Callable[[], Iterable[str | Path]] = (), worker_column: bool = False):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.worker_column = worker_column
        self.backup_dir = backup_dir
        self.others = others
        self.lines: list[str] = [header(columns, worker_column)]
        self._written: str | None = None  # what this table last wrote; None: not written yet

    def reset(self, experiments: Iterable[Experiment]) -> str | None:
        experiments = list(experiments)
        remove_stale_temporaries(self.path)  # reset runs on every start, after any crash
        # A run that ever had workers keeps its worker column, also when resumed with one.
        self.worker_column = self.worker_column or any(e.worker is not None for e in experiments)
        self.lines = [header(self.columns, self.worker_column),
                      *(row(e, self.columns, self.worker_column) for e in experiments)]
        if self.backup_dir is None:
            return self.flush()
        others = self.others() if callable(self.others) else self.others
        message = check_and_repair(self.path, experiments, self.columns, backup_dir=self.backup_dir, others=others,
                                   worker_column=self.worker_column)
        self._written = "\n".join(self.lines) + "\n"
        return message

    def add(self, exp: Experiment) -> str | None:
        self.lines.append(row(exp, self.columns, self.worker_column))
        return self.flush()

    def flush(self) -> str | None:
        text = "\n".join(self.lines) + "\n"
        message = None
        if self._written is not None and self.backup_dir is not None:
            try:
                current = self.path.read_bytes()
            except FileNotFoundError:
                current = None
            if current is not None and current != self._written.encode("utf-8"):
                backup = _backup(self.path, current, self.backup_dir)
                message = (f"{self.path} was changed by hand while the loop ran; rewrote it from the ledger, "
                           f"the old file is kept as {backup}")
        write_text(self.path, text)
        self._written = text
        return message
