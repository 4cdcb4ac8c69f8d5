"""Huge finite metrics (a kept 1.7e308) are recorded, plotted and reported without failing (issue 12)."""

from __future__ import annotations

import pytest

from autoresearch.analysis.plot import plot_progress, value_scale
from autoresearch.analysis.report import write_report
from autoresearch.config import load_task
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

from conftest import tiny_config


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_kept_1_7e308_plots_and_reports(tmp_path, direction):
    (tmp_path / "train.py").write_text("X = 1.0\n")
    (tmp_path / "prepare.py").write_text("DATA = 'fixed'\n")
    (tmp_path / "autoresearch.toml").write_text(tiny_config(direction=direction))
    task, store = load_task(tmp_path), RunStore(tmp_path, "t")
    store.create()
    rows = [(Status.KEEP, 1.0), (Status.KEEP, 1.7e308 if direction == "maximize" else -1.7e308),
            (Status.DISCARD, 2.0), (Status.DISCARD, -1.7e308 if direction == "maximize" else 1.7e308)]
    for i, (status, value) in enumerate(rows):
        store.ledger.append(Experiment(iteration=i, commit=f"c{i}", parent="c0", status=status, description=f"d{i}",
                                       metrics={"score": value}))
    assert plot_progress(task, store, tmp_path / "progress.png").stat().st_size > 1000
    assert "1.7e+308" in write_report(task, store, tmp_path / "report.html").read_text()


def test_values_are_scaled_only_near_the_float_limit():
    assert value_scale([1.0, 3e9, -2.0]) == 1.0 and value_scale([]) == 1.0
    assert value_scale([1.7e308, 1.0]) == 1e308 and value_scale([-3e200]) == 1e200
