"""Several workers on one machine: one ledger, one table, one global best, no duplicates."""

import re
import threading

from autoresearch.config import load_task
from autoresearch.loop import Limits
from autoresearch.records import Proposal, Status
from autoresearch.workers import parse_slots, run_workers

from conftest import git
from helpers import SharedScript, x_is

TRAIN = '''\
import os, time
X = 1.0
time.sleep(0.3)
print("---")
print(f"score: {X:.6f}")
print(f"device: {os.environ.get('CUDA_VISIBLE_DEVICES', '-1')}")
'''


def test_two_gpu_workers_share_one_ledger(make_task):
    task_dir = make_task(train=TRAIN)
    task = load_task(task_dir)
    values, lock = x_is(2.0, 2.0, 2.5, 3.0, 5.0, 4.0, 6.0, 0.5, 0.25), threading.Lock()
    records = run_workers(task, "g", lambda i: SharedScript(values, lock), parse_slots("0,1", None),
                          Limits(iterations=8), say=lambda s: None)
    ledger = [r for r in records]
    assert len(ledger) == 9 and sorted(r.iteration for r in ledger) == list(range(9))
    rows = (task_dir / "results.tsv").read_text().splitlines()
    assert rows[0].split("\t")[-1] == "worker" and len(rows) == 10
    assert {row.split("\t")[-1] for row in rows[2:]} <= {"w0", "w1"}
    # each run saw only its worker's GPU
    for r in ledger[1:]:
        if r.status is not Status.CRASH and "duplicate" not in r.reason:
            assert r.metrics["device"] == float(r.worker)
    # keeps only ever improve in ledger order: the last keep is the global best
    keeps = [r for r in records if r.status is Status.KEEP]
    by_order = [r.metrics["score"] for r in sorted(keeps, key=lambda r: r.finished_at)]
    assert by_order == sorted(by_order) and len(set(by_order)) == len(by_order)
    best = max(keeps, key=lambda r: r.metrics["score"])
    assert best.metrics["score"] == 6.0
    assert git(task_dir, "rev-parse", "autoresearch/g").strip() == best.commit
    assert "X = 6.0" in (task_dir / "train.py").read_text()
    # the same code never ran twice
    ran = [r.content_hash for r in records if r.exit_code is not None]
    assert len(ran) == len(set(ran))
    # both workers proposed X = 2.0 from the baseline at once: one of them did not run it, and
    # its agent was asked again (issue 12: a repeat is no row)
    assert not [r for r in records if "duplicate" in r.reason]
    assert sum(len(r.agent_data.get("repeats", [])) for r in records) == 1
    for i in (0, 1):
        assert git(task_dir, "rev-parse", "--verify", f"autoresearch/g-w{i}").strip()


def test_cpu_workers_resume(make_task):
    task_dir = make_task(train=TRAIN)
    values, lock = x_is(2.0, 3.0, 4.0, 5.0, 6.0, 7.0), threading.Lock()
    make = lambda i: SharedScript(values, lock)  # noqa: E731
    run_workers(load_task(task_dir), "c", make, parse_slots(None, 2), Limits(iterations=2), say=lambda s: None)
    run_workers(load_task(task_dir), "c", make, parse_slots(None, 2), Limits(iterations=3), say=lambda s: None)
    rows = (task_dir / "results.tsv").read_text().splitlines()
    assert len(rows) == 1 + 6
    assert git(task_dir, "status", "--porcelain", "--untracked-files=no").strip() == ""


def test_a_ray_pool_joins_the_cluster_once_from_this_thread(make_task, monkeypatch):
    from autoresearch import workers
    from autoresearch.executor import LocalExecutor

    class Recording(LocalExecutor):
        """Stands in for the RayExecutor the config asks for: where connect and close happen."""

        made, events = 0, []

        def __init__(self):
            Recording.made += 1

        def connect(self):
            self.events.append(("connect", threading.current_thread().name))

        def close(self):
            self.events.append(("close", threading.current_thread().name))

    monkeypatch.setattr(workers, "default_executor", lambda task, say: Recording())
    task_dir = make_task(train=TRAIN)
    task = load_task(task_dir).with_executor("ray")
    values, lock = x_is(2.0, 3.0, 4.0), threading.Lock()
    run_workers(task, "r", lambda i: SharedScript(values, lock), parse_slots(None, 2), Limits(iterations=3),
                say=lambda s: None)
    main = threading.current_thread().name
    assert Recording.made == 1  # the pool's loops share it: Ray stays connected between baseline and workers
    assert Recording.events[0] == ("connect", main) and Recording.events[-1] == ("close", main)
    assert [e for e, _ in Recording.events].count("close") == 1


class ScriptedWorkerAgent:
    """Proposes its values in turn; before editing, notes whose experiments it was shown and the X
    its work tree starts from. `before[n]`: an event to wait for before its n-th proposal;
    `started[n]`: an event to set when its n-th proposal begins."""

    name = "scripted"

    def __init__(self, index, values, seen, before=None, started=None):
        self.index, self.values, self.seen = index, list(values), seen
        self.before, self.started, self.n = before or {}, started or {}, 0

    def propose(self, context):
        if self.n in self.started:
            self.started[self.n].set()
        if self.n in self.before:
            assert self.before[self.n].wait(30)
        self.n += 1
        start = float(re.search(r"X = ([0-9.]+)", (context.task_dir / "train.py").read_text()).group(1))
        self.seen.append((self.index, {r.worker for r in context.history}, start, context.best.metrics["score"]))
        v = self.values.pop(0)
        p = context.task_dir / "train.py"
        p.write_text(re.sub(r"X = [0-9.]+", f"X = {v}", p.read_text()))
        return Proposal(f"X -> {v}", f"Try X = {v}.")


def test_each_worker_sees_every_workers_experiments_and_starts_from_the_global_best(make_task):
    """w0 keeps 20 and, before its next iteration begins, w1 keeps 30: w0 continues from 30, not
    from its own 20, and its context shows w1's experiment. Observers hold the workers in that order
    (they run in the recording worker's thread, after the record, outside the workers' lock)."""
    task_dir = make_task(train=TRAIN)
    w0_kept, w1_kept, w0_again, seen = threading.Event(), threading.Event(), threading.Event(), []

    def sequence(loop, record):
        if record.status is Status.KEEP and record.worker == 0 and not w0_kept.is_set():
            w0_kept.set()
            assert w1_kept.wait(30)  # w0's next iteration begins only once w1 has kept
        elif record.status is Status.KEEP and record.worker == 1:
            w1_kept.set()
            assert w0_again.wait(30)  # the last ticket is w0's

    agents = {0: ScriptedWorkerAgent(0, [20.0, 40.0], seen, started={1: w0_again}),
              1: ScriptedWorkerAgent(1, [30.0], seen, before={0: w0_kept})}
    records = run_workers(load_task(task_dir), "v", agents.__getitem__, parse_slots(None, 2), Limits(iterations=3),
                          say=lambda s: None, observers=[sequence])
    keeps = sorted((r for r in records if r.status is Status.KEEP), key=lambda r: r.finished_at)
    assert [(r.worker, r.metrics["score"]) for r in keeps] == [(None, 1.0), (0, 20.0), (1, 30.0), (0, 40.0)]
    (_, _, first, _), (_, shown, start, best) = [s for s in seen if s[0] == 0]
    assert first == 1.0 and start == best == 30.0  # its work tree holds w1's keep, the global best
    assert 1 in shown  # and its context shows w1's experiment


def test_stopping_workers_rolls_back_what_was_in_flight_and_resumes(make_task):
    task_dir = make_task(train=TRAIN)
    stop, values, lock = threading.Event(), x_is(2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0), threading.Lock()

    class StoppingAgent(SharedScript):
        calls = 0

        def propose(self, context):
            proposal = super().propose(context)
            with lock:
                StoppingAgent.calls += 1
                if StoppingAgent.calls == 3:
                    stop.set()  # Ctrl-C while this edit and the other worker's run are in flight
            return proposal

    first = run_workers(load_task(task_dir), "s", lambda i: StoppingAgent(values, lock), parse_slots(None, 2),
                        Limits(iterations=8), say=lambda s: None, stop_event=stop)
    assert 1 < len(first) < 9
    store = task_dir / ".autoresearch" / "s"
    assert not list(store.glob("pending*.json"))
    for i in (0, 1):  # each worktree is back on the global best, clean
        worktree = store / "worktrees" / f"w{i}"
        assert git(worktree, "status", "--porcelain", "--untracked-files=all").strip() == ""
    rows = lambda: (task_dir / "results.tsv").read_text().splitlines()  # noqa: E731
    assert len(rows()) == 1 + len(first)
    more = run_workers(load_task(task_dir), "s", lambda i: SharedScript(values, lock), parse_slots(None, 2),
                       Limits(iterations=2), say=lambda s: None)
    assert len(more) == 2 and len(rows()) == 1 + len(first) + 2
    # numbered after every recorded one, though workers record out of order: no run folder is reused
    assert min(r.iteration for r in more) > max(r.iteration for r in first)
    # status and the report tell the workers apart
    from autoresearch.analysis.report import render_report
    from autoresearch.api import status_of
    status = status_of(task_dir, "s")
    by_worker = status.totals()["workers"]
    assert set(by_worker) == {"w0", "w1"} and sum(by_worker.values()) == len(first) + len(more) - 1
    html = render_report(status.task, status.store)
    assert "· worker 0" in html and "· worker 1" in html


TUNED = '''\
import time
A = 1.0  # search: float(0.0, 10.0)
B = 1.0  # search: float(0.0, 10.0)
C = 1.0  # search: float(0.0, 10.0)
D = 1.0  # search: float(0.0, 10.0)
time.sleep(0.5)
print("---")
print(f"score: {A + B + C + D:.6f}")
'''


def test_tuner_workers_do_not_propose_what_another_is_running(make_task):
    """Each worker's tuner would make the same first move; they share what is in flight instead."""
    from autoresearch.agents import create_agent

    task_dir = make_task(train=TUNED)
    task = load_task(task_dir)
    records = run_workers(task, "tw", lambda i: create_agent("tuner", task, seed=i), parse_slots(None, 2),
                          Limits(iterations=6), say=lambda s: None)
    assert len(records) == 7
    assert not [r.reason for r in records if "duplicate" in r.reason]
    ran = [r.content_hash for r in records]
    assert len(ran) == len(set(ran))  # and every slot trained something new


def test_a_workers_tree_keeps_the_cache_the_baseline_made_once_it_made_it_too(make_task):
    """What a run creates is removed after it (execution/pristine.py), but a data cache the
    baseline's committed code wrote is made once per worker's worktree, not once per run."""
    train = TRAIN.replace("import os, time\n", "import os, time\n"
                          "if not os.path.exists('cache/data.bin'):\n"
                          "    os.makedirs('cache', exist_ok=True)\n"
                          "    open('cache/data.bin', 'w').write('data')\n"
                          "    print('generated the cache')\n")
    task_dir = make_task(train=train)
    values, lock = x_is(2.0, 3.0, 4.0, 5.0, 6.0, 7.0), threading.Lock()
    records = run_workers(load_task(task_dir), "c", lambda i: SharedScript(values, lock), parse_slots(None, 2),
                          Limits(iterations=6), say=lambda s: None)
    runs = task_dir / ".autoresearch" / "c" / "runs"
    made = [r.iteration for r in records if "generated the cache" in (runs / f"{r.iteration:04d}" / "log.txt").read_text()]
    assert made[0] == 0 and len(made) <= 3, made  # the baseline, then at most once per worker
    assert (task_dir / "cache" / "data.bin").read_text() == "data"
