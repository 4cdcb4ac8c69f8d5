"""The library entry points the CLI calls; everything the CLI does is available here."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from autoresearch.atomic import write_text
from autoresearch.config import CONFIG_NAME, Task, load_task, stored_config
from autoresearch.cost import spend
from autoresearch.errors import AgentPaused, AutoresearchError
from autoresearch.gains import current_floor, gains as judged_gains
from autoresearch.gpu import training_share, warm_saved
from autoresearch.ledger import baseline_of
from autoresearch.records import Experiment, Status
from autoresearch.store import STORE_DIR, RunStore, check_tag


def run_loop(task_dir, tag: str, *, iterations: int, agent: str | None = None, max_seconds: float | None = None,
             max_crashes: int | None = None, max_cost_usd: float | None = None, seed: int = 0,
             evolve_program: bool = False, gpus: str | None = None, workers: int | None = None,
             executor: str | None = None, ray_address: str | None = None,
             say: Callable[[str], None] = print, stop_event: threading.Event | None = None,
             adopt_config: bool = False) -> list[Experiment]:
    """Run (or resume) the loop on a task; returns the experiments this call recorded.

    A resume whose rules ([metrics], run, editable, ...) differ from the tag's is refused unless
    `adopt_config` (tag_config.py).
    `gpus="0,1"` or `workers=N` (N > 1) runs one worker per slot, sharing one ledger.
    `executor="ray"` (and `ray_address`) overrides the config's [executor]: runs become Ray tasks."""
    # Imported here, not at the top: `status`, `report` and the dashboard never run the loop.
    from autoresearch import crash_policy, integrity, outer
    from autoresearch.agents import KINDS, create_agent
    from autoresearch.analysis.observer import BackgroundRefresh  # not needed to fail fast
    from autoresearch.analysis.prewarm import ReportPrewarm
    from autoresearch.budget import budget_watch
    from autoresearch.loop import Limits, Loop
    from autoresearch.workers import parse_slots, run_workers

    if agent is not None and agent not in KINDS:  # the flag's fault, not autoresearch.toml's
        raise AutoresearchError(f"--agent {agent!r}: unknown agent; use one of {', '.join(KINDS)}")
    task = start_task(task_dir, tag, say).with_executor(executor, ray_address).adopting_config(adopt_config)
    from autoresearch.gitrepo import Git
    from autoresearch.tag_config import resolved

    task = resolved(task, RunStore(task.dir, tag), Git(task.dir))  # the agent sees the rules the run is under
    kind = agent or task.agent.kind
    limits = Limits(iterations=iterations, max_seconds=max_seconds, max_consecutive_crashes=max_crashes,
                    max_cost_usd=max_cost_usd)
    prewarm = ReportPrewarm()  # the final report's imports, loaded beside the second run
    refresh_analysis = BackgroundRefresh()  # beside the next run; the loop drains it before a prompt and at its end
    if gpus or (workers or 1) > 1:
        slots = parse_slots(gpus, workers)
        make_agent = lambda i: create_agent(kind, task, seed=seed + i)  # noqa: E731
        records = run_workers(task, tag, make_agent, slots, limits, say=say, stop_event=stop_event,
                              observers=[refresh_analysis, budget_watch(task, say), prewarm])
        from autoresearch.live.state import clear_stop

        clear_stop(RunStore(task.dir, tag).root)  # the workers honoured it (or the night ended first)
    else:
        loop = Loop(task, tag, create_agent(kind, task, seed=seed), say=say, stop_event=stop_event,
                    observers=[refresh_analysis, budget_watch(task, say), prewarm])
        records = loop.run(limits)
    paused = crash_policy.should_pause_for_agent(sorted(records, key=lambda r: r.iteration),
                                                 task.config.task.pause_after_env_errors)
    if paused:  # the agent cannot work (every worker paused on it): the reports are written, the exit says so
        _final_reports(task, tag, say, prewarm)
        raise AgentPaused(paused)
    _final_reports(task, tag, say, prewarm)
    if task.config.task.final_eval and records and not (stop_event and stop_event.is_set()):
        integrity.final_eval(task, RunStore(task.dir, tag), say=say)  # the held-out check on the best commits
    if evolve_program:
        say(f"proposed program: {outer.evolve_program(task, RunStore(task.dir, tag))} (program.md is unchanged)")
    return records


def start_task(task_dir, tag: str, say: Callable[[str], None] = print) -> Task:
    """The task a run with `tag` starts or resumes, with what the user should know said first.

    An inferred config (no autoresearch.toml, a karpathy-layout repository) is printed and kept
    in the run store, not in the repository; a resume reads it back from there. A resumed run's
    hard timeout follows its baseline's wall time (budget.py)."""
    from autoresearch.budget import baseline_wall

    check_tag(tag)
    task = load_task(task_dir, tag=tag)
    store = RunStore(task.dir, tag)
    task = task.with_baseline_wall(baseline_wall(store.ledger.records) if store.ledger.exists() else None)
    for line in task.notes():
        say(line)
    if task.inferred is not None:
        kept = stored_config(task.dir, tag)
        kept.parent.mkdir(parents=True, exist_ok=True)
        write_text(kept, task.inferred.toml(), durable=False)
        say(f"  kept in {kept}; `autoresearch init` writes it into the repository instead")
    return task


def init_config(task_dir, *, force: bool = False) -> Path:
    """Write a commented autoresearch.toml for a repository with a train.py: for a karpathy layout,
    the config `run` infers without one."""
    from autoresearch.layout import infer

    directory = Path(task_dir).resolve()
    path = directory / CONFIG_NAME
    if path.exists() and not force:
        raise AutoresearchError(f"{path} exists; pass --force to overwrite it")
    inferred = infer(directory, layout_required=False)
    if inferred is None:
        raise AutoresearchError(f"{directory}: no train.py here to read a config from; write autoresearch.toml by "
                                "hand, see the README's \"Using it on your own task\"")
    write_text(path, inferred.toml(), durable=False)
    return path


@dataclass
class RunStatus:
    task: Task
    store: RunStore
    records: list[Experiment]

    def totals(self) -> dict:
        primary = self.task.metrics.primary  # under the rules in force (status_of), adopted ones included
        best = self.store.ledger.best() if self.records else None
        base = baseline_of(self.records, self.store.ledger)  # a new one where an adopted config needed it

        def brief(r: Experiment | None):
            if r is None:
                return None
            return {"iteration": r.iteration, "commit": r.commit, "value": r.metrics.get(primary),
                    "description": r.description}

        count = lambda s: sum(1 for r in self.records if r.status is s)  # noqa: E731
        spent = spend(self.store, self.records)  # the experiments' agent calls and the strategy memo's
        return {
            "tag": self.store.tag, "branch": self.store.branch, "primary": primary,
            "direction": self.task.metrics.direction, "iterations": len(self.records),
            "keeps": count(Status.KEEP), "discards": count(Status.DISCARD), "crashes": count(Status.CRASH),
            "imported": count(Status.IMPORTED),
            "best": brief(best), "baseline": brief(base),
            "workers": {f"w{w}": sum(1 for r in self.records if r.worker == w)
                        for w in sorted({r.worker for r in self.records if r.worker is not None})},
            "nodes": {n: sum(1 for r in self.records if r.node == n) for n in sorted({r.node for r in self.records if r.node})},
            "training_share": training_share(self.records),
            "warm_runs": sum(1 for r in self.records if r.warm),
            "sandboxed_runs": sum(1 for r in self.records if r.sandboxed),
            "sandbox_mode": self.task.config.sandbox.mode,
            "runs": sum(1 for r in self.records if r.wall_seconds > 0),
            "warm_saved_seconds": round(warm_saved(self.records), 2),
            "cost_usd": spent.cost_usd, "tokens": spent.tokens,
            "memo_cost_usd": spent.memo_usd, "memo_tokens": spent.memo_tokens,  # included in the two above
            "noise": noise_totals(self.task.metrics, self.records, self.store.ledger),
        }

    def gains(self) -> dict:
        """Iteration -> its gain over the best it was judged against, with the floor then (gains.py)."""
        return judged_gains(self.records, self.task.metrics, self.store.ledger)


def noise_totals(metrics, records, ledger) -> dict:
    """The noise floor the next keep must clear, where it comes from, and each judged gain beside
    the floor it was held to (+ is better)."""
    floor = current_floor(records, metrics)
    m = floor.measured
    return {"floor": round(floor.value, 6) if floor.known else None, "known": floor.known,
            "source": floor.source(), "std": round(m.std, 6) if m else None, "runs": m.runs if m else 0,
            "min_delta": metrics.min_delta, "deterministic": metrics.deterministic,
            "gains": {str(n): {"gain": g.value, "floor": round(g.floor.value, 6) if g.floor.known else None}
                      for n, g in judged_gains(records, metrics, ledger).items()}}


def _final_reports(task: Task, tag: str, say: Callable[[str], None], prewarm=None) -> None:
    """The progress plot and the HTML report at the end of a run; a failure here loses nothing."""
    store = RunStore(task.dir, tag)
    if not store.ledger.exists():
        return
    if prewarm is not None:
        prewarm.wait()  # never two threads drawing at once
    try:
        from autoresearch.analysis.plot import plot_progress
        from autoresearch.analysis.report import write_report
        plot = plot_progress(task, store, store.shown("progress.png"))  # the store's copy where git tracks one
        # The report embeds the plot just drawn rather than drawing it again.
        say(f"report: {write_report(task, store, store.shown('report.html'), progress_png=plot)}   plot: {plot}")
    except Exception as exc:
        say(f"warning: the report could not be written ({type(exc).__name__}: {exc}); `autoresearch report` retries")


def confirm(task_dir, tag: str | None = None, top: int = 3, say: Callable[[str], None] = print) -> list[dict]:
    """Run `[task] final_eval` on the best `top` keeps of a run and report the gaps."""
    from autoresearch import integrity

    s = status_of(task_dir, tag)
    if not s.task.config.task.final_eval:
        raise AutoresearchError(f"{s.task.path}: [task] final_eval is not set; e.g. final_eval = \"python prepare.py --test\"")
    return integrity.final_eval(s.task, s.store, top=top, say=say)


def list_tags(task_dir: Path) -> list[str]:
    root = Path(task_dir) / STORE_DIR
    return sorted(p.name for p in root.iterdir() if (p / "ledger.jsonl").exists()) if root.is_dir() else []


def status_of(task_dir, tag: str | None = None) -> RunStatus:
    task = load_task(task_dir, tag=tag)
    if tag is None:
        tags = list_tags(task.dir)
        if not tags:
            raise AutoresearchError(f"{task.dir}: no runs yet; start one with `autoresearch run {task_dir} --tag <tag>`")
        branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=task.dir,
                                capture_output=True, text=True).stdout.strip()
        current = branch.removeprefix("autoresearch/")
        if len(tags) == 1:
            tag = tags[0]
        elif current in tags:
            tag = current
        else:
            raise AutoresearchError(f"{task.dir}: several runs ({', '.join(tags)}); choose one with --tag")
        task = load_task(task_dir, tag=tag)  # an inferred config is the one the run kept
    store = RunStore(task.dir, tag)
    if not store.ledger.exists():
        raise AutoresearchError(f"{store.ledger.path}: no run with tag {tag!r}; tags here: {', '.join(list_tags(task.dir)) or 'none'}")
    from autoresearch.tag_config import status_task

    return RunStatus(status_task(task, store), store, list(store.ledger.records))


def next_steps(task_dir, tag: str) -> list[str]:
    """What to do after a run: the branch it left checked out, and the commands that follow."""
    s = status_of(task_dir, tag)
    # The first keep, whatever was adopted since: the code the run started from, on the user's branch.
    base = next((r for r in s.records if r.status is Status.KEEP), None)
    origin = _origin_branch(s.task.dir, base.commit) if base else None
    here = shlex.quote(str(task_dir))
    lines = [f"on branch {s.store.branch}" + (f" (started from {origin})" if origin else "") + "; next:"]
    if origin or base:
        lines.append(f"  git diff {origin or base.commit[:12]} {s.store.branch}   # what the run changed")
    lines += [f"  autoresearch run {here} --tag {tag} --iterations 10   # continue this run",
              f"  open {shlex.quote(str(s.task.dir / 'report.html'))}   # the report (xdg-open on Linux)",
              f"  autoresearch dashboard {here} --tag {tag}   # the live page, http://127.0.0.1:8765/"]
    if origin:
        lines.append(f"  git checkout {origin}   # back to where you started")
    return lines


def _origin_branch(cwd: Path, commit: str) -> str | None:
    """The branch the run started from: one holding the baseline commit that is not ours."""
    proc = subprocess.run(["git", "branch", "--contains", commit, "--format=%(refname:short)"], cwd=cwd,
                          capture_output=True, text=True)
    names = [n for n in proc.stdout.split() if not n.startswith("autoresearch/")] if proc.returncode == 0 else []
    for preferred in ("main", "master"):
        if preferred in names:
            return preferred
    return names[0] if names else None


def dashboard_for(task_dir, tag: str | None = None, *, host: str = "127.0.0.1", port: int = 8765,
                  token: str | None = None):
    """The dashboard server of a run (`serve_forever()` it). A tag that has no ledger yet is
    accepted: the page fills in once the run records its first experiment."""
    from autoresearch.dashboard import Dashboard, new_token
    from autoresearch.dashboard.server import LOOPBACK

    if tag is None:
        s = status_of(task_dir, None)
        task, store = s.task, s.store
    else:
        from autoresearch.tag_config import status_task

        task = load_task(task_dir, tag=tag)
        store = RunStore(task.dir, tag)
        task = status_task(task, store)  # the rules the run is under, adopted ones included
    if host not in LOOPBACK and not token:
        token = new_token()  # another address: never without a secret
    return Dashboard(task, store, host=host, port=port, token=token)


EXAMPLES = ("mnist1d", "mnist1d_yaml")  # the bundled tasks: the same problem, knobs as constants or in a YAML file
# Files an example takes from another one when it is copied (one copy of the code in the package):
# the YAML twin trains with mnist1d's own train.py and harness.
SHARED = {"mnist1d_yaml": {"prepare.py": "mnist1d/prepare.py", "mnist1d_train.py": "mnist1d/train.py",
                           ".gitignore": "mnist1d/.gitignore"}}


def copy_example(name: str, directory: Path, *, time_budget: float | None = None) -> Path:
    """Copy a bundled example to `directory` as a fresh git repository (kept if it exists)."""
    directory = Path(directory).resolve()
    source = resources.files("autoresearch.examples") / name
    if not (directory / "autoresearch.toml").exists():
        if directory.exists() and any(directory.iterdir()):
            raise AutoresearchError(f"{directory} exists and is not an autoresearch task; choose another --dir")
        with resources.as_file(source) as src:
            shutil.copytree(src, directory, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "data", "metrics.jsonl"))
        for file, origin in SHARED.get(name, {}).items():
            (directory / file).write_bytes((resources.files("autoresearch.examples") / origin).read_bytes())
        if time_budget is not None:
            _set_budget(directory / "autoresearch.toml", time_budget)
        git = ["git", "-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=directory, check=True)
        subprocess.run(git + ["add", "-A"], cwd=directory, check=True)
        subprocess.run(git + ["commit", "-q", "-m", f"{name} example task"], cwd=directory, check=True)
    return directory


def _set_budget(config: Path, seconds: float) -> None:
    text = re.sub(r"(?m)^(time_budget\s*=\s*)[0-9.eE+-]+", lambda m: f"{m.group(1)}{seconds:g}", config.read_text())
    config.write_text(text)
