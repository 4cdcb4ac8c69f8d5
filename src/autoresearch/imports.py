"""`autoresearch import DIR... --tag TAG`: the runs a user already made, as earlier trials of a tag.

Seed 000 had 20+ runs made by hand, each folder with `result_*.json` and `log.txt`, before any
loop began. Each such folder (found by `consolidate`'s readers: result*.json, metrics.jsonl,
log.txt) with the task's primary metric becomes one ledger record:

- status `imported`, reason `imported from <folder>`, no commit, a negative iteration (-1, -2,
  ...), so the baseline stays iteration 0 and `runs/NNNN` is never theirs;
- `agent_data`: `params` (the folder's config values, mapped to the task's knobs by name),
  `imported` (folder, config file, what did not map) and `meta` (the meta-analysis of its curve);
- never the best: `Ledger.best()` is the last keep, and an imported run has no commit the branch
  could be reset to. The branch's best stays a real commit, so a resumed or new night starts
  from code that exists; the imported runs inform the tuner, the prompt and the analysis.

A folder already imported into the tag (same resolved path) is not imported twice.
The config beside the results is `config.{yaml,yml,json,toml}`, `hparams.*`, `params.*`,
`args.*`, else the one YAML/TOML/JSON file that is not a result; or a `config`/`hparams`/`args`
mapping inside the result JSON. Keys map to knobs by name: the full dotted path, then the last
part, compared without case, `_`, `-` or `.`; a value of another type than the knob's is not
mapped. `--write-back` adds the meta-analysis to each foreign `result_*.json` under
`autoresearch_meta`, the original kept beside it as `<name>.orig` (never without the flag).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from autoresearch import configfile, knob_sources
from autoresearch.analysis.consolidate import RESULT_FILE, find_runs
from autoresearch.curves import load_curve
from autoresearch.analysis.eliminate import seed_scores
from autoresearch.analysis.meta import analyze_curve
from autoresearch.atomic import mirror, write_json
from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.records import Experiment
from autoresearch.store import RunStore
from autoresearch.verdict import IMPORTED_TEXT, Status

CONFIG_STEMS = ("config", "hparams", "params", "args", "cfg")
EMBEDDED = ("config", "hparams", "params", "args", "cfg")
WRITE_BACK_KEY = "autoresearch_meta"
AGENT = "import"


@dataclass
class ImportReport:
    recorded: list[Experiment] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # folder, why
    already: list[str] = field(default_factory=list)  # folders imported into the tag before
    mapping: dict[str, str] = field(default_factory=dict)  # folder config key -> task knob
    unmapped: Counter = field(default_factory=Counter)  # folder config keys no knob matched, with counts
    mismatched: dict[str, str] = field(default_factory=dict)  # key -> why its values did not fit the knob
    knobs_without_value: list[str] = field(default_factory=list)  # task knobs no imported run had
    written_back: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"imported {len(self.recorded)} runs"
               + (f"; {len(self.already)} already imported" if self.already else "")
               + (f"; {len(self.skipped)} skipped" if self.skipped else "")]
        if self.mapping:
            out.append("mapped: " + ", ".join(f"{k} -> {v}" if k != v else k for k, v in self.mapping.items()))
        if self.unmapped:
            out.append("did not map (no task knob of that name): "
                       + ", ".join(f"{k} ({n} runs)" for k, n in self.unmapped.most_common()))
        for key, why in self.mismatched.items():
            out.append(f"did not map: {key}: {why}")
        if self.knobs_without_value:
            out.append("task knobs no imported run sets: " + ", ".join(self.knobs_without_value))
        out += [f"skipped {folder}: {why}" for folder, why in self.skipped]
        if self.written_back:
            out.append(f"wrote the meta-analysis into {len(self.written_back)} result files "
                       f"(key {WRITE_BACK_KEY!r}; originals kept as *.orig)")
        return out


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def task_knobs(task) -> dict[str, Any]:
    """knob key (as the tuner names it) -> its Constant (value and space), from the editable files."""
    from autoresearch.agents.tuner import _keyed

    located = _keyed(knob_sources.per_file(Path(task.dir), [f for f in task.editable if knob_sources.has_knobs(f)]))
    return {key: const for key, (_, const) in located.items()}


def map_keys(foreign: Mapping[str, Any], knobs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str], list[str], dict[str, str]]:
    """(params by knob, mapping foreign -> knob, unmapped foreign keys, mismatched key -> why)."""
    full = {_norm(k.rpartition(":")[2]): k for k in knobs}
    leaves: dict[str, list[str]] = {}
    for k in knobs:
        leaves.setdefault(_norm(k.rpartition(":")[2].rpartition(".")[2]), []).append(k)
    params, mapping, unmapped, mismatched = {}, {}, [], {}
    for key, value in foreign.items():
        knob = full.get(_norm(key))
        if knob is None:
            candidates = leaves.get(_norm(key.rpartition(".")[2]), [])
            knob = candidates[0] if len(candidates) == 1 else None
        if knob is None:
            unmapped.append(key)
            continue
        const = knobs[knob]
        like = const.value if hasattr(const, "value") else const
        fitted = _fit(value, like)
        if fitted is None:
            mismatched[key] = f"{value!r} does not fit {knob}, a {type(like).__name__} (now {like!r})"
            continue
        space = getattr(const, "space", None)
        if space is not None and space.kind == "choice" and fitted not in space.choices:
            # The tuner would otherwise take it for one more choice and propose it.
            mismatched[key] = f"{fitted!r} is not one of the choices of {knob} ({space.describe()})"
            continue
        params[knob], mapping[key] = fitted, knob
    return params, mapping, unmapped, mismatched


def _fit(value, like):
    if isinstance(like, bool):
        return value if isinstance(value, bool) else None
    if isinstance(like, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value) if isinstance(like, int) and float(value).is_integer() else float(value) if isinstance(like, float) else None
    return value if isinstance(value, str) else None


def folder_config(folder: Path) -> tuple[dict[str, Any], str]:
    """The flattened config of a foreign run and where it came from ("" when none)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and configfile.format_of(p.name)
                   and not RESULT_FILE.match(p.name))
    named = [p for p in files if p.stem.lower() in CONFIG_STEMS]
    chosen = named[0] if named else files[0] if len(files) == 1 else None
    if chosen is not None:
        try:
            return configfile.flatten(configfile.load(chosen.read_text(encoding="utf-8", errors="replace"), chosen.name)), chosen.name
        except ConfigError:
            pass
    for result in sorted(p for p in folder.iterdir() if RESULT_FILE.match(p.name)):
        try:
            data = json.loads(result.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            continue
        if isinstance(data, dict):
            for key in EMBEDDED:
                if isinstance(data.get(key), dict):
                    return configfile.flatten(data[key]), f"{result.name}:{key}"
    return {}, ""


def import_runs(task, tag: str, dirs: Sequence[str | Path], *, write_back: bool = False,
                say: Callable[[str], None] = lambda _: None) -> ImportReport:
    """Record the experiment folders under `dirs` in `tag`'s ledger as imported runs."""
    store = RunStore(Path(task.dir), tag)
    primary = task.metrics.primary
    runs, empty = find_runs(dirs)
    report = ImportReport(skipped=[(str(p), "no number in its result files or log") for p in empty])
    if not runs and not empty:
        raise AutoresearchError(f"no experiment folder under {', '.join(map(str, dirs))} "
                                "(looked for result.json, result_*.json, metrics.jsonl, log.txt)")
    if store.pending_path.exists():
        raise AutoresearchError(f"{store.pending_path} exists: a run of tag {tag!r} is in flight or was interrupted; "
                                "import when it has stopped (or after `autoresearch run` has resumed and stopped)")
    knobs = task_knobs(task)
    ledger = store.ledger
    before = list(ledger.records)
    seen = {r.agent_data.get("imported", {}).get("folder") for r in before
            if r.status is Status.IMPORTED and isinstance(r.agent_data, dict)}
    next_iteration = min([r.iteration for r in before if r.iteration < 0], default=0) - 1
    store.root.mkdir(parents=True, exist_ok=True)
    _ensure_branch(Path(task.dir), store.branch)
    table = store.results_table(task.columns) if (task.dir / "results.tsv").exists() or before else None
    if table is not None:
        message = table.reset(before)
        if message:
            say(message)
    used_knobs: set[str] = set()
    for run in runs:
        folder = str(run.path)
        if folder in seen:
            report.already.append(folder)
            continue
        config, config_name = folder_config(run.path)
        metrics = {k: v for k, v in run.metrics.items()
                   if not any(k.startswith(f"{e}.") for e in EMBEDDED)}
        if primary not in metrics:
            report.skipped.append((folder, f"no {primary!r} among its numbers ({', '.join(sorted(metrics)[:8])})"))
            continue
        params, mapping, unmapped, mismatched = map_keys(config, knobs)
        report.mapping.update(mapping)
        report.unmapped.update(unmapped)
        report.mismatched.update(mismatched)
        used_knobs.update(params)
        meta = _meta(run.path, metrics, primary, task.metrics.direction)
        scores = seed_scores(metrics)
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        record = Experiment(
            iteration=next_iteration, commit="", parent="", status=Status.IMPORTED,
            description=f"imported {run.name}" + (f": {shown}" if shown else ""),
            explanation=f"A run made outside autoresearch, read from {folder} ({', '.join(run.sources)}"
                        + (f"; config {config_name}" if config_name else "; no config file") + ").",
            reason=f"{IMPORTED_TEXT} {folder}", metrics=metrics, agent=AGENT,
            agent_data={"params": params, "meta": {**meta, "scores": scores},
                        "imported": {"folder": folder, "config": config_name, "sources": list(run.sources),
                                     "unmapped": unmapped}},
            started_at=time.time(), finished_at=time.time())
        ledger.append(record)
        if table is not None:
            table.add(record)
        report.recorded.append(record)
        next_iteration -= 1
        if write_back:
            report.written_back += write_meta_back(run.path, {**meta, "scores": scores})
    report.knobs_without_value = [k for k in knobs if k not in used_knobs] if report.recorded else []
    if table is None and report.recorded:
        table = store.results_table(task.columns)
        table.reset(ledger.records)
    if table is not None:
        mirror(store.results_tsv, store.root / "results.tsv")
    return report


def _meta(folder: Path, metrics: dict, primary: str, direction: str) -> dict:
    curve = load_curve(folder)
    meta = analyze_curve(curve, metrics, primary, direction)
    keep = ("flags", "stability", "generalization_gap", "overfit", "efficiency", "robustness", "convergence", "points")
    return {k: meta[k] for k in keep if k in meta}


def write_meta_back(folder: Path, meta: dict) -> list[str]:
    """Add `meta` under WRITE_BACK_KEY to each result_*.json of a foreign folder; originals kept."""
    written = []
    for path in sorted(p for p in folder.iterdir() if RESULT_FILE.match(p.name)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours to repair
        if not isinstance(data, dict):
            continue
        backup = path.with_name(path.name + ".orig")
        if not backup.exists():
            shutil.copy2(path, backup)  # the user's file as it was, once: a second write-back keeps the first original
        write_json(path, {**data, WRITE_BACK_KEY: meta})
        written.append(str(path))
    return written


def _ensure_branch(task_dir: Path, branch: str) -> None:
    """The tag's branch at HEAD, as `run` would make it: a ledger without its branch cannot resume."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=task_dir, capture_output=True, text=True)

    if git("rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        raise AutoresearchError(f"{task_dir}: not a git repository with a commit; `git init && git add -A && "
                                "git commit -m init` first (the tag's branch starts there)")
    if git("rev-parse", "--verify", "-q", f"refs/heads/{branch}").returncode != 0:
        out = git("branch", branch)
        if out.returncode != 0:
            raise AutoresearchError(f"cannot create branch {branch}: {out.stderr.strip()}")
