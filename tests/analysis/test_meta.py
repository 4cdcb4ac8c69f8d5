"""Per-run meta-analysis on synthetic curves: every figure, every flag, the files it writes."""

import json
import math

import pytest

from autoresearch.analysis.meta import analyze_curve, analyze_run, convergence, slope

EPOCHS = range(1, 21)


def overfitting_curve():
    # train loss keeps falling; val loss bottoms out at epoch 8 and climbs
    return [{"epoch": e, "train_loss": 2 * math.exp(-e / 5), "val_loss": 1 + 0.01 * (e - 8) ** 2,
             "train_acc": min(1.0, 0.5 + 0.03 * e), "val_acc": 0.8 - 0.002 * abs(e - 8), "seconds": 3.0 * e} for e in EPOCHS]


def still_improving_curve():
    return [{"epoch": e, "train_loss": 2 / e, "val_loss": 2.2 / e, "train_acc": 1 - 0.5 / e, "val_acc": 1 - 0.6 / e}
            for e in EPOCHS]


def diverging_curve():
    return [{"epoch": e, "train_loss": 2.3 - 0.1 * e if e < 8 else 1.5 * 1.6 ** (e - 8)} for e in EPOCHS]


def constant_predictor_curve():
    return [{"epoch": e, "train_loss": 1.2 - 0.01 * e, "val_loss": 1.25 - 0.005 * e, "train_acc": 0.35, "val_acc": 0.3484}
            for e in EPOCHS]


def test_slope_is_least_squares():
    assert slope([1, 2, 3], [1, 3, 5]) == pytest.approx(2.0)
    assert slope([1], [1]) is None and slope([2, 2], [1, 3]) is None


def test_convergence_window_and_still_improving():
    flat = convergence([1, 2, 3, 4, 5], [0.850, 0.851, 0.849, 0.850, 0.850], "maximize")
    assert not flat["still_improving"]
    rising = convergence([1, 2, 3, 4, 5, 6], [0.1, 0.5, 0.80, 0.81, 0.82, 0.83], "maximize", k=4)
    assert rising["k"] == 4 and rising["slope"] == pytest.approx(0.01) and rising["still_improving"]
    falling_loss = convergence([1, 2, 3], [0.9, 0.8, 0.7], "minimize")
    assert falling_loss["improvement_per_step"] == pytest.approx(0.1) and falling_loss["still_improving"]


def test_overfitting_curve():
    meta = analyze_curve(overfitting_curve(), {"val_acc": 0.776, "train_seconds": 60.0}, "val_acc")
    assert meta["flags"] == ["overfitting"]
    assert meta["overfit"]["overfitting"] and meta["overfit"]["turned_at"] == 8
    assert meta["overfit"]["val_loss_min"] == 1.0 and meta["overfit"]["val_loss_rise"] == pytest.approx(1.44)
    assert meta["generalization_gap"]["acc"] == pytest.approx(1.0 - 0.776)
    assert meta["generalization_gap"]["loss"] == pytest.approx(2.44 - 2 * math.exp(-4), abs=1e-6)
    assert meta["efficiency"] == {"value": 0.776, "epochs": 20, "seconds": 60.0, "per_epoch": 0.0388,
                                  "per_second": pytest.approx(0.012933)}
    assert [s["kind"] for s in meta["suggestions"]] == ["regularize"]
    assert "stop at epoch 8" in meta["suggestions"][0]["text"]


def test_still_improving_curve():
    meta = analyze_curve(still_improving_curve(), {}, "val_acc")
    assert meta["flags"] == ["still_improving"]
    assert meta["monitored"] == "val_acc" and meta["convergence"]["improvement_per_step"] > 0
    assert meta["overfit"]["forecast_turn"] is None  # flattening alone is no overfit warning
    assert [s["kind"] for s in meta["suggestions"]] == ["faster"]


def test_overfit_forecast_before_the_turn():
    # the gap to train widens while val still falls: val = train + 0.003 e^2 turns at e = 13.3
    curve = [{"epoch": e, "train_loss": 2.0 - 0.08 * e, "val_loss": 2.0 - 0.08 * e + 0.003 * e * e} for e in range(1, 12)]
    meta = analyze_curve(curve, {}, "val_loss", "minimize")
    assert "overfit_risk" in meta["flags"] and not meta["overfit"]["overfitting"]
    assert 12 < meta["overfit"]["forecast_turn"] < 16


def test_diverging_curve():
    meta = analyze_curve(diverging_curve(), {}, "val_acc")
    assert meta["stability"] == "diverging" and "diverging" in meta["flags"]
    assert [s["kind"] for s in meta["suggestions"]] == ["lower_lr"]


def test_unstable_curve():
    curve = [{"epoch": e, "train_loss": (1.0 if e % 3 else 1.6) - 0.01 * e} for e in EPOCHS]
    meta = analyze_curve(curve, {}, "train_loss", "minimize")
    assert meta["stability"] == "unstable" and [s["kind"] for s in meta["suggestions"]] == ["schedule"]


def test_constant_predictor():
    meta = analyze_curve(constant_predictor_curve(), {"val_acc": 0.3484}, "val_acc", majority_rate=0.3484,
                         others=[0.3484, 0.3484, 0.3484, 0.51])
    assert "degenerate" in meta["flags"]
    majority, frozen, same = meta["warnings"]
    assert "majority-class rate 0.3484" in majority
    assert frozen.startswith("val_acc frozen at 0.3484 for all 20 points")
    assert "identical in 3 other runs" in same
    assert "degenerate" in [s["kind"] for s in meta["suggestions"]]


def test_majority_rate_in_percent_and_from_the_footer():
    meta = analyze_curve([], {"top1": 34.84, "majority_rate": 0.3484}, "top1")
    assert meta["warnings"] and meta["points"] == 0


def test_robustness_and_converged():
    curve = [{"epoch": e, "train_loss": 0.3 + 0.5 * math.exp(-e), "val_loss": 0.32 + 0.5 * math.exp(-e),
              "train_acc": 0.9 - 0.3 * math.exp(-e), "val_acc": 0.895 - 0.3 * math.exp(-e)} for e in EPOCHS]
    meta = analyze_curve(curve, {"val_acc": 0.895, "test_acc": 0.88}, "val_acc")
    assert meta["robustness"] == pytest.approx(-0.015)
    assert meta["flags"] == ["converged"] and meta["suggestions"][0]["kind"] == "capacity"


def test_analyze_run_writes_meta_and_appends_to_the_result_json(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"val_acc": 0.776, "train_seconds": 60.0}))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in overfitting_curve()))
    meta = analyze_run(tmp_path, "val_acc")
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["val_acc"] == 0.776 and result["meta_analysis"]["flags"] == ["overfitting"]
    analyze_run(tmp_path, "val_acc")  # again: replaced, not nested
    assert "meta_analysis" not in json.loads((tmp_path / "metrics.json").read_text())["meta_analysis"]


def test_analyze_run_reads_epoch_lines_from_the_log(tmp_path):
    lines = [f"epoch {p['epoch']} | loss {p['train_loss']:.4f} | val_loss {p['val_loss']:.4f} | val_acc {p['val_acc']:.4f}"
             for p in overfitting_curve()]
    (tmp_path / "log.txt").write_text("starting\n" + "\n".join(lines) + "\n---\nval_acc: 0.776\n")
    meta = analyze_run(tmp_path, "val_acc")
    assert meta["points"] == 20 and meta["overfit"]["turned_at"] == 8  # `loss` is read as the training loss


def test_nan_in_the_curve_is_divergence(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({}))
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 2.0}\n{"epoch": 2, "train_loss": NaN}\n')
    assert analyze_run(tmp_path, "val_acc")["stability"] == "diverging"


def test_nothing_to_analyze(tmp_path):
    assert analyze_run(tmp_path, "val_acc") is None
    assert not (tmp_path / "meta.json").exists()
