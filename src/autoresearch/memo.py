"""The strategy memo: the outer loop (seed 001: "the outer loop remains unsolved").

`strategy.md` in the run store says what works, what fails and why, what to try next and
what to stop trying. It is refreshed every K iterations and on a plateau: by the agent
itself when it can write one (an LLM, from its own template), else by rules over the
history. The worker prompt shows it every iteration.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from autoresearch.context import first_line, fmt
from autoresearch.decision import rounded
from autoresearch.records import Experiment, Status


def axis_of(exp: Experiment) -> str:
    """The knob an experiment turned: the tuner's changed params, else the description's first word."""
    params = exp.agent_data.get("changed") if isinstance(exp.agent_data, dict) else None
    if params:
        return "+".join(sorted(params))
    words = first_line(exp.description).replace(":", " ").split()
    return words[0] if words else "?"


def _gain(exp: Experiment, parent_value: float | None, primary: str, sign: int) -> float | None:
    v = rounded(exp.metrics.get(primary))
    return None if v is None or parent_value is None else sign * (v - parent_value)


DEFAULT_PLATEAU = 5  # `[agent] plateau`: iterations without a keep that make a plateau


def plateau_reached(since_keep: int, after: int) -> bool:
    """The one plateau rule (prompt, memo, analysis): `after` iterations without a keep; 0 is off."""
    return after > 0 and since_keep >= after


def rules_memo(history: Sequence[Experiment], primary: str, direction: str, plateau_after: int = DEFAULT_PLATEAU) -> str:
    """A memo from the history alone: per-axis outcomes, then advice."""
    sign = 1 if direction == "maximize" else -1
    stats: dict[str, dict] = defaultdict(lambda: {"tried": 0, "kept": 0, "crashed": 0, "gains": []})
    best_value = None
    for e in history:
        if e.iteration == 0:
            best_value = rounded(e.metrics.get(primary))
            continue
        s = stats[axis_of(e)]
        s["tried"] += 1
        s["kept"] += e.status is Status.KEEP
        s["crashed"] += e.status is Status.CRASH
        gain = _gain(e, best_value, primary, sign) if e.status is not Status.CRASH else None
        if gain is not None:
            s["gains"].append(gain)
        if e.status is Status.KEEP:
            best_value = rounded(e.metrics.get(primary))
    works = sorted(((a, s) for a, s in stats.items() if s["kept"]), key=lambda x: -max(x[1]["gains"] or [0]))
    stop = [a for a, s in stats.items() if s["tried"] >= 3 and not s["kept"]]
    crashy = [a for a, s in stats.items() if s["crashed"] >= 2]
    keeps = [e for e in history if e.status is Status.KEEP and e.iteration > 0]
    since = history[-1].iteration - max((e.iteration for e in history if e.status is Status.KEEP), default=0) if history else 0

    lines = ["## What works"]
    lines += [f"- {a}: kept {s['kept']} of {s['tried']}, best gain {max(s['gains'] or [0]):+.6f}" for a, s in works] or ["- nothing beyond the baseline yet"]
    if keeps:
        lines += ["- kept: " + "; ".join(f"#{e.iteration} {first_line(e.description)[:60]} ({fmt(e.metrics.get(primary))})" for e in keeps[-5:])]
    lines.append("## What fails")
    failing = [(a, s) for a, s in stats.items() if not s["kept"]]
    lines += [f"- {a}: {s['tried']} tried, none kept" + (f", {s['crashed']} crashed" if s["crashed"] else "")
              + (f", mean change {sum(s['gains']) / len(s['gains']):+.6f}" if s["gains"] else "") for a, s in failing] or ["- no losing axis yet"]
    lines.append("## Stop trying")
    lines += [f"- {a} (tried {stats[a]['tried']} times without a keep)" for a in stop] or ["- nothing yet"]
    if crashy:
        lines.append(f"- changes that crash repeatedly: {', '.join(crashy)}")
    lines.append("## Try next")
    if plateau_reached(since, plateau_after):
        lines.append(f"- plateau: {since} iterations without a keep; change an axis not tried recently, or make a structural change")
    lines += [f"- refine {a} around the current best: it gained before" for a, _ in works[:3]]
    lines.append("- combine near misses: discards within a small margin of the best on different axes")
    return "\n".join(lines) + "\n"


def should_refresh(history: Sequence[Experiment], every: int, plateau_after: int) -> bool:
    """Every `every` agent iterations, and when a plateau of `plateau_after` is first reached."""
    if not history or history[-1].iteration == 0:
        return False
    n = history[-1].iteration
    last_keep = max((e.iteration for e in history if e.status is Status.KEEP), default=0)
    return (every > 0 and n % every == 0) or (plateau_after > 0 and n - last_keep == plateau_after)


def plateau_length(history: Sequence[Experiment]) -> int:
    if not history:
        return 0
    return history[-1].iteration - max((e.iteration for e in history if e.status is Status.KEEP), default=0)
