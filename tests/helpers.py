"""What many test modules share: a scripted agent, the loop driven by it, the CLI as a user runs it.

Test modules import these from here, never from one another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autoresearch.agents.base import Agent, Context
from autoresearch.config import load_task
from autoresearch.execution import sandbox
from autoresearch.loop import Limits, Loop
from autoresearch.records import Experiment, Proposal, Status

GOLDEN = Path(__file__).parent / "golden"

# For the tests of what the bubblewrap sandbox stops: skipped, saying why, where it cannot work.
needs_sandbox = pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")


class ScriptedAgent(Agent):
    """Applies one scripted edit per iteration: a function of the task directory."""

    name = "scripted"

    def __init__(self, *edits):
        self.edits = list(edits)
        self.contexts = []

    def propose(self, context):
        self.contexts.append(context)
        result = self.next_edit()(context.task_dir)
        if isinstance(result, Proposal):
            return result
        return Proposal(description=result or "edit", explanation=f"{result}. Because.")

    def next_edit(self):
        return self.edits.pop(0)


class SharedScript(ScriptedAgent):
    """One of several workers' agents: the next edit comes off a list all of them share (under
    their lock), so each edit is proposed once, by whichever worker asks first."""

    def __init__(self, edits: list, lock):
        super().__init__()
        self.edits, self.lock = edits, lock

    def next_edit(self):
        with self.lock:
            return self.edits.pop(0)


def set_x(value):
    """An edit: the first line of train.py becomes `X = value`."""
    def edit(d: Path):
        p = d / "train.py"
        p.write_text(p.read_text().replace(p.read_text().splitlines()[0], f"X = {value}  # search: float(0.0, 10.0)"))
        return f"X -> {value}"
    return edit


def set_consts(description: str, **values):
    """An edit: each `NAME = <number>` line of train.py gets its value from `values`."""
    def edit(d: Path):
        p = d / "train.py"
        text = p.read_text()
        for name, value in values.items():
            text = re.sub(rf"(?m)^{name} = [0-9.]+", f"{name} = {value}", text)
        p.write_text(text)
        return description
    return edit


def committed_repo(tmp_path: Path, files: dict[str, str], name: str = "repo") -> tuple[Path, str]:
    """A git repository `tmp_path/name` holding `files` (name: text, dedented), committed: (it, the commit)."""
    repo = tmp_path / name
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(textwrap.dedent(text))
    # Its own identity: a module-scoped fixture runs before conftest's _git_identity sets one.
    subprocess.run("git init -q -b main && git add -A && git -c user.name=test -c user.email=test@example.com "
                   "commit -qm init", shell=True, cwd=repo, check=True)
    return repo, subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


def x_is(*values) -> list:
    """One edit per value: the `X = <number>` line of train.py, wherever it stands, becomes `X = value`."""
    return [set_consts(f"X -> {v}", X=v) for v in values]


def tsv(task):
    return [line.split("\t") for line in (task / "results.tsv").read_text().splitlines()]


def run(task, agent, n, tag="t1", say=lambda s: None, **kw):
    """A loop over `task` with `agent`, run for `n` iterations: (loop, its records)."""
    loop = Loop(load_task(task), tag, agent, say=say, **kw)
    return loop, loop.run(Limits(iterations=n))


def ledger_lines(task: Path, tag: str) -> list[dict]:
    """The ledger of `tag`'s night on `task`, line by line as written (hash chain fields included)."""
    return [json.loads(line) for line in (task / ".autoresearch" / tag / "ledger.jsonl").read_text().splitlines()]


def wait_for(predicate, seconds: float = 20.0, step: float = 0.05):
    """predicate()'s first true value within `seconds` (polled every `step`), else its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def errors_in_threads(work, n: int = 4) -> list[Exception]:
    """What `work(i)` raised in any of `n` threads running it at once (i = 0 .. n-1)."""
    errors: list[Exception] = []

    def guarded(i):
        try:
            work(i)
        except Exception as exc:  # noqa: BLE001 - the test reports whatever a thread hit
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def cli(*args, cwd=None):
    """`python -m autoresearch ...` in a fresh process, as a user types it."""
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], capture_output=True, text=True, cwd=cwd)


def check_golden(name, text):
    """`text` is the golden file `tests/golden/<name>` (UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def agent_context(task, run_dir: Path, **kw) -> Context:
    """The Context of iteration 1 on `task` (a loaded Task) right after its baseline, as the loop gives it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=task.dir, check=True, capture_output=True,
                          text=True).stdout.strip()
    baseline = Experiment(iteration=0, commit=head, parent=head, status=Status.KEEP, description="baseline",
                          metrics={"score": 1.0})
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt = "# Tiny task\nMaximise score: raise X in train.py.\n"
    (run_dir / "prompt.md").write_text(prompt)
    return Context(task_dir=task.dir, iteration=1, editable=task.editable, readonly=task.readonly,
                   history=(baseline,), best=baseline, primary="score", direction="maximize",
                   prompt=prompt, prompt_file=run_dir / "prompt.md", **kw)


# -- processes a run reports -------------------------------------------------------------------
# What a run's script writes to name one of its processes: inside the sandbox os.getpid() is the
# sandbox's own numbering, so the pid goes with its PID namespace. (Code text: `os` imported.)
def pid_expr(pid: str = "os.getpid()") -> str:
    return f"str({pid}) + ' ' + os.readlink('/proc/self/ns/pid')"


PID_EXPR = pid_expr()


def process_named(text: str):
    """The live (not zombie) process a run's pid text names ("PID pid:[N]", or a plain PID), or None."""
    import psutil

    from autoresearch.execution.sandbox import namespace_pid

    pid, _, namespace = text.strip().partition(" ")
    candidates = psutil.process_iter() if namespace else [psutil.Process(int(pid))] if psutil.pid_exists(int(pid)) else []
    for p in candidates:
        try:
            if namespace and (namespace_pid(p.pid) != int(pid) or os.readlink(f"/proc/{p.pid}/ns/pid") != namespace):
                continue
            return p if p.status() != psutil.STATUS_ZOMBIE else None
        except (OSError, psutil.Error):
            continue
    return None


# -- processes that try to outlive a run ---------------------------------------------------------
# A daemon a run (or an agent) leaves: two forks and setsid put it out of the run's process group
# and tree, `env -i` clears the environment a scan could know it by; only `mark`, an argument of
# its command line, names it. (Code text: `subprocess` and `sys` imported.)
DAEMON = "import os, time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\n"


def start_daemon(mark: str, hold_mb: int = 0) -> str:
    """The line of a script that starts such a daemon, holding `hold_mb` MB of memory while it sleeps."""
    code = DAEMON + (f"b = b'x' * ({hold_mb} * 2**20)\n" if hold_mb else "") + "time.sleep(1000)"
    return (f'subprocess.Popen(["/usr/bin/env", "-i", sys.executable, "-c", {code!r}, {mark!r}], '
            "start_new_session=True).wait()")


def survivors(mark: str):
    """The live (not zombie) processes whose command line carries `mark`."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(mark in part for part in p.info["cmdline"] or ()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def wait_no_survivors(mark: str, seconds: float = 3.0):
    """survivors(mark) once none are left or `seconds` have passed (the kernel takes a moment to reap
    a killed namespace)."""
    deadline = time.monotonic() + seconds
    while (left := survivors(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
# -- a tag that adopted changed rules ----------------------------------------------------------
def adopted_ledger(path: Path, commits: dict[int, str] | None = None):
    """The ledger a resume that flipped `direction` to minimize leaves: under maximize the baseline
    1.0 and keeps 2.0, 3.0, then 0.5 discarded (iterations 0-3); the adopt_config event that re-judged
    iteration 3 the best; then iteration 4, 0.7, discarded under minimize. The last keep is iteration 2,
    the best iteration 3. `commits`: iteration -> commit (default: made-up hashes)."""
    from autoresearch.ledger import Ledger

    commit = {i: (commits or {}).get(i, f"{i:x}" * 40) for i in range(5)}
    rows = [(0, 0, "keep", "baseline", 1.0), (1, 0, "keep", "score improved", 2.0),
            (2, 1, "keep", "score improved", 3.0), (3, 2, "discard", "no improvement", 0.5)]
    ledger = Ledger(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for i, parent, status, reason, score in rows:
        ledger.append(Experiment(iteration=i, commit=commit[i], parent=commit[parent], status=Status(status),
                                 description=f"X = {score}", reason=reason, metrics={"score": score},
                                 agent_data={"params": {"X": score}}))
    ledger.append_event("adopt_config", at=0.0, rules={},
                        changes=[{"key": "metrics.direction", "old": "maximize", "new": "minimize"}],
                        best=3, previous_best=2)
    ledger.append(Experiment(iteration=4, commit=commit[4], parent=commit[3], status=Status.DISCARD,
                             description="X = 0.7", reason="no improvement", metrics={"score": 0.7},
                             agent_data={"params": {"X": 0.7}}))
    return ledger
