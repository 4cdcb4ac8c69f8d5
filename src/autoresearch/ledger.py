"""The ledger: an append-only JSONL file, one line per finished experiment.

It is the single source of truth for a tag; results.tsv and every summary are derived
from it. Appending a record is the moment an experiment becomes real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from autoresearch.atomic import append_line
from autoresearch.errors import AutoresearchError
from autoresearch.records import Experiment, Status


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._records: list[Experiment] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def records(self) -> list[Experiment]:
        if self._records is None:
            self._records = self._load()
        return self._records

    def _load(self) -> list[Experiment]:
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            # A kill mid-append left a torn last line: the experiment never finished, drop it.
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as fh:
                fh.truncate(len(raw))
                os.fsync(fh.fileno())
        lines = raw.decode("utf-8", errors="replace").splitlines()
        filled = [line for line in lines if line.strip()]
        try:
            # One parse of the whole file as a JSON array: a third faster than a parse per line.
            # A bad line fails the parse or changes the count: then line by line, which names it.
            values = json.loads("[" + ",".join(filled) + "]")
            if len(values) == len(filled) and all(type(d) is dict for d in values):
                return [Experiment.from_json(d) for d in values]
        except (ValueError, KeyError, TypeError):
            pass
        return self._load_lines(lines)

    def _load_lines(self, lines: list[str]) -> list[Experiment]:
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError(f"a JSON object expected, got {type(record).__name__}")
                records.append(Experiment.from_json(record))
            except (ValueError, KeyError, TypeError) as exc:
                raise AutoresearchError(
                    f"{self.path}: line {number} is not a valid experiment record ({exc}); "
                    "the ledger is append-only: restore it from a backup or remove that line"
                ) from None
        return records

    def append(self, record: Experiment) -> None:
        records = self.records  # read the file first, or the new line would be loaded twice
        append_line(self.path, json.dumps(record.to_json(), sort_keys=True))
        records.append(record)

    def reload(self) -> list[Experiment]:
        self._records = None
        return self.records

    # -- derived state -------------------------------------------------------------------
    def best(self) -> Experiment | None:
        """The last keep: keeps only ever improve, so the newest is the best."""
        for record in reversed(self.records):
            if record.status is Status.KEEP:
                return record
        return None

    def next_iteration(self) -> int:
        # Not the last line's number plus one: workers record in the order their runs finish.
        return max((r.iteration for r in self.records), default=-1) + 1

    def find(self, iteration: int) -> Experiment | None:
        for record in reversed(self.records):
            if record.iteration == iteration:
                return record
        return None
