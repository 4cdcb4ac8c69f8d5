"""results.tsv: the karpathy-style table, derived from the ledger and rewritten atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from autoresearch.atomic import write_text
from autoresearch.decision import rounded
from autoresearch.records import Experiment, Status


def header(columns: Sequence[str]) -> str:
    return "\t".join(["commit", *columns, "memory_gb", "status", "description"])


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def row(exp: Experiment, columns: Sequence[str]) -> str:
    crashed = exp.status is Status.CRASH
    cells = [exp.commit[:7]]
    for name in columns:
        value = None if crashed else rounded(exp.metrics.get(name))
        cells.append(f"{value if value is not None else 0.0:.6f}")
    cells.append(f"{0.0 if crashed else exp.memory_gb:.1f}")
    cells.append(exp.status.value)
    cells.append(_clean(exp.description))
    return "\t".join(cells)


def render(experiments: Iterable[Experiment], columns: Sequence[str]) -> str:
    return "\n".join([header(columns), *(row(e, columns) for e in experiments)]) + "\n"


def write(path: str | Path, experiments: Iterable[Experiment], columns: Sequence[str]) -> None:
    write_text(path, render(experiments, columns))


class Table:
    """results.tsv kept in step with a growing ledger: each row is formatted once."""

    def __init__(self, path: str | Path, columns: Sequence[str]):
        self.path = Path(path)
        self.columns = tuple(columns)
        self.lines: list[str] = [header(columns)]

    def reset(self, experiments: Iterable[Experiment]) -> None:
        self.lines = [header(self.columns), *(row(e, self.columns) for e in experiments)]
        self.flush()

    def add(self, exp: Experiment) -> None:
        self.lines.append(row(exp, self.columns))
        self.flush()

    def flush(self) -> None:
        write_text(self.path, "\n".join(self.lines) + "\n")
