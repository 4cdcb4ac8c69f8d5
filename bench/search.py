"""Benchmark: the tuner's policy against Optuna's samplers and random search, on the real example.

    python bench/search.py                     # 10 iterations, 3 seeds, 10 s budget per run
    python bench/search.py --budget 4 --iterations 8 --seeds 2
    python bench/search.py --methods tuner,tpe,tpe4,gp,cmaes,random --iterations 20 --seeds 5 --budget 2 \\
        --report-at 12 20 --out search.jsonl  # every peer; one 20-run trajectory read at 12 and 20
    python bench/search.py --summarize search.jsonl --report-at 12 20   # figures over the seeds in a file

Methods: `tuner` (our policy); `tpe` (Optuna's default TPESampler, 10 random start-up trials);
`tpe4` (TPE, multivariate, 4 start-up trials); `gp` (GPSampler, 4 start-up trials); `cmaes`
(CmaEsSampler started at the baseline; it models only the int and float knobs, so the
categorical ones, ARCH and OPTIMIZER, are drawn by its independent sampler, Optuna's default
random one; needs the `cmaes` package); `random`. Every Optuna method sees the baseline as its
first completed trial. Runs are warm starts (a fork of a server that imported torch and numpy,
as the loop's `preload`) unless --fresh.

Every method starts from the example's own train.py (its baseline run is shared by all
methods of a seed) and gets the same number of further runs. A run rewrites the
constants of a scratch copy of the example and trains it for AUTORESEARCH_TIME_BUDGET
seconds. The methods take turns run by run, so a change of machine load hits them alike.

    python bench/search.py --history 8         # the tuner with and without 8 earlier runs imported

Printed: the best val_acc after k runs (k = 0 is the baseline), mean over seeds; with
--report-at, for each k listed: mean and spread (sample standard deviation) over seeds per method,
and for each peer the paired figure: mean ± sample sd over seeds of the per-seed difference
tuner - peer, and the seeds the tuner wins / ties / loses.
With --history N, N random configurations are run first (the runs a user made by hand before
the night, `autoresearch import`); then the tuner searches twice from the same baseline, once
knowing them (as imported observations) and once not. Only the night's own runs count toward
the best after k: an imported run has no commit the branch could stand on.
It is a benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import json
import statistics
import warnings

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.agents.tuner import Observation, TunerPolicy  # noqa: E402
from autoresearch.constants import find_constants, rewrite, searchable  # noqa: E402
from autoresearch.execution import LocalExecutor  # noqa: E402
from autoresearch.execution.warm import WarmExecutor  # noqa: E402
from autoresearch.records import RunSpec  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
METHODS = ("tuner", "tpe", "tpe4", "gp", "cmaes", "random")
EXAMPLE = ROOT / "src" / "autoresearch" / "examples" / "mnist1d"
METRIC = "val_acc"


class Example:
    """A scratch copy of the example: one train.py rewritten per run, the data cache shared."""

    def __init__(self, source_dir: Path, budget: float, scratch: Path, executor=None):
        self.executor = executor or LocalExecutor()
        self.dir = scratch / "task"
        shutil.copytree(source_dir, self.dir, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl", "run.log"))
        self.source = (self.dir / "train.py").read_text()
        constants = searchable(find_constants(self.source, "train.py"))
        self.spaces = {c.name: c.space for c in constants}
        self.baseline = {c.name: c.value for c in constants}
        self.budget = budget
        self.runs = 0
        self.seconds = 0.0

    def run(self, params: dict) -> float | None:
        """val_acc of one training run, None when it crashed."""
        (self.dir / "train.py").write_text(rewrite(self.source, params, "train.py"))
        env = {**os.environ, "AUTORESEARCH_TIME_BUDGET": str(self.budget), "PYTHONUNBUFFERED": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = self.dir / "run.log"
        spec = RunSpec(command="python train.py", cwd=str(self.dir), env=env, timeout=self.budget * 5 + 120,
                       log_path=str(log))
        start = time.time()
        try:
            result = self.executor.run(spec)
        finally:
            self.runs += 1
            self.seconds += time.time() - start
        if result.exit_code != 0 or result.timed_out:
            return None
        return footer_value(log.read_text(encoding="utf-8", errors="replace"), METRIC)


def footer_value(stdout: str, key: str) -> float | None:
    lines = stdout.splitlines()
    if "---" not in lines:
        return None
    last_rule = len(lines) - 1 - lines[::-1].index("---")
    for line in lines[last_rule + 1 :]:
        name, _, value = line.partition(":")
        if name.strip() == key:
            try:
                value = float(value)
            except ValueError:
                return None
            return value if math.isfinite(value) else None
    return None


class TunerSearch:
    """Our policy, with the loop's rule: keep a run only if strictly better than the best."""

    name = "tuner"

    def __init__(self, spaces, baseline, baseline_value, seed):
        self.policy = TunerPolicy(spaces, "maximize", seed=seed)
        self.best, self.best_value = dict(baseline), baseline_value
        self.history = [Observation(dict(baseline), baseline_value, "keep" if baseline_value is not None else "crash")]
        self.moves: list[str] = []

    def ask(self) -> dict:
        return self.policy.suggest(self.best, self.history, iteration=len(self.history)).params

    def tell(self, params, value):
        keep = value is not None and (self.best_value is None or value > self.best_value)
        status = "keep" if keep else "crash" if value is None else "discard"
        self.history.append(Observation(params, value, status, dict(self.best), self.best_value))
        changed = [f"{k}={params[k]}" for k in params if params[k] != self.best[k]]
        self.moves.append(f"{','.join(changed)}:{'-' if value is None else f'{value:.3f}'}{'*' if keep else ''}")
        if keep:
            self.best, self.best_value = dict(params), value


class OptunaSearch:
    """One independent study over the whole space; every trial sets every knob."""

    def __init__(self, name, sampler, spaces, baseline, baseline_value):
        self.name = name
        # The policy's distributions: the annotated spaces, widened to hold the baseline.
        self.distributions = TunerPolicy(spaces).distributions(baseline)
        if callable(sampler) and not isinstance(sampler, optuna.samplers.BaseSampler):
            sampler = sampler(self.distributions)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        state = optuna.trial.TrialState.COMPLETE if baseline_value is not None else optuna.trial.TrialState.FAIL
        self.study.add_trial(optuna.trial.create_trial(
            state=state, value=baseline_value, params=dict(baseline), distributions=self.distributions))
        self.trial = None

    def ask(self) -> dict:
        self.trial = self.study.ask(self.distributions)
        return dict(self.trial.params)

    def tell(self, params, value):
        if value is None:
            self.study.tell(self.trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(self.trial, value)


def make_search(method: str, seed: int, spaces, baseline, baseline_value):
    """One method's search of one seed; every Optuna method starts from the baseline as a trial."""
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "tpe4": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=4),
        # CMA-ES starts at the baseline (x0: deprecated since optuna 4.9, to go in 6.0); the
        # categorical knobs go to its independent (random) sampler.
        "cmaes": lambda: lambda dists: optuna.samplers.CmaEsSampler(
            seed=seed, x0={k: v for k, v in baseline.items()
                           if not isinstance(dists[k], optuna.distributions.CategoricalDistribution)},
            warn_independent_sampling=False),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    if method == "tuner":
        return TunerSearch(spaces, baseline, baseline_value, seed)
    if method not in samplers:
        raise SystemExit(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return OptunaSearch(method, samplers[method](), spaces, baseline, baseline_value)


def report(curves: dict[str, list[list[float]]], ks) -> None:
    """Mean and spread over seeds at each k, and each peer's seeds above/level/below the tuner."""
    for k in ks:
        print(f"\nafter {k} runs ({len(next(iter(curves.values())))} seeds): mean ± spread (sample sd) of the best {METRIC}")
        for name, runs in curves.items():
            values = [r[min(k, len(r) - 1)] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            line = f"{name:>8} {statistics.mean(values):.4f} ± {sd:.4f}"
            if name != "tuner" and "tuner" in curves:
                tuner = [r[min(k, len(r) - 1)] for r in curves["tuner"]]
                # Paired per seed: the tuner's lead over this peer, and whether it exceeds its spread.
                leads = [t - v for v, t in zip(values, tuner)]
                wins = sum(1 for d in leads if d > 0)
                ties = sum(1 for d in leads if d == 0)
                lead_sd = statistics.stdev(leads) if len(leads) > 1 else 0.0
                lead = statistics.mean(leads)
                line += (f"   tuner - {name}: {lead:+.4f} ± {lead_sd:.4f}"
                         f" ({'more' if lead > lead_sd else 'not more'} than the spread);"
                         f" tuner wins/ties/losses {wins}/{ties}/{len(leads) - wins - ties}")
            print(line)


def summarize_file(path: Path, ks) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    curves: dict[str, list[list[float]]] = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        for name, curve in row["curves"].items():
            curves.setdefault(name, []).append(curve)
    seeds = sorted(r["seed"] for r in rows)
    print(f"{path}: seeds {seeds}; budget {rows[0]['budget']:g} s; {rows[0]['iterations']} runs per method")
    report(curves, ks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=10, help="runs per method after the baseline")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=10.0, help="AUTORESEARCH_TIME_BUDGET, seconds")
    parser.add_argument("--methods", default="tuner,tpe,random")
    parser.add_argument("--example", type=Path, default=EXAMPLE)
    parser.add_argument("--history", type=int, default=0, help="earlier random runs imported before the night")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--report-at", type=int, nargs="+", help="print mean, spread and wins after these k")
    parser.add_argument("--out", type=Path, help="append each seed's best-after-k curves to this JSON-lines file")
    parser.add_argument("--summarize", type=Path, help="only print the figures of the seeds in this file")
    parser.add_argument("--fresh", action="store_true", help="fresh processes instead of warm starts")
    parser.add_argument("--trace", type=Path, help="append every run (seed, method, k, params, value) to this JSON-lines file")
    args = parser.parse_args(argv)
    if args.summarize:
        return summarize_file(args.summarize, args.report_at or [args.iterations])
    if args.history:
        return history_main(args)
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; known: {', '.join(METHODS)}")
    start = time.time()

    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as scratch, \
            (LocalExecutor() if args.fresh else WarmExecutor(["torch", "numpy"])) as executor:
        example = Example(args.example, args.budget, Path(scratch), executor)
        print(f"{len(example.spaces)} axes: " + ", ".join(f"{k} {s.describe()}" for k, s in example.spaces.items()))
        print(f"{args.iterations} runs per method after the baseline, {args.seeds} seeds, budget {args.budget:g} s, "
              f"{'fresh processes' if args.fresh else 'warm starts'}\n", flush=True)
        curves = {m: [] for m in methods}
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        for seed in seeds:
            baseline_value = example.run(example.baseline)
            if args.trace:
                with open(args.trace, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"seed": seed, "method": "baseline", "k": 0,
                                         "params": example.baseline, "value": baseline_value}) + "\n")
            searches = [make_search(m, seed, example.spaces, example.baseline, baseline_value) for m in methods]
            best = {s.name: [baseline_value if baseline_value is not None else -math.inf] for s in searches}
            for _ in range(args.iterations):
                for s in searches:  # turn by turn, so load drift is shared
                    params = s.ask()
                    value = example.run(params)
                    s.tell(params, value)
                    best[s.name].append(max(best[s.name][-1], value if value is not None else -math.inf))
                    if args.trace:
                        with open(args.trace, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps({"seed": seed, "method": s.name, "k": len(best[s.name]) - 1,
                                                 "params": params, "value": value}) + "\n")
            for s in searches:
                curves[s.name].append(best[s.name])
            if args.out:
                with open(args.out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"seed": seed, "budget": args.budget, "iterations": args.iterations,
                                         "curves": best}) + "\n")
            summary = "  ".join(f"{name} {c[-1]:.3f}" for name, c in best.items())
            print(f"seed {seed}: baseline {baseline_value}  best after {args.iterations}: {summary}"
                  f"  ({time.time() - start:.0f} s)", flush=True)
            for s in searches:
                if isinstance(s, TunerSearch):
                    print("  tuner moves: " + "  ".join(s.moves), flush=True)

    print(f"\nbest {METRIC} after k runs (k = 0 is the baseline), mean over {args.seeds} seeds:")
    ks = range(args.iterations + 1)
    print(f"{'k':>8} " + " ".join(f"{k:>6}" for k in ks))
    for name, runs in curves.items():
        means = [sum(r[k] for r in runs) / len(runs) for k in ks]
        print(f"{name:>8} " + " ".join(f"{m:6.3f}" for m in means))
    finals = [{name: runs[i][-1] for name, runs in curves.items()} for i in range(args.seeds)]
    wins = {name: sum(1 for f in finals if f[name] >= max(f.values())) for name in curves}
    print("seeds where a method ends best (ties count for each): " + ", ".join(f"{n} {w}" for n, w in wins.items()))
    if args.report_at:
        report(curves, args.report_at)
    print(f"{example.runs} runs in {example.seconds:.0f} s ({example.seconds / max(example.runs, 1):.1f} s per run)")


def history_main(args) -> None:
    """Best after k runs of the tuner, with and without an import of `args.history` earlier runs."""
    import random

    start = time.time()
    curves = {"tuner": [], "tuner+import": [], "import-no-adopt": []}
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as scratch:
        example = Example(args.example, args.budget, Path(scratch))
        print(f"{len(example.spaces)} axes; {args.history} earlier runs imported; {args.iterations} runs after the "
              f"baseline; {args.seeds} seeds; budget {args.budget:g} s\n", flush=True)
        for seed in range(args.seeds):
            baseline_value = example.run(example.baseline)
            rng = random.Random(f"history:{seed}")
            drawer = TunerPolicy(example.spaces)
            earlier = []
            for _ in range(args.history):
                params = {a: drawer._random_value(a, rng) for a in drawer.axes}
                earlier.append(Observation(params, example.run(params), "imported", imported=True))
            plain = TunerSearch(example.spaces, example.baseline, baseline_value, seed)
            informed = TunerSearch(example.spaces, example.baseline, baseline_value, seed)
            informed.history = earlier + informed.history
            no_adopt = TunerSearch(example.spaces, example.baseline, baseline_value, seed)
            no_adopt.policy.adopt_imported = False
            no_adopt.history = earlier + no_adopt.history
            searches = {"tuner": plain, "tuner+import": informed, "import-no-adopt": no_adopt}
            best = {name: [baseline_value if baseline_value is not None else -math.inf] for name in searches}
            for _ in range(args.iterations):
                for name, search in searches.items():
                    params = search.ask()
                    value = example.run(params)
                    search.tell(params, value)
                    best[name].append(max(best[name][-1], value if value is not None else -math.inf))
            for name in searches:
                curves[name].append(best[name])
            shown = max((o.value for o in earlier if o.value is not None), default=None)
            print(f"seed {seed}: baseline {baseline_value}, best earlier run {shown}; best after {args.iterations}: "
                  + "  ".join(f"{n} {c[-1]:.3f}" for n, c in best.items()) + f"  ({time.time() - start:.0f} s)", flush=True)
            print("  tuner+import moves: " + "  ".join(informed.moves), flush=True)
            print("  import-no-adopt moves: " + "  ".join(no_adopt.moves), flush=True)
    print(f"\nbest {METRIC} after k runs of the night (k = 0 is the baseline), mean over {args.seeds} seeds:")
    ks = range(args.iterations + 1)
    print(f"{'k':>12} " + " ".join(f"{k:>6}" for k in ks))
    for name, runs in curves.items():
        print(f"{name:>12} " + " ".join(f"{sum(r[k] for r in runs) / len(runs):6.3f}" for k in ks))
    print(f"{example.runs} runs in {example.seconds:.0f} s")


if __name__ == "__main__":
    main()
