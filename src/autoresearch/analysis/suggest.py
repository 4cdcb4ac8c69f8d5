"""`autoresearch suggest`: next configurations for config-driven tasks (seed 000).

Starting from the best experiment's constants, each suggestion moves one axis (or
combines two near misses) for a stated reason, in this order of evidence:

1. the best run's meta-analysis: overfitting -> more dropout / weight decay / augmentation,
   stop at the turn; still improving -> higher LR, more epochs, larger batches; diverging or
   unstable -> lower LR, a schedule; converged with no gap -> wider, deeper;
2. the summary: a move that gained before, one more step the same way;
3. two near misses on different axes, combined;
4. a constant never changed, moved toward its larger room.

Constants are recognised by name (LR, DROPOUT, WEIGHT_DECAY, AUGMENT*, SCHEDULE*, EPOCHS,
BATCH_SIZE, WIDTH/HIDDEN, DEPTH/LAYERS) and moved inside their `# search:` space. Each
suggestion is written in the task's own format, with its reason in comments:

- knobs in a YAML/JSON/TOML config file (configfile.py): config/auto/auto_001_<name>.yaml (or
  .json, .toml), the best's config file with the moved keys rewritten, so the training script
  loads it as it loads its own (`python train.py --config config/auto/auto_001_<name>.yaml`);
  JSON has no comments, so there the reason is only in index.json;
- UPPERCASE constants of Python files: config/auto/auto_001_<name>.patch, a `git apply`-able
  patch of the editable files with the constants moved.

index.json lists them. Values the analysis eliminated (eliminate.py) are never suggested.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.analysis.axes import INDEX_NAME, load_index, move_of, read_blobs
from autoresearch.analysis.summary import summarize
from autoresearch.atomic import write_text
from autoresearch.constants import Constant, find_constants, round_value

AUTO_DIR = Path("config") / "auto"
MAX_CONFIGS = 4
_OLD = re.compile(r"^auto_\d{3}_[\w-]+\.(toml|ya?ml|json|patch)$")
ROLES = {
    "lr": re.compile(r"(^|_)(LR|LEARNING_RATE)(_|$)"),
    "dropout": re.compile(r"DROP"),
    "weight_decay": re.compile(r"WEIGHT_DECAY|(^|_)WD(_|$)|(^|_)L2(_|$)"),
    "augment": re.compile(r"AUG"),
    "schedule": re.compile(r"SCHED"),
    "epochs": re.compile(r"EPOCH"),
    "batch": re.compile(r"BATCH"),
    "width": re.compile(r"WIDTH|HIDDEN|CHANNEL|(^|_)DIM(_|$)|EMBED"),
    "depth": re.compile(r"DEPTH|LAYERS|BLOCKS"),
}
FROM_ZERO = {"dropout": 0.1, "weight_decay": 1e-4}  # a log step cannot leave 0
PREFERRED = {"schedule": ("cosine", "onecycle", "linear", "step", "on"), "augment": ("mixup", "standard", "basic", "on")}
_OFF = {"none", "off", "false", "no", ""}
# (meta suggestion kind) -> [(slug, role, direction)], one single-axis config each
BY_KIND = {
    "regularize": [("more_dropout", "dropout", "up"), ("more_weight_decay", "weight_decay", "up"), ("augment_on", "augment", "on")],
    "faster": [("higher_lr", "lr", "up"), ("more_epochs", "epochs", "up"), ("larger_batch", "batch", "up")],
    "lower_lr": [("lower_lr", "lr", "down"), ("schedule_on", "schedule", "on")],
    "schedule": [("schedule_on", "schedule", "on"), ("lower_lr", "lr", "down")],
    "capacity": [("wider", "width", "up"), ("deeper", "depth", "up")],
}


@dataclass(frozen=True)
class ConfigSuggestion:
    slug: str
    reason: str
    values: dict[str, Any]  # every constant, as the config file holds them
    changed: dict[str, tuple[Any, Any]]  # name -> (best's value, suggested value)


def step(const: Constant, direction: str, role: str | None = None) -> Any:
    """One move of a constant inside its space; None when it cannot move that way."""
    value, space = const.value, const.space
    if isinstance(value, bool):
        new = direction in ("up", "on")
        return new if new != value else None
    if isinstance(value, str):
        choices = [c for c in (space.choices if space else ()) if c != value]
        if direction == "on":
            for word in PREFERRED.get(role or "", ()):
                if word in choices:
                    return word
            choices = [c for c in choices if str(c).lower() not in _OFF]
        return choices[0] if choices else None
    up = direction in ("up", "on")
    if space is None or not space.is_numeric:
        if value == 0 and up and role in FROM_ZERO:
            return FROM_ZERO[role]
        new = value * 2 if up else value / 2
    elif space.is_log:
        new = (value * 2 if up else value / 2) if value else (space.low if up else None)
    else:
        span = (space.high - space.low) / 5
        new = value + span if up else value - span
    if new is None:
        return None
    if space is not None and space.is_numeric:
        new = min(max(new, space.low), space.high)
    new = int(round(new)) if isinstance(value, int) else round_value(float(new))
    if isinstance(value, int) and new == value:
        new = value + (1 if up else -1)
        if space is not None and space.is_numeric and not space.low <= new <= space.high:
            return None
    return new if new != value else None


def best_constants(task, store, best, sources: dict | None = None) -> dict[str, Constant]:
    """The best commit's knobs (UPPERCASE constants, config-file keys) with their spaces, by name.

    `sources`, when given, receives path -> the best's text of each file read, and each knob's
    file under the key `("file", name)`."""
    from autoresearch import configfile, knob_sources

    files = [p for p in task.editable if knob_sources.has_knobs(p)]
    search = configfile.search_table(task.dir)
    blobs = read_blobs(task.dir, [f"{best.commit}:./{p}" for p in files]) if best else {}
    out: dict[str, Constant] = {}
    for path in files:
        source = blobs.get(f"{best.commit}:./{path}") if best else None
        if source is None and (task.dir / path).is_file():
            source = (task.dir / path).read_text(encoding="utf-8")  # no git: the work tree
        if source is not None:
            try:
                found = knob_sources.find(source, path, search)
            except Exception:
                continue  # an unparsable file has no constants to suggest
            out.update({c.name: c for c in found})
            if sources is not None:
                sources[path] = source
                sources.update({("file", c.name): path for c in found})
    return out


def _role(name: str, role: str) -> bool:
    return bool(ROLES[role].search(_as_constant(name)))


def role_of(name: str) -> str | None:
    return next((role for role, pattern in ROLES.items() if pattern.search(_as_constant(name))), None)


def _as_constant(name: str) -> str:
    """`optimizer.lr` reads as OPTIMIZER_LR for the role patterns."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def propose(task, store, summary: dict | None = None, max_configs: int = MAX_CONFIGS) -> list[ConfigSuggestion]:
    records = store.ledger.records
    best = store.ledger.best()  # re-judged where the run adopted new rules
    constants = best_constants(task, store, best)
    if not constants:
        return []
    summary = summary if summary is not None else summarize(task, store)
    base = {name: c.value for name, c in constants.items()}
    tried = [r.agent_data.get("params") for r in records if isinstance(r.agent_data, dict)
             and isinstance(r.agent_data.get("params"), dict)]
    out: list[ConfigSuggestion] = []
    seen = [base, *tried]
    losing = {row["axis"] for row in summary["losing_regions"]}
    eliminated = {(e["knob"], json.dumps(e["value"])) for e in summary.get("eliminated", [])}

    def add(slug: str, reason: str, moves: dict[str, Any]) -> None:
        moves = {k: v for k, v in moves.items() if v is not None and k in base}
        if not moves or len(out) >= max_configs:
            return
        if any(k in losing or f"{k} {move_of(base[k], v)}" in losing for k, v in moves.items()):
            return  # the summary says this region keeps losing
        if any((k, json.dumps(v)) in eliminated for k, v in moves.items()):
            return  # the analysis says to stop trying that value
        values = {**base, **moves}
        if any(all(values.get(k) == v for k, v in s.items() if k in values) and set(s) >= set(moves) for s in seen):
            return  # already run (or already suggested)
        seen.append(values)
        out.append(ConfigSuggestion(slug, reason, values, {k: (base[k], v) for k, v in moves.items()}))

    meta = summary["meta"]["best"] or summary["meta"]["latest"]
    for text, kind in _meta_kinds(store, meta):
        for slug, role, direction in BY_KIND.get(kind, ()):
            name = next((n for n in constants if _role(n, role)), None)
            if name is not None:
                add(slug, text, {name: step(constants[name], direction, role)})
        if kind == "regularize" and meta:
            turned = _turned_at(store, meta)
            name = next((n for n in constants if _role(n, "epochs")), None)
            if turned and name and isinstance(base[name], int):
                add("early_stop", text, {name: int(turned)})
    for move in summary["moves"]:
        name, _, direction = move["move"].partition(" ")
        if move["kept"] and (move["best_gain"] or 0) > 0 and direction in ("up", "down", "on", "off") and name in constants:
            add(f"continue_{name.lower()}_{direction}", f"{move['move']} gained {move['best_gain']:+.6g} before: one more step",
                {name: step(constants[name], direction, role_of(name))})
    _combine_near_misses(store, summary, add)
    for name in summary["untried_constants"]:
        if name in constants:
            const = constants[name]
            add(f"try_{name.lower()}", f"{name} was never changed", {name: step(const, _roomier(const), role_of(name))})
    return out


def _meta_kinds(store, meta: dict | None) -> list[tuple[str, str]]:
    if not meta:
        return []
    path = store.run_path(meta['iteration']) / "meta.json"
    try:
        full = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [(f"run #{meta['iteration']}: {s['text']}", s["kind"]) for s in full.get("suggestions", [])]


def _turned_at(store, meta: dict) -> float | None:
    try:
        full = json.loads((store.run_path(meta['iteration']) / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return full.get("overfit", {}).get("turned_at") if full.get("x") == "epoch" else None


def _combine_near_misses(store, summary: dict, add) -> None:
    """The constant values two near misses moved to, applied together to the best."""
    near = summary["near_misses"]
    if len(near) < 2:
        return
    index = load_index(store.root / INDEX_NAME)
    moved = []
    for n in near:
        entry = index.get(n["iteration"], {})
        values = {c["name"]: c["new"] for c in entry.get("constants", ()) if c.get("new") is not None}
        if values and not entry.get("code"):
            moved.append((n["iteration"], values))
    for i, (a, va) in enumerate(moved):
        for b, vb in moved[i + 1:]:
            if not set(va) & set(vb):
                add(f"combine_{a}_{b}", f"near misses #{a} and #{b} moved different axes and each came close", {**va, **vb})
                return


def _roomier(const: Constant) -> str:
    """Toward the side of the space with more room (log-aware), like a person would."""
    space, value = const.space, const.value
    if space is None or not space.is_numeric or isinstance(value, bool):
        return "on" if value is False else "up"
    if space.is_log and value > 0:
        below, above = math.log(value / space.low), math.log(space.high / value)
    else:
        below, above = value - space.low, space.high - value
    return "up" if above >= below else "down"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string uses JSON's escapes


def write_configs(task_dir: Path, suggestions: list[ConfigSuggestion], based_on: str = "",
                  sources: dict | None = None) -> list[Path]:
    """Write config/auto/auto_NNN_<slug>.<ext> files (replacing earlier ones) and index.json.

    `sources` (from best_constants) says where each knob lives and what the best's files hold;
    without it every suggestion is a TOML file of all values (the format for scripts that
    load a flat config of constants)."""
    folder = Path(task_dir) / AUTO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if _OLD.match(old.name):
            old.unlink()
    paths, index = [], []
    for number, s in enumerate(suggestions, 1):
        changes = ", ".join(f"{k} {toml_value(a)} -> {toml_value(b)}" for k, (a, b) in s.changed.items())
        header = [f"autoresearch suggest: {s.slug}", f"why: {s.reason}", f"changed: {changes}"]
        if based_on:
            header.append(f"based on: {based_on}")
        name, text, kind = _render(f"auto_{number:03d}_{s.slug}", s, header, sources)
        path = folder / name
        write_text(path, text, durable=False)
        paths.append(path)
        index.append({"file": path.name, "name": s.slug, "reason": s.reason, "kind": kind,
                      "changed": {k: {"from": a, "to": b} for k, (a, b) in s.changed.items()}})
    write_text(folder / "index.json", json.dumps({"based_on": based_on, "configs": index}, indent=1) + "\n", durable=False)
    return paths


def _render(stem: str, s: ConfigSuggestion, header: list[str], sources: dict | None) -> tuple[str, str, str]:
    """(file name, text, kind) of one suggestion in the task's own format."""
    import difflib

    from autoresearch import configfile, knob_sources

    files = {sources.get(("file", k)) for k in s.changed} if sources else {None}
    if None in files:
        lines = [f"# {h}" for h in header] + [f"{name} = {toml_value(value)}" for name, value in s.values.items()]
        return f"{stem}.toml", "\n".join(lines) + "\n", "values"
    if len(files) == 1:
        path = next(iter(files))
        fmt = configfile.format_of(path)
        if fmt is not None:
            text = configfile.rewrite(sources[path], {k: b for k, (_, b) in s.changed.items()}, path)
            comment = "" if fmt == "json" else "".join(f"# {h}\n" for h in header)
            return f"{stem}{Path(path).suffix}", comment + text, "config"
    out = ["".join(f"{h}\n" for h in header)]  # text before the first `---` is ignored by git apply and patch
    for path in sorted(files):
        moves = {k: b for k, (_, b) in s.changed.items() if sources.get(("file", k)) == path}
        old = sources[path]
        new = knob_sources.rewrite(old, moves, path)
        out.append("".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                                f"a/{path}", f"b/{path}")))
    return f"{stem}.patch", "\n".join(out), "patch"


def suggest(task, store, max_configs: int = MAX_CONFIGS) -> list[tuple[Path, ConfigSuggestion]]:
    """Propose and write the next configurations; returns (file, suggestion) pairs."""
    suggestions = propose(task, store, max_configs=max_configs)
    best = store.ledger.best()
    based_on = f"iteration {best.iteration} (commit {best.commit[:7]})" if best else ""
    sources: dict = {}
    best_constants(task, store, best, sources)
    return list(zip(write_configs(task.dir, suggestions, based_on, sources), suggestions))
