"""`report.html`: the night's story in one self-contained file a person can open or send.

Everything is inline (CSS, plots as base64 PNG) and a Content-Security-Policy forbids any
network load, so the file reads the same offline, attached to a mail, or years later.
Descriptions, explanations and diffs are written by agents: the template escapes all of it.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import re
import statistics
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from autoresearch.analysis.morning import answer, oriented, patterns
from autoresearch.analysis.plot import plot_curves, plot_knobs, plot_progress, primary_value
from autoresearch.analysis.references import load_references
from autoresearch.atomic import write_text
from autoresearch.cost import Spend, spend
from autoresearch.gains import gains as judged_gains
from autoresearch.gpu import TRAIN_KEYS, time_split, training_share, warm_saved
from autoresearch.ledger import Ledger, baseline_of, best_of
from autoresearch.records import Experiment, Status

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_DIFF_CHARS = 30_000  # per experiment: a rewritten 5,000-line file would bury the page
MAX_LOG_TAIL_CHARS = 4_000


@lru_cache(maxsize=None)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = fmt
    env.filters["signed"] = lambda v: "" if v is None else ("+" if v >= 0 else "") + fmt(v)
    return env


_DECIMAL = re.compile(r"^-?\d+\.\d+$")


def fmt(value: Any) -> str:
    """Numbers as a person reads them, one way everywhere: 6 significant digits, no float
    noise, no trailing zeros (0.97, never 0.970000), an exponent only below 1e-4 (6.5e-05)."""
    if isinstance(value, str) and _DECIMAL.match(value):
        value = float(value)  # a number that arrived as text (a table cell) reads the same
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value) and abs(value) < 1e15:
            return fmt(int(value))
        return f"{value:.6g}"
    return str(value)


def write_report(task, store, path: str | Path | None = None, *, progress_png: Path | None = None) -> Path:
    """Write `report.html` for a run (default: in the run store) and return its path.

    `progress_png`: the progress plot just written for these records, embedded as it is."""
    path = Path(path) if path is not None else store.root / "report.html"
    html = render_report(task, store, progress_png=progress_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, html, durable=False)
    return path


def render_report(task, store, *, progress_png: Path | None = None) -> str:
    records = list(store.ledger.records)
    primary, maximize = task.metrics.primary, task.metrics.direction == "maximize"
    with tempfile.TemporaryDirectory() as tmp:
        progress = _data_uri(progress_png or plot_progress(task, store, Path(tmp) / "progress.png", records))
        chosen = baseline_and_best(records, store.ledger)
        curves_png = plot_curves(store, chosen, Path(tmp) / "curves.png", records) if chosen else None
        curves = _data_uri(curves_png) if curves_png else None
        knobs_png = plot_knobs(task, store, Path(tmp) / "knobs.png", records)
        knobs_plot = _data_uri(knobs_png) if knobs_png else None
    references = load_references(task.dir, task.path)
    best = best_of(records, store.ledger)  # re-judged where the run adopted new rules
    base = baseline_of(records, store.ledger)  # a new one where an adopted config needed it
    spent = spend(store, records)  # with the strategy memo's own LLM calls: not in any experiment's row
    floors = judged_gains(records, task.metrics, store.ledger)  # the floor each gain was held to, shown beside it
    context = {
        "title": f"{task.dir.name} / {store.tag}",
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "task": {"dir": str(task.dir), "run": task.run, "editable": ", ".join(task.editable),
                 "time_budget": task.time_budget},
        "branch": store.branch, "primary": primary, "direction": task.metrics.direction,
        "summary": {**_summary(records, primary, maximize, best, base), "cost_usd": spent.cost_usd, "tokens": spent.tokens},
        "answer": answer(task, store, records), "patterns": patterns(store, records),
        "progress_png": progress, "curves_png": curves, "curve_runs": chosen, "knobs_png": knobs_plot,
        "frontier": [{**f, "floor": _floor_of(floors, f["iteration"])} for f in frontier(records, primary, maximize)],
        "experiments": [{**_experiment(r, store, primary, maximize, best_before), "floor": _floor_of(floors, r.iteration)}
                        for r, best_before in _with_best_before(records, primary)],
        "references": _references_view(references, best.metrics if best else {}),
        "analysis": _analysis_view(task, store),
        "cost": _cost(records, spent),
        "sandbox": _sandbox_view(task, records),
    }
    return _env().get_template("report.html.j2").render(**context)


def _sandbox_view(task, records: list[Experiment]) -> dict | None:
    """Whether the night's runs ran in the sandbox (each record says), for the first screen."""
    from autoresearch.execution.sandbox import runs_line

    runs = [r for r in records if r.wall_seconds > 0]
    if not runs:
        return None
    sandboxed = sum(1 for r in runs if r.sandboxed)
    unseen = "the run store, the home's credentials" + ("" if task.config.sandbox.network else " and the network")
    return {"all": sandboxed == len(runs), "line": runs_line(sandboxed, len(runs), task.config.sandbox.mode),
            "unseen": unseen}


def _floor_of(floors: dict, iteration: int) -> str:
    """"floor 0.014142" (or "floor unknown") for a judged experiment, "" for the others."""
    g = floors.get(iteration)
    if g is None:
        return ""
    return f"floor {g.floor.value:.6g}" if g.floor.known else "floor unknown"


def frontier(records: list[Experiment], primary: str, maximize: bool = True) -> list[dict]:
    """Every keep in order, with its gain over the keep before it (+ is better)."""
    rows, previous = [], None
    for r in records:
        if r.status is not Status.KEEP:
            continue
        value = primary_value(r, primary)
        gain = oriented(value, previous, maximize)
        rows.append({"iteration": r.iteration, "commit": r.commit[:7], "value": value, "gain": gain,
                     "description": r.description})
        previous = value if value is not None else previous
    return rows


def _summary(records: list[Experiment], primary: str, maximize: bool, best: Experiment | None,
             base: Experiment | None) -> dict:
    keeps = [r for r in records if r.status is Status.KEEP]
    count = {s: sum(1 for r in records if r.status is s) for s in Status}
    base_v = primary_value(base, primary) if base else None
    best_v = primary_value(best, primary) if best else None
    gain = oriented(best_v, base_v, maximize)
    starts = [r.started_at for r in records if r.started_at]
    ends = [r.finished_at for r in records if r.finished_at]
    frontier_rows = frontier(records, primary, maximize)
    biggest = max((f for f in frontier_rows[1:] if f["gain"] is not None), key=lambda f: f["gain"], default=None)
    return {
        "count": len(records), "keeps": count[Status.KEEP], "discards": count[Status.DISCARD],
        "crashes": count[Status.CRASH], "base": base, "best": best, "base_value": base_v,
        "best_value": best_v, "gain": gain,
        "gain_pct": 100 * gain / abs(base_v) if gain is not None and base_v else None,
        "improvements": max(0, len(keeps) - 1), "biggest": biggest,
        "hours": (max(ends) - min(starts)) / 3600 if starts and ends else None,
        "train_hours": sum(r.wall_seconds for r in records) / 3600,
        # Where the runs' wall time went: the share training, and what warm starts saved of the rest.
        "training_share": training_share(records), "warm_runs": sum(1 for r in records if r.warm),
        "warm_saved": warm_saved(records),
        "startup_median": statistics.median(startups) if (startups := [r.startup_seconds for r in records
                                                                       if r.startup_seconds is not None]) else None,
    }


def _with_best_before(records: list[Experiment], primary: str):
    best = None
    for r in records:
        yield r, best
        if r.status is Status.KEEP:
            best = primary_value(r, primary)


def _experiment(r: Experiment, store, primary: str, maximize: bool, best_before: float | None) -> dict:
    run_dir = store.run_path(r.iteration)
    value = primary_value(r, primary) if r.status is not Status.CRASH else None
    delta = oriented(value, best_before, maximize)
    return {
        "iteration": r.iteration, "status": r.status.value, "commit": r.commit[:7], "parent": r.parent[:7],
        "description": r.description, "explanation": r.explanation, "reason": r.reason,
        "value": value, "delta": delta,
        "better": delta is not None and delta > 0,
        "train_seconds": next((r.metrics[k] for k in TRAIN_KEYS if isinstance(r.metrics.get(k), (int, float))), None),
        "startup_known": r.startup_seconds is not None,
        "metrics": {k: v for k, v in r.metrics.items() if not isinstance(v, (dict, list))},
        "memory_gb": r.memory_gb, "wall_seconds": r.wall_seconds, "cost_usd": r.cost_usd, "tokens": r.tokens,
        "agent": r.agent, "worker": r.worker, "node": r.node, "changed_files": ", ".join(r.changed_files),
        "split": time_split(r.wall_seconds, r.startup_seconds, r.metrics), "warm": r.warm,
        "gpu_util": r.gpu_util, "gpu_peak_mb": r.gpu_peak_mb,
        "diff": _diff_lines(run_dir / "diff.patch"),
        "log_tail": _tail(run_dir / "log.txt") if r.status is Status.CRASH else "",
        "meta": _meta(run_dir / "meta.json"),
    }


def _diff_lines(path: Path) -> list[tuple[str, str]]:
    """(css class, line) pairs, so additions and removals can be coloured after escaping."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    cut = len(text) > MAX_DIFF_CHARS
    lines = []
    for line in text[:MAX_DIFF_CHARS].splitlines():
        kind = "hunk" if line.startswith("@@") else "file" if line.startswith(("diff ", "+++", "---", "index ")) \
            else "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append((kind, line))
    if cut:
        lines.append(("hunk", f"... diff cut at {MAX_DIFF_CHARS:,} characters; full diff in {path}"))
    return lines


def _tail(path: Path) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - MAX_LOG_TAIL_CHARS))
        return fh.read().decode("utf-8", errors="replace")


def _meta(path: Path) -> dict:
    """The per-run meta-analysis, flattened to scalars and short lists for a compact view."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict):
        return {}
    out = {}
    for key, value in meta.items():
        if isinstance(value, dict):  # one level down: convergence.slope, overfit.turn_epoch, ...
            for sub, v in value.items():
                if isinstance(v, (str, int, float, bool)):
                    out[f"{key}.{sub}"] = v
        elif isinstance(value, list):
            texts = [v.get("text", "") if isinstance(v, dict) else fmt(v) for v in value]
            if any(texts):
                out[key] = "; ".join(t for t in texts if t)
        elif value is not None:
            out[key] = value
    return out


def baseline_and_best(records: list[Experiment], ledger: Ledger | None = None) -> list[int]:
    """Baseline and best (as `ledger` judges them): the two curves that tell how training itself
    changed overnight."""
    ends = [r.iteration for r in (baseline_of(records, ledger), best_of(records, ledger)) if r is not None]
    return list(dict.fromkeys(ends))


def _references_view(references, metrics: dict) -> dict | None:
    if references is None:
        return None
    items = []
    for ref in references.references:
        differences = references.differences(ref)
        items.append({"name": ref.name, "source": ref.source, "comparisons": references.compare(ref, metrics),
                      "differences": differences, "protocol": ref.protocol})
    return {"path": str(references.path), "ours": references.protocol, "items": items,
            "any_difference": any(i["differences"] for i in items)}


def _analysis_view(task, store) -> dict | None:
    """The analysis summary (axes, near misses, plateau, hints) when that module is present."""
    summary = None
    try:
        # import_module, not `from ... import`: it honours sys.modules, where tests put a fake.
        summary = importlib.import_module("autoresearch.analysis.summary").summarize(task, store)
    except Exception:  # an optional module that is missing or broken must not cost the report
        for candidate in (store.root / "analysis_summary.json", task.dir / "analysis_summary.json"):
            try:
                summary = json.loads(candidate.read_text())
                break
            except (OSError, ValueError):
                continue
    if not isinstance(summary, dict):
        return None
    sections = []
    for key in ("axes", "near_misses", "losing_regions", "eliminated", "plateau", "noise_floor", "warnings", "hints"):
        value = summary.get(key)
        table = _plateau_table(value) if key == "plateau" and _is_plateau(value) else _as_table(value)
        if table:
            note = "Choices to stop trying, with their evidence (imported runs included); new runs that do well lift the flag." \
                if key == "eliminated" else ""
            if key == "near_misses" and isinstance(summary.get("near_miss_tolerance"), (int, float)):
                note = (f"Discards within {fmt(summary['near_miss_tolerance'])} of the best they were compared with: "
                        "the larger of the noise floor and a quarter of the median keep gain. Gaps are + when better.")
            sections.append({"title": key.replace("_", " "), **table, "note": note or table.get("note", "")})
    return {"sections": sections} if sections else None


def _is_plateau(value: Any) -> bool:
    return isinstance(value, dict) and {"iterations_since_keep", "on_plateau"} <= set(value)


def _plateau_table(p: dict) -> dict:
    """The plateau in words, and the best's gain over the last windows as a table."""
    since = p["iterations_since_keep"]
    note = f"{since} iteration{'s' if since != 1 else ''} since the last keep"
    if p.get("last_keep_iteration") is not None:
        note += f" (#{p['last_keep_iteration']})"
    note += ": on a plateau, time for an orthogonal idea." if p["on_plateau"] else "."
    rows = [[f"last {w['iterations']}", _signed(w.get("gain")), _signed(w.get("rate")), str(w.get("keeps", ""))]
            for w in p.get("windows") or () if isinstance(w, dict) and "iterations" in w]
    header = ["iterations", "gain of the best", "per iteration", "keeps"] if rows else []
    return {"note": note, "header": header, "rows": rows}


def _signed(value: Any) -> str:
    return ("+" if value >= 0 else "") + fmt(value) if isinstance(value, (int, float)) else ""


def _as_table(value: Any) -> dict | None:
    """Any list of dicts, dict of dicts, dict of scalars or list of strings, as header + rows."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        value = [{"name": k, **v} for k, v in value.items()]
    if isinstance(value, dict) and value:
        return {"header": [], "rows": [[k.replace("_", " "), _cell(v)] for k, v in value.items()]}
    if isinstance(value, list) and value:
        if all(isinstance(v, dict) and "text" in v for v in value):  # hints, suggestions: the text says it all
            return {"header": [], "rows": [[_cell(v["text"])] for v in value]}
        if all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for row in value for k in row))
            rows = [[_signed(row.get(k)) if k.endswith(("gain", "gap")) else _cell(row.get(k)) for k in keys] for row in value]
            return {"header": [k.replace("_", " ") for k in keys], "rows": rows}
        return {"header": [], "rows": [[_cell(v)] for v in value]}
    return None


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return fmt(value)


def _cost(records: list[Experiment], spent: Spend) -> dict:
    total, tokens, memo = spent.cost_usd, spent.tokens, (spent.memo_usd, spent.memo_tokens)
    agents: dict[str, dict] = {}
    for r in records:
        a = agents.setdefault(r.agent or "-", {"runs": 0, "cost_usd": 0.0, "tokens": 0})
        a["runs"] += 1
        a["cost_usd"] += r.cost_usd
        a["tokens"] += r.tokens
    if memo[0] or memo[1]:
        agents["strategy memo"] = {"runs": "–", "cost_usd": memo[0], "tokens": memo[1]}
    improvements = max(0, sum(1 for r in records if r.status is Status.KEEP) - 1)
    return {"total_usd": total, "tokens": tokens, "per_iteration_usd": total / len(records) if records else 0.0,
            "per_keep_usd": total / improvements if improvements else None, "agents": agents}


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
