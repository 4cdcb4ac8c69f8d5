"""The stages before a run: propose, screen, commit and guard.

Each takes the Attempt and either fills it in or ends it with a Verdict (`attempt.verdict`): an
agent that failed or changed nothing, a change outside the editable files. An ended attempt is
recorded without training. A proposal whose code repeats an earlier experiment is no attempt of
its own: it goes back to the agent (`propose_new`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from autoresearch import guard, outer
from autoresearch.agents.base import Context, Repeat
from autoresearch.atomic import write_text
from autoresearch.decision import total_code_lines
from autoresearch.execution.agent_sandbox import AgentSandbox
from autoresearch.errors import AutoresearchError
from autoresearch.loop.attempt import Attempt, Kind
from autoresearch.prompt import render_prompt
from autoresearch.records import Proposal
from autoresearch.text import safe_line, safe_text
from autoresearch.verdict import Reason, Status, Verdict

if TYPE_CHECKING:
    from autoresearch.loop.core import Loop


def baseline_proposal(attempt: Attempt, noise_runs: int) -> Proposal:
    if attempt.kind is Kind.BASELINE:
        return Proposal("baseline", "The unmodified code, run once to set the bar.")
    return Proposal(f"baseline repeat {attempt.repeat} of {noise_runs - 1} (noise estimate)",
                    "The unmodified code under another seed, to measure the run-to-run spread.")


def propose(loop: "Loop", attempt: Attempt) -> None:
    """The agent edits the work tree (a crashed change first, when it is to repair it)."""
    task, git = loop.task, loop.git
    attempt.lines_before = total_code_lines(task.dir, task.editable)
    attempt.repair = outer.repair_target(attempt.history, loop.agent, task.agent.max_fix_attempts)
    if attempt.repair is not None:
        # The agent repairs the crashed change itself, so the work tree holds that code.
        git("checkout", "-q", attempt.repair.commit, "--", *task.editable)
    before_agent = git.snapshot()
    outside_before = git.outside_changes()
    with loop.shared.git_guard.window(git, f"{_who(loop)}agent (iteration {attempt.n})") as git_changed:
        attempt.proposal = _ask(loop, attempt)
    loop.emit("stage", attempt.n, "screen", description=attempt.proposal.description)
    healed = git.heal(before_agent, loop.branch)  # a rewritten HEAD or config, a lock it left
    if healed:
        loop.say(f"note: iteration {attempt.n}: the agent broke git's {', '.join(healed)}; put back")
    _put_back_tampering(git, attempt, git_changed, outside_before)
    loop.checkpoint()
    if git.put_back(loop.branch, attempt.parent):  # the agent moved HEAD, the branch or the index
        loop.say(f"note: iteration {attempt.n}: the agent changed git state; the branch is back at {attempt.parent[:7]}")
    untracked = set(attempt.untracked)
    entries = [(code, p) for code, p in git.status() if p not in untracked]
    attempt.changed = [p for _, p in entries]
    attempt.created = [p for code, p in entries if code == "??"]


def _who(loop: "Loop") -> str:
    return f"{loop.worker.name}'s " if loop.worker is not None else "the "


def _put_back_tampering(git, attempt: Attempt, git_changed: list[str], outside_before: set[str]) -> None:
    """Hooks, config and info/exclude (a hook our commit would run, an fsmonitor, a file hidden
    from status: already put back by the guard's window), files outside the task folder (a shared
    helper the run imports): put back; commit_and_guard then makes the attempt a guard crash that
    names them."""
    attempt.tampered = [f"git's {p}" for p in git_changed]
    outside_new = git.outside_changes() - outside_before
    if outside_new:
        git.revert_outside(outside_new)
        attempt.tampered.append(f"file(s) outside the task directory {', '.join(sorted(outside_new))}")


def _ask(loop: "Loop", attempt: Attempt) -> Proposal:
    task, store, n = loop.task, loop.store, attempt.n
    loop.drain_observers()  # the hints below are the analysis of every experiment so far
    extras = replace(outer.prompt_extras(task, store, attempt.history, attempt.repair),
                     repeats=tuple(r.text(loop.rules.primary) for r in attempt.repeats), max_repeats=task.agent.max_repeats)
    prompt = render_prompt(task, store.tag, n, attempt.history, attempt.best, runs_dir=store.root / "runs",
                           extras=extras, budget=task.agent.prompt_budget, recent=task.agent.recent, ledger=store.ledger)
    prompt_file = attempt.run_dir / "prompt.md"
    write_text(prompt_file, prompt, durable=False)
    context = Context(
        repeats=tuple(attempt.repeats), task_dir=task.dir, iteration=n, editable=task.editable, readonly=task.readonly,
        history=attempt.history, best=attempt.best, primary=loop.rules.primary, direction=loop.rules.direction,
        prompt=prompt, prompt_file=prompt_file, seed=0, stop_event=loop.stop_event,
        on_process_start=lambda pid: loop.track(pid, "agent"), sandbox=agent_sandbox(loop),
    )
    try:
        proposal = loop.agent.propose(context)
    except AutoresearchError as exc:
        return Proposal("agent failed", "", ok=False, error=safe_text(str(exc)))
    except Exception as exc:  # a bug in an agent must not end the night
        return Proposal("agent failed", "", ok=False, error=safe_text(f"{type(exc).__name__}: {exc}"))
    # What the agent wrote goes into git, results.tsv and the terminal: no NUL, no escape sequences.
    proposal = replace(proposal, description=safe_line(proposal.description),
                       explanation=safe_text(proposal.explanation), error=safe_text(proposal.error))
    repair = attempt.repair
    if repair is None:
        return proposal
    root = repair.repair_of if repair.repair_of is not None else repair.iteration  # the change being repaired
    return replace(proposal, data={**proposal.data, "repair_of": root})


def agent_sandbox(loop: "Loop") -> AgentSandbox | None:
    """What the agent's processes may change when they are sandboxed (as the runs are), else None."""
    if not loop.sandbox.on:
        return None
    task = loop.task
    return AgentSandbox(task_dir=task.dir, repo_root=loop.repo_root, store_root=loop.store.root,
                        editable=task.editable, readonly=task.readonly,
                        writable=task.config.sandbox.agent_writable, git_dir=loop.git.common_dir())


def propose_new(loop: "Loop", attempt: Attempt) -> None:
    """Propose and screen; a proposal that repeats earlier code goes back to the agent with what
    it repeats, and `[agent] max_repeats` of them in a row end the attempt as an `agent` crash.

    A repeat is not an experiment: it gets no row, no commit and no run (issue 12)."""
    limit = loop.task.agent.max_repeats
    while True:
        propose(loop, attempt)
        repeat = screen(loop, attempt)
        if repeat is None:
            break
        attempt.repeats.append(repeat)
        attempt.rejected.append(attempt.proposal)
        if len(attempt.repeats) >= limit:
            which = ", ".join(str(r.iteration) for r in attempt.repeats)
            attempt.verdict = Verdict.crash(
                Reason.AGENT, f"{len(attempt.repeats)} proposals in a row repeated earlier experiments "
                              f"(iterations {which}); none was run")
            attempt.commit = attempt.parent  # nothing of it is committed
            break
        loop.say(f"note: iteration {attempt.n}: {repeat.text(loop.rules.primary)}; not run, the agent is asked "
                 f"again ({len(attempt.repeats)} of {limit})")
    attempt.proposal = _with_rejected(attempt.proposal, attempt)


def _with_rejected(proposal: Proposal, attempt: Attempt) -> Proposal:
    """The proposal recorded, carrying what the repeats before it cost and which they were."""
    if not attempt.rejected:
        return proposal
    data = dict(proposal.data) if isinstance(proposal.data, dict) else {}
    data["repeats"] = [{"description": r.description, "of": r.iteration, **({"running": True} if r.running else {})}
                       for r in attempt.repeats]
    earlier = [p for p in attempt.rejected if p is not proposal]
    return replace(proposal, data=data, cost_usd=proposal.cost_usd + sum(p.cost_usd for p in earlier),
                   tokens=proposal.tokens + sum(p.tokens for p in earlier))


def screen(loop: "Loop", attempt: Attempt) -> Repeat | None:
    """End the attempt before a commit when there is nothing to train; a Repeat when its code is
    that of an earlier experiment (the work tree is then back at the parent's code)."""
    proposal, changed, task = attempt.proposal, attempt.changed, loop.task
    if not proposal.ok:
        attempt.verdict = Verdict.crash(Reason.AGENT, proposal.error)
    elif not changed:
        attempt.verdict = Verdict.crash(Reason.AGENT, "no change to the editable files")
    elif guard.outside_scope(changed, task.editable) or guard.escaping(task.dir, changed):
        return None  # committed so the attempt can be inspected, then rejected by the guard
    else:
        repeat = _repeat_of(loop, attempt)
        if repeat is not None:
            loop.restore_tree(attempt.untracked, attempt.created, to=attempt.parent)
        return repeat
    attempt.commit = attempt.parent  # nothing of it is committed
    if not proposal.ok:
        loop.restore_tree(attempt.untracked)
    return None


def _repeat_of(loop: "Loop", attempt: Attempt) -> Repeat | None:
    """The earlier experiment (or the run in flight on another worker) with this very code."""
    digest = guard.content_hash(loop.task.dir, loop.task.editable)
    proposal = attempt.proposal
    with loop.shared.lock:
        for old in loop.store.ledger.records:
            if old.content_hash == digest and old.status is not Status.CRASH:
                score = old.metrics.get(loop.rules.primary)
                return Repeat(old.iteration, old.commit, score if isinstance(score, (int, float)) else None,
                              proposal.description, dict(proposal.data or {}))
        for other, running in loop.shared.in_flight.items():
            if running == digest:
                return Repeat(other, "", None, proposal.description, dict(proposal.data or {}), running=True)
        loop.shared.in_flight[attempt.n] = digest  # other workers must not run the same code now
    return None


def commit_and_guard(loop: "Loop", attempt: Attempt) -> None:
    """Commit the change (kept reachable under refs/autoresearch/), then reject what the guard forbids."""
    task, git, store, n = loop.task, loop.git, loop.store, attempt.n
    outside = guard.outside_scope(attempt.changed, task.editable)
    escaped = guard.escaping(task.dir, attempt.changed)  # a symlink out of the task, say
    loop.emit("stage", n, "commit")
    attempt.commit = git.commit(attempt.changed, attempt.proposal.description or "experiment")
    git.keep_reachable(store.ref(n), attempt.commit)
    store.set_pending(commit=attempt.commit)
    write_text(attempt.run_dir / "diff.patch", git.diff(attempt.parent, attempt.commit), durable=False)
    touched = guard.changed_readonly(attempt.readonly_before, guard.file_hashes(task.dir, task.readonly))
    bad = sorted(set(outside) | set(touched))
    if bad or escaped or attempt.tampered:
        what = [f"changed non-editable file(s) {', '.join(bad)}"] if bad else []
        what += [f"made {', '.join(escaped)} lead outside the task directory"] if escaped else []
        what += [f"changed {', '.join(attempt.tampered)}"] if attempt.tampered else []
        attempt.verdict = Verdict.crash(Reason.GUARD, f"{'; '.join(what)}; reverted")
