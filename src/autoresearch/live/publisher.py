"""The loop's side of the live view: keeps `live.json` current (state.py says what it holds).

While a run trains, a thread re-reads the new part of its log and of the task's metrics.jsonl
about once a second: the last line and the learning curve so far, stamped with seconds since
the run started. Reads are incremental (a file offset), so a long run costs nothing more.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from autoresearch.curves import numeric_fields, parse_log
from autoresearch.live.events import Events
from autoresearch.live.state import TICK_SECONDS, live_path, write_state

MAX_POINTS = 400  # the live curve keeps every other point beyond this: enough for a plot
MAX_LINE = 300
CURVE_FILE = "metrics.jsonl"


class _Tail:
    """The new complete lines of a growing file, from where the last read stopped."""

    def __init__(self, path: Path, not_before: float = 0.0):
        self.path, self.offset, self.rest, self.not_before = Path(path), 0, b"", not_before

    def lines(self) -> list[str]:
        try:
            stat = self.path.stat()
            if stat.st_mtime + 1.0 < self.not_before:
                return []  # an earlier run's file, not this one's
            if stat.st_size < self.offset:  # rewritten from the start
                self.offset, self.rest = 0, b""
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(1024 * 1024)
        except OSError:
            return []
        self.offset += len(data)
        data = self.rest + data
        *whole, self.rest = data.split(b"\n")
        if len(self.rest) > 64 * 1024:  # a line that never ends (a progress bar): show its end
            whole.append(self.rest[-MAX_LINE:])
            self.rest = b""
        return [w.decode("utf-8", errors="replace").rstrip("\r") for w in whole]


class Publisher(Events):
    def __init__(self, store_root: Path, *, worker: int | None, tag: str, primary: str, direction: str,
                 budget: float, timeout: float, task_dir: Path):
        self.path = live_path(store_root, worker)
        self.task_dir = Path(task_dir)
        self.state: dict = {"tag": tag, "worker": worker, "primary": primary, "direction": direction,
                            "budget": budget, "timeout": timeout, "pid": os.getpid(),
                            "host": socket.gethostname(), "stage": None, "iteration": None}
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop_tick = threading.Event()
        self._durations: list[float] = []
        self._remaining = None

    # -- events ----------------------------------------------------------------------------
    def session(self, *, planned: int, max_seconds: float | None, remaining=None) -> None:
        now = time.time()
        self._remaining = remaining
        self._planned = planned
        self.state["session"] = {"started_at": now, "planned": planned, "done": 0, "mean_seconds": None,
                                 "deadline": now + max_seconds if max_seconds is not None else None,
                                 "queued": planned}
        self._write(stage="starting", iteration=None)

    def stage(self, n: int, stage: str, **info) -> None:
        now = time.time()
        with self._lock:
            if n != self.state.get("iteration"):
                self._stop_ticker()
                self.state.update(iteration=n, iteration_started_at=now, description="", log_line="",
                                  curve=[], run_started_at=None)
            if "description" in info:
                self.state["description"] = str(info["description"])[:MAX_LINE]
            self.state["stage"], self.state["stage_at"] = stage, now
            if stage == "measure" and info.get("log_path"):
                self._start_ticker(Path(info["log_path"]), info.get("curve_dir") or self.task_dir,
                                   info.get("run_started_at", now))
            elif stage != "measure":
                self._stop_ticker()
            self._write_locked()

    def recorded(self, record, best) -> None:
        with self._lock:
            self._stop_ticker()
            session = self.state.setdefault("session", {"started_at": time.time(), "planned": 0, "done": 0})
            session["done"] = session.get("done", 0) + 1
            if record.finished_at and record.started_at:
                self._durations.append(max(0.0, record.finished_at - record.started_at))
                session["mean_seconds"] = sum(self._durations) / len(self._durations)
            self.state["last"] = _brief(record, self.state["primary"])
            if best is not None:
                self.state["best"] = _brief(best, self.state["primary"])
            self.state["stage"] = "recorded"
            self._write_locked()

    def finished(self, reason: str = "") -> None:
        with self._lock:
            self._stop_ticker()
            self.state.update(stage="finished", finished_reason=reason)
            self._write_locked()

    # -- the file --------------------------------------------------------------------------
    def _write(self, **fields) -> None:
        with self._lock:
            self.state.update(fields)
            self._write_locked()

    def _write_locked(self) -> None:
        self.state["updated_at"] = time.time()
        session = self.state.get("session")
        if session is not None:
            if callable(self._remaining):  # workers: the shared iterations no worker has taken yet
                queued = self._remaining()
            else:
                busy = self.state.get("iteration") is not None and self.state.get("stage") not in ("recorded", "starting")
                queued = session.get("planned", 0) - session.get("done", 0) - busy
            session["queued"] = max(0, int(queued or 0))
        try:
            write_state(self.path, self.state)
        except OSError:
            pass  # a full disk must not stop the night for the sake of a view

    # -- the run in flight -----------------------------------------------------------------
    def _start_ticker(self, log: Path, curve_dir: Path, started: float) -> None:
        self._stop_ticker()
        self.state["run_started_at"] = started
        self._stop_tick = stop = threading.Event()
        log_tail, curve_tail = _Tail(log), _Tail(Path(curve_dir) / CURVE_FILE, not_before=started)

        def tick() -> None:
            while not stop.wait(TICK_SECONDS):
                self._poll(log_tail, curve_tail, started, stop)
        self._ticker = threading.Thread(target=tick, name="autoresearch-live", daemon=True)
        self._ticker.start()

    def _stop_ticker(self) -> None:
        self._stop_tick.set()
        ticker, self._ticker = self._ticker, None
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(2.0)

    def _poll(self, log_tail: _Tail, curve_tail: _Tail, started: float, stop: threading.Event) -> None:
        now = time.time()
        log_lines = log_tail.lines()
        points = _jsonl_points(curve_tail.lines())
        with self._lock:
            if stop.is_set():
                return
            text = [line for line in log_lines if line.strip()]
            if text:
                self.state["log_line"] = text[-1][-MAX_LINE:]
            if not points and not _has_jsonl(curve_tail):
                points = parse_log("\n".join(log_lines))  # `epoch N loss X` lines, when no metrics.jsonl
            curve = self.state.setdefault("curve", [])
            for p in points:
                p.setdefault("t", round(now - started, 2))
                curve.append(p)
            if len(curve) > MAX_POINTS:
                self.state["curve"] = curve[::2]
            self._write_locked()


def _has_jsonl(tail: _Tail) -> bool:
    return tail.offset > 0


def _jsonl_points(lines: list[str]) -> list[dict]:
    import json

    points = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (point := numeric_fields(record)):
                points.append(point)
    return points


def _brief(record, primary: str) -> dict:
    value = record.metrics.get(primary)
    return {"iteration": record.iteration, "commit": record.commit[:12], "status": record.status.value,
            "value": value if isinstance(value, float) else None, "description": record.description[:MAX_LINE],
            "reason": record.reason[:MAX_LINE]}
