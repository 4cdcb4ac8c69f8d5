"""Benchmark: the tuner's policy against plain Optuna TPE and random search, on the real example.

    python bench/search.py                     # 10 iterations, 3 seeds, 10 s budget per run
    python bench/search.py --budget 4 --iterations 8 --seeds 2

Every method starts from the example's own train.py (its baseline run is shared by all
methods of a seed) and gets the same number of further runs. A run rewrites the
constants of a scratch copy of the example and trains it for AUTORESEARCH_TIME_BUDGET
seconds. The methods take turns run by run, so a change of machine load hits them alike.

    python bench/search.py --history 8         # the tuner with and without 8 earlier runs imported

Printed: the best val_acc after k runs (k = 0 is the baseline), mean over seeds.
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.agents.tuner import Observation, TunerPolicy  # noqa: E402
from autoresearch.constants import find_constants, rewrite, searchable  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
EXAMPLE = ROOT / "src" / "autoresearch" / "examples" / "mnist1d"
METRIC = "val_acc"


class Example:
    """A scratch copy of the example: one train.py rewritten per run, the data cache shared."""

    def __init__(self, source_dir: Path, budget: float, scratch: Path):
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
        env = {**os.environ, "AUTORESEARCH_TIME_BUDGET": str(self.budget)}
        start = time.time()
        try:
            out = subprocess.run([sys.executable, "train.py"], cwd=self.dir, env=env, capture_output=True,
                                 text=True, timeout=self.budget * 5 + 120)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.runs += 1
            self.seconds += time.time() - start
        return footer_value(out.stdout, METRIC) if out.returncode == 0 else None


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=10, help="runs per method after the baseline")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=10.0, help="AUTORESEARCH_TIME_BUDGET, seconds")
    parser.add_argument("--methods", default="tuner,tpe,random")
    parser.add_argument("--example", type=Path, default=EXAMPLE)
    parser.add_argument("--history", type=int, default=0, help="earlier random runs imported before the night")
    args = parser.parse_args(argv)
    if args.history:
        return history_main(args)
    methods = args.methods.split(",")
    start = time.time()

    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as scratch:
        example = Example(args.example, args.budget, Path(scratch))
        print(f"{len(example.spaces)} axes: " + ", ".join(f"{k} {s.describe()}" for k, s in example.spaces.items()))
        print(f"{args.iterations} runs per method after the baseline, {args.seeds} seeds, budget {args.budget:g} s\n",
              flush=True)
        curves = {m: [] for m in methods}
        for seed in range(args.seeds):
            baseline_value = example.run(example.baseline)
            searches = []
            for m in methods:
                if m == "tuner":
                    searches.append(TunerSearch(example.spaces, example.baseline, baseline_value, seed))
                elif m == "tpe":
                    sampler = optuna.samplers.TPESampler(seed=seed)
                    searches.append(OptunaSearch(m, sampler, example.spaces, example.baseline, baseline_value))
                elif m == "random":
                    sampler = optuna.samplers.RandomSampler(seed=seed)
                    searches.append(OptunaSearch(m, sampler, example.spaces, example.baseline, baseline_value))
                else:
                    parser.error(f"unknown method {m!r}; known: tuner, tpe, random")
            best = {s.name: [baseline_value if baseline_value is not None else -math.inf] for s in searches}
            for _ in range(args.iterations):
                for s in searches:  # turn by turn, so load drift is shared
                    params = s.ask()
                    value = example.run(params)
                    s.tell(params, value)
                    best[s.name].append(max(best[s.name][-1], value if value is not None else -math.inf))
            for s in searches:
                curves[s.name].append(best[s.name])
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
    finals = [{name: runs[seed][-1] for name, runs in curves.items()} for seed in range(args.seeds)]
    wins = {name: sum(1 for f in finals if f[name] >= max(f.values())) for name in curves}
    print("seeds where a method ends best (ties count for each): " + ", ".join(f"{n} {w}" for n, w in wins.items()))
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
