import json
import subprocess
import sys

import pytest

from autoresearch.analysis.eliminate import eliminate, scores_table
from autoresearch.api import run_loop
from autoresearch.config import load_task
from autoresearch.imports import WRITE_BACK_KEY, import_runs
from autoresearch.ledger import Ledger
from autoresearch.records import Status
from autoresearch.store import RunStore

from seed000 import CONFIG_YAML, TASK_CONFIG, TRAIN, write_history


@pytest.fixture
def seed_task(make_task, tmp_path):
    task_dir = make_task(config=TASK_CONFIG, extra={"config.yaml": CONFIG_YAML, "train.py": TRAIN})
    history = tmp_path / "earlier"
    folders = write_history(history)
    return load_task(task_dir), history / "runs", folders


def test_import_records_every_run_as_imported_with_mapping_report(seed_task):
    task, runs, folders = seed_task
    report = import_runs(task, "night", [runs])
    assert len(report.recorded) == 20
    records = Ledger(RunStore(task.dir, "night").ledger.path).records
    assert {r.status for r in records} == {Status.IMPORTED}
    assert sorted(r.iteration for r in records) == list(range(-20, 0))
    assert all(r.commit == "" and r.verdict.imported for r in records)
    assert {r.agent_data["imported"]["folder"] for r in records} == {str(f) for f in folders}
    first = next(r for r in records if r.agent_data["imported"]["folder"].endswith("m0_adam_bs32_r0"))
    assert first.agent_data["params"] == {"model": "m0", "optimizer": "adam", "lr": 0.003, "batch_size": 32}
    assert report.mapping == {"MODEL": "model", "OPTIMIZER": "optimizer", "LR": "lr", "BATCH_SIZE": "batch_size"}
    assert report.unmapped["AUGMENT_MODE"] == 20  # the seed's AUGMENT_MODE has no knob in this task
    assert any("AUGMENT_MODE (20 runs)" in line for line in report.lines())
    # Seed 000's scores for every run: efficiency = test_acc / epochs_trained, robustness = test - val.
    scores = first.agent_data["meta"]["scores"]
    assert scores == {"efficiency": pytest.approx(0.066), "robustness": pytest.approx(-0.01)}
    assert len(scores_table(records)) == 20
    # Importing again records nothing twice.
    again = import_runs(task, "night", [runs])
    assert again.recorded == [] and len(again.already) == 20
    assert len(Ledger(RunStore(task.dir, "night").ledger.path).records) == 20


def test_overfitting_and_unstable_families_are_eliminated_with_evidence(seed_task):
    task, runs, _ = seed_task
    import_runs(task, "night", [runs])
    records = RunStore(task.dir, "night").ledger.records
    found = {(e.knob, e.value): e for e in eliminate(records, "test_acc", "maximize")}
    models = {v for k, v in found if k == "model"}
    assert models == {"m0", "m1"}  # the three close families stay
    assert "overfitting" in found[("model", "m0")].reasons
    assert "unstable" in found[("model", "m1")].reasons
    evidence = " ".join(found[("model", "m0")].evidence)
    assert "gap 0.3" in evidence  # ~97 % train vs ~66 % test
    assert "4 of 4 runs" in " ".join(found[("model", "m1")].evidence)
    # The best's own value is never eliminated, whatever the evidence.
    kept = eliminate(records, "test_acc", "maximize", best_params={"model": "m0"})
    assert ("model", "m0") not in {(e.knob, e.value) for e in kept}


def test_new_evidence_lifts_an_elimination(seed_task):
    task, runs, _ = seed_task
    import_runs(task, "night", [runs])
    records = list(RunStore(task.dir, "night").ledger.records)
    import dataclasses
    good = [dataclasses.replace(records[0], iteration=i, status=Status.DISCARD, reason="test_acc worse",
                                metrics={"test_acc": 0.79, "train_acc": 0.80, "val_acc": 0.785},
                                agent_data={"params": {"model": "m0"}}) for i in range(1, 9)]
    found = {(e.knob, e.value) for e in eliminate(records + good, "test_acc", "maximize")}
    assert ("model", "m0") not in found


@pytest.mark.slow
def test_a_night_after_an_import_begins_informed(seed_task):
    task, runs, _ = seed_task
    import_runs(task, "night", [runs])
    records = run_loop(task.dir, "night", iterations=6, agent="tuner", say=lambda _: None)
    ledger = RunStore(task.dir, "night").ledger.records
    assert [r.iteration for r in ledger if r.status is not Status.IMPORTED][0] == 0  # the baseline is still 0
    proposed = [r for r in ledger if r.iteration > 0]
    assert len(proposed) == 6
    assert all(r.agent_data["params"]["model"] not in ("m0", "m1") for r in proposed)
    assert any("is not proposed" in r.explanation for r in proposed)
    # The best imported run (m4, 0.78) beat the baseline: its configuration is run here first.
    assert proposed[0].agent_data["params"]["model"] == "m4" and "imported run beat the best" in proposed[0].explanation
    # The best is a real commit; results.tsv holds every row and passes the resume check.
    best = RunStore(task.dir, "night").ledger.best()
    assert best.commit and best.status is Status.KEEP
    tsv = (task.dir / "results.tsv").read_text().splitlines()
    assert len(tsv) == 1 + 20 + 7 and sum("\timported\t" in line for line in tsv) == 20
    again = run_loop(task.dir, "night", iterations=1, agent="tuner", say=lambda _: None)
    assert len(again) >= 1
    assert not list(RunStore(task.dir, "night").root.glob("results.tsv.bak-*"))
    del records


def test_write_back_only_with_the_flag_and_keeps_the_original(seed_task):
    task, runs, folders = seed_task
    result = next(folders[0].glob("result_*.json"))
    original = result.read_bytes()
    import_runs(task, "a", [runs])
    assert result.read_bytes() == original and not list(folders[0].glob("*.orig"))
    import_runs(task, "b", [runs], write_back=True)
    data = json.loads(result.read_text())
    assert data["test_acc"] == json.loads(original)["test_acc"]
    assert "scores" in data[WRITE_BACK_KEY] and "flags" in data[WRITE_BACK_KEY]
    assert result.with_name(result.name + ".orig").read_bytes() == original


def test_import_cli_reports_and_a_bad_folder_is_a_clear_error(seed_task, tmp_path):
    task, runs, _ = seed_task
    out = subprocess.run([sys.executable, "-m", "autoresearch", "import", str(runs), "--tag", "n1",
                          "--task", str(task.dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "imported 20 runs" in out.stdout and "did not map" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "autoresearch", "import", str(tmp_path / "nowhere"), "--tag", "n2", "--task", str(task.dir)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a directory" in bad.stderr and "Traceback" not in bad.stderr


def test_status_prompt_summary_and_report_show_the_imported_runs(seed_task):
    from autoresearch.analysis.report import render_report
    from autoresearch.analysis.summary import summarize
    from autoresearch.api import status_of
    from autoresearch.prompt import render_prompt

    task, runs, _ = seed_task
    import_runs(task, "night", [runs])
    store = RunStore(task.dir, "night")
    totals = status_of(task.dir, "night").totals()
    assert totals["imported"] == 20 and totals["keeps"] == 0 and totals["best"] is None
    out = subprocess.run([sys.executable, "-m", "autoresearch", "status", str(task.dir), "--tag", "night"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "20 imported" in out.stdout
    summary = summarize(task, store)
    assert summary["counts"]["imported"] == 20 and summary["frontier"] == []
    assert summary["imported"]["best"]["value"] == 0.78
    assert {(e["knob"], e["value"]) for e in summary["eliminated"]} == {("model", "m0"), ("model", "m1")}
    assert any(h["kind"] == "eliminated" and "stop trying model = m0" in h["text"] for h in summary["hints"])
    assert len(summary["scores"]) == 20
    html = render_report(task, store)
    assert html.count(">imported<") >= 20 and "<h3>Eliminated</h3>" in html and "Choices to stop trying" in html
    records = store.ledger.records
    from autoresearch.records import Experiment
    base = Experiment(0, "abc1234", "abc1234", Status.KEEP, "baseline", reason="baseline", metrics={"test_acc": 0.75})
    prompt = render_prompt(task, "night", 1, [*records, base], base, runs_dir=store.root / "runs")
    assert "imported" in prompt and "m4_adam_bs32_r2" in prompt


def test_values_outside_a_choice_space_and_a_run_in_flight_are_refused(seed_task, tmp_path):
    task, runs, folders = seed_task
    (folders[0] / "config.yaml").write_text("MODEL: m9\nLR: 0.003\nBATCH_SIZE: many\n")
    report = import_runs(task, "night", [runs])
    record = next(r for r in report.recorded if r.agent_data["imported"]["folder"] == str(folders[0]))
    assert record.agent_data["params"] == {"lr": 0.003}  # m9 is no choice of model; "many" is no number
    assert "not one of the choices of model" in report.mismatched["MODEL"]
    assert "does not fit batch_size, a int (now 32)" in report.mismatched["BATCH_SIZE"]
    store = RunStore(task.dir, "other")
    store.root.mkdir(parents=True)
    store.pending_path.write_text('{"iteration": 3}')
    from autoresearch.errors import AutoresearchError
    with pytest.raises(AutoresearchError, match="in flight"):
        import_runs(task, "other", [runs])
    assert not store.ledger.path.exists()
