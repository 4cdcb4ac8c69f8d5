"""The time budget as the repository defines it, and the hard limit a run gets.

Three facts the config alone cannot know:

- A karpathy-layout train.py trains for `TIME_BUDGET` imported from the read-only prepare.py,
  not for `AUTORESEARCH_TIME_BUDGET`: then that number is the budget (`harness_budget`), and a
  config that says otherwise is told so.
- The footer's `training_seconds` says how long the run really trained: one that disagrees
  with the budget by more than a few percent is worth a warning (`footer_disagreement`).
- Start-up, compilation and evaluation can sit outside the budget and take longer than the
  training itself: the default limit (2 x budget + 60 s) would kill every run. Without a
  configured `timeout`, the baseline runs under a generous limit and later runs under the
  same rule applied to the baseline's measured wall time (`hard_timeout`).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from autoresearch.constants import numeric_value

BUDGET_NAMES = ("TIME_BUDGET",)
TRAINING_KEYS = ("training_seconds", "train_seconds", "training_time")
TOLERANCE = 0.05  # "a few percent": a loop that stops after the step that crossed the budget overshoots a little
OUR_VARIABLE = "AUTORESEARCH_TIME_BUDGET"
OUTSIDE = 1.25  # a baseline whose wall time exceeds the budget by more than this factor spends time outside it


@dataclass(frozen=True)
class HarnessBudget:
    seconds: float
    script: str  # the editable file that imports it, e.g. "train.py"
    harness: str  # the file that defines it, e.g. "prepare.py"
    name: str = "TIME_BUDGET"

    def describe(self) -> str:
        return f"{self.script} trains for {self.name} = {self.seconds:g} s from {self.harness}"


def harness_budget(task_dir: Path, editable: Sequence[str], readonly: Sequence[str] = ()) -> HarnessBudget | None:
    """The budget an editable script imports from a read-only module, when it does and ignores ours."""
    task_dir = Path(task_dir)
    for script in editable:
        if not script.endswith(".py"):
            continue
        try:
            source = (task_dir / script).read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        if OUR_VARIABLE in source:
            continue  # the script reads our variable: the config's budget is the one it trains for
        for module, name in _imported_budgets(tree):
            harness = _module_file(task_dir, script, module, readonly)
            if harness is None:
                continue
            seconds = _module_constant(task_dir / harness, name)
            if seconds is not None and seconds > 0:
                return HarnessBudget(float(seconds), script, harness, name)
    return None


def _imported_budgets(tree: ast.Module):
    """(module, name) for `from prepare import TIME_BUDGET` and for `prepare.TIME_BUDGET` reads."""
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                if alias.name in BUDGET_NAMES:
                    yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in BUDGET_NAMES and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            yield modules[node.value.id], node.attr


def _module_file(task_dir: Path, script: str, module: str, readonly: Sequence[str]) -> str | None:
    base = Path(script).parent
    candidate = (base / (module.replace(".", "/") + ".py")).as_posix()
    if candidate in readonly or (task_dir / candidate).is_file() and not readonly:
        return candidate
    return None


def _module_constant(path: Path, name: str) -> float | None:
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    if OUR_VARIABLE in source:
        return None  # the harness takes its budget from us (`os.environ.get("AUTORESEARCH_TIME_BUDGET", ...)`)
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = numeric_value(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            value = numeric_value(node.value) if node.value is not None else None
    return value


def training_seconds(metrics: Mapping) -> float | None:
    for key in TRAINING_KEYS:
        v = metrics.get(key)
        if isinstance(v, float) and math.isfinite(v):
            return v
    return None


def footer_disagreement(metrics: Mapping, budget: float) -> str | None:
    """A warning when the footer's training seconds differ from the budget by more than TOLERANCE."""
    trained = training_seconds(metrics)
    if trained is None or budget <= 0 or abs(trained - budget) <= TOLERANCE * budget:
        return None
    key = next(k for k in TRAINING_KEYS if metrics.get(k) == trained)
    return (f"the run reports {key}: {trained:g} but the budget is {budget:g} s ({(trained - budget) / budget:+.0%}); "
            "check that the script trains for the budget the agent is told (TIME_BUDGET or AUTORESEARCH_TIME_BUDGET)")


def default_timeout(budget: float) -> float:
    return 2 * budget + 60


def baseline_timeout(budget: float) -> float:
    """The limit of a baseline when no timeout is configured: start-up and evaluation may be slow."""
    return max(default_timeout(budget), 5 * budget + 900)


@dataclass(frozen=True)
class Timeout:
    seconds: float
    note: str = ""  # what was chosen and why, for the user; empty for a configured or default limit


def hard_timeout(configured: float | None, budget: float, baseline_wall: float | None) -> Timeout:
    """The wall-clock limit of a run.

    `configured`: `[task] timeout`, which always wins. `baseline_wall`: the measured wall seconds
    of the baseline run, None before it ran. Without either, the baseline gets
    `baseline_timeout`; after it, `2 x wall + 60 s` (the default's rule, on the measured time)
    when that is more than the default `2 x budget + 60 s`.
    """
    if configured is not None:
        return Timeout(configured)
    default = default_timeout(budget)
    if baseline_wall is None:
        limit = baseline_timeout(budget)
        return Timeout(limit, f"no timeout configured: the baseline may take up to {limit:g} s "
                              f"(start-up and evaluation can sit outside the {budget:g} s budget)")
    derived = math.ceil(2 * baseline_wall + 60)
    if derived <= default or baseline_wall <= OUTSIDE * budget:
        return Timeout(default)  # start-up and evaluation fit in the default's margin
    return Timeout(derived, f"the baseline took {baseline_wall:.0f} s for a {budget:g} s budget, so runs are "
                            f"killed after 2 x {baseline_wall:.0f} + 60 = {derived:g} s, not {default:g} s "
                            "(set [task] timeout to choose)")


def baseline_wall(records) -> float | None:
    """The wall seconds of a run's first recorded baseline that trained, or None."""
    for r in records:
        if r.iteration == 0 and r.wall_seconds and r.status.value != "crash":
            return float(r.wall_seconds)
    return None


def run_timeout(task, records) -> Timeout:
    """The hard limit of a task's next run, given the experiments recorded so far."""
    return task.with_baseline_wall(baseline_wall(records)).timeout_choice


def budget_watch(task, say):
    """A loop observer: says the timeout the baseline's wall time gave, and warns, once a session,
    when a run's footer disagrees with the budget."""
    warned = []

    def budget_check(loop, record) -> None:
        if record.iteration == 0 and record.status.value != "crash" and task.config.task.timeout is None:
            choice = task.with_baseline_wall(record.wall_seconds).timeout_choice
            if choice.note:
                say(f"timeout: {choice.note}")
        if warned or record.status.value == "crash":
            return
        problem = footer_disagreement(record.metrics, task.time_budget)
        if problem:
            warned.append(problem)
            say(f"warning: #{record.iteration}: {problem}")

    return budget_check
