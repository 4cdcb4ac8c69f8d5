"""plot, report, consolidate and export mlflow as a user types them (in-process, for speed)."""

import json

import pytest
from typer.testing import CliRunner

from autoresearch.cli import app
from nights import build_night

runner = CliRunner()


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return build_night(tmp_path_factory.mktemp("cli") / "task")


def test_plot_and_report_default_to_the_task_directory(night):
    """Where a run leaves them: one place to look, whichever wrote them last."""
    task, store = night
    result = runner.invoke(app, ["plot", str(task.dir)])
    assert result.exit_code == 0, result.output
    assert (task.dir / "progress.png").is_file() and (task.dir / "curves.png").is_file()
    assert "runs 0, 7" in result.output
    result = runner.invoke(app, ["report", str(task.dir), "--tag", "night"])
    assert result.exit_code == 0, result.output
    assert (task.dir / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_plot_chosen_curves_and_a_bad_list(night, tmp_path):
    task, _ = night
    result = runner.invoke(app, ["plot", str(task.dir), "-o", str(tmp_path / "p.png"), "--curves", "1, 5"])
    assert result.exit_code == 0 and (tmp_path / "curves.png").is_file() and "runs 1, 5" in result.output
    result = runner.invoke(app, ["plot", str(task.dir), "--curves", "best"])
    assert result.exit_code == 2 and "give iteration numbers" in result.output and "wrote" not in result.output


def test_consolidate(tmp_path):
    for name, kl in (("a", 0.3), ("b", 0.2), ("c", 0.4)):
        d = tmp_path / "experiments" / "sweep_1" / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"test_kl": kl, "test_acc": 0.5}))
    out = tmp_path / "RESULTS.md"
    result = runner.invoke(app, ["consolidate", str(tmp_path / "experiments"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "sorted by test_kl (minimize)" in result.output and "best: experiments/sweep_1/b" in result.output
    assert "## Sweep `experiments/sweep_1` (3 runs)" in out.read_text()
    result = runner.invoke(app, ["consolidate", str(tmp_path / "experiments"), "--direction", "up"])
    assert result.exit_code == 2 and "use minimize or maximize" in result.output


def test_export_mlflow(night, tmp_path):
    pytest.importorskip("mlflow", reason="pip install 'autoresearch[mlflow]' to test the MLflow export")
    task, _ = night
    uri = (tmp_path / "mlruns").as_uri()
    result = runner.invoke(app, ["export", "mlflow", str(task.dir), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert f"exported 8 runs to {uri}, experiment 'autoresearch/task/night'" in result.output
