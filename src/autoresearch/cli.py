"""The command line: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperOption
from rich.console import Console
from rich.markup import escape

from autoresearch.errors import AutoresearchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Autonomous ML research loops: an agent edits, the metric decides, nothing is lost.")
console = Console(highlight=False, soft_wrap=True)


def _flag_without_placeholder(display):
    """typer shows `--json <bool>` for a flag, which takes no value: show just `--json`."""
    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else display(self, ctx)
    return display_type_rich


TyperOption.display_type_rich = _flag_without_placeholder(TyperOption.display_type_rich)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"autoresearch {version('autoresearch')}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Autonomous ML research loops: an agent edits, the metric decides, nothing is lost."""
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """Loop messages are plain text: descriptions from agents may contain [brackets]."""
    console.print(text, markup=False)


def _stop_on_signals() -> threading.Event:
    """First Ctrl-C asks the loop to stop cleanly; a second one interrupts at once.

    The loop itself says what it rolled back; `_exit_if_stopped` then exits 128 + the signal."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        _SIGNALLED.append(signum)
        stop.set()
        err_console.print("[yellow]stopping (Ctrl-C again to abort at once)[/]")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


_SIGNALLED: list[int] = []


def _exit_if_stopped(stop: threading.Event) -> None:
    """A run stopped by Ctrl-C (or SIGTERM) exits 130 (143), as an interrupted command does."""
    if stop.is_set():
        sys.exit(128 + (_SIGNALLED[0] if _SIGNALLED else signal.SIGINT))


@app.command()
def run(
    task_dir: Path = typer.Argument(Path("."), help="Task directory holding autoresearch.toml."),
    tag: str = typer.Option(..., "--tag", "-t", help="Run tag: branch autoresearch/<tag>; an existing tag resumes."),
    iterations: int = typer.Option(10, "--iterations", "-n", min=0, help="Agent iterations to run (the baseline comes first on a new tag)."),
    agent: Optional[str] = typer.Option(None, "--agent", "-a", help="tuner | command | claude | codex | gemini | aider | openai (default: the config's agent.kind)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Stop starting new iterations after this long."),
    max_crashes: Optional[int] = typer.Option(None, "--max-crashes", help="Stop after this many crashes in a row."),
    max_cost_usd: Optional[float] = typer.Option(None, "--max-cost-usd", help="Stop once the agent has cost this many dollars."),
    evolve_program: bool = typer.Option(False, "--evolve-program", help="At the end, write program.proposed.md beside program.md."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="One worker per GPU, e.g. 0,1,2,3 (each run sees only its GPU)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Workers (one per slot; with --executor ray, runs in flight on the cluster)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray (default: kind under \\[executor] in autoresearch.toml)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join, e.g. auto or 10.0.0.1:6379 (default: address under \\[executor] in autoresearch.toml)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the tuner agent."),
    adopt_config: bool = typer.Option(False, "--adopt-config", help="On a resume, adopt changed rules (\\[metrics], run, editable, readonly, eval, time_budget): recorded in the ledger, the best re-judged under them. Without it such a resume is refused."),
) -> None:
    """Run the research loop on a task (or resume it)."""
    _night(task_dir, tag, iterations=iterations, agent=agent, max_seconds=max_seconds,
           max_crashes=max_crashes, max_cost_usd=max_cost_usd, seed=seed,
           evolve_program=evolve_program, gpus=gpus, workers=workers,
           executor=executor, ray_address=ray_address, adopt_config=adopt_config)


def _night(task_dir: Path, tag: Optional[str], **run_args) -> None:
    """`run` and `demo`: the loop under the live view, Ctrl-C a clean stop, then the summary."""
    from autoresearch.api import run_loop

    stop = _stop_on_signals()
    with _live_view(task_dir, tag):
        records = run_loop(task_dir, tag, say=say, stop_event=stop, **run_args)
    _print_summary(task_dir, tag, ran=len(records))
    _print_next_steps(task_dir, tag)
    _exit_if_stopped(stop)


@app.command()
def status(
    task_dir: Path = typer.Argument(Path("."), help="Task directory."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Run tag (default: the only one, or the checked-out one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the totals as JSON."),
    last: int = typer.Option(15, "--last", help="How many recent experiments to list."),
) -> None:
    """Show a run's progress: totals, best, and the latest experiments."""
    from autoresearch.api import status_of

    s = status_of(task_dir, tag)
    if as_json:
        print(json.dumps(s.totals(), indent=2))
        return
    _print_status(s, last)


@app.command()
def confirm(
    task_dir: Path = typer.Argument(Path("."), help="Task directory."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Run tag (default: the only one, or the checked-out one)."),
    top: int = typer.Option(3, "--top", min=1, help="How many of the best keeps to check."),
) -> None:
    """Run the held-out check (task.final_eval) on the best commits and show the gap."""
    from autoresearch.api import confirm as run_confirm

    run_confirm(task_dir, tag, top=top, say=say)


@app.command()
def init(
    task_dir: Path = typer.Argument(Path("."), help="Repository to write autoresearch.toml into."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing autoresearch.toml."),
) -> None:
    """Write a commented autoresearch.toml for this repository (for a karpathy layout, the config `run` infers)."""
    from autoresearch.api import init_config

    path = init_config(task_dir, force=force)
    console.print(f"wrote {escape(str(path))}; review it, commit it, then: autoresearch run {escape(str(task_dir))} --tag <tag>")


@app.command()
def demo(
    directory: Path = typer.Option(Path("autoresearch-demo"), "--dir", help="Where to copy the example task."),
    iterations: int = typer.Option(10, "--iterations", "-n", min=0, help="Tuner iterations after the baseline."),
    tag: str = typer.Option("demo", "--tag", "-t", help="Run tag: branch autoresearch/<tag>; an existing tag resumes."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Training seconds per run (default: the example's)."),
    example: str = typer.Option("mnist1d", "--example", help="mnist1d (knobs as constants in train.py) or mnist1d_yaml (knobs in config.yaml)."),
) -> None:
    """Copy the bundled MNIST-1D task and run the loop on it, offline, with the tuner agent."""
    from autoresearch.api import EXAMPLES, copy_example

    if example not in EXAMPLES:
        raise typer.BadParameter(f"unknown example {example!r}; choose one of {', '.join(EXAMPLES)}", param_hint="--example")
    task_dir = copy_example(example, directory, time_budget=budget)
    console.print(f"task: {task_dir}  (MNIST-1D, generated locally; agent: tuner)")
    _night(task_dir, tag, iterations=iterations, agent="tuner")


@app.command()
def dashboard(
    task_dir: Path = typer.Argument(Path("."), help="Task directory."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Run tag (default: the only one, or the checked-out one); may be a run not started yet."),
    port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="Port to listen on (0: any free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; any other than 127.0.0.1 requires a token."),
    token: Optional[str] = typer.Option(None, "--token", help="Secret every request must carry (default with --host: a random one, printed in the URL)."),
) -> None:
    """A live page of a run (running, finished or resumed): in flight, progress, table, best, diffs, stop button."""
    from autoresearch.api import dashboard_for

    board = dashboard_for(task_dir, tag, host=host, port=port, token=token)
    console.print(f"dashboard of {board.store.branch}: {board.url}   (Ctrl-C to quit; the run is not affected)")
    # Started in the background by a shell (`autoresearch dashboard ... &`), SIGINT comes in ignored
    # and Python leaves it so: the printed Ctrl-C / kill -INT would not stop the page. It always does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        board.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        board.close()


def _live_view(task_dir: Path, tag: str):
    """The run in flight, second by second (a rich panel; plain lines without a terminal)."""
    from autoresearch.live.terminal import TerminalView
    from autoresearch.store import STORE_DIR, check_tag

    return TerminalView(Path(task_dir).resolve() / STORE_DIR / check_tag(tag), console)


def _print_summary(task_dir: Path, tag: str, ran: int) -> None:
    from autoresearch.api import status_of

    s = status_of(task_dir, tag)
    console.print()
    _print_status(s, last=0)
    console.print(f"results: {s.task.dir / 'results.tsv'}   ledger and logs: {s.store.root}")


def _print_next_steps(task_dir: Path, tag: str) -> None:
    from autoresearch.api import next_steps

    for line in next_steps(task_dir, tag):
        console.print(line, markup=False)


def _print_status(s, last: int) -> None:
    t = s.totals()
    best = t["best"]
    base = t["baseline"]
    noun = "experiment" if t["iterations"] == 1 else "experiments"
    line = f"[bold]{s.store.branch}[/]  {t['iterations']} {noun}: {t['keeps']} keep, {t['discards']} discard, {t['crashes']} crash" + (f", {t['imported']} imported" if t.get("imported") else "")
    console.print(line)
    if t["workers"]:
        console.print("workers: " + ", ".join(f"{w} {n} experiments" for w, n in t["workers"].items()))
    if t["nodes"]:
        console.print("nodes: " + ", ".join(f"{n} {k} runs" for n, k in t["nodes"].items()))
    if t["training_share"] is not None:
        warm = f", {t['warm_runs']} warm starts saved {t['warm_saved_seconds']:.1f} s of start-up" if t["warm_runs"] else ""
        console.print(f"wall time spent training: {t['training_share']:.1%}{warm}")
    if t["runs"]:
        from autoresearch.execution.sandbox import runs_line

        console.print(f"sandbox: {runs_line(t['sandboxed_runs'], t['runs'], t['sandbox_mode'])}", markup=False)
    if t["cost_usd"] or t["tokens"]:
        memo = f" (strategy memo: ${t['memo_cost_usd']:.4f}, {t['memo_tokens']:,} tokens)" if t["memo_tokens"] else ""
        console.print(f"agent cost: ${t['cost_usd']:.4f}, {t['tokens']:,} tokens{memo}")
    if best:
        sign = 1 if t["direction"] == "maximize" else -1  # + is better in the metric's direction, as in the report
        gain = f"  ({sign * (best['value'] - base['value']):+.6f} vs baseline {base['value']:.6f}; + is better)" if base else ""
        console.print(f"best {t['primary']} = {best['value']:.6f} at {best['commit'][:7]} (iteration {best['iteration']}): {escape(best['description'])}{gain}")
    noise = t["noise"]
    if noise["known"]:
        console.print(f"noise floor {noise['floor']:.6f}: a keep must gain more than this ({escape(noise['source'])})")
    else:
        console.print(f"noise floor unknown: a keep needs only min_delta {noise['min_delta']:g}; "
                      "[metrics] noise_runs = 2 measures it")
    if last:
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False)
        shown_nodes = any(r.node for r in s.records[-last:])
        gains = s.gains()
        for col in ("#", "commit", t["primary"], "gain (floor)", "status", *(["node"] if shown_nodes else []),
                    "description"):
            table.add_column(col)
        colors = {"keep": "green", "discard": "white", "crash": "red", "imported": "cyan"}
        for r in s.records[-last:]:
            v = r.metrics.get(t["primary"])
            shown = f"{v:.6f}" if isinstance(v, float) and r.status.value != "crash" else "-"
            desc = escape(r.description) + (f"  [dim]({escape(r.reason)})[/]" if r.status.value == "crash" else "")
            g = gains.get(r.iteration)
            gain = f"{g.value:+.6f} ({g.floor.value:.6f})" if g and g.floor.known else f"{g.value:+.6f} (?)" if g else ""
            table.add_row(str(r.iteration), r.commit[:7], shown, gain, f"[{colors[r.status.value]}]{r.status.value}[/]",
                          *([escape(r.node or "-")] if shown_nodes else []), desc)
        console.print(table)


from autoresearch.analysis.commands import register as _register_analysis  # noqa: E402

_register_analysis(app)

from autoresearch.import_command import register as _register_import  # noqa: E402

_register_import(app)


def main() -> None:
    try:
        app()
    except AutoresearchError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[red]aborted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
