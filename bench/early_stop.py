"""Benchmark: the same wall-clock night of the bundled example with and without early stopping.

    python bench/early_stop.py                          # 3 seeds, 4-minute nights, 10 s budget
    python bench/early_stop.py --minutes 3.5 --seeds 0 1 --out es.jsonl   # append nights to a file
    python bench/early_stop.py --summarize es.jsonl      # figures over every night in the file

A night is `autoresearch run` of the MNIST-1D example with the tuner (seed s) and
`--max-seconds`: the loop stops starting new iterations once that much wall time has gone, so a
night ends with its last run. Each seed runs two nights, `[early_stop]` on (the defaults) and
off, on fresh copies of the example that share the generated data. The two arms of a seed run
one after the other, in alternating order from seed to seed, so a change of machine load hits
both alike.

Printed per night and then per arm (mean and spread over seeds): experiments finished per hour
of wall time (the baseline and its repeat included), runs stopped early, and the best val_acc at
the end (a stopped run is a discard: the best is always a run that trained its whole budget).
It is a benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.api import copy_example, run_loop  # noqa: E402
from autoresearch.records import Status  # noqa: E402

ARMS = ("early_stop", "full")


def night(scratch: Path, arm: str, seed: int, minutes: float, budget: float, data: Path | None,
          early_stop: str = "") -> dict:
    """One night of one arm; returns its figures."""
    if (scratch / f"{arm}-{seed}").exists():  # copy_example would keep it, and the night would resume it
        raise SystemExit(f"{scratch / f'{arm}-{seed}'} exists: --keep another folder")
    task_dir = copy_example("mnist1d", scratch / f"{arm}-{seed}", time_budget=budget)
    if data is not None:  # the generated data, outside git (the example ignores data/)
        shutil.copytree(data, task_dir / "data")
    config = task_dir / "autoresearch.toml"
    section = "enabled = false\n" if arm == "full" else early_stop
    if section:
        config.write_text(config.read_text() + "\n[early_stop]\n" + section)
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
        subprocess.run(git + ["commit", "-qam", f"bench: {arm}"], cwd=task_dir, check=True)
    start = time.time()
    records = run_loop(task_dir, "bench", iterations=10_000, agent="tuner", max_seconds=minutes * 60,
                       seed=seed, say=lambda s: None)
    wall = time.time() - start
    kept = [r.metrics.get("val_acc") for r in records if r.status is Status.KEEP]
    kept = [v for v in kept if isinstance(v, (int, float))]
    return {
        "arm": arm, "seed": seed, "minutes": minutes, "budget": budget, "wall_s": round(wall, 1),
        "experiments": len(records), "per_hour": round(len(records) / wall * 3600, 1),
        "stopped": sum(1 for r in records if r.stopped_at is not None),
        "stopped_at": [round(r.stopped_at, 2) for r in records if r.stopped_at is not None],
        "crashes": sum(1 for r in records if r.status is Status.CRASH),
        "best": max(kept) if kept else None,
        # The ceiling of any stopping rule on this night: every agent run that ended below the best
        # stopped at the warm-up (the default 25%), the seconds it would then not have trained.
        "oracle_saved_s": round(sum((1 - 0.25) * budget for r in records
                                    if r.status is Status.DISCARD and r.stopped_at is None and r.iteration > 0
                                    and not r.verdict.noise_repeat), 1),
        "early_stop": section.strip(),
    }


def summarize(rows: list[dict]) -> None:
    print(f"\n{'arm':>10} {'nights':>6} {'exp/hour':>16} {'stopped':>8} {'best val_acc':>18}")
    means = {}
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        rate = [r["per_hour"] for r in mine]
        best = [r["best"] for r in mine if r["best"] is not None]
        means[arm] = (statistics.mean(rate), statistics.mean(best) if best else float("nan"))
        print(f"{arm:>10} {len(mine):>6} {_spread(rate, '.0f'):>16} {statistics.mean(r['stopped'] for r in mine):>8.1f}"
              f" {_spread(best, '.4f'):>18}")
    full = [r for r in rows if r["arm"] == "full" and "oracle_saved_s" in r]
    if full:
        ceiling = [r["experiments"] / (r["wall_s"] - r["oracle_saved_s"]) * 3600 for r in full]
        print(f"ceiling of any stopping rule on the full nights (every run that ended below the best stopped "
              f"at 25%): {_spread(ceiling, '.0f')} experiments/hour, "
              f"{statistics.mean(ceiling) / statistics.mean(r['per_hour'] for r in full):.2f}x")
    if len(means) == 2:
        (r_es, b_es), (r_full, b_full) = means["early_stop"], means["full"]
        print(f"early stopping: {r_es / r_full:.2f}x the experiments per hour; best {b_es - b_full:+.4f} val_acc")
    pairs = {}
    for r in rows:
        pairs.setdefault(r["seed"], {})[r["arm"]] = r
    for seed, pair in sorted(pairs.items()):
        if len(pair) == 2:
            es, full = pair["early_stop"], pair["full"]
            print(f"  seed {seed}: {es['per_hour'] / full['per_hour']:.2f}x, best {es['best']:.4f} vs {full['best']:.4f}")


def _spread(values, fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="wall-clock length of one night")
    parser.add_argument("--budget", type=float, default=10.0, help="training seconds per run (the example's 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="tuner seeds, one pair of nights each")
    parser.add_argument("--arms", default=",".join(ARMS), help="early_stop,full or either alone")
    parser.add_argument("--early-stop", default="", help='[early_stop] lines for the early_stop arm, e.g. "warmup = 0.2\\n"')
    parser.add_argument("--out", type=Path, help="append each night's figures to this JSON-lines file")
    parser.add_argument("--summarize", type=Path, help="only print the figures of the nights in this file")
    parser.add_argument("--keep", type=Path, help="keep each night's task (runs, ledger, curves) under this folder")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize([json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()])
        return
    arms = args.arms.split(",")
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arm {sorted(unknown)[0]!r}; known: {', '.join(ARMS)}")
    early_stop = args.early_stop.replace("\\n", "\n")
    rows = []
    print(f"nights of {args.minutes:g} min, budget {args.budget:g} s, seeds {args.seeds}, arms {arms}", flush=True)
    with tempfile.TemporaryDirectory(prefix="autoresearch-es-bench-") as scratch:
        scratch = Path(scratch)
        if args.keep:
            scratch = args.keep
            scratch.mkdir(parents=True, exist_ok=True)
        data = _prepared_data(scratch)
        for seed in args.seeds:
            order = arms if seed % 2 == 0 else arms[::-1]  # alternate: load drift hits both arms alike
            for arm in order:
                row = night(scratch, arm, seed, args.minutes, args.budget, data, early_stop)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
    summarize(rows)


def _prepared_data(scratch: Path) -> Path:
    """The example's data, generated once before any night (its cost is no night's)."""
    task = scratch / "prepare"
    if (task / "data").is_dir():
        return task / "data"
    task = copy_example("mnist1d", task)
    subprocess.run([sys.executable, "prepare.py"], cwd=task, check=True, capture_output=True)
    return task / "data"


if __name__ == "__main__":
    main()
