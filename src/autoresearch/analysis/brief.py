"""The summary in words: analysis_summary.md for a person, a few lines of hints for the agent.

Both are templates (templates/analysis_summary.md.j2, templates/summary_hints.md.j2)
rendered from the summary dict, so what the agent reads can be diffed and tested.
"""

from __future__ import annotations

from autoresearch.prompt import render

MD_FRONTIER = 30  # the start and the recent climb tell the story
MD_AXES = 25
HINT_FRONTIER = 6
HINT_NEAR = 4
HINT_LOSING = 5


def fmt(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.6g}" if signed else f"{value:.6g}"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _change(item: dict) -> str:
    return ", ".join(item.get("changes") or []) or "-"


def _plateau(s: dict) -> str:
    p = s["plateau"]
    rates = "; ".join(f"last {w['iterations']}: {fmt(w['rate'], True)}/iteration ({w['keeps']} keeps)"
                      for w in p["windows"] if w["iterations"])
    flag = " (plateau)" if p["on_plateau"] else ""
    return f"{p['iterations_since_keep']} iterations since the last keep{flag}. Gain of the best per iteration: {rates or '-'}."


def _noise(s: dict) -> str:
    n = s["noise_floor"]
    if n is None:
        return "unknown (no repeated runs of the same configuration)"
    return f"std {fmt(n['std'])} of {s['primary']} over {n['runs']} runs of {n['groups']} repeated configuration(s)"


def _losing(row: dict) -> str:
    before = ", kept earlier" if row.get("ever_kept") else ""
    return f"{row['axis']}: {row['tried_since_keep']} tries since its last keep{before}, mean gain {fmt(row['mean_gain'], True)}"


def render_markdown(s: dict) -> str:
    best = s["best"]
    baseline = ""
    if best and s["baseline"] and s["baseline"]["value"] is not None and best["value"] is not None:
        baseline = f"{best['value'] - s['baseline']['value']:+.6g} vs baseline {fmt(s['baseline']['value'])}"
    frontier = s["frontier"]
    shown = frontier if len(frontier) <= MD_FRONTIER else [frontier[0], *frontier[-(MD_FRONTIER - 1):]]
    data = {
        "s": s,
        "best": {**best, "value": fmt(best["value"]), "description": _cell(best["description"])} if best else None,
        "baseline": baseline,
        "plateau": _plateau(s),
        "noise": _noise(s),
        "frontier": [{"iteration": f["iteration"], "commit": f["commit"], "value": fmt(f["value"]),
                      "gain": fmt(f["gain"], True), "change": _cell(_change(f) if f["gain"] is not None else f["description"])}
                     for f in shown],
        "frontier_omitted": len(frontier) - len(shown),
        "near": [{"iteration": n["iteration"], "commit": n["commit"], "value": fmt(n["value"]), "gap": fmt(n["gap"], True),
                  "why": _cell("; ".join(n["why"])), "change": _cell(_change(n))} for n in s["near_misses"]],
        "axes": [{**a, "axis": _cell(a["axis"]), "mean_gain": fmt(a["mean_gain"], True), "best_gain": fmt(a["best_gain"], True)}
                 for a in s["axes"][:MD_AXES]],
        "axes_omitted": max(0, len(s["axes"]) - MD_AXES),
        "losing": [_losing(row) for row in s["losing_regions"]],
        "warnings": s["warnings"] + (s["meta"]["latest"] or {}).get("warnings", []),
        "hints": [h["text"] for h in s["hints"]],
    }
    return render("analysis_summary.md.j2", **data)


def render_hints(s: dict) -> str:
    """A short text for the agent: frontier, near misses, losing regions, plateau, hints."""
    frontier = s["frontier"][-HINT_FRONTIER:]
    steps = [f"#{f['iteration']} {fmt(f['value'])}" + (f" ({_change(f)}, {fmt(f['gain'], True)})" if f["gain"] is not None else " (baseline)")
             for f in frontier]
    omitted = len(s["frontier"]) - len(frontier)
    near = [f"#{n['iteration']} {_change(n)} ({fmt(n['value'])}, gap {fmt(n['gap'], True)}; {'; '.join(n['why'])})"
            for n in s["near_misses"][:HINT_NEAR]]
    losing = [f"{row['axis']} ({row['tried_since_keep']} tries" + (" since its last keep)" if row["ever_kept"] else ", none kept)")
              for row in s["losing_regions"][:HINT_LOSING]]
    data = {
        "frontier": (f"({omitted} earlier keeps) -> " if omitted else "") + " -> ".join(steps),
        "plateau": _plateau(s),
        "noise": _noise(s) if s["noise_floor"] else "",
        "near": "; ".join(near),
        "losing": "; ".join(losing),
        "warnings": s["warnings"][:2],
        "hints": [h["text"] for h in s["hints"]],
    }
    return render("summary_hints.md.j2", **data).strip() + "\n"
