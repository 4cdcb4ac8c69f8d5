"""Where one night's wall time goes, and the night against a bare shell loop of the same runs.

The bundled example (src/autoresearch/examples/mnist1d, what `autoresearch demo` runs) with a
short budget: the baseline and `--iterations` tuner iterations, through the real CLI
(`autoresearch run`: git, tuner, analysis, plot and report, the live view).

1. Profile: one night in a fresh process, instrumented, split into
   - python start + CLI imports (until the command can begin),
   - loop start (branch, store, checks; its git calls count under git),
   - agent (the tuner's propose), git (every git command the loop runs),
   - run start-up (the run's process start, imports and data until its first log line, less
     the training seconds that line reports), training (the footer's train_seconds),
     evaluation + exit (the rest of the run's wall time: evaluations outside the budget,
     the final one, teardown), warm server start (once a night, with warm starts),
   - analysis refresh (the observer after every experiment, and the loop's waits for it), live
     view (stage events),
   - plot + report (at the end), summary (the end-of-run lines), other bookkeeping (the rest:
     ledger, results.tsv, guards, pending.json, ...).
   Only the main thread is timed: what runs beside the training (the early-stop watcher, the
   log reader) costs no wall time of its own.
2. Compare (`--repeats`, default 3): the night through `python -m autoresearch run` against the
   same train.py run 1 + iterations times as fresh processes by a bare shell loop, the two arms
   interleaved; prints each arm's median and spread and the ratio. On a shared machine run it
   under `flock /tmp/heavy.lock`.

    python bench/profile.py [--budget 5] [--iterations 4] [--repeats 3] [--no-profile] [--no-compare]
        [--config-extra 'warm = false']   # a line added under [task] of the example's config
        [--append '[sandbox]\nmode = "required"'] [--no-early-stop]   # text added at the config's end
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ORDER = [
    "python start + CLI imports", "loop start", "agent", "git", "warm server start", "run start-up",
    "training", "evaluation + exit", "analysis refresh", "live view", "plot + report", "summary",
    "other bookkeeping",
]
EPOCH_LINE = re.compile(rb"\|\s*([0-9.]+)s\s*$", re.M)  # the example's "epoch 3 | ... | 1.5s" lines
TRAIN_SECONDS = re.compile(r"^train_seconds:\s*([0-9.]+)", re.M)


# -- the example, set up outside any timing ------------------------------------------------------
def make_copy(root: Path, name: str, budget: float, extra: str, data: Path | None, append: str = "") -> Path:
    from autoresearch.api import copy_example

    task = copy_example("mnist1d", root / name, time_budget=budget)
    if extra or append:
        config = task / "autoresearch.toml"
        text = config.read_text().replace("[task]\n", f"[task]\n{extra}\n", 1) + f"\n{append}\n"
        config.write_text(text)
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
        subprocess.run(git + ["commit", "-qam", "bench config"], cwd=task, check=True)
    if data is not None:
        shutil.copytree(data, task / "data")  # ignored by git: the data generation is no part of a night
    return task


def generate_data(root: Path, budget: float) -> Path:
    task = make_copy(root, "data-source", budget, "", None)
    subprocess.run([sys.executable, "prepare.py"], cwd=task, check=True, capture_output=True)
    return task / "data"


# -- 1. the profile: the child process ---------------------------------------------------------
class Clock:
    """Exclusive time per category on the main thread: an inner category pauses the outer one."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [category, started]
        self.main = threading.get_ident()

    @contextlib.contextmanager
    def timing(self, category: str):
        if threading.get_ident() != self.main:
            yield
            return
        now = time.perf_counter()
        if self.stack:
            outer = self.stack[-1]
            self.totals[outer[0]] += now - outer[1]
        self.stack.append([category, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            cat, started = self.stack.pop()
            self.totals[cat] += now - started
            if self.stack:
                self.stack[-1][1] = now

    def add(self, category: str, seconds: float) -> None:
        self.totals[category] += seconds

    def wrap(self, owner, name: str, category: str) -> None:
        real = getattr(owner, name)

        def timed(*args, **kwargs):
            with self.timing(category):
                return real(*args, **kwargs)

        setattr(owner, name, timed)


class SplitRuns:
    """An executor wrapper: each run's wall time split into start-up, training and the rest."""

    def __init__(self, inner, clock: Clock):
        self.inner, self.clock = inner, clock
        self.name = getattr(inner, "name", "executor")
        self.off_reason = ""
        self.server_seconds = 0.0  # set by the patched warm server
        self.unsplit = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, spec, *, on_start=None, stop_event=None):
        first: list[float] = []
        done = threading.Event()

        def watch():  # the first log line with a training-seconds mark: training has begun
            while not done.wait(0.01):
                try:
                    data = Path(spec.log_path).read_bytes()
                except OSError:
                    continue
                m = EPOCH_LINE.search(data)
                if m:
                    first.append(time.perf_counter() - float(m.group(1)))
                    return

        server_before = self.server_seconds
        t0 = time.perf_counter()
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        with self.clock.timing("run"):
            result = self.inner.run(spec, on_start=on_start, stop_event=stop_event)
        wall = time.perf_counter() - t0
        done.set()
        thread.join()
        server = self.server_seconds - server_before
        log = Path(spec.log_path).read_bytes()
        m = TRAIN_SECONDS.search(log.decode(errors="replace"))
        marks = EPOCH_LINE.findall(log)
        self.clock.totals["run"] -= wall
        self.clock.add("warm server start", server)
        if first and (m or marks):
            # An early-stopped run prints no footer: it trained until its last epoch line.
            training = float(m.group(1)) if m else float(marks[-1])
            startup = max(first[0] - t0 - server, 0.0)
            self.clock.add("run start-up", startup)
            self.clock.add("training", training)
            self.clock.add("evaluation + exit", max(wall - server - startup - training, 0.0))
        else:  # a run without the example's log lines: its time stays unsplit
            self.unsplit += 1
            self.clock.add("run (unsplit)", wall - server)
        return result

    def check(self):
        return self.inner.check()

    def connect(self):
        return self.inner.connect()

    def close(self):
        return self.inner.close()


def child(task_dir: Path, tag: str, iterations: int, spawned: float) -> None:
    """The instrumented night; prints one JSON object of seconds per category."""
    import autoresearch.api as api
    import autoresearch.cli as cli
    from autoresearch.analysis import observer
    from autoresearch.execution import executor as executor_module
    from autoresearch.execution import warm
    from autoresearch.gitrepo import Git
    from autoresearch.loop import core, session
    from autoresearch.loop import propose as propose_stage

    started = time.time()
    clock = Clock()
    clock.add("python start + CLI imports", started - spawned)
    made: list[SplitRuns] = []

    real_for_task = session.executor_for_task

    def split_executor(task, say):
        made.append(SplitRuns(real_for_task(task, say), clock))
        return made[-1]

    session.executor_for_task = split_executor
    real_server = warm._Server.__init__

    def timed_server(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            real_server(self, *args, **kwargs)
        finally:
            if made:
                made[-1].server_seconds += time.perf_counter() - t

    warm._Server.__init__ = timed_server
    clock.wrap(Git, "__call__", "git")
    clock.wrap(propose_stage, "propose", "agent")  # the agent's edit; its git calls count under git
    clock.wrap(core.Loop, "emit", "live view")
    clock.wrap(session, "prepare", "loop start")
    # The refresh runs beside the next run: on the main thread it is the hand-over and the waits
    # for it to finish (before a prompt reads the hints, at the loop's end).
    clock.wrap(observer.BackgroundRefresh, "__call__", "analysis refresh")
    clock.wrap(observer.BackgroundRefresh, "drain", "analysis refresh")
    clock.wrap(api, "_final_reports", "plot + report")
    clock.wrap(cli, "_print_summary", "summary")
    clock.wrap(cli, "_print_next_steps", "summary")
    del executor_module
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        with clock.timing("other bookkeeping"):
            try:
                cli.app(["run", str(task_dir), "--tag", tag, "--iterations", str(iterations)], standalone_mode=False)
            except SystemExit as exc:
                if exc.code:
                    raise
    wall = time.perf_counter() - t0 + (started - spawned)
    share = re.search(r"wall time spent training: ([0-9.]+)%", out.getvalue())
    print(json.dumps({"wall": wall, "totals": dict(clock.totals), "runs": 1 + iterations,
                      "unsplit": sum(m.unsplit for m in made),
                      "summary_training_share": float(share.group(1)) / 100 if share else None,
                      "warm": any(isinstance(getattr(m, "inner", None), warm.WarmExecutor) for m in made)}))


def profile(root: Path, args, data: Path) -> None:
    task = make_copy(root, "profile", args.budget, args.config_extra, data, args.append)
    proc = subprocess.run([sys.executable, __file__, "--child", str(task), "--tag", "profile",
                           "--iterations", str(args.iterations), "--spawned", repr(time.time())],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the profiled night failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    wall, totals, runs = got["wall"], got["totals"], got["runs"]
    print(f"one night of the example: {runs} runs of {args.budget:g} s, warm starts {'on' if got['warm'] else 'off'}, "
          f"wall {wall:.1f} s")
    print(f"{'':28} {'seconds':>8} {'per run':>8} {'share':>7}")
    for name in ORDER + sorted(set(totals) - set(ORDER)):
        s = totals.get(name, 0.0)
        if name in ORDER or abs(s) >= 0.005:
            print(f"{name:28} {s:8.2f} {s / runs:8.2f} {s / wall:7.1%}")
    own = wall - sum(totals.get(k, 0.0) for k in ("training", "run start-up", "evaluation + exit", "run (unsplit)"))
    print(f"the loop's own time (everything but the runs): {own:.2f} s, {own / runs:.2f} s per run")
    print(f"wall time spent training, of the whole night: {totals.get('training', 0.0) / wall:.1%}")
    if got["summary_training_share"] is not None:
        print(f"wall time spent training, as the summary prints it (the runs' wall): {got['summary_training_share']:.1%}")
    if got["unsplit"]:
        print(f"({got['unsplit']} runs printed no epoch lines: their time is 'run (unsplit)')")


# -- 2. the comparison ---------------------------------------------------------------------------
def loop_arm(root: Path, args, data: Path, n: int) -> float:
    task = make_copy(root, f"loop{n}", args.budget, args.config_extra, data, args.append)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "autoresearch", "run", str(task), "--tag", "night",
                           "--iterations", str(args.iterations)], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"the loop failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def bare_arm(root: Path, args, data: Path, n: int) -> float:
    task = make_copy(root, f"bare{n}", args.budget, "", data)
    env = {**os.environ, "AUTORESEARCH_TIME_BUDGET": f"{args.budget:g}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = f"for i in $(seq {1 + args.iterations}); do python train.py > /dev/null || exit 1; done"
    t = time.perf_counter()
    subprocess.run(["bash", "-c", script], cwd=task, env=env, check=True)
    return time.perf_counter() - t


def compare(root: Path, args, data: Path) -> None:
    loops, bares = [], []
    for n in range(args.repeats):
        bares.append(bare_arm(root, args, data, n))
        loops.append(loop_arm(root, args, data, n))
        print(f"  repeat {n + 1}: bare {bares[-1]:.1f} s, loop {loops[-1]:.1f} s, ratio {loops[-1] / bares[-1]:.2f}",
              flush=True)
    lm, bm = statistics.median(loops), statistics.median(bares)
    ratios = [a / b for a, b in zip(loops, bares)]
    print(f"bare loop of {1 + args.iterations} fresh runs: median {bm:.1f} s (spread {min(bares):.1f}-{max(bares):.1f})")
    print(f"autoresearch run, same runs:      median {lm:.1f} s (spread {min(loops):.1f}-{max(loops):.1f})")
    print(f"ratio loop / bare: {lm / bm:.2f} (per repeat {min(ratios):.2f}-{max(ratios):.2f}; target <= 1.0, aim 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-compare", action="store_true")
    parser.add_argument("--config-extra", default="", help="a line added under [task], e.g. 'warm = false'")
    parser.add_argument("--append", default="", help="text added at the end of the config, e.g. a [sandbox] table")
    parser.add_argument("--no-early-stop", action="store_true",
                        help="[early_stop] enabled = false: every run trains its whole budget, as in the bare loop")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="profile", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.append = args.append.replace("\\n", "\n")
    if args.no_early_stop:
        args.append += "\n[early_stop]\nenabled = false\n"
    if args.child:
        child(args.child, args.tag, args.iterations, args.spawned)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = generate_data(root, args.budget)
        if not args.no_profile:
            profile(root, args, data)
        if not args.no_compare:
            compare(root, args, data)


if __name__ == "__main__":
    main()
