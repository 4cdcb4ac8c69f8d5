import sys

import pytest

from autoresearch.analysis.mlflow_export import _from_diff, changed_constants, export_mlflow
from autoresearch.errors import AutoresearchError
from nights import XSS, build_night


@pytest.fixture
def night(tmp_path):
    return build_night(tmp_path / "task")


def test_changed_constants_from_the_code_at_each_commit(night):
    task, store = night
    records = {r.iteration: r for r in store.ledger.records}
    run = lambda i: store.root / "runs" / f"{i:04d}"  # noqa: E731
    assert changed_constants(task, records[0], run(0)) == {"LR": 0.001, "WIDTH": 32, "ARCH": "mlp"}
    assert changed_constants(task, records[1], run(1)) == {"LR": 0.003}
    assert changed_constants(task, records[6], run(6)) == {"WIDTH": 64}


def test_changed_constants_fall_back_to_the_diff(night, tmp_path):
    task, store = night
    patch = tmp_path / "diff.patch"
    patch.write_text("--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,3 @@\n-LR = 0.001  # search: log(1e-4, 1)\n"
                     "+LR = 0.01  # search: log(1e-4, 1)\n WIDTH = 32\n-ARCH = 'mlp'\n+ARCH = 'cnn'\n+NEW: int = 3\n")
    assert _from_diff(patch) == {"LR": 0.01, "ARCH": "cnn", "NEW": 3}
    from dataclasses import replace

    lost = replace(store.ledger.records[1], commit="0" * 40)  # a commit git no longer has
    assert changed_constants(task, lost, store.root / "runs" / "0001") == {"LR": 0.003}


def test_export_to_a_local_file_store(night, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="pip install 'autoresearch[mlflow]' to test the MLflow export")
    from mlflow.tracking import MlflowClient

    task, store = night
    uri = (tmp_path / "mlruns").as_uri()
    result = export_mlflow(task, store, tracking_uri=uri)
    assert result.exported == list(range(8)) and result.experiment == "autoresearch/task/night"
    client = MlflowClient(tracking_uri=uri)
    runs = {int(r.data.tags["autoresearch.iteration"]): r for r in client.search_runs([result.experiment_id])}
    assert sorted(runs) == list(range(8))
    keep = runs[1]
    assert keep.data.params == {"LR": "0.003"}
    assert keep.data.metrics["val_acc"] == 0.78 and keep.data.metrics["autoresearch.cost_usd"] == 0.12
    assert keep.data.tags["autoresearch.status"] == "keep" and keep.data.tags["autoresearch.commit"] == keep.data.tags["mlflow.source.git.commit"]
    assert keep.info.status == "FINISHED" and runs[4].info.status == "FAILED"
    assert runs[4].data.tags["autoresearch.reason"] == "exit_code: 1"
    assert runs[7].data.tags["autoresearch.description"] == XSS
    assert {a.path for a in client.list_artifacts(keep.info.run_id)} >= {"log.txt", "diff.patch", "metrics.jsonl"}
    history = client.get_metric_history(keep.info.run_id, "curve.val_acc")
    assert [m.step for m in history] == list(range(1, 8))
    again = export_mlflow(task, store, tracking_uri=uri)
    assert again.exported == [] and again.skipped == list(range(8))
    assert mlflow is not None


def test_missing_mlflow_is_a_clear_error(night, monkeypatch):
    task, store = night
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(AutoresearchError, match=r"pip install 'autoresearch\[mlflow\]'"):
        export_mlflow(task, store, tracking_uri="file:///nowhere")
