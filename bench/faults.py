"""Fault injection: SIGKILL the orchestrator at random moments, resume, and check nothing was lost.

    python bench/faults.py [--faults 200] [--seed 0] [--iterations 2] [--sandbox] [--keep] [--verbose]

Builds a quick task in a temporary git repository: train.py trains for 50-200 ms and prints a
footer; the agent is a small Python script (a `command` agent) that edits the constant X, now
and then also tampering with the read-only file or leaving a stray file. It runs
`python -m autoresearch run <task> --tag f --iterations K` as a subprocess, kills it with SIGKILL
after a random delay (so kills land in the agent, the commit, the run, the judging, the ledger
write, the reset and the results.tsv write; a share of the faults also kill every agent and
training process, like a reboot), then resumes with `--iterations 0` and checks:

- the ledger is append-only: what an earlier check saw is still there, byte for byte;
- results.tsv (and the store's copy) is exactly the ledger rendered: no torn, missing or
  duplicate row; even right after a kill it is a whole earlier version;
- the branch head is the last keep's commit, the work tree is clean;
- every experiment has its explanation, its diff (if it committed) and its log (if it ran);
- no agent or training process is left behind; the read-only files are intact.

Prints where the kills landed and `faults: N injected, N survived, 0 rows lost`; exits 1 when
a fault was not survived.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from autoresearch import results_tsv  # noqa: E402
from autoresearch.config import load_task  # noqa: E402
from autoresearch.records import Experiment, Status  # noqa: E402

TAG = "f"
MARKER = "AUTORESEARCH_FAULTS_ROOT"
READONLY = ("prepare.py", "program.md", "autoresearch.toml")

TRAIN = '''\
import os, random, time
X = 3  # the constant the agent edits
n = int(os.environ.get("AUTORESEARCH_ITERATION", "0"))
time.sleep(random.Random(n).uniform(0.05, 0.2))
if X % 11 == 0:
    raise SystemExit("X is a multiple of 11: this run crashes")
print("---")
print(f"score: {X:.6f}")
print("peak_vram_mb: 100.0")
'''

AGENT = '''\
import os, pathlib, random, re, time
n = int(os.environ["AUTORESEARCH_ITERATION"])
rng = random.Random("{seed}-%d" % n)
time.sleep(rng.uniform(0.05, 0.2))
p = pathlib.Path("train.py")
text = p.read_text()
x = int(re.search(r"^X = (-?\\d+)", text, re.M).group(1))
new = x + rng.choice([-2, -1, 1, 2, 3, 4, 5])
p.write_text(re.sub(r"^X = -?\\d+", "X = %d" % new, text, count=1, flags=re.M))
if rng.random() < 0.04:
    pathlib.Path("prepare.py").write_text("DATA = 'tampered'\\n")
if rng.random() < 0.04:
    pathlib.Path("scratch.txt").write_text("notes the agent left\\n")
print("X -> %d" % new)
print("Move X by a small step; a larger X scores higher.")
'''

CONFIG = '''\
[task]
run = "python train.py"
editable = ["train.py"]
readonly = ["prepare.py", "program.md"]
time_budget = 5
timeout = 30

[metrics]
primary = "score"
direction = "maximize"

[agent]
kind = "command"
command = "python ../agent.py"
timeout = 30
'''


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def build_task(root: Path, seed: int, integrity: bool = False, sandbox: bool = False) -> Path:
    """A git repository with the quick task; the agent script lives beside it, outside the task.

    `integrity` also repeats the baseline (noise_runs = 2) and confirms every candidate keep
    under another seed (confirm = true): two records per kept idea, both must survive."""
    task = root / "task"
    task.mkdir(parents=True)
    (task / "train.py").write_text(TRAIN)
    (task / "prepare.py").write_text("DATA = 'fixed'\n")
    (task / "program.md").write_text("# Fault injection task\nMaximise score.\n")
    # The score is X: the same code gives the same number, so the plain mode says so (one baseline).
    extra = "noise_runs = 2\nconfirm = true\n" if integrity else "deterministic = true\n"
    config = CONFIG.replace('direction = "maximize"\n', 'direction = "maximize"\n' + extra)
    # The agent script beside the task, under /tmp: the agent's sandbox (a private /tmp) sees it
    # only where opened up. `sandbox`: every run inside bubblewrap; refuse to start without it.
    config += '\n[sandbox]\nagent_writable = ["../agent.py"]\n' + ('mode = "required"\n' if sandbox else "")
    (task / "autoresearch.toml").write_text(config)
    (root / "agent.py").write_text(AGENT.replace("{seed}", str(seed)))
    sh(task, "git", "init", "-q", "-b", "main")
    sh(task, "git", "add", "-A")
    sh(task, "git", "-c", "user.name=faults", "-c", "user.email=faults@localhost", "commit", "-q", "-m", "init")
    return task


class Harness:
    def __init__(self, task: Path, iterations: int, verbose: bool = False):
        self.task = task
        self.store = task / ".autoresearch" / TAG
        self.iterations = iterations
        self.verbose = verbose
        self.columns = load_task(task).columns
        self.readonly = {name: self._hash(name) for name in READONLY}
        self.seen_ledger = b""  # the ledger as the last check saw it: must stay a prefix
        # The marker reaches the agent and the runs (AUTORESEARCH_* passes any allow-list), so the scan
        # for processes left behind finds ours and never another test's on a shared machine.
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
                    MARKER: str(task.parent)}
        self.out = task.parent / "orchestrator.log"

    def _hash(self, name: str) -> str:
        return hashlib.sha256((self.task / name).read_bytes()).hexdigest()

    # -- processes -----------------------------------------------------------------------
    def start(self, iterations: int) -> subprocess.Popen:
        with open(self.out, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "autoresearch", "run", str(self.task), "--tag", TAG, "--iterations", str(iterations)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=self.env)

    def resume(self, timeout: float = 120) -> tuple[int, float]:
        """`run --iterations 0`: recover, run the baseline if there is none, stop."""
        t = time.monotonic()
        proc = self.start(0)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -9
        return rc, time.monotonic() - t

    def leftovers(self) -> list[psutil.Process]:
        """Live processes of ours other than the harness: they carry our marker or work in our folder."""
        found = []
        me, root = os.getpid(), str(self.task.parent)
        for p in psutil.process_iter():
            try:
                if p.pid == me or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                cwd = p.cwd()
                if cwd == root or cwd.startswith(root + os.sep) or p.environ().get(MARKER) == root:
                    found.append(p)
            except psutil.Error:
                pass
        return found

    def kill_all(self) -> None:
        for p in self.leftovers():
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(self.leftovers(), timeout=3)

    # -- state ---------------------------------------------------------------------------
    def ledger_bytes(self) -> bytes:
        path = self.store / "ledger.jsonl"
        return path.read_bytes() if path.exists() else b""

    def records(self) -> list[Experiment]:
        raw = self.ledger_bytes()
        return [Experiment.from_json(json.loads(line)) for line in raw.decode().splitlines() if line.strip()]

    def phase(self) -> str:
        """Where the kill landed, read from what the iteration in flight left behind."""
        pending_path = self.store / "pending.json"
        raw = self.ledger_bytes()
        whole = raw[: raw.rfind(b"\n") + 1]
        if raw != whole:
            return "ledger write (torn line)"
        records = [json.loads(line) for line in whole.decode().splitlines() if line.strip()]
        if not pending_path.exists():
            tsv = self.task / "results.tsv"
            rows = len(tsv.read_text().splitlines()) - 1 if tsv.exists() else 0
            if records and rows < len(records):
                return "results.tsv write"
            return "start-up or between iterations" if records else "start-up"
        pending = json.loads(pending_path.read_text())
        n = pending["iteration"]
        if any(r["iteration"] == n for r in records):
            return "reset after the ledger write"
        run_dir = self.store / "runs" / f"{n:04d}"
        roles = {p.get("role"): p for p in pending.get("processes", [])}
        if (run_dir / "explanation.md").exists():
            return "ledger write"
        if (run_dir / "metrics.json").exists():
            return "judging"
        if "run" in roles or (run_dir / "log.txt").exists():
            return "training run"
        if "commit" in pending or (run_dir / "diff.patch").exists():
            return "commit"
        if "agent" in roles:
            return "agent" if _alive(roles["agent"]["pid"]) else "guard and commit"
        return "start of an iteration" if n else "baseline start"

    # -- invariants ----------------------------------------------------------------------
    def check_after_kill(self) -> list[str]:
        """Right after a kill, before any repair: results.tsv is some whole earlier version."""
        problems = []
        records = []
        raw = self.ledger_bytes()
        for line in raw[: raw.rfind(b"\n") + 1].decode().splitlines():
            records.append(Experiment.from_json(json.loads(line)))
        tsv = self.task / "results.tsv"
        if tsv.exists():
            text = tsv.read_text()
            ok = any(text == results_tsv.render(records[:k], self.columns) for k in (len(records), len(records) - 1) if k >= 0)
            if not ok and records:
                problems.append(f"results.tsv right after the kill is not a whole version of the ledger ({len(text.splitlines()) - 1} rows, {len(records)} records)")
        return problems

    def check(self) -> tuple[list[str], int]:
        """(violations, rows lost) after a completed resume."""
        problems: list[str] = []
        raw = self.ledger_bytes()
        lost = 0
        if not raw.startswith(self.seen_ledger):
            old = self.seen_ledger.decode().splitlines()
            new = set(raw.decode().splitlines())
            lost = sum(1 for line in old if line not in new)
            problems.append(f"the ledger lost or changed {lost} earlier line(s)")
        if raw and not raw.endswith(b"\n"):
            problems.append("the ledger ends with a torn line after the resume")
        try:
            records = self.records()
        except (ValueError, KeyError) as exc:
            return problems + [f"the ledger does not parse: {exc}"], lost
        iterations = [r.iteration for r in records]
        if iterations != list(range(len(records))):
            problems.append(f"ledger iterations are not 0..{len(records) - 1} once each: {iterations[-5:]}")
        expected = results_tsv.render(records, self.columns)
        for path in (self.task / "results.tsv", self.store / "results.tsv"):
            if not path.exists() or path.read_text() != expected:
                have = path.read_text().splitlines() if path.exists() else []
                problems.append(f"{path.relative_to(self.task)} != the ledger ({len(have) - 1} rows, {len(records)} records)")
        if (self.store / "pending.json").exists():
            problems.append("pending.json is still there after a completed resume")
        problems += self._check_git(records)
        problems += self._check_store(records)
        problems += self._check_confirmations(records)
        alive = self.leftovers()
        if alive:
            problems.append("processes left behind: " + ", ".join(f"{p.pid} {' '.join(_cmdline(p))[:60]}" for p in alive))
            self.kill_all()
        for name, digest in self.readonly.items():
            if self._hash(name) != digest:
                problems.append(f"read-only file {name} changed")
        self.seen_ledger = raw
        return problems, lost

    def _check_git(self, records: list[Experiment]) -> list[str]:
        problems = []
        branch = sh(self.task, "git", "rev-parse", "--abbrev-ref", "HEAD").strip()
        if branch != f"autoresearch/{TAG}":
            problems.append(f"checked-out branch is {branch}")
        keeps = [r for r in records if r.status is Status.KEEP]
        head = sh(self.task, "git", "rev-parse", "HEAD").strip()
        if keeps and head != keeps[-1].commit:
            problems.append(f"HEAD {head[:7]} is not the last keep {keeps[-1].commit[:7]} (iteration {keeps[-1].iteration})")
        status = sh(self.task, "git", "status", "--porcelain", "--untracked-files=all").splitlines()
        if status:
            problems.append(f"work tree not clean: {status[:4]}")
            # Clean up so that the next fault is judged on its own, not on this one's litter.
            sh(self.task, "git", "clean", "-fq")
            sh(self.task, "git", "checkout", "-q", "--", ".")
        return problems

    def _check_confirmations(self, records: list[Experiment]) -> list[str]:
        """A keep that says it was confirmed names a recorded confirmation run of itself."""
        by_iteration = {r.iteration: r for r in records}
        problems = []
        for r in records:
            m = re.search(r"confirmed by iteration (\d+)", r.reason)
            if m:
                c = by_iteration.get(int(m.group(1)))
                if c is None or f"iteration {r.iteration}" not in c.reason or c.commit != r.commit:
                    problems.append(f"iteration {r.iteration} was kept as confirmed by iteration {m.group(1)}, "
                                    f"which is not its recorded confirmation ({c.reason if c else 'missing'})")
        return problems

    def _check_store(self, records: list[Experiment]) -> list[str]:
        problems = []
        out = sh(self.task, "git", "for-each-ref", "--format=%(refname) %(objectname)", f"refs/autoresearch/{TAG}/")
        refs = dict(line.split(" ", 1) for line in out.splitlines())
        for r in records:
            d = self.store / "runs" / f"{r.iteration:04d}"
            missing = [] if (d / "explanation.md").exists() else ["explanation.md"]
            # A confirmation run trains the commit of the iteration it confirms: its diff and ref live there.
            committed = r.commit != r.parent and not r.reason.startswith("confirmation run of iteration")
            if committed and not (d / "diff.patch").exists():
                missing.append("diff.patch")
            ran = r.wall_seconds > 0 or r.exit_code is not None
            if ran and not (d / "log.txt").exists():
                missing.append("log.txt")
            if missing:
                problems.append(f"iteration {r.iteration} ({r.status.value}, {r.reason or r.description}): missing {', '.join(missing)}")
            if committed and refs.get(f"refs/autoresearch/{TAG}/{r.iteration:04d}") != r.commit:
                problems.append(f"iteration {r.iteration}: its commit is not kept reachable")
        return problems


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return ["?"]


# What an iteration leaves behind, in order: waiting for one of these and then a few milliseconds
# aims a kill at a phase that a random delay would rarely hit (the commit, the ledger write, ...).
TRIGGERS = ("prompt.md", "agent.log", "agent done", "diff.patch", "log.txt", "metrics.json", "explanation.md", "ledger")


def wait_for_trigger(h: Harness, proc: subprocess.Popen, iteration: int, trigger: str, timeout: float) -> bool:
    """Wait until `trigger` of `iteration` appears (True) or the run ends or time is up (False)."""
    deadline = time.monotonic() + timeout
    path = h.store / "runs" / f"{iteration:04d}" / trigger
    ledger = h.store / "ledger.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if trigger == "agent done":  # the agent prints its explanation as it ends: the commit is next
            try:
                if (path.parent / "agent.log").stat().st_size > 0:
                    return True
            except FileNotFoundError:
                pass
        elif trigger == "ledger":
            try:
                if ledger.read_bytes().count(b"\n") > iteration:
                    return True
            except FileNotFoundError:
                pass
        elif path.exists():
            return True
        time.sleep(0.002)
    return False


def calibrate(h: Harness) -> tuple[float, float]:
    """(start-up seconds, seconds of one uninterrupted `run --iterations K`), after the baseline."""
    rc, _ = h.resume()
    if rc != 0:
        raise SystemExit(f"the baseline did not run; see {h.out}")
    problems, _ = h.check()
    if problems:
        raise SystemExit(f"broken before any fault: {problems}")
    _, startup = h.resume()  # nothing to do: start-up, recover, exit
    t = time.monotonic()
    proc = h.start(h.iterations)
    if proc.wait(120) != 0:
        raise SystemExit(f"an uninterrupted run failed; see {h.out}")
    h.check()
    return startup, time.monotonic() - t


def kill_at_random(h: Harness, rng: random.Random, args, startup: float, span: float) -> tuple[float, bool]:
    """Start a run and SIGKILL it: aimed just after a phase began, or after a random delay.

    Returns (seconds until the kill, or until the run ended; whether it was killed)."""
    t = time.monotonic()
    first = len(h.records())
    proc = h.start(args.iterations)
    if rng.random() < args.aimed_share:
        target = first + (1 if args.iterations > 1 and rng.random() < 0.3 else 0)  # the second: a warm loop
        wait_for_trigger(h, proc, target, rng.choice(TRIGGERS), 2 * span)
        time.sleep(rng.uniform(0.0, 0.03))
    else:  # mostly after the imports, where the iterations are; some in the start-up
        delay = rng.uniform(0.0, startup) if rng.random() < 0.15 else rng.uniform(0.6 * startup, span)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is not None:
        return time.monotonic() - t, False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.monotonic() - t, True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", type=int, default=200, help="SIGKILLs to inject")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=3, help="iterations each killed run asks for")
    ap.add_argument("--aimed-share", type=float, default=0.6,
                    help="share of kills aimed just after a phase began (the rest: random delays)")
    ap.add_argument("--reboot-share", type=float, default=0.2,
                    help="share of faults that also kill every agent and training process")
    ap.add_argument("--integrity", action="store_true",
                    help="also repeat the baseline and confirm every keep under another seed (noise_runs, confirm)")
    ap.add_argument("--sandbox", action="store_true", help='runs inside the sandbox ([sandbox] mode = "required")')
    ap.add_argument("--keep", action="store_true", help="keep the temporary task directory")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="autoresearch-faults-"))
    started = time.monotonic()
    try:
        h = Harness(build_task(root, args.seed, args.integrity, args.sandbox), args.iterations, args.verbose)
        startup, span = calibrate(h)
        if args.verbose:
            print(f"start-up {startup:.2f} s, an uninterrupted run of {args.iterations} iterations {span:.2f} s", flush=True)
        injected = survived = lost_total = finished_early = 0
        phases: collections.Counter[str] = collections.Counter()
        spent: collections.Counter[str] = collections.Counter()
        failures: list[str] = []
        while injected < args.faults:
            seconds, killed = kill_at_random(h, rng, args, startup, span)
            spent["killed runs"] += seconds
            if not killed:
                finished_early += 1  # it ended before the kill: no fault, but the ledger grew
                span = 0.8 * span + 0.2 * seconds  # runs get slower as the ledger grows
                continue
            injected += 1
            t = time.monotonic()
            phase = h.phase()
            if rng.random() < args.reboot_share:
                h.kill_all()
                phase += " + reboot"
            phases[phase] += 1
            problems = h.check_after_kill()
            spent["checks"] += time.monotonic() - t
            rc, seconds = h.resume()
            spent["resumes"] += seconds
            if rc != 0:
                problems.append(f"the resume exited with {rc}; see {h.out}")
            t = time.monotonic()
            more, lost = h.check()
            spent["checks"] += time.monotonic() - t
            problems += more
            lost_total += lost
            if problems:
                failures.append(f"fault {injected} ({phase}, after {seconds:.2f} s): " + "; ".join(problems))
                if args.verbose:
                    print(failures[-1], flush=True)
            else:
                survived += 1
            if args.verbose and injected % 10 == 0:
                print(f"  {injected} faults, {len(h.records())} experiments, {time.monotonic() - started:.0f} s", flush=True)

        records = h.records()
        elapsed = time.monotonic() - started
        print("kills landed in: " + ", ".join(f"{name} {count}" for name, count in sorted(phases.items(), key=lambda x: -x[1])))
        print(f"{len(records)} experiments recorded ({', '.join(f'{k} {v}' for k, v in collections.Counter(r.status.value for r in records).items())}), "
              f"{finished_early} runs ended before their kill")
        print(f"{elapsed:.0f} s on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}): "
              + ", ".join(f"{k} {v:.0f} s" for k, v in spent.items()) + f"; start-up of one CLI run {startup:.2f} s")
        for failure in failures[:10]:
            print("FAILED", failure)
        print(f"faults: {injected} injected, {survived} survived, {lost_total} rows lost")
        return 0 if survived == injected and lost_total == 0 else 1
    finally:
        if args.keep:
            print(f"task kept at {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
