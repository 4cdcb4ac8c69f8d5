"""The local model next to the tuner on the bundled example: prints time per completion, the
share of replies that applied, and the best val_acc after N iterations.

    eval "$(.ci/install-agents)"      # llama-cpp-python[server] and the Gemma 3 270M model
    flock /tmp/heavy.lock .venv/bin/python bench/local_model.py --iterations 8

The local model is llama.cpp's server on 127.0.0.1 (Gemma 3 270M Q4_K_M), driven by the openai
backend with structured knob edits (edit_format = "knobs"); the tuner runs on the same task.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agents"))

from local_llama import installed, llama_server, local_task  # noqa: E402

from autoresearch.api import copy_example, run_loop  # noqa: E402


def best(records) -> float:
    return max(r.metrics["val_acc"] for r in records if r.status.value == "keep")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--time-budget", type=float, default=3)
    args = parser.parse_args()
    found = installed()
    if found is None:
        sys.exit("run .ci/install-agents and export what it prints first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with llama_server(*found, tmp / "llama.log") as url:
            task = local_task(copy_example, tmp / "local", url, time_budget=args.time_budget)
            started = time.monotonic()
            local = run_loop(task, "local", iterations=args.iterations, say=lambda s: None)
            local_wall = time.monotonic() - started
        tuner_task = copy_example("mnist1d", tmp / "tuner", time_budget=args.time_budget)
        started = time.monotonic()
        tuner = run_loop(tuner_task, "tuner", iterations=args.iterations, say=lambda s: None)
        tuner_wall = time.monotonic() - started
        logs = sorted((task / ".autoresearch").rglob("agent.log"))
    proposals = local[1:]
    applied = [r for r in proposals if r.agent_data.get("edit_format") == "knobs"]
    requests = sum(int(r.agent_data.get("requests") or 0) for r in proposals)
    # the agent's share of an iteration: all of it but the training run
    agent_seconds = [r.finished_at - r.started_at - r.wall_seconds for r in proposals if r.finished_at]
    print(f"iterations: {args.iterations}, time budget {args.time_budget:g} s per run")
    print(f"local model (Gemma 3 270M, llama.cpp, structured knob edits):")
    print(f"  requests: {requests}; agent time per iteration (completion and apply): "
          f"{statistics.median(agent_seconds):.1f} s median, {max(agent_seconds):.1f} s max")
    print(f"  replies applied: {len(applied)}/{len(proposals)} ({100 * len(applied) / max(len(proposals), 1):.0f}%)")
    print(f"  tokens per iteration: {statistics.median([r.tokens for r in proposals]):.0f} median")
    print(f"  best val_acc: {best(local):.4f} (baseline {local[0].metrics['val_acc']:.4f}); wall {local_wall:.0f} s")
    print(f"tuner: best val_acc: {best(tuner):.4f} (baseline {tuner[0].metrics['val_acc']:.4f}); wall {tuner_wall:.0f} s")
    for r in proposals:
        print(f"  {r.iteration}: {r.status.value:7} {r.metrics.get('val_acc', '-')!s:8} {r.description[:70]}")


if __name__ == "__main__":
    main()
