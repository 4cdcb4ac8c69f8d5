"""`autoresearch import DIR... --tag TAG`: attached to the main app by `register` (imports.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def register(app) -> None:
    @app.command("import")
    def import_(
        dirs: List[Path] = typer.Argument(..., help="Folders of earlier runs (result*.json, metrics.jsonl, log.txt, a config file)."),
        tag: str = typer.Option(..., "--tag", "-t", help="Run tag whose ledger records them (a new tag starts here)."),
        task_dir: Path = typer.Option(Path("."), "--task", help="Task directory holding autoresearch.toml."),
        write_back: bool = typer.Option(False, "--write-back", help="Add the meta-analysis to each result_*.json (original kept as *.orig)."),
    ) -> None:
        """Record experiment folders this tool did not make as imported runs of a tag."""
        from autoresearch.config import load_task
        from autoresearch.imports import import_runs

        task = load_task(task_dir)
        report = import_runs(task, tag, dirs, write_back=write_back, say=typer.echo)
        for line in report.lines():
            typer.echo(line)
