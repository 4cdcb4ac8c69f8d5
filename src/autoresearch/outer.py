"""The outer loop's hooks into each iteration: crash repair, prompt extras, the memo."""

from __future__ import annotations

import json
import time
from typing import Callable, Sequence

from autoresearch.agents.base import Memo
from autoresearch.atomic import append_line, write_text
from autoresearch.context import RECENT, view_history
from autoresearch.memo import plateau_length, rules_memo, should_refresh
from autoresearch.prompt import Extras, render
from autoresearch import verdict
from autoresearch.records import Experiment, Status

# What makes a crash repairable is Verdict.repairable; the names stay for earlier import paths.
REPAIRABLE = verdict.REPAIRABLE
ENVIRONMENT_HINTS = verdict.SETUP_HINTS


def memo_path(store):
    return store.root / "strategy.md"


def repair_target(history: Sequence[Experiment], agent, max_attempts: int) -> Experiment | None:
    """The crashed experiment the next iteration should repair, if any (seed 004: fix the dumb
    crash and re-run; abandon a broken idea after a few attempts)."""
    if not history or max_attempts <= 0 or not getattr(agent, "repairs", True):
        return None
    last = history[-1]
    if last.commit == last.parent or not last.verdict.repairable:
        return None  # nothing was committed, or the crash is not the change's (a timeout, the setup)
    root = last.repair_of if last.repair_of is not None else last.iteration
    attempts = sum(1 for e in history if e.repair_of == root)
    return last if attempts < max_attempts else None


def prompt_extras(task, store, history: Sequence[Experiment], repair: Experiment | None) -> Extras:
    memo_file = memo_path(store)
    memo = memo_file.read_text(encoding="utf-8") if memo_file.is_file() else ""
    plateau = plateau_length(history)
    repair_data = None
    if repair is not None:
        from autoresearch.context import log_tail
        root = repair.repair_of if repair.repair_of is not None else repair.iteration
        repair_data = {
            "iteration": repair.iteration, "description": repair.description, "reason": repair.reason,
            "log_tail": log_tail(store.root / "runs" / f"{repair.iteration:04d}", 40),
            "attempt": 1 + sum(1 for e in history if e.repair_of == root),
            "max_attempts": task.agent.max_fix_attempts,
        }
    return Extras(memo=memo, hints=_hints(task, store), repair=repair_data,
                  plateau=plateau if task.agent.plateau and plateau >= task.agent.plateau else 0)


def _hints(task, store) -> str:
    """The analysis summary's hints, when the analysis has run."""
    for path in (store.root / "analysis_summary.json", task.dir / "analysis_summary.json"):
        if path.is_file():
            try:
                from autoresearch.analysis.summary import summary_hints
                return summary_hints(json.loads(path.read_text()))
            except Exception:  # an old or partial summary must not block the experiment
                return ""
    return ""


def refresh_memo_if_due(task, store, agent, say: Callable[[str], None]) -> bool:
    history = store.ledger.records
    if not should_refresh(history, task.agent.memo_every, task.agent.plateau):
        return False
    primary, direction = task.metrics.primary, task.metrics.direction
    rules = rules_memo(history, primary, direction, task.agent.plateau or 5)
    memo = rules
    writer = getattr(agent, "write_memo", None)
    if writer is not None:
        best = next(e for e in reversed(history) if e.status is Status.KEEP)
        view = view_history(history, best, primary, direction, store.root / "runs", recent=RECENT)
        old = memo_path(store).read_text() if memo_path(store).is_file() else ""
        program = (task.dir / "program.md").read_text() if (task.dir / "program.md").is_file() else ""
        request = render("memo.md.j2", editable=task.editable, direction=direction, primary=primary,
                         program=program[:6000], memo=old, rules=rules, recent=view.recent)
        error = ""
        try:
            written = writer(request)
            written = written if isinstance(written, Memo) else Memo(str(written or ""))
        except Exception as exc:  # fall back to the rules: the loop goes on
            error = str(exc)
            written = Memo("", getattr(exc, "cost_usd", 0.0), getattr(exc, "tokens", 0))
            say(f"warning: the agent could not write the strategy memo ({exc}); using the rules-based one")
        if written.text.strip():
            memo = written.text.strip() + "\n"
        record_memo_call(store, history[-1].iteration, getattr(agent, "name", "agent"), written, error)
    write_text(memo_path(store), memo)
    return True


def memo_calls_path(store):
    return store.root / "memo_calls.jsonl"


def record_memo_call(store, after: int, agent: str, memo: Memo, error: str = "") -> None:
    """One line per LLM memo call: the memo is no iteration, so its cost has no ledger row."""
    entry = {"after_iteration": after, "agent": agent, "cost_usd": round(float(memo.cost_usd or 0.0), 6),
             "tokens": int(memo.tokens or 0), "ok": not error, "at": round(time.time(), 3)}
    if error:
        entry["error"] = error[:500]
    append_line(memo_calls_path(store), json.dumps(entry, sort_keys=True))


def memo_spend(store) -> tuple[float, int]:
    """(dollars, tokens) the strategy memo calls of a run have cost so far."""
    path = memo_calls_path(store)
    if not path.is_file():
        return 0.0, 0
    cost, tokens = 0.0, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            cost, tokens = cost + float(entry.get("cost_usd") or 0.0), tokens + int(entry.get("tokens") or 0)
        except (ValueError, TypeError, AttributeError):
            continue  # a line torn by a kill mid-append: that call's cost is lost, not the run
    return round(cost, 6), tokens


def evolve_program(task, store) -> str:
    """Write program.proposed.md beside program.md: the program plus the memo's lessons.
    program.md itself is never edited without the user asking."""
    program_path = task.dir / "program.md"
    program = program_path.read_text(encoding="utf-8") if program_path.is_file() else ""
    memo = memo_path(store).read_text(encoding="utf-8") if memo_path(store).is_file() else rules_memo(
        store.ledger.records, task.metrics.primary, task.metrics.direction)
    proposed = task.dir / "program.proposed.md"
    write_text(proposed, f"{program.rstrip()}\n\n## Lessons from run {store.tag} (proposed; review before adopting)\n\n{memo}")
    return str(proposed)
