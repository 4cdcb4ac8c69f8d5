"""CLI commands of the analysis package, attached to the main app by `register`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app) -> None:
    """Add the analysis commands (summarize, plot, report, ...) to the typer app."""
    _register_summary_commands(app)
    _register_report_commands(app)


# -- summarize / suggest (analysis summary and next configurations) ----------------------


def _register_summary_commands(app) -> None:
    # Annotations are strings here (`from __future__ import annotations`); typer resolves
    # them in the module's globals, hence the module-level imports these need.
    @app.command()
    def summarize(
        task_dir: Path = typer.Argument(Path("."), help="Task directory."),
        tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Run tag (default: the only one, or the checked-out one)."),
    ) -> None:
        """Write analysis_summary.json and .md: frontier, near misses, axes, plateau, hints."""
        from autoresearch.analysis.observer import backfill
        from autoresearch.analysis.summary import summary_hints, summarize as summarize_run, write_summary
        from autoresearch.api import status_of

        s = status_of(task_dir, tag)
        backfill(s.task, s.store)
        summary = summarize_run(s.task, s.store)
        json_path, md_path = write_summary(s.task, s.store, summary)
        typer.echo(summary_hints(summary))
        typer.echo(f"wrote {json_path} and {md_path}")

    @app.command()
    def suggest(
        task_dir: Path = typer.Argument(Path("."), help="Task directory."),
        tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Run tag (default: the only one, or the checked-out one)."),
        count: int = typer.Option(4, "--max", "-n", min=1, help="Most configurations to write."),
    ) -> None:
        """Write next configurations to config/auto/ from the meta-analysis and the best constants."""
        from autoresearch.analysis.suggest import suggest as suggest_configs
        from autoresearch.api import status_of

        s = status_of(task_dir, tag)
        written = suggest_configs(s.task, s.store, max_configs=count)
        if not written:
            typer.echo("no suggestion: the editable files have no UPPERCASE constants to move, or every move was tried")
        for path, suggestion in written:
            changes = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in suggestion.changed.items())
            typer.echo(f"{path}: {changes}  ({suggestion.reason})")


# -- plot / report / consolidate / export (for people and other tools) -----------------

TAG_HELP = "Run tag (default: the only one, or the checked-out one)."


def _register_report_commands(app) -> None:
    @app.command()
    def plot(
        task_dir: Path = typer.Argument(Path("."), help="Task directory."),
        tag: Optional[str] = typer.Option(None, "--tag", "-t", help=TAG_HELP),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="progress PNG (default: progress.png in the task directory, where a run leaves it)."),
        curves: Optional[str] = typer.Option(None, "--curves", help="Iterations whose learning curves to plot, e.g. 0,12,31 (default: baseline and best)."),
    ) -> None:
        """Plot progress (keeps, discards, running best) and learning curves of chosen runs."""
        from autoresearch.analysis.plot import plot_curves, plot_progress
        from autoresearch.analysis.report import baseline_and_best
        from autoresearch.api import status_of

        chosen = _iterations(curves) if curves else None
        s = status_of(task_dir, tag)
        path = plot_progress(s.task, s.store, out or s.store.shown("progress.png"), s.records)
        typer.echo(f"wrote {path}")
        iterations = chosen if chosen is not None else baseline_and_best(s.records, s.store.ledger)
        curves_path = plot_curves(s.store, iterations, path.with_name("curves.png"), s.records) if iterations else None
        if curves_path:
            typer.echo(f"wrote {curves_path} (runs {', '.join(map(str, iterations))})")
        else:
            typer.echo("no learning curves: those runs left no metrics.jsonl or `epoch ...` lines in log.txt")

    @app.command()
    def report(
        task_dir: Path = typer.Argument(Path("."), help="Task directory."),
        tag: Optional[str] = typer.Option(None, "--tag", "-t", help=TAG_HELP),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default: report.html in the task directory, where a run leaves it)."),
    ) -> None:
        """Write a self-contained report.html: the night's story, plots, frontier, every experiment, cost."""
        from autoresearch.analysis.report import write_report
        from autoresearch.api import status_of

        s = status_of(task_dir, tag)
        path = write_report(s.task, s.store, out or s.store.shown("report.html"))
        typer.echo(f"wrote {path}  (open {path.resolve().as_uri()})")

    @app.command()
    def consolidate(
        dirs: list[Path] = typer.Argument(..., help="Folders holding experiment folders (result.json, result_*.json, metrics.jsonl, log.txt)."),
        metric: Optional[str] = typer.Option(None, "--metric", "-m", help="Metric to sort by (default: guessed, held-out first)."),
        direction: Optional[str] = typer.Option(None, "--direction", help="minimize | maximize (default: guessed from the name)."),
        out: Path = typer.Option(Path("RESULTS.md"), "--out", "-o", help="Markdown file to write."),
    ) -> None:
        """Consolidate experiment folders made by other tools into one RESULTS.md."""
        from autoresearch.analysis.consolidate import write_results

        if direction not in (None, "minimize", "maximize"):
            raise typer.BadParameter(f"{direction!r}: use minimize or maximize", param_hint="--direction")
        path, result = write_results(dirs, out, metric=metric, direction=direction)
        typer.echo(f"wrote {path}: {len(result.runs)} experiments in {len(result.groups)} groups, sorted by {result.metric} ({result.direction})")
        if result.best:
            typer.echo(f"best: {result.best.group}/{result.best.name} ({result.metric} = {result.best.metrics[result.metric]:g})")
        for note in result.merged:
            typer.echo(f"note: {note}")
        for warning in result.warnings:
            typer.echo(f"warning: {warning}")

    export = typer.Typer(no_args_is_help=True, help="Export a run to other tools.")

    @export.command("mlflow")
    def export_mlflow(
        task_dir: Path = typer.Argument(Path("."), help="Task directory."),
        tag: Optional[str] = typer.Option(None, "--tag", "-t", help=TAG_HELP),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="e.g. file:./mlruns, sqlite:///mlflow.db, http://host:5000 (default: MLflow's own)."),
        experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment name (default: autoresearch/<task>/<tag>)."),
    ) -> None:
        """Every experiment as an MLflow run: changed constants, metrics, status, log and diff."""
        from autoresearch.analysis.mlflow_export import export_mlflow as export_run
        from autoresearch.api import status_of

        s = status_of(task_dir, tag)
        result = export_run(s.task, s.store, tracking_uri=tracking_uri, experiment=experiment)
        skipped = f", {len(result.skipped)} already there" if result.skipped else ""
        typer.echo(f"exported {len(result.exported)} runs{skipped} to {result.tracking_uri}, experiment {result.experiment!r}")

    app.add_typer(export, name="export")


def _iterations(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give iteration numbers separated by commas, e.g. 0,12,31",
                                 param_hint="--curves") from None
