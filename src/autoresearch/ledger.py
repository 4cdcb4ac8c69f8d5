"""The ledger: an append-only JSONL file, one line per finished experiment.

It is the single source of truth for a tag; results.tsv and every summary are derived
from it. Appending a record is the moment an experiment becomes real.

Tamper-evident: each line carries `prev`, the SHA-256 of the line before it (of "" for the
first). A line that does not chain (edited, inserted, removed or reordered by hand) is refused
when the ledger is read, naming the line. Ledgers written before the chain existed still load:
the chain starts at the first line that carries `prev`, and every line after it must chain.
The hash of the last line is kept beside the ledger (`ledger.jsonl.head`), so an edit of the
last record is refused too. This detects edits; it cannot stop someone who rewrites the whole chain, which is why nothing
an experiment runs can reach the store (the sandbox hides it).

Besides experiments, a line may hold an event: a JSON object with an `event` key (today only
`adopt_config`, written when a resume adopts changed rules; tag_config.py). Events chain like
records, are kept in `events` (never in `records`, so results.tsv shows experiments only), and
`best()` honours them. A ledger written before events existed simply has none.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from autoresearch.atomic import append_line, write_text
from autoresearch.errors import AutoresearchError
from autoresearch.records import Experiment, Status


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._records: list[Experiment] | None = None
        self._events: list[dict] = []  # each with "_after": how many records came before it
        self._last_line = ""  # the file's last line, which the next record's `prev` hashes
        self._torn_at: int | None = None  # where a torn last line starts: the next append cuts it off
        self._lock = threading.Lock()  # workers' threads append to one ledger; the head follows in order

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def records(self) -> list[Experiment]:
        if self._records is None:
            self._records = self._load()
        return self._records

    @property
    def events(self) -> list[dict]:
        """The event lines (see the module's docstring), in order; `_after` says where they fell."""
        self.records  # noqa: B018 - loads both
        return self._events

    def _load(self) -> list[Experiment]:
        self._events = []
        if not self.path.exists():
            return []
        # The head before the lines: the loop appends a line, then moves the head. Read the
        # other way round, a reader (status, the dashboard) could get the lines before an append
        # and the head after it, and take a live night's ledger for one changed by hand.
        head = self._head_path()
        try:
            recorded = head.read_text().strip()
        except FileNotFoundError:
            recorded = ""
        raw = self.path.read_bytes()
        self._torn_at = None
        if raw and not raw.endswith(b"\n"):
            # A kill mid-append left a torn last line (or the loop is writing it right now): the
            # experiment never finished, drop it. Only the next append cuts it off the file: a
            # reader that did, beside a live night, would cut the line being written in two.
            raw = raw[: raw.rfind(b"\n") + 1]
            self._torn_at = len(raw)
        lines = raw.decode("utf-8", errors="replace").splitlines()
        filled = [line for line in lines if line.strip()]
        try:
            # One parse of the whole file as a JSON array: a third faster than a parse per line.
            # A bad line fails the parse or changes the count: then line by line, which names it.
            values = json.loads("[" + ",".join(filled) + "]")
            if len(values) == len(filled) and all(type(d) is dict for d in values):
                records = self._split(values)
                self._check_chain(lines, recorded)
                return records
        except (ValueError, KeyError, TypeError):
            pass
        records = self._load_lines(lines)
        self._check_chain(lines, recorded)
        return records

    def _check_chain(self, lines: list[str], recorded: str) -> None:
        previous, chained = "", False
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            prev = json.loads(line).get("prev")
            if prev is not None or chained:
                chained = True
                if prev != line_hash(previous):
                    why = "carries no hash" if prev is None else "does not chain to the line before it"
                    raise AutoresearchError(
                        f"{self.path}: line {number} {why}: the ledger was changed outside autoresearch "
                        f"(edited, inserted or removed lines); restore it from a backup, or remove line {number} "
                        "and the lines after it to keep what came before")
            previous = line
        self._last_line = previous
        head = self._head_path()
        recorded = recorded if chained else ""
        filled = [line for line in lines if line.strip()]
        # A kill between the append and the head's update leaves the head one line behind: fine.
        if recorded and recorded != line_hash(previous) and not (len(filled) > 1 and recorded == line_hash(filled[-2])):
            number = max(i for i, line in enumerate(lines, 1) if line.strip())
            raise AutoresearchError(
                f"{self.path}: line {number} does not match the hash recorded in {head.name}: the last record was "
                "changed outside autoresearch; restore the ledger from a backup, or remove that line and "
                f"{head.name} to keep what came before")

    def _head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    def _split(self, values: list[dict]) -> list[Experiment]:
        """Experiments into the list returned, events into `_events`."""
        records: list[Experiment] = []
        for d in values:
            if "event" in d:
                self._events.append(_event(d, len(records)))
            else:
                records.append(Experiment.from_json(d))
        return records

    def _load_lines(self, lines: list[str]) -> list[Experiment]:
        records = []
        self._events = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError(f"a JSON object expected, got {type(record).__name__}")
                if "event" in record:
                    self._events.append(_event(record, len(records)))
                    continue
                records.append(Experiment.from_json(record))
            except (ValueError, KeyError, TypeError) as exc:
                raise AutoresearchError(
                    f"{self.path}: line {number} is not a valid experiment record ({exc}); "
                    "the ledger is append-only: restore it from a backup or remove that line"
                ) from None
        return records

    def append(self, record: Experiment) -> None:
        records = self.records  # read the file first, or the new line would be loaded twice
        with self._lock:
            self._append_line(record.to_json())
            records.append(record)

    def append_event(self, kind: str, **fields) -> dict:
        """Record an event (`kind`: e.g. "adopt_config") after the experiments so far; returns it."""
        records = self.records
        with self._lock:
            data = {**fields, "event": kind}
            self._append_line(data)
            event = _event(data, len(records))
            self._events.append(event)
            return event

    def _append_line(self, data: dict) -> None:
        if self._torn_at is not None:
            with open(self.path, "r+b") as fh:
                fh.truncate(self._torn_at)
                os.fsync(fh.fileno())
            self._torn_at = None
        line = json.dumps({**data, "prev": line_hash(self._last_line)}, sort_keys=True)
        append_line(self.path, line)
        self._last_line = line
        write_text(self._head_path(), line_hash(line) + "\n", durable=False)

    def reload(self) -> list[Experiment]:
        self._records = None
        return self.records

    # -- derived state -------------------------------------------------------------------
    # "The best" has one definition, here: callers ask `best`/`best_of`, never the last keep.
    def best(self, upto: int | None = None) -> Experiment | None:
        """The last keep: keeps only ever improve, so the newest is the best.

        After an adopted config (an `adopt_config` event), the best it re-judged, until a keep
        recorded after it; None when it found none (a new baseline runs first). `upto`: the best
        as it stood after the first `upto` records (what record `upto` was judged against)."""
        records = self.records
        end = len(records) if upto is None else min(upto, len(records))
        start, rejudged = self._adopted(end)
        # From the end, on the list itself: called every iteration, on ledgers of 100,000 lines.
        latest = next((records[i] for i in range(end - 1, start - 1, -1) if records[i].status is Status.KEEP), None)
        return latest if latest is not None else rejudged

    def bests(self, upto: int | None = None) -> list[Experiment]:
        """The bests under the rules in force, newest first: the keeps since the last adopted
        config, then the best it re-judged (keeps before it were judged by other rules)."""
        records = self.records if upto is None else self.records[:upto]
        start, rejudged = self._adopted(len(records))
        out = [r for r in reversed(records[start:]) if r.status is Status.KEEP]
        return out + ([rejudged] if rejudged is not None else [])

    def _adopted(self, count: int) -> tuple[int, Experiment | None]:
        """The last of `adoptions()` in force after `count` records; (0, None) when none was."""
        return next(((after, best) for after, best in reversed(self.adoptions()) if after <= count), (0, None))

    def adoptions(self) -> list[tuple[int, Experiment | None]]:
        """(how many records came before it, the best it re-judged) of each adopted config, in order."""
        return [(e["_after"], self.find(e["best"]) if e.get("best") is not None else None)
                for e in self.events if e["event"] == "adopt_config"]

    def baseline(self) -> Experiment | None:
        """The first keep: the code the run started from, or, after an adopted config that no
        recorded experiment could be judged by, the new baseline run after it."""
        start = max((after for after, best in self.adoptions() if best is None), default=0)
        return next((r for r in self.records[start:] if r.status is Status.KEEP), None)

    def holds(self, records) -> bool:
        """`records` are this ledger's own, or the first of them (a copy taken before more were appended)."""
        own = self.records
        return len(records) <= len(own) and (not records or records[-1] is own[len(records) - 1])

    def next_iteration(self) -> int:
        # Not the last line's number plus one: workers record in the order their runs finish.
        return max((r.iteration for r in self.records), default=-1) + 1

    def find(self, iteration: int) -> Experiment | None:
        for record in reversed(self.records):
            if record.iteration == iteration:
                return record
        return None


def best_of(records, ledger: "Ledger | None" = None) -> Experiment | None:
    """The best of `records`: the ledger's `best()` as of them when they are its own records or
    the first of them (an adopted config may have re-judged it), else their last keep."""
    if ledger is not None and ledger.holds(records):
        return ledger.best(len(records))
    return next((r for r in reversed(records) if r.status is Status.KEEP), None)


def bests_of(records, ledger: "Ledger | None" = None) -> list[Experiment]:
    """The bests of `records`, newest first: the ledger's `bests()` as of them when they are its own
    records or the first of them, else their keeps."""
    if ledger is not None and ledger.holds(records):
        return ledger.bests(len(records))
    return [r for r in reversed(records) if r.status is Status.KEEP]


def baseline_of(records, ledger: "Ledger | None" = None) -> Experiment | None:
    """The baseline of `records`: the ledger's `baseline()` when they are its own, else their first keep."""
    if ledger is not None and len(records) == len(ledger.records) and ledger.holds(records):
        return ledger.baseline()
    return next((r for r in records if r.status is Status.KEEP), None)


def _event(data: dict, after: int) -> dict:
    event = {k: v for k, v in data.items() if k != "prev"}
    if not isinstance(event["event"], str):
        raise AutoresearchError(f"an event line's `event` must be a name, got {event['event']!r}")
    event["_after"] = after
    return event


def line_hash(line: str) -> str:
    """The `prev` of the record after `line`: SHA-256 of its text, without the newline."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()
