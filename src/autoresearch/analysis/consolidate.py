"""`autoresearch consolidate DIR...`: one RESULTS.md for experiment folders this tool did not make.

Seed 003: a month of hand-run sweeps, each folder with its own result JSON, metrics.jsonl or
log, and a reviewer who needs one table. A folder is an experiment when it holds
`result.json`, `result_*.json`, `metrics.jsonl` or `log.txt` with numbers in it. Folders are
grouped by their parent (so `runs/sweep_17688/lr_3e-4` sits with its sweep), sorted by the
chosen metric, and the file calls out the best run, the most balanced one, the outliers, and
metrics that are identical across many runs (the models may all predict the same class).
Folders that write the same metric in different schemas (`test_kl` beside
`{"metrics": {"test": {"kl": ...}}}`) are aligned under one name first, and the file says so.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from autoresearch.curves import numeric_fields, parse_jsonl, parse_log, x_key
from autoresearch.errors import AutoresearchError
from autoresearch.footer import parse_footer

RESULT_FILE = re.compile(r"^result(?:_(?P<suffix>.+))?\.json$")
MARKERS = ("metrics.jsonl", "log.txt")
SPLITS = {"train", "val", "valid", "validation", "dev", "eval", "test"}  # result_<split>.json
SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv", "venv", "wandb", ".ipynb_checkpoints"}
OUTLIER_Z = 3.5  # Iglewicz and Hoaglin's cut-off for the modified z-score
MAX_COLUMNS = 8
NOT_A_RESULT = re.compile(r"(^|[._])(timestamp|time|seed|pid|step|global_step|lr|learning_rate)$")
_MINIMIZE = re.compile(r"loss|(^|[^a-z])kl([^a-z]|$)|err|mse|mae|ppl|perplexity|bpb|nll|fid|wer|cer|latency|seconds")
_MAXIMIZE = re.compile(r"acc|top.?\d|f1|auc|r2|precision|recall|score|bleu|rouge|map|iou|dice|reward|return")
_PREDICTION = re.compile(r"acc|top.?\d|f1|precision|recall")
# Not judged for balance: a fit to the training set rewards overfitting, and time is a cost.
_NOT_BALANCE = re.compile(r"train|seconds|latency|time")


@dataclass(frozen=True)
class Run:
    name: str
    group: str  # parent folder, relative to the parent of the DIR it was found under
    path: Path
    metrics: dict[str, float]
    sources: tuple[str, ...]


@dataclass
class Consolidation:
    metric: str
    direction: str
    why_metric: str
    why_direction: str
    columns: list[str]
    groups: dict[str, list[Run]]
    best: Run | None = None
    balanced: tuple[Run, dict[str, int], int] | None = None  # run, its rank per metric, of how many
    outliers: list[tuple[Run, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # experiment-like folders without a number
    merged: list[str] = field(default_factory=list)  # names of one metric in several schemas, aligned

    @property
    def runs(self) -> list[Run]:
        return [r for runs in self.groups.values() for r in runs]


def guess_direction(name: str) -> str | None:
    low = name.lower()
    if _MINIMIZE.search(low):
        return "minimize"
    if _MAXIMIZE.search(low):
        return "maximize"
    return None


def find_runs(dirs: Sequence[str | Path]) -> tuple[list[Run], list[Path]]:
    """Every experiment folder under `dirs` with at least one number, and those without any."""
    runs, skipped = [], []
    for top in dirs:
        top = Path(top).resolve()
        if not top.is_dir():
            raise AutoresearchError(f"{top}: not a directory; pass the folders that hold your experiments")
        for here, subdirs, files in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS and not d.startswith("."))
            names = set(files)
            if not (names & set(MARKERS) or any(RESULT_FILE.match(f) for f in names)):
                continue
            path = Path(here)
            metrics, sources = read_folder(path, names)
            if not metrics:
                skipped.append(path)
                continue
            group = str(path.parent.relative_to(top.parent)) if path != top else top.parent.name or "."
            runs.append(Run(path.name, group, path, metrics, sources))
    return runs, skipped


def read_folder(path: Path, names: set[str]) -> tuple[dict[str, float], tuple[str, ...]]:
    """The numbers one experiment folder reports; the result JSONs win over curves and logs."""
    metrics: dict[str, float] = {}
    sources = []
    results = sorted(f for f in names if RESULT_FILE.match(f))
    parsed = {f: _flatten(_read_json(path / f)) for f in results}
    seen = Counter(k for values in parsed.values() for k in values)
    for f, values in parsed.items():
        suffix = RESULT_FILE.match(f).group("suffix")
        split = suffix is not None and suffix.lower() in SPLITS
        for key, value in values.items():
            # result_test.json's `kl` is the test KL, named so beside result.json's `test.kl`; and
            # result_val.json and result_m2.json may both say `loss`: keep both, prefixed.
            named = key.lower().startswith(suffix.lower()) if suffix else True
            metrics[f"{suffix}.{key}" if suffix and not named and (split or seen[key] > 1) else key] = value
        if values:
            sources.append(f)
    curve = parse_jsonl(_read_text(path / "metrics.jsonl")) if "metrics.jsonl" in names else []
    if curve:
        sources.append("metrics.jsonl")
    if "log.txt" in names:
        text = _read_text(path / "log.txt")
        footer = {k: float(v) for k, v in parse_footer(text).items() if isinstance(v, float) and math.isfinite(v)}
        if not curve:
            curve = parse_log(text)
        if footer or curve:
            sources.append("log.txt")
        for key, value in footer.items():
            metrics.setdefault(key, value)
    for key, value in _from_curve(curve).items():
        metrics.setdefault(key, value)
    return metrics, tuple(sources)


def _from_curve(curve: list[dict[str, float]]) -> dict[str, float]:
    """The last point, the best loss along the way, and how many epochs ran."""
    if not curve:
        return {}
    out = {k: v for point in curve for k, v in point.items()}  # the latest value of each key
    for key in out.copy():
        if "loss" in key:
            out[f"best_{key}"] = min(p[key] for p in curve if key in p)
    step = x_key(curve)
    if step is not None:
        out.pop(step, None)
    if step == "epoch":
        out["epochs"] = max(p["epoch"] for p in curve)
    return out


# Keys that only hold the metrics (`{"metrics": {"test": {"kl": ...}}}`), and other spellings of
# one word: `metrics.test.kl`, `test_kl`, `Test/KL` and `test-kl` are one metric.
WRAPPERS = {"metrics", "metric", "results", "result", "scores", "summary", "final"}
ALIASES = {"validation": "val", "valid": "val", "accuracy": "acc", "perplexity": "ppl"}
_SEPARATORS = re.compile(r"[._/\s-]+")


def canonical(name: str) -> str:
    """The metric a key names, whatever the schema: lower case, one separator, no wrapper, aliases
    resolved, a number joined to the word before it (`top_1` is `top1`)."""
    words = [w for w in _SEPARATORS.split(name.lower()) if w]
    while len(words) > 1 and words[0] in WRAPPERS:
        words.pop(0)
    out: list[str] = []
    for word in words:
        word = ALIASES.get(word, word)
        if word.isdigit() and out and not out[-1].isdigit():
            out[-1] += word
        else:
            out.append(word)
    return ".".join(out) or name


def align_metrics(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """The same metric under one name in every run, and a note for each name merged.

    Nothing is dropped: a run that reports two spellings
    of one metric with different values keeps the second under its own name."""
    spellings: dict[str, Counter] = {}
    for run in runs:
        for key in run.metrics:
            spellings.setdefault(canonical(key), Counter())[key] += 1
    # One spelling keeps its name; several become the canonical one (`metrics.test.kl`, `test_kl`: `test.kl`).
    name_of = {c: next(iter(counts)) if len(counts) == 1 else c for c, counts in spellings.items()}
    aligned = []
    for run in runs:
        metrics: dict[str, float] = {}
        # The key spelled as the merged name claims it first, so a fallback below never collides.
        for key, value in sorted(run.metrics.items(), key=lambda kv: kv[0] != name_of[canonical(kv[0])]):
            name = name_of[canonical(key)]
            if name in metrics and metrics[name] != value:
                name = key  # another spelling with another value: both kept
            metrics.setdefault(name, value)
        aligned.append(Run(run.name, run.group, run.path, metrics, run.sources))
    notes = [f"merged {', '.join(_spelling(k, n) for k, n in sorted(counts.items()))} as `{name_of[c]}`"
             for c, counts in sorted(spellings.items()) if len(counts) > 1]
    return aligned, notes


def _spelling(key: str, runs: int) -> str:
    return f"`{key}` ({runs} run{'s' if runs != 1 else ''})"


def consolidate(dirs: Sequence[str | Path], metric: str | None = None, direction: str | None = None) -> Consolidation:
    runs, skipped = find_runs(dirs)
    if not runs:
        raise AutoresearchError(f"no experiment folder with numbers under {', '.join(map(str, dirs))} "
                                "(looked for result.json, result_*.json, metrics.jsonl, log.txt)")
    runs, merged = align_metrics(runs)
    metric, why_metric = _choose_metric(runs, metric)
    if direction is None:
        direction = guess_direction(metric)
        why_direction = "guessed from the name; pass --direction to override"
        if direction is None:
            direction, why_direction = "maximize", "assumed: the name does not say; pass --direction"
    else:
        why_direction = "as given"
    sign = 1 if direction == "maximize" else -1
    columns = _columns(runs, metric)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    order = lambda r: (metric not in r.metrics, -sign * r.metrics.get(metric, 0.0), r.name)  # noqa: E731
    groups = {g: sorted(rs, key=order) for g, rs in sorted(groups.items())}
    ranked = sorted((r for r in runs if metric in r.metrics), key=order)
    result = Consolidation(metric, direction, why_metric, why_direction, columns, groups,
                           best=ranked[0] if ranked else None, skipped=skipped, merged=merged)
    # Balance is judged on the held-out quality metrics every ranked run reports: a column that
    # half the runs lack would otherwise decide the pick by who is missing it.
    result.balanced = most_balanced(ranked, [k for k in columns if guess_direction(k) and not _NOT_BALANCE.search(k.lower())
                                             and all(k in r.metrics for r in ranked)])
    result.outliers = outliers(ranked, metric)
    result.warnings = identical_values(runs, columns)
    return result


def _choose_metric(runs: list[Run], metric: str | None) -> tuple[str, str]:
    counts = Counter(k for r in runs for k in r.metrics)
    if metric is not None:
        if metric in counts:
            return metric, "as given"
        match = [k for k in counts if k.lower() == metric.lower()]
        if match:
            return match[0], "as given"
        raise AutoresearchError(f"--metric {metric!r} is in none of the {len(runs)} runs; "
                                f"metrics found: {', '.join(sorted(counts))}")
    candidates = [k for k in counts if guess_direction(k) and not NOT_A_RESULT.search(k.lower())] or list(counts)
    varies = {k for k in candidates if len({r.metrics[k] for r in runs if k in r.metrics}) > 1}

    # A metric that differs between runs (one equal everywhere ranks nothing), held-out numbers
    # first (test, then val), then the one most runs report.
    def score(k):
        low = k.lower()
        return (k not in varies, 0 if "test" in low else 1 if "val" in low else 2, -counts[k], low.startswith("best_"), k)
    chosen = min(candidates, key=score)
    return chosen, f"chosen automatically among {len(candidates)} candidates; pass --metric to choose"


def _columns(runs: list[Run], metric: str) -> list[str]:
    counts = Counter(k for r in runs for k in r.metrics)
    common = [k for k, n in counts.items() if n * 2 >= len(runs) and k != metric and not NOT_A_RESULT.search(k.lower())]
    quality = sorted((k for k in common if guess_direction(k)), key=lambda k: (k.startswith("best_") is False, k))
    rest = sorted(k for k in common if not guess_direction(k))
    return [metric, *quality, *rest][:MAX_COLUMNS]


def most_balanced(runs: list[Run], metrics: list[str]) -> tuple[Run, dict[str, int], int] | None:
    """The run with the best rank sum over every quality metric (needs two or more)."""
    complete = [r for r in runs if all(m in r.metrics for m in metrics)]
    if len(metrics) < 2 or len(complete) < 3:
        return None
    ranks: dict[str, dict[str, int]] = {}
    for m in metrics:
        sign = 1 if guess_direction(m) == "maximize" else -1
        values = sorted({sign * r.metrics[m] for r in complete}, reverse=True)
        position = {v: i + 1 for i, v in enumerate(values)}  # ties share a rank
        for r in complete:
            ranks.setdefault(str(r.path), {})[m] = position[sign * r.metrics[m]]
    best = min(complete, key=lambda r: (sum(ranks[str(r.path)].values()), r.name))
    return best, ranks[str(best.path)], len(complete)


def outliers(runs: list[Run], metric: str) -> list[tuple[Run, float]]:
    """Runs whose modified z-score (median / MAD) on the metric is beyond 3.5."""
    values = [r.metrics[metric] for r in runs]
    if len(values) < 4:
        return []
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    scale = 1.4826 * mad if mad > 0 else 1.2533 * statistics.fmean(abs(v - median) for v in values)
    if scale == 0:
        return []
    scored = [(r, (r.metrics[metric] - median) / scale) for r in runs]
    return sorted(((r, z) for r, z in scored if abs(z) > OUTLIER_Z), key=lambda x: -abs(x[1]))


def identical_values(runs: list[Run], columns: list[str]) -> list[str]:
    """Seed 003: Top-1 was 34.84 % in nearly every run, whatever changed: a constant predictor."""
    warnings = []
    for key in columns:
        if not _PREDICTION.search(key.lower()):
            continue
        values = [round(r.metrics[key], 6) for r in runs if key in r.metrics]
        if len(values) < 4:
            continue
        value, n = Counter(values).most_common(1)[0]
        if n >= 4 and n * 2 >= len(values):
            warnings.append(f"`{key}` is exactly {_fmt(value)} in {n} of {len(values)} runs: the models likely make "
                            "the same predictions whatever the configuration (e.g. always the majority class). "
                            "Check the class balance and the predictions before trusting differences in other metrics.")
    return warnings


def render_markdown(c: Consolidation, dirs: Sequence[str | Path]) -> str:
    better = "higher" if c.direction == "maximize" else "lower"
    lines = ["# Results summary", "",
             f"Generated: **{time.strftime('%Y-%m-%d %H:%M')}** by `autoresearch consolidate "
             f"{' '.join(str(d) for d in dirs)}`, from {len(c.runs)} experiment folders.", "",
             f"Sorted by **{c.metric}** ({better} is better; {c.why_direction}). Metric {c.why_metric}.", "",
             *([f"Metric names aligned across schemas: {'; '.join(c.merged)}.", ""] if c.merged else []),
             "## Key results", ""]
    if c.best:
        lines.append(f"- **Best {c.metric}**: `{c.best.name}` ({c.best.group}) = **{_fmt(c.best.metrics[c.metric])}**.")
    if c.balanced:
        run, ranks, n = c.balanced
        detail = ", ".join(f"{m} #{k}" for m, k in ranks.items())
        same = " (also the best)" if c.best and run.path == c.best.path else ""
        lines.append(f"- **Most balanced**: `{run.name}` ({run.group}){same}: best rank sum over {len(ranks)} metrics "
                     f"among {n} runs ({detail}).")
    if c.outliers:
        shown = ", ".join(f"`{r.name}` ({_fmt(r.metrics[c.metric])}, z = {z:+.1f})" for r, z in c.outliers[:8])
        more = f" and {len(c.outliers) - 8} more" if len(c.outliers) > 8 else ""
        lines.append(f"- **Outliers** on {c.metric} (robust z-score beyond {OUTLIER_Z}): {shown}{more}. "
                     "Likely a different pipeline version or an unstable run; keep them out of model selection.")
    for warning in c.warnings:
        lines.append(f"- **Warning, identical predictions?** {warning}")
    for group, runs in c.groups.items():
        name = Path(group).name
        title = f"Sweep `{group}`" if name.startswith("sweep") else f"`{group}`"
        lines += ["", f"## {title} ({len(runs)} run{'s' if len(runs) != 1 else ''})", "", *_table(runs, c), ""]
        if runs and c.metric in runs[0].metrics and len(runs) > 1:
            lines.append(f"Best here: `{runs[0].name}` ({c.metric} = {_fmt(runs[0].metrics[c.metric])}).")
    lines += ["", "## Sources", ""]
    lines += [f"- `{r.group}/{r.name}`: {', '.join(r.sources)}" for r in c.runs]
    if c.skipped:
        lines += ["", f"Folders with a result file or log but no number in it ({len(c.skipped)}): "
                  + ", ".join(f"`{p}`" for p in c.skipped[:20]) + ("…" if len(c.skipped) > 20 else "")]
    return "\n".join(lines) + "\n"


def write_results(dirs: Sequence[str | Path], out: str | Path = "RESULTS.md", metric: str | None = None,
                  direction: str | None = None) -> tuple[Path, Consolidation]:
    from autoresearch.atomic import write_text

    result = consolidate(dirs, metric, direction)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, render_markdown(result, dirs), durable=False)
    return out, result


def _table(runs: list[Run], c: Consolidation) -> list[str]:
    rows = ["| Experiment | " + " | ".join(c.columns) + " |", "|---|" + "---:|" * len(c.columns)]
    for r in runs:
        name = f"**{_md(r.name)}**" if c.best is not None and r.path == c.best.path else _md(r.name)
        rows.append(f"| {name} | " + " | ".join(_fmt(r.metrics[k]) if k in r.metrics else "–" for k in c.columns) + " |")
    return rows


def _md(text: str) -> str:
    return text.replace("|", "\\|")  # folder names are the user's: keep the table intact


def _fmt(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}" if abs(value) >= 1e-3 else f"{value:.3e}"


def _flatten(data, prefix: str = "") -> dict[str, float]:
    return numeric_fields(data, prefix) if isinstance(data, dict) else {}


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except ValueError:
        return None  # a half-written result: the folder may still have a log


def _read_text(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.read(20 * 1024 * 1024).decode("utf-8", errors="replace")
