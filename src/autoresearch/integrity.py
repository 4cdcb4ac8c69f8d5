"""The number that decides "keep" must be one the agent could not fake or luck into.

- Trusted evaluation (`[task] eval`): after training, a separate process computes the
  metrics; the primary comes from it, and a run whose own footer disagrees is flagged.
- Noise (`[metrics] min_delta`, `noise_runs`, `deterministic`, `confirm`): the baseline repeated
  (twice by default) gives the run-to-run spread, and every confirmation run adds to it; a gain
  must clear max(min_delta, 2 x spread), and a change of seed alone is never a keep once the
  floor is known.
- Held-out check (`[task] final_eval`): run on the best commits at the end, reporting the gap
  between the search metric and the held-out one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from autoresearch import noise
from autoresearch.atomic import write_json
from autoresearch.constants import find_constants
from autoresearch.decision import rounded
from autoresearch.environment import python_dir, run_env
from autoresearch.footer import parse_footer
from autoresearch.gitrepo import Git
from autoresearch.records import Experiment, RunSpec, Status
from autoresearch.execution.runner import run_process
from autoresearch.execution.scratch import make as make_scratch
from autoresearch.secrets import redact_file, secret_values
from autoresearch.verdict import CONFIRM_TEXT, NOISE_TEXT, Reason, Verdict

NOISE_REASON = NOISE_TEXT  # the reason strings' fixed parts, for earlier import paths
CONFIRM_REASON = CONFIRM_TEXT
SEED_NAMES = ("SEED", "RANDOM_SEED", "RNG_SEED")


# -- trusted evaluation ------------------------------------------------------------------
def trusted_eval(command: str, task_dir: Path, env: dict, timeout: float, log_path: Path,
                 sandbox=None) -> tuple[dict, Verdict | None]:
    """(metrics from the eval's footer, the crash when the eval failed, else None); `sandbox`: the runs' view."""
    result = run_process(RunSpec(command=command, cwd=str(task_dir), env=env, timeout=timeout, log_path=str(log_path),
                                 sandbox=sandbox))
    redact_file(log_path, secret_values(env))
    if result.timed_out:
        return {}, Verdict.crash(Reason.EVAL, f"timed out after {timeout:g} s")
    if result.exit_code != 0:
        return {}, Verdict.crash(Reason.EVAL, f"`{command}` exited with {result.exit_code}, see {log_path.name}")
    return parse_footer(log_path.read_text(encoding="utf-8", errors="replace")), None


def merge_trusted(run_metrics: dict, eval_metrics: dict, primary: str) -> tuple[dict, str]:
    """The run's metrics overridden by the eval's; a flag (Verdict.flag) when the run's own primary disagrees."""
    merged = {**run_metrics, **eval_metrics}
    claimed, trusted = rounded(run_metrics.get(primary)), rounded(eval_metrics.get(primary))
    flag = ""
    if claimed is not None and trusted is not None and claimed != trusted:
        merged[f"reported_{primary}"] = run_metrics[primary]
        flag = f"the run printed {primary}={claimed:.6f}, the trusted eval says {trusted:.6f}"
    return merged, flag


# -- noise ---------------------------------------------------------------------------------
def noise_groups(history: Sequence[Experiment], primary: str) -> list[list[float]]:
    """The primary of runs of the same code, commit by commit: the baseline with its repeats, a
    confirmed candidate with its confirmation run. (A repeat made on resume of a tag begun before
    repeats were the default runs the best of that moment, so it is grouped with that keep.)"""
    same_code = {e.commit for e in history if e.verdict.noise_repeat or e.verdict.confirmation}
    confirmed = {e.verdict.of for e in history if e.verdict.confirmation and e.status is not Status.CRASH}
    groups: dict[str, list[float]] = {}
    for e in history:
        if e.status is Status.CRASH or e.status is Status.IMPORTED:
            continue
        v = e.verdict
        if not (v.noise_repeat or v.confirmation or v.reason is Reason.BASELINE or e.iteration in confirmed
                or (e.status is Status.KEEP and e.commit in same_code)):
            continue
        value = rounded(e.metrics.get(primary))
        if value is not None:
            groups.setdefault(e.commit, []).append(value)
    return list(groups.values())


def decision_floor(history: Sequence[Experiment], metrics) -> noise.Floor:
    """The floor a keep must clear given `history`, with its source (`metrics`: the [metrics] section)."""
    return noise.Floor.of(noise_groups(history, metrics.primary), metrics.min_delta, metrics.deterministic)


def noise_floor(history: Sequence[Experiment], primary: str, min_delta: float) -> float:
    """The decision's floor: from runs of the same code (noise.py defines it)."""
    return noise.floor(noise.spread(noise_groups(history, primary)), min_delta)


def repeats_done(history: Sequence[Experiment]) -> int:
    return sum(1 for e in history if e.verdict.noise_repeat)


def seed_only_change(git: Git, parent: str, task_dir: Path, editable: Sequence[str]) -> bool:
    """True when the only difference from `parent` is the value of seed constants."""
    changed_names: set[str] = set()
    for name in editable:
        if not name.endswith(".py"):
            return False
        try:
            old = git.show(parent, name)
        except Exception:
            return False
        new = (task_dir / name).read_text(encoding="utf-8")
        try:
            before = {c.name: (c.value, c.line) for c in find_constants(old)}
            after = {c.name: (c.value, c.line) for c in find_constants(new)}
        except Exception:
            return False
        moved = {k for k in set(before) | set(after) if before.get(k, (None,))[0] != after.get(k, (None,))[0]}
        old_lines = [line for line in old.splitlines() if not any(line.lstrip().startswith(m) for m in moved)]
        new_lines = [line for line in new.splitlines() if not any(line.lstrip().startswith(m) for m in moved)]
        if old_lines != new_lines:
            return False  # something other than constants changed
        changed_names |= moved
    return bool(changed_names) and all(any(s in n.upper() for s in SEED_NAMES) for n in changed_names)


# -- held-out check ------------------------------------------------------------------------
def final_eval(task, store, *, top: int = 3, say=print) -> list[dict]:
    """Run `[task] final_eval` on the best `top` keeps (the ledger's `bests`: after an adopted
    config, those judged by the rules in force), each in a fresh detached worktree of its commit;
    write final_eval.json in the run store and return its rows."""
    command = task.config.task.final_eval
    if not command:
        return []
    primary = task.metrics.primary
    keeps = store.ledger.bests()[:top]
    git = Git(task.dir)
    prefix = git.prefix()
    rows = []
    for exp in keeps:
        scratch = make_scratch("autoresearch-final-")
        tree = scratch / "tree"
        try:
            git("worktree", "add", "-q", "--detach", str(tree), exp.commit)
            log = store.run_dir(exp.iteration) / "final_eval.log"
            # The code under test is the agent's: the same allow-listed environment as its runs.
            env = {**run_env(task), "AUTORESEARCH_TIME_BUDGET": f"{task.time_budget:g}", "PYTHONUNBUFFERED": "1",
                   "PATH": f"{python_dir(task)}{os.pathsep}{os.environ.get('PATH', '')}"}
            result = run_process(RunSpec(command=command, cwd=str(tree / prefix), env=env,
                                         timeout=task.timeout, log_path=str(log)))
            redact_file(log, secret_values(env))
            metrics = parse_footer(log.read_text(encoding="utf-8", errors="replace")) if result.exit_code == 0 else {}
            held_out = rounded(metrics.get(primary))
            search = rounded(exp.metrics.get(primary))
            rows.append({"iteration": exp.iteration, "commit": exp.commit, "description": exp.description,
                         "search": search, "held_out": held_out,
                         "gap": None if held_out is None or search is None else round(held_out - search, 6),
                         "error": None if result.exit_code == 0 else f"exit code {result.exit_code}"})
        finally:
            git("worktree", "remove", "--force", str(tree), check=False)
            shutil.rmtree(scratch, ignore_errors=True)
    write_json(store.root / "final_eval.json", {"primary": primary, "command": command, "rows": rows})
    for r in rows:
        gap = f"{r['gap']:+.6f}" if r["gap"] is not None else r["error"] or "no metric"
        say(f"final eval #{r['iteration']} {r['commit'][:7]}: search {primary}={r['search']}, held-out {r['held_out']} (gap {gap})")
    return rows
