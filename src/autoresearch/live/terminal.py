"""The run in flight in the terminal: a rich Live panel on a TTY, plain status lines otherwise.

    with TerminalView(store_root, console):
        run_loop(...)          # the loop's own lines ("#7 abc1234 val=... keep ...") print above

It reads the store's live files (state.py), as the dashboard does, so it shows every worker
of a run. Redirected to a file (nohup, tmux logs, CI), it prints one line when a run starts
and one every `plain_interval` seconds while it trains: no redraw codes in the file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from autoresearch.live.state import eta_seconds, read_states

PLAIN_INTERVAL = 30.0


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def fmt_value(value) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.6g}"


def _elapsed(state: dict, now: float) -> float:
    start = state.get("run_started_at") if state.get("stage") == "measure" else state.get("iteration_started_at")
    return now - start if isinstance(start, (int, float)) else 0.0


def _who(state: dict) -> str:
    return f"[w{state['worker']}] " if state.get("worker") is not None else ""


def run_line(state: dict, now: float) -> str:
    """`#7 measure 00:42 / 05:00  LR 3e-3 -> 1e-2`: one worker's iteration in flight."""
    n, stage = state.get("iteration"), state.get("stage")
    if n is None or stage in ("recorded", "starting", "finished", None):
        return f"{_who(state)}between iterations"
    what = state.get("description") or "(the agent is proposing)"
    if stage == "measure":
        timing = f"{clock(_elapsed(state, now))} / {clock(state.get('budget'))}"
    else:
        timing = clock(_elapsed(state, now))
    label = {"measure": "training", "propose": "proposing", "screen": "screening", "commit": "committing",
             "judge": "judging", "confirm": "confirming"}.get(stage, stage)
    return f"{_who(state)}#{n} {label} {timing}  {what}"


def best_line(states: list[dict], now: float) -> str:
    best = _best(states)
    parts = []
    if best is not None:
        parts.append(f"best {best['primary']} {fmt_value(best['value'])} (#{best['iteration']}: {best['description']})")
    session = next((s["session"] for s in states if isinstance(s.get("session"), dict)), None)
    if session:
        done = sum(s["session"].get("done", 0) for s in states if isinstance(s.get("session"), dict))
        planned = max(s["session"].get("planned", 0) for s in states if isinstance(s.get("session"), dict))
        parts.append(f"{done} done this session" + (f" of {planned}" if planned and len(states) == 1 else ""))
    eta = eta_seconds(states, now)
    if eta is not None:
        parts.append(f"ETA {time.strftime('%H:%M', time.localtime(now + eta))} (in {clock(eta)})")
    return "  ·  ".join(parts)


def _best(states: list[dict]):
    best, primary, direction = None, None, "maximize"
    for s in states:
        b = s.get("best")
        if isinstance(b, dict) and isinstance(b.get("value"), (int, float)):
            primary, direction = s.get("primary"), s.get("direction", "maximize")
            if best is None or (b["value"] > best["value"]) == (direction == "maximize"):
                best = b
    return None if best is None else {**best, "primary": primary}


def status_line(states: list[dict], now: float | None = None) -> str:
    """The plain one-line status (no TTY): every worker's run, the best, the ETA."""
    now = time.time() if now is None else now
    alive = [s for s in states if s.get("alive")]
    runs = " | ".join(_with_last(s, now) for s in alive) or "idle"
    tail = best_line(alive or states, now)
    return f"{runs} | {tail}" if tail else runs


def _with_last(state: dict, now: float) -> str:
    line = run_line(state, now)
    last = state.get("log_line") if state.get("stage") == "measure" else ""
    return f"{line} | last: {last.strip()[:120]}" if last else line


class TerminalView:
    def __init__(self, store_root: Path | None, console: Console, *, plain_interval: float = PLAIN_INTERVAL,
                 tick: float = 1.0, live: bool | None = None):
        self.root = Path(store_root) if store_root else None
        self.console = console
        self.plain_interval = plain_interval
        self.tick = tick
        self.live = console.is_terminal if live is None else live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None

    def states(self) -> list[dict]:
        return read_states(self.root) if self.root is not None and self.root.is_dir() else []

    # -- rich --------------------------------------------------------------------------------
    def render(self):
        now = time.time()
        states = [s for s in self.states() if s.get("alive")]
        if not states:
            return Text("")
        rows = []
        for s in states:
            line = Text(run_line(s, now), style="bold")
            if s.get("stage") == "measure" and s.get("budget"):
                bar = Table.grid(padding=(0, 1))
                bar.add_row(ProgressBar(total=float(s["budget"]), completed=min(_elapsed(s, now), float(s["budget"])),
                                        width=30), line)
                rows.append(bar)
            else:
                rows.append(line)
            last = (s.get("log_line") or "").strip()
            point = (s.get("curve") or [None])[-1]
            if point:
                shown = [(k, v) for k, v in point.items() if k != "t"][:6]  # t: our arrival stamp, not the run's
                rows.append(Text("  curve: " + "  ".join(f"{k} {fmt_value(v)}" for k, v in shown),
                                 style="dim"))
            if last:
                rows.append(Text(f"  log: {last[:160]}", style="dim"))
        rows.append(Text(best_line(states, now), style="cyan"))
        return Group(*rows)

    # -- plain -------------------------------------------------------------------------------
    def _plain(self) -> None:
        seen: dict = {}
        last_print = 0.0
        while not self._stop.wait(self.tick):
            states = [s for s in self.states() if s.get("alive")]
            now = time.time()
            started = False
            for s in states:
                key = (s.get("worker"), s.get("iteration"))
                if s.get("stage") == "measure" and seen.get(s.get("worker")) != key:
                    seen[s.get("worker")] = key
                    started = True
            training = any(s.get("stage") == "measure" for s in states)
            if started or (training and now - last_print >= self.plain_interval):
                self.console.print(status_line(states, now), markup=False, highlight=False, soft_wrap=True)
                last_print = now

    def __enter__(self):
        if self.live:
            self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=2,
                              transient=True, redirect_stdout=True, redirect_stderr=False)
            self._live.start()
        else:
            self._thread = threading.Thread(target=self._plain, name="autoresearch-status", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
        if self._thread is not None:
            self._thread.join(2.0)
