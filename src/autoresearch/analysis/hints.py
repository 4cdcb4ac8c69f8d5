"""Next-step hints from the summary (seed 004): what to try around the best, what to leave alone.

Each hint is {"kind", "text"}; kinds: around_best (a move or code region that gained:
one more step that way), untried (constants never changed), combine (two near misses on
different axes), avoid (losing regions), plateau, noise (how to measure the noise floor),
meta (the per-run meta-analysis of the best and of the latest run).
"""

from __future__ import annotations

import re
from typing import Any

SEED = re.compile(r"SEED")


def hints(summary: dict, snapshot: dict[str, Any]) -> list[dict]:
    """Next-step hints (seed 004): single-axis moves around the best, untried axes, near misses
    worth combining, regions to leave alone, the plateau, and the latest meta-analysis."""
    out: list[dict] = []
    losing = {row["axis"] for row in summary["losing_regions"]}
    gained = [m for m in summary["moves"] if m["kept"] and (m["best_gain"] or 0) > 0 and m["move"] not in losing
              and m["move"].split(" ", 1)[0] not in losing]
    gained.sort(key=lambda m: -(m["best_gain"] or 0))
    for m in gained[:3]:
        # A number can take one more step the same way; a switch or a choice already made cannot.
        then = "try one more single step that way from the best" if m["move"].endswith((" up", " down")) else \
            "the best has it; tune the axes around it next"
        out.append({"kind": "around_best", "text": f"{m['move']} gained {m['best_gain']:+.6g} (kept {m['kept']} of "
                    f"{m['tried']}): {then}"})
    code_gained = [a for a in summary["axes"] if a["kept"] and (a["best_gain"] or 0) > 0 and " " in a["axis"]
                   and not a["axis"].startswith("topic ") and a["axis"] not in losing]
    for a in code_gained[:2]:
        out.append({"kind": "around_best", "text": f"changes to {a['axis']} gained {a['best_gain']:+.6g}: refine it further"})
    if summary["untried_constants"]:
        names = ", ".join(summary["untried_constants"][:6])
        out.append({"kind": "untried", "text": f"never changed: {names}; single-axis moves from the best are cheap to learn from"})
    near = [n for n in summary["near_misses"] if n.get("changes")]
    pairs = []
    for i, a in enumerate(near):
        for b in near[i + 1:]:
            if not set(_axis_names(a)) & set(_axis_names(b)):
                pairs.append((a, b))
    for a, b in pairs[:2]:
        out.append({"kind": "combine", "text": f"combine #{a['iteration']} ({', '.join(a['changes'])}) with "
                    f"#{b['iteration']} ({', '.join(b['changes'])}): each came close on its own"})
    for row in summary["losing_regions"][:3]:
        tries = f"{row['tried_since_keep']} tries since its last keep" if row["ever_kept"] else f"{row['tried']} tries, none kept"
        out.append({"kind": "avoid", "text": f"{row['axis']}: {tries}; leave it unless you have a new independent idea"})
    for e in summary.get("eliminated", []):  # analysis/eliminate.py: seed 000's "discard m0 and m1"
        out.append({"kind": "eliminated", "text": f"stop trying {e['knob']} = {e['value']} ({e['runs']} runs): "
                    + "; ".join(e["evidence"])})
    plateau = summary["plateau"]
    if plateau["on_plateau"]:
        out.append({"kind": "plateau", "text": f"no keep in {plateau['iterations_since_keep']} iterations: try one "
                    "orthogonal idea or a larger structural change, or combine near misses"})
    if summary["noise_floor"] is None and any(SEED.search(n) for n in snapshot):
        out.append({"kind": "noise", "text": "noise floor unknown: a run of the best with only the SEED changed measures it"})
    # The best's curve says what to change in the code the agent edits next; the latest's,
    # what the last change did to training.
    best_meta, latest_meta = summary["meta"]["best"], summary["meta"]["latest"]
    shown = [(best_meta, 2)] + ([(latest_meta, 1)] if latest_meta and latest_meta != best_meta else [])
    for meta, count in shown:
        for text in (meta["suggestions"] if meta else [])[:count]:
            out.append({"kind": "meta", "text": f"run #{meta['iteration']}: {text}"})
    return out


def _axis_names(near: dict) -> list[str]:
    return [c.split(" ", 1)[0] if not c.startswith(("def ", "class ", "file ", "topic ")) else c for c in near["changes"]]
