import json

import pytest

from autoresearch.analysis.consolidate import consolidate, find_runs, guess_direction, write_results
from autoresearch.errors import AutoresearchError

# Seed 003's table, shortened: (test_kl, test_top1, test_top3, best val loss) per folder.
OVERNIGHT = {
    "combo_4_aggressive": (0.3260, 34.84, 97.91, 0.4496),
    "combo_2_all_reductions": (0.3365, 34.84, 97.91, 0.3802),
    "reduced_temperature": (0.3463, 34.84, 97.91, 0.3980),
    "combo_6_balanced": (0.3504, 34.84, 97.91, 0.3570),
    "combo_1_entropy_maxsup": (0.3962, 34.84, 97.91, 0.3718),
}
SWEEP = {"shallow": (0.3530, 34.84, 97.91), "higher_lr": (0.3373, 34.84, 97.91),
         "baseline": (0.3366, 34.84, 97.91), "lower_lr": (0.3456, 34.84, 97.91)}


@pytest.fixture
def experiments(tmp_path):
    root = tmp_path / "experiments"
    for name, (kl, top1, top3, val) in OVERNIGHT.items():
        d = root / "overnight_runs" / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"test": {"kl": kl, "top1": top1, "top3": top3},
                                                   "best_val_loss": val, "epochs": 30, "config": {"name": name}}))
    for name, (kl, top1, top3) in SWEEP.items():
        d = root / "runs" / "sweep_1768899422" / name
        d.mkdir(parents=True)
        # The split named by the file only (seed 003's sweeps): read as test.kl, beside result.json's test.kl.
        (d / "result_test.json").write_text(json.dumps({"kl": kl, "top1": top1, "test.top3": top3}))
        (d / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "train_loss": 1 / e, "val_loss": 0.4 + abs(e - 15) / 100}) + "\n" for e in range(1, 21)))
    # Early pipeline versions: a log with epoch lines and a footer, no JSON at all.
    for name, kl, top1 in (("run_1768745543", 14.66, 4.35), ("run_1768749157", 13.99, 10.87)):
        d = root / "runs" / name
        d.mkdir(parents=True)
        (d / "log.txt").write_text("".join(f"epoch {e} | loss {20 - e:.2f} | val_loss {16 + e / 10:.2f}\n" for e in range(1, 40))
                                   + f"---\ntest.kl: {kl}\ntest.top1: {top1}\ntest.top3: 58.70\n")
    (root / "runs" / "broken").mkdir()
    (root / "runs" / "broken" / "log.txt").write_text("Traceback: CUDA out of memory\n")
    (root / "notes").mkdir()
    (root / "notes" / "README.md").write_text("not an experiment")
    return root


def test_finds_every_experiment_folder_and_reads_each_kind_of_file(experiments):
    runs, skipped = find_runs([experiments])
    by_name = {r.name: r for r in runs}
    assert len(runs) == 11 and [p.name for p in skipped] == ["broken"]
    assert by_name["combo_4_aggressive"].metrics["test.kl"] == 0.326  # nested JSON flattened
    assert by_name["combo_4_aggressive"].group == "experiments/overnight_runs"
    shallow = by_name["shallow"]
    assert shallow.group == "experiments/runs/sweep_1768899422"
    assert shallow.metrics["epochs"] == 20 and shallow.metrics["best_val_loss"] == pytest.approx(0.4)
    assert (shallow.metrics["test.kl"], shallow.metrics["test.top1"], shallow.metrics["test.top3"]) == (0.353, 34.84, 97.91)
    assert shallow.sources == ("result_test.json", "metrics.jsonl")
    old = by_name["run_1768745543"]
    assert old.metrics["test.kl"] == 14.66 and old.metrics["epochs"] == 39 and old.sources == ("log.txt",)


def test_seed_003_best_balanced_outliers_and_identical_predictions(experiments):
    c = consolidate([experiments])
    assert (c.metric, c.direction) == ("test.kl", "minimize")
    assert c.best.name == "combo_4_aggressive"
    assert list(c.groups) == ["experiments/overnight_runs", "experiments/runs", "experiments/runs/sweep_1768899422"]
    assert [r.name for r in c.groups["experiments/runs/sweep_1768899422"]] == ["baseline", "higher_lr", "lower_lr", "shallow"]
    assert {r.name for r, _ in c.outliers} == {"run_1768745543", "run_1768749157"}
    assert len(c.warnings) == 2 and "`test.top1` is exactly 34.84 in 9 of 11 runs" in c.warnings[0]
    run, ranks, n = c.balanced
    # Worst val loss keeps the most aggressive combo from being the balanced pick (seed 003's reading).
    assert run.name == "combo_2_all_reductions" and set(ranks) == {"test.kl", "best_val_loss", "test.top1", "test.top3"}


def test_results_md_has_a_table_per_group_and_the_callouts(experiments, tmp_path):
    out, c = write_results([experiments], tmp_path / "RESULTS.md")
    text = out.read_text()
    assert "Sorted by **test.kl** (lower is better; guessed from the name" in text
    assert "## Sweep `experiments/runs/sweep_1768899422` (4 runs)" in text
    assert "| **combo_4_aggressive** | 0.326 |" in text
    assert "**Most balanced**: `combo_2_all_reductions`" in text
    assert "**Outliers** on test.kl" in text and "`run_1768745543` (14.66" in text
    assert "identical predictions" in text.lower()
    assert text.index("combo_4_aggressive") < text.index("combo_2_all_reductions") < text.index("combo_1_entropy")


def test_metric_and_direction_can_be_chosen(experiments):
    c = consolidate([experiments], metric="TEST.TOP3", direction="maximize")
    assert c.metric == "test.top3" and c.why_direction == "as given"
    assert c.best.metrics["test.top3"] == 97.91
    with pytest.raises(AutoresearchError, match="'f1' is in none of the 11 runs; metrics found: best_loss, best_train_loss"):
        consolidate([experiments], metric="f1")


def test_empty_or_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(AutoresearchError, match="no experiment folder with numbers"):
        consolidate([tmp_path])
    with pytest.raises(AutoresearchError, match="not a directory"):
        consolidate([tmp_path / "nope"])


@pytest.mark.parametrize("name, direction", [("val_loss", "minimize"), ("test_kl", "minimize"), ("Top-1", "maximize"),
                                             ("val_bpb", "minimize"), ("mc_acc", "maximize"), ("epochs", None)])
def test_guess_direction(name, direction):
    assert guess_direction(name) == direction


def test_balance_is_judged_on_held_out_quality_not_on_training_fit_or_time(tmp_path):
    runs = {"best_acc": (0.90, 0.40, 0.2, 300), "steady": (0.88, 0.25, 0.1, 200), "a_fast_overfit": (0.80, 0.30, 0.01, 10)}
    for name, (acc, val_loss, train_loss, seconds) in runs.items():
        d = tmp_path / "sweep" / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"val_acc": acc, "val_loss": val_loss, "train_loss": train_loss,
                                                   "train_seconds": seconds}))
    c = consolidate([tmp_path / "sweep"])
    run, ranks, _ = c.balanced
    # Counting train_loss and train_seconds, the fast overfitting run would tie and win on its name.
    assert run.name == "steady" and ranks == {"val_acc": 2, "val_loss": 1}


# -- one metric, several schemas (issue 12, part 6) ---------------------------------------------
def mixed(root):
    """Three folders write `{"metrics": {"test": {"kl": ...}}}`, two write flat `test_kl` (one of
    them the best run of all), one writes `Test/KL` with `validation_accuracy`."""
    nested = {"n1": (0.40, 0.70), "n2": (0.35, 0.72), "n3": (0.45, 0.69)}
    for name, (kl, acc) in nested.items():
        d = root / "new" / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"metrics": {"test": {"kl": kl}, "val": {"acc": acc}}}))
    for name, (kl, acc) in {"f1": (0.30, 0.75), "f2": (0.50, 0.60)}.items():
        d = root / "old" / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"test_kl": kl, "val_acc": acc}))
    d = root / "other" / "s1"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({"Test/KL": 0.38, "validation_accuracy": 0.71}))
    return root


def test_the_same_metric_is_one_column_across_schemas(tmp_path):
    c = consolidate([mixed(tmp_path / "all")])
    assert c.metric == "test.kl" and c.direction == "minimize"
    assert len(c.runs) == 6 and all(c.metric in r.metrics for r in c.runs)  # no folder's value dropped
    assert c.best.name == "f1" and c.best.metrics["test.kl"] == 0.30  # the best of all, a flat folder
    assert {r.name: r.metrics["val.acc"] for r in c.runs} == {
        "n1": 0.70, "n2": 0.72, "n3": 0.69, "f1": 0.75, "f2": 0.60, "s1": 0.71}
    assert c.merged == ["merged `Test/KL` (1 run), `metrics.test.kl` (3 runs), `test_kl` (2 runs) as `test.kl`",
                        "merged `metrics.val.acc` (3 runs), `val_acc` (2 runs), `validation_accuracy` (1 run) as `val.acc`"]


def test_results_md_and_the_cli_say_when_names_were_merged(tmp_path):
    from typer.testing import CliRunner

    from autoresearch.cli import app

    root = mixed(tmp_path / "all")
    out, _ = write_results([root], tmp_path / "RESULTS.md")
    text = out.read_text()
    assert "Metric names aligned across schemas: merged `Test/KL` (1 run)" in text
    assert "| **f1** | 0.3 |" in text and "–" not in text.split("## Sources")[0].split("## `all/new`")[1]
    result = CliRunner().invoke(app, ["consolidate", str(root), "-o", str(tmp_path / "R.md")])
    assert result.exit_code == 0, result.output
    assert "best: all/old/f1 (test.kl = 0.3)" in result.output
    assert "note: merged `Test/KL` (1 run), `metrics.test.kl` (3 runs), `test_kl` (2 runs) as `test.kl`" in result.output


def test_two_spellings_with_different_values_in_one_folder_are_both_kept(tmp_path):
    for name, data in {"a": {"test_kl": 0.3, "test": {"kl": 0.9}}, "b": {"test_kl": 0.4}}.items():
        d = tmp_path / "s" / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(data))
    c = consolidate([tmp_path / "s"])
    a = next(r for r in c.runs if r.name == "a")
    assert sorted(a.metrics.values()) == [0.3, 0.9] and len(a.metrics) == 2


@pytest.mark.parametrize("name, metric", [
    ("test_kl", "test.kl"), ("metrics.test.kl", "test.kl"), ("Test/KL", "test.kl"), ("results.final.test-kl", "test.kl"),
    ("val_accuracy", "val.acc"), ("validation.acc", "val.acc"), ("top_1", "top1"), ("Top-1", "top1"), ("metrics", "metrics"),
    ("best_val_loss", "best.val.loss"), ("train_loss", "train.loss"), ("test.top3", "test.top3")])
def test_canonical_names(name, metric):
    from autoresearch.analysis.consolidate import canonical

    assert canonical(name) == metric
