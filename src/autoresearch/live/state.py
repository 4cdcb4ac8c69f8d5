"""The iteration in flight as others see it: `.autoresearch/<tag>/live.json` (one per worker).

    {"iteration": 7, "stage": "measure", "description": "LR 3e-3 -> 1e-2",
     "started_at": ..., "updated_at": ..., "budget": 300, "log_line": "epoch 12 loss 0.31",
     "curve": [{"epoch": 1, "val_loss": 0.9, "t": 3.1}, ...], "best": {...}, "session": {...}}

The loop writes it (publisher.py) at every stage and about once a second while a run trains;
the terminal view and the dashboard only read it. It is a view, never a record: the ledger
stays the source of truth, and a missing, stale or hand-edited file changes no decision.

`stop.request` beside it asks the loop to stop after the iteration in flight; the loop
removes it once it has stopped, so a resume runs normally.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from autoresearch.atomic import write_json

LIVE_NAME = "live.json"
STOP_NAME = "stop.request"
TICK_SECONDS = 1.0
STALE_SECONDS = 15.0  # no update for this long while "running": the process is gone


def live_path(store_root: Path, worker: int | None = None) -> Path:
    return Path(store_root) / (LIVE_NAME if worker is None else f"live-w{worker}.json")


def write_state(path: Path, state: dict) -> None:
    write_json(path, state, durable=False)  # a view: a power cut may lose it, a kill never tears it


def read_states(store_root: Path) -> list[dict]:
    """Every live file of a tag (main loop and workers), each with `alive` filled in."""
    root = Path(store_root)
    states = []
    for path in sorted([root / LIVE_NAME, *root.glob("live-w*.json")]):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # absent, or edited by hand: shown as nothing rather than an error
        if isinstance(state, dict):
            state["alive"] = is_alive(state)
            states.append(state)
    return states


def is_alive(state: dict, now: float | None = None) -> bool:
    """Running, recently updated, and (on this machine) its process still exists."""
    if state.get("stage") in (None, "finished"):
        return False
    now = time.time() if now is None else now
    updated = state.get("updated_at")
    if not isinstance(updated, (int, float)) or now - updated > STALE_SECONDS:
        return False
    pid = state.get("pid")
    if isinstance(pid, int) and pid > 0 and state.get("host") == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def stop_path(store_root: Path) -> Path:
    return Path(store_root) / STOP_NAME


def request_stop(store_root: Path, who: str = "dashboard") -> Path:
    path = stop_path(store_root)
    write_json(path, {"requested_at": time.time(), "by": who}, durable=False)
    return path


def stop_requested(store_root: Path) -> bool:
    return stop_path(store_root).exists()


def clear_stop(store_root: Path) -> None:
    stop_path(store_root).unlink(missing_ok=True)


def eta_seconds(states: list[dict], now: float | None = None) -> float | None:
    """Seconds until the session's planned iterations are done, from its mean iteration time.

    None until one iteration has finished (there is nothing to extrapolate from), or when no
    worker is alive. Several workers share the remaining iterations."""
    now = time.time() if now is None else now
    alive = [s for s in states if s.get("alive") and isinstance(s.get("session"), dict)]
    means = [s["session"].get("mean_seconds") for s in alive if s["session"].get("mean_seconds")]
    if not alive or not means:
        return None
    mean = sum(means) / len(means)
    queued = max(s["session"].get("queued") or 0 for s in alive)  # not started by any worker yet
    in_flight = [s for s in alive if s.get("iteration") is not None and s.get("stage") not in ("recorded", "starting")]
    left_now = max((max(0.0, mean - (now - (s.get("iteration_started_at") or now))) for s in in_flight), default=0.0)
    eta = left_now + queued * mean / len(alive)
    deadlines = [s["session"].get("deadline") for s in alive if s["session"].get("deadline")]
    if deadlines:  # --max-seconds: no iteration starts after it, the one in flight still finishes
        eta = min(eta, max(0.0, min(deadlines) - now) + mean)
    return eta
