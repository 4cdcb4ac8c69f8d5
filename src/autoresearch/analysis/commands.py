"""CLI commands of the analysis package, attached to the main app by `register`."""

from __future__ import annotations


def register(app) -> None:
    """Add the analysis commands (summarize, plot, report, ...) to the typer app."""
