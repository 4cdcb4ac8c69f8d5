"""The rules a tag runs under: stored when it starts, checked on every resume, adopted on request.

A tag's experiments were judged under its rules: everything under `[metrics]` and, under `[task]`,
`run`, `editable`, `readonly`, `eval` and `time_budget`. A resume whose autoresearch.toml says
otherwise would judge tonight's runs against yesterday's best by other rules (a flipped
`direction` keeps a worse loss), so it is refused, naming each changed key, unless the user
adopts the new rules (`autoresearch run ... --adopt-config`). Adopting is an `adopt_config`
event in the ledger (ledger.py) carrying the changes and the new rules; the best is re-judged
under them (`rejudge`), the branch moves to it, and results.tsv takes the new columns.

    .autoresearch/<tag>/config.json   {"started": <rules>}: the rules the tag began with

The rules in force are the last adopted ones, else the started ones. A tag begun before this
file existed has none: its first resume stores the rules of the config it resumes with, and says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import ValidationError

from autoresearch.atomic import write_json, write_text
from autoresearch.config import MetricsSection, Task, TaskSection, columns_of
from autoresearch.decision import Rules, check_primary, decide
from autoresearch.errors import AutoresearchError
from autoresearch.records import Experiment
from autoresearch.verdict import Reason, Status

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop
    from autoresearch.store import RunStore

FILE_NAME = "config.json"
TASK_KEYS = ("run", "editable", "readonly", "eval", "time_budget")  # with all of [metrics]: the rules
ADOPT_FLAG = "--adopt-config"
EVENT = "adopt_config"
# Rows that are no judgement of their own code, or only a partial one: never re-judged the best.
_NOT_CANDIDATES = frozenset({Reason.NOISE_REPEAT, Reason.CONFIRMATION, Reason.DUPLICATE, Reason.STOPPED_EARLY,
                             Reason.NOT_CONFIRMED})


def snapshot(config) -> dict:
    """The rules of a validated TaskConfig, as plain JSON values."""
    task = config.task.model_dump(mode="json")
    return {"metrics": config.metrics.model_dump(mode="json"), "task": {k: task.get(k) for k in TASK_KEYS}}


@dataclass(frozen=True)
class Change:
    key: str  # "metrics.direction", "task.run"
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_shown(self.old)} -> {_shown(self.new)}"

    def to_json(self) -> dict:
        return {"key": self.key, "old": self.old, "new": self.new}


def _shown(value) -> str:
    return "(unset)" if value is None else json.dumps(value)


def _normal(rules: dict) -> dict:
    """A snapshot with the defaults of this version filled in: a key a newer version added is no change."""
    try:
        return {**rules, "metrics": MetricsSection.model_validate(rules["metrics"]).model_dump(mode="json")}
    except (ValueError, TypeError, KeyError):  # rules this version would not accept: compared as stored
        return rules


def changes(old: dict, new: dict) -> list[Change]:
    """Each key whose value differs between two snapshots, `[metrics]` first."""
    out = []
    old, new = _normal(old), _normal(new)
    for section in ("metrics", "task"):
        a, b = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(a) | set(b), key=lambda k: (k not in a, k)):
            if a.get(key) != b.get(key):
                out.append(Change(f"{section}.{key}", a.get(key), b.get(key)))
    return out


# -- the store's file ----------------------------------------------------------------------
def path(store: "RunStore") -> Path:
    return store.root / FILE_NAME


def save_started(store: "RunStore", config) -> None:
    write_json(path(store), {"started": snapshot(config)})


def started(store: "RunStore") -> dict | None:
    """The rules the tag began with; None for a tag begun before they were stored."""
    file = path(store)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise AutoresearchError(f"{file}: not valid JSON ({exc}); it holds the rules the tag started with: restore "
                                "it from a backup, or delete it to store the current config's rules instead") from None
    rules = data.get("started") if isinstance(data, dict) else None
    if not isinstance(rules, dict) or not isinstance(rules.get("metrics"), dict) or not isinstance(rules.get("task"), dict):
        raise AutoresearchError(f"{file}: no \"started\" rules with \"metrics\" and \"task\" in it; restore it from a "
                                "backup, or delete it to store the current config's rules instead")
    return rules


def in_force(store: "RunStore") -> dict | None:
    """The rules the tag runs under now: the last adopted ones, else those it started with."""
    adopted = [e for e in store.ledger.events if e["event"] == EVENT and isinstance(e.get("rules"), dict)]
    return adopted[-1]["rules"] if adopted else started(store)


def apply(task: Task, rules: dict) -> Task:
    """`task` with the rule keys of `rules` over its own (every other key stays as loaded)."""
    config = task.config
    try:
        metrics = MetricsSection.model_validate(rules["metrics"])
        section = TaskSection.model_validate({**config.task.model_dump(), **rules["task"]})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AutoresearchError(
            f"{task.path}: the rules this tag runs under do not fit it ({'.'.join(map(str, first['loc']))}: "
            f"{first['msg']}); change {task.path.name} so they do (e.g. timeout at least time_budget), or adopt "
            f"its rules with {ADOPT_FLAG}") from None
    return task.with_config(config.model_copy(update={"metrics": metrics, "task": section}))


def status_task(task: Task, store: "RunStore") -> Task:
    """The task as `status` and the summary must read it: under the rules in force."""
    rules = in_force(store) if store.ledger.exists() else None
    return apply(task, rules) if rules is not None and changes(rules, snapshot(task.config)) else task


# -- the resume's check --------------------------------------------------------------------
def resolved(task: Task, store: "RunStore", git) -> Task:
    """The task a Loop runs: as loaded, except where a resume from the run branch reads the branch's own
    autoresearch.toml, which still holds the rules the tag started with, while the tag has adopted
    others since (from another checkout): then under those, as its ledger says. Reads only."""
    try:
        if not store.ledger.exists() or not any(e["event"] == EVENT for e in store.ledger.events):
            return task
        first, rules = started(store), in_force(store)
    except AutoresearchError:  # the resume reports a damaged ledger or config.json itself
        return task
    if first is None or rules is None or not changes(first, rules) or changes(first, snapshot(task.config)):
        return task
    if ".autoresearch" in task.path.parts or git.current_branch() != store.branch:
        return task
    return apply(task, rules)


@dataclass
class Plan:
    """What a resume does about the rules, decided before anything is touched."""

    note: str | None = None  # said once the resume goes ahead
    store_rules: bool = False  # a tag from before: store the rules it resumes with
    adopt: list[Change] | None = None  # adopt these changes


def check(loop: "Loop") -> Plan:
    """Refuse a resume whose rules differ from the tag's, unless adopting; nothing is touched here."""
    task, store = loop.task, loop.store
    current = snapshot(task.config)
    rules = in_force(store)
    if rules is None:
        return Plan(store_rules=True, note=(
            f"resume: this tag began before autoresearch stored the rules a tag starts with; stored those of "
            f"{task.path} now ([metrics], and run, editable, readonly, eval, time_budget under [task]): a later "
            f"resume that changes them is refused unless {ADOPT_FLAG}"))
    found = changes(rules, current)
    if not found:
        first = started(store)
        adopted = changes(first, rules) if first is not None else []
        return Plan(note=f"{ADOPT_FLAG}: {task.path.name} has the rules this tag already runs under; nothing to adopt"
                    if task.adopt_config else
                    f"rules: those this tag adopted ({'; '.join(str(c) for c in adopted)})" if adopted else None)
    if task.adopt_config:
        return Plan(adopt=found)
    listed = "\n".join(f"  {c}" for c in found)
    raise AutoresearchError(
        f"{task.path}: the rules differ from those tag {store.tag!r} runs under (its experiments were judged by "
        f"them):\n{listed}\nnothing was changed. To adopt the new rules (recorded in the ledger, the best re-judged "
        f"under them, results.tsv's columns updated), resume with {ADOPT_FLAG}; to keep the old ones, put "
        f"{task.path.name} back; or start a new --tag")


def before_recover(loop: "Loop", plan: Plan) -> None:
    if plan.adopt:
        _new_header(loop)


def after_recover(loop: "Loop", plan: Plan) -> None:
    if plan.store_rules:
        save_started(loop.store, loop.task.config)
    if plan.note:
        loop.say(plan.note)
    if plan.adopt:
        adopt(loop, plan.adopt)


def _new_header(loop: "Loop") -> None:
    """results.tsv as the old rules wrote it becomes the same rows under the new columns, so the
    check against the ledger that follows sees no damage (a hand-edited table is still backed up)."""
    from autoresearch import results_tsv

    old = in_force(loop.store)
    table, records = loop.table, loop.store.ledger.records
    worker_column = table.worker_column or any(e.worker is not None for e in records)
    old_columns = columns_of(MetricsSection.model_validate(old["metrics"]))
    file = table.path
    if old_columns == table.columns or not file.is_file():
        return
    current = file.read_bytes()
    if any(current == results_tsv.render(records, old_columns, worker_column, legacy).encode("utf-8")
           for legacy in (False, True)):  # as this version or an earlier one wrote it
        write_text(file, results_tsv.render(records, table.columns, worker_column))


# -- adopting ------------------------------------------------------------------------------
def rejudge(records: list[Experiment], rules: Rules, floor: float = 0.0,
            exists: Callable[[str], bool] = lambda commit: True) -> Experiment | None:
    """The best under `rules`: the experiments that ran, replayed in order, each kept if it beats
    the best before it (tie-breaks, memory cost and noise floor included). None: none has the primary."""
    best = None
    for r in records:
        if r.status not in (Status.KEEP, Status.DISCARD) or not r.commit or r.verdict.reason in _NOT_CANDIDATES:
            continue
        if check_primary(r.metrics, rules.primary) is not None or not exists(r.commit):
            continue
        if best is None or decide(r.metrics, best.metrics, rules, floor=floor).status is Status.KEEP:
            best = r
    return best


def adopt(loop: "Loop", found: list[Change]) -> None:
    """The event in the ledger, then the branch on the re-judged best (after a resume's checks:
    the tree is clean and the branch was on the last best, which keeps its ref)."""
    from autoresearch import integrity

    store, git, task = loop.store, loop.git, loop.task
    ledger = store.ledger
    before = ledger.best()
    floor = integrity.noise_floor(ledger.records, loop.rules.primary, task.metrics.min_delta)
    best = rejudge(ledger.records, loop.rules, floor, exists=git.existing_commits(r.commit for r in ledger.records).__contains__)
    ledger.append_event(EVENT, at=time.time(), changes=[c.to_json() for c in found], rules=snapshot(task.config),
                        best=best.iteration if best else None, previous_best=before.iteration if before else None)
    loop.say(f"adopted the new rules of {task.path.name} (recorded in the ledger): "
             + "; ".join(str(c) for c in found))
    if best is None:
        loop.say(f"re-judged: no recorded experiment has {loop.rules.primary}; a new baseline runs first")
        return
    value = best.metrics.get(loop.rules.primary)
    moved = before is None or best.commit != before.commit
    loop.say(f"re-judged under them, the best is iteration {best.iteration} ({best.commit[:7]}, "
             f"{loop.rules.primary} = {value:.6f})" + (f"; the branch moves to it from iteration {before.iteration}"
                                                      if moved and before is not None else ""))
    if git.head() != best.commit:
        git.reset_hard(best.commit)


# -- a branch head the run did not make ---------------------------------------------------
def foreign_commits(loop: "Loop") -> list[tuple[str, str]]:
    """(commit, subject) of each commit on the run branch that no recorded experiment made, newest first."""
    store, git = loop.store, loop.git
    best = store.ledger.best()
    if best is None or not best.commit:
        return []
    head = git.rev(store.branch)
    if head == best.commit:
        return []
    out = git("log", "--format=%H%x00%s", head, "--not", best.commit, f"--glob=refs/autoresearch/{store.tag}/*",
              "--")
    return [tuple(line.split("\0", 1)) for line in out.splitlines() if "\0" in line]


def refuse_foreign(loop: "Loop", on_branch: bool) -> None:
    found = foreign_commits(loop)
    if not found:
        return
    store = loop.store
    best = store.ledger.best()
    listed = "\n".join(f"  {commit[:12]} {subject}" for commit, subject in found[:10])
    more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
    move = (f"git branch my-work HEAD && git reset --hard {best.commit[:12]}" if on_branch
            else f"git branch my-work {store.branch} && git branch -f {store.branch} {best.commit[:12]}")
    raise AutoresearchError(
        f"branch {store.branch} has {len(found)} commit(s) the run did not make, on top of its last recorded best "
        f"{best.commit[:12]} (iteration {best.iteration}):\n{listed}{more}\na resume would reset them away; nothing "
        f"was changed. Keep them on a branch of your own and put the run's branch back ({move}), then resume; "
        f"or start a new --tag from them")
