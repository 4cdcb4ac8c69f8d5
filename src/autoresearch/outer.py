"""The outer loop's hooks into each iteration: crash repair, prompt extras, the memo."""

from __future__ import annotations

import json
import time
from typing import Callable, Sequence

from autoresearch.agents.base import Memo, MemoFailed, as_agent
from autoresearch.cost import memo_calls_path, memo_spend, spend  # noqa: F401  (earlier import paths)
from autoresearch.atomic import append_line, write_text
from autoresearch.context import RECENT, view_history
from autoresearch.ledger import best_of
from autoresearch.memo import DEFAULT_PLATEAU, plateau_length, plateau_reached, rules_memo, should_refresh
from autoresearch.prompt import Extras, render
from autoresearch import verdict
from autoresearch.records import Experiment

# What makes a crash repairable is Verdict.repairable; the names stay for earlier import paths.
REPAIRABLE = verdict.REPAIRABLE
ENVIRONMENT_HINTS = verdict.SETUP_HINTS


def memo_path(store):
    return store.root / "strategy.md"


def repair_target(history: Sequence[Experiment], agent, max_attempts: int) -> Experiment | None:
    """The crashed experiment the next iteration should repair, if any (seed 004: fix the dumb
    crash and re-run; abandon a broken idea after a few attempts)."""
    if not history or max_attempts <= 0 or not as_agent(agent).repairs:
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
            "log_tail": log_tail(store.run_path(repair.iteration), 40),
            "attempt": 1 + sum(1 for e in history if e.repair_of == root),
            "max_attempts": task.agent.max_fix_attempts,
        }
    return Extras(memo=memo, hints=_hints(task, store), repair=repair_data,
                  plateau=plateau if plateau_reached(plateau, task.agent.plateau) else 0)


def _hints(task, store) -> str:
    """The analysis's hints, when the analysis has run: the text its observer left in the store
    (analysis/summary.write_summary); the loop reads it and never imports the analysis."""
    try:
        return store.hints_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # none yet, or unreadable: the experiment goes on
        return ""


def refresh_memo_if_due(task, store, agent, say: Callable[[str], None]) -> bool:
    history = store.ledger.records
    if not should_refresh(history, task.agent.memo_every, task.agent.plateau):
        return False
    primary, direction = task.metrics.primary, task.metrics.direction
    rules = rules_memo(history, primary, direction, task.agent.plateau or DEFAULT_PLATEAU)
    memo = rules
    agent = as_agent(agent)
    request = _memo_request(task, store, history, rules)
    error = ""
    try:
        written = agent.write_memo(request)  # None: this agent leaves the memo to the rules
    except Exception as exc:  # fall back to the rules: the loop goes on
        error = str(exc)
        written = Memo("", exc.cost_usd, exc.tokens) if isinstance(exc, MemoFailed) else Memo("")  # what it spent
        say(f"warning: the agent could not write the strategy memo ({exc}); using the rules-based one")
    if written is not None:
        written = written if isinstance(written, Memo) else Memo(str(written or ""))
        if written.text.strip():
            memo = written.text.strip() + "\n"
        record_memo_call(store, history[-1].iteration, agent.name, written, error)
    write_text(memo_path(store), memo)
    return True


def _memo_request(task, store, history: Sequence[Experiment], rules: str) -> str:
    """The prompt an LLM agent writes the memo from."""
    primary, direction = task.metrics.primary, task.metrics.direction
    best = best_of(history, store.ledger)  # re-judged where the run adopted new rules
    view = view_history(history, best, primary, direction, store.root / "runs", recent=RECENT, ledger=store.ledger)
    old = memo_path(store).read_text() if memo_path(store).is_file() else ""
    program = (task.dir / "program.md").read_text() if (task.dir / "program.md").is_file() else ""
    return render("memo.md.j2", editable=task.editable, direction=direction, primary=primary,
                  program=program[:6000], memo=old, rules=rules, recent=view.recent)


def record_memo_call(store, after: int, agent: str, memo: Memo, error: str = "") -> None:
    """One line per LLM memo call: the memo is no iteration, so its cost has no ledger row."""
    entry = {"after_iteration": after, "agent": agent, "cost_usd": round(float(memo.cost_usd or 0.0), 6),
             "tokens": int(memo.tokens or 0), "ok": not error, "at": round(time.time(), 3)}
    if error:
        entry["error"] = error[:500]
    append_line(memo_calls_path(store), json.dumps(entry, sort_keys=True))


def total_spend(store) -> float:
    """Dollars spent so far, memo included: what --max-cost-usd compares."""
    return spend(store).cost_usd


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
