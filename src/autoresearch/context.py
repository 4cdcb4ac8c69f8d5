"""What the agent sees: the history turned into plain data for the prompt templates.

Seed 001: "context quality > iteration count". The newest experiments are shown in full
(explanation, metrics, delta to best, crash reason or log tail); every older one as one
line, with aggregate statistics, so nothing tried is ever invisible to the agent. A size
budget keeps the prompt bounded however long the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from autoresearch.decision import rounded
from autoresearch.ledger import Ledger, bests_of
from autoresearch.records import Experiment, Status

RECENT = 10
LOG_TAIL_LINES = 30
EXPLANATION_CHARS = 1200  # one explanation is 2-5 sentences; more is an agent rambling


def fmt(value) -> str:
    v = rounded(value)
    return f"{v:.6f}" if v is not None else "-"


def delta(exp: Experiment, best: Experiment, primary: str) -> str:
    a, b = rounded(exp.metrics.get(primary)), rounded(best.metrics.get(primary))
    if a is None or b is None or exp.status is Status.CRASH:
        return "-"
    return f"{a - b:+.6f}"


def log_tail(run_dir: Path, lines: int = LOG_TAIL_LINES) -> str:
    log = run_dir / "log.txt"
    if not log.is_file():
        return ""
    with open(log, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - 16384))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class HistoryView:
    recent: list[dict] = field(default_factory=list)
    older: list[str] = field(default_factory=list)
    older_omitted: int = 0
    stats: dict = field(default_factory=dict)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def view_history(history: Sequence[Experiment], best: Experiment, primary: str, direction: str,
                 runs_dir: Path, recent: int = RECENT, ledger: Ledger | None = None) -> HistoryView:
    """`ledger`: the one `history` is from, whose adopted configs re-judged the bests (ledger.py)."""
    view = HistoryView()
    newest, older = list(history[-recent:]), list(history[:-recent] if len(history) > recent else [])
    for e in newest:
        explanation = e.explanation.strip()
        if first_line(explanation) == first_line(e.description):  # the description is its first line
            explanation = explanation.split("\n", 1)[1].strip() if "\n" in explanation else ""
        view.recent.append({
            "iteration": e.iteration, "commit": e.commit[:7], "status": e.status.value,
            "value": fmt(e.metrics.get(primary)) if e.status is not Status.CRASH else "-",
            "delta": delta(e, best, primary), "description": first_line(e.description),
            "explanation": explanation[:EXPLANATION_CHARS],
            "metrics": ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in sorted(e.metrics.items())
                                 if isinstance(v, (int, float, str)))[:400],
            "reason": e.reason,
            "log_tail": log_tail(runs_dir / f"{e.iteration:04d}") if e.status is Status.CRASH and e.exit_code is not None else "",
        })
    for e in older:
        value = fmt(e.metrics.get(primary)) if e.status is not Status.CRASH else "crash"
        view.older.append(f"#{e.iteration} {e.status.value} {value} {first_line(e.description)[:80]}")
    view.stats = aggregate(history, primary, direction, ledger)
    return view


def aggregate(history: Sequence[Experiment], primary: str, direction: str, ledger: Ledger | None = None) -> dict:
    counts = {s.value: sum(1 for e in history if e.status is s) for s in Status}
    agent_runs = [e for e in history if e.iteration > 0]
    keeps = sum(1 for e in agent_runs if e.status is Status.KEEP)
    best_over_time = [f"#{e.iteration}: {fmt(e.metrics.get(primary))}" for e in reversed(bests_of(history, ledger))]
    if len(best_over_time) > 9:  # the start and the recent climb tell the story; keep the line short
        best_over_time = [best_over_time[0], "...", *best_over_time[-8:]]
    last_keep = max((e.iteration for e in history if e.status is Status.KEEP), default=0)
    last = history[-1].iteration if history else 0
    return {
        "total": len(history), "counts": counts,
        "keep_rate": f"{keeps / len(agent_runs):.0%}" if agent_runs else "-",
        "best_over_time": best_over_time, "since_last_keep": last - last_keep,
    }
