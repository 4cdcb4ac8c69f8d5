"""`autoresearch export mlflow`: every experiment of a run as an MLflow run.

params   the constants the experiment changed (every constant for the baseline, the reference
         point), read from the code at its commit and its parent, else from diff.patch;
metrics  the footer metrics, autoresearch's own figures, and the learning curve as steps;
tags     status, commit, parent, description, reason; the explanation as the run's note;
files    log.txt, diff.patch, explanation.md, metrics.json(l), meta.json.

mlflow is an optional dependency (`pip install 'autoresearch[mlflow]'`), imported only here.
Exporting twice adds nothing: runs already exported (same tag and iteration) are skipped.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.curves import load_curve, x_key
from autoresearch.constants import find_constants
from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.records import Experiment, Status

ARTIFACTS = ("log.txt", "diff.patch", "explanation.md", "metrics.json", "metrics.jsonl", "meta.json")
MAX_PARAM_CHARS = 500  # the smallest limit across MLflow versions and backends
MAX_TAG_CHARS = 5000
_CONSTANT_LINE = re.compile(r"^([+-])([A-Z][A-Z0-9_]*)\s*(?::[^=]*)?=\s*(.+?)\s*(?:#.*)?$")
_BAD_KEY = re.compile(r"[^\w\-. /]")


@dataclass
class ExportResult:
    tracking_uri: str
    experiment: str
    experiment_id: str
    exported: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # already in MLflow from an earlier export


def _mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise AutoresearchError("export mlflow needs the mlflow package: pip install 'autoresearch[mlflow]' "
                                "(or pip install mlflow)") from None
    return MlflowClient


def export_mlflow(task, store, tracking_uri: str | None = None, experiment: str | None = None) -> ExportResult:
    """Export every experiment of `store` to MLflow; returns what was exported and skipped."""
    MlflowClient = _mlflow()
    if tracking_uri and tracking_uri.startswith("file:"):
        # MLflow 3 refuses file stores unless asked; naming a file: URI is that request.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=tracking_uri)
    uri = tracking_uri or _default_uri()
    name = experiment or f"autoresearch/{task.dir.name}/{store.tag}"
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    done = _exported_iterations(client, experiment_id, store.tag)
    result = ExportResult(uri, name, experiment_id)
    for record in store.ledger.records:
        if record.iteration in done:
            result.skipped.append(record.iteration)
            continue
        _export_one(client, experiment_id, task, store, record)
        result.exported.append(record.iteration)
    return result


def _default_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def _exported_iterations(client, experiment_id: str, tag: str) -> set[int]:
    done, token = set(), None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`autoresearch.tag` = '{tag}'",
                                  max_results=1000, page_token=token)
        for run in page:
            value = run.data.tags.get("autoresearch.iteration")
            if value is not None and value.isdigit():
                done.add(int(value))
        token = page.token
        if not token:
            return done


def _export_one(client, experiment_id: str, task, store, record: Experiment) -> None:
    from mlflow.entities import Metric, Param

    run_dir = store.run_path(record.iteration)
    start = int((record.started_at or time.time()) * 1000)
    end = int((record.finished_at or record.started_at or time.time()) * 1000)
    tags = {
        "autoresearch.tag": store.tag, "autoresearch.iteration": str(record.iteration),
        "autoresearch.status": record.status.value, "autoresearch.commit": record.commit,
        "autoresearch.parent": record.parent, "autoresearch.description": record.description,
        "autoresearch.reason": record.reason, "autoresearch.agent": record.agent,
        "mlflow.source.git.commit": record.commit,
        "mlflow.note.content": f"**{record.description}**\n\n{record.explanation}",
    }
    run = client.create_run(experiment_id, start_time=start, run_name=f"{record.iteration:04d} {record.description}"[:250],
                            tags={k: v[:MAX_TAG_CHARS] for k, v in tags.items() if v})
    run_id = run.info.run_id
    params = [Param(_key(k), str(v)[:MAX_PARAM_CHARS]) for k, v in changed_constants(task, record, run_dir).items()]
    metrics = [Metric(_key(k), v, end, 0) for k, v in _numbers(record).items()]
    curve = load_curve(run_dir)
    step_key = x_key(curve)
    for n, point in enumerate(curve):
        step = int(point[step_key]) if step_key else n
        metrics += [Metric(_key(f"curve.{k}"), v, end, step) for k, v in point.items() if k != step_key]
    # log_batch takes at most 1000 metrics and 100 params per call.
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    client.set_terminated(run_id, status="FAILED" if record.status is Status.CRASH else "FINISHED", end_time=end)


def changed_constants(task, record: Experiment, run_dir: Path) -> dict[str, object]:
    """The UPPERCASE constants this experiment changed, with their new values.

    The baseline changed nothing; it gets every constant, so the starting point is on record.
    Reads the code at the commit and its parent; falls back to diff.patch when git cannot.
    """
    baseline = record.commit == record.parent
    files = [f for f in (record.changed_files or task.editable) if f.endswith(".py")]
    if baseline:
        files = [f for f in task.editable if f.endswith(".py")]
    out: dict[str, object] = {}
    for path in files:
        new = _show(task.dir, record.commit, path)
        old = None if baseline else _show(task.dir, record.parent, path)
        if new is None or (old is None and not baseline):
            return _from_diff(run_dir / "diff.patch")
        try:
            before = {c.name: c.value for c in find_constants(old, path)} if old is not None else {}
            after = {c.name: c.value for c in find_constants(new, path)}
        except ConfigError:
            return _from_diff(run_dir / "diff.patch")  # a broken edit (a crash): the diff still says what moved
        for name, value in after.items():
            if baseline or name not in before or before[name] != value:
                out[name if name not in out else f"{path}:{name}"] = value
    return out


def _show(cwd: Path, commit: str, path: str) -> str | None:
    # `./path` is relative to cwd, so a task in a subfolder of its repository works too.
    done = subprocess.run(["git", "show", f"{commit}:./{path}"], cwd=cwd, capture_output=True)
    return done.stdout.decode("utf-8", errors="replace") if done.returncode == 0 else None


def _from_diff(patch: Path) -> dict[str, object]:
    """Constants on `+` lines of a unified diff whose value differs from their `-` line."""
    try:
        text = patch.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    removed, added = {}, {}
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            continue
        match = _CONSTANT_LINE.match(line)
        if match:
            sign, name, literal = match.groups()
            try:
                value = ast.literal_eval(literal)
            except (ValueError, SyntaxError):
                value = literal
            (added if sign == "+" else removed)[name] = value
    return {k: v for k, v in added.items() if k not in removed or removed[k] != v}


def _numbers(record: Experiment) -> dict[str, float]:
    out = {k: float(v) for k, v in record.metrics.items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    out.update({"autoresearch.wall_seconds": record.wall_seconds, "autoresearch.memory_gb": record.memory_gb,
                "autoresearch.cost_usd": record.cost_usd, "autoresearch.tokens": float(record.tokens)})
    return out


def _key(name: str) -> str:
    return _BAD_KEY.sub("_", name)[:250]
