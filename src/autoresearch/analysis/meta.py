"""Per-run meta-analysis of learning curves (seed 000): how the run trained, not only where it ended.

From the curve a run left (runs/NNNN/metrics.jsonl, else `epoch ... loss ... acc` lines
in its log.txt, read by `curves.load_curve`):

- convergence: slope of the monitored series over the last k points, and whether it was
  still improving when the budget ended;
- generalization gap: train - val accuracy, val - train loss (positive: better on train);
- overfit: val loss rising while train loss falls, with the epoch where it turned; and a
  forecast of that turn from the shrinking val-loss delta per epoch, before it happens;
- stability: diverging (non-finite or blowing-up loss) or unstable (repeated loss spikes);
- efficiency: the metric per epoch and per training second; robustness: test - val;
- degenerate model (seed 003): accuracy at the majority-class rate, frozen across epochs,
  or identical to many other runs.

Rule-based suggestions follow from these flags. The result goes to runs/NNNN/meta.json and
under "meta_analysis" in the run's metrics.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from autoresearch.curves import load_curve, x_key
from autoresearch.atomic import write_json
from autoresearch.decision import rounded

META_NAME = "meta.json"
K = 5  # points in the convergence window
OVERFIT_RISE = 0.02  # relative rise of val loss above its minimum that counts as a turn
SPIKE = 0.2  # a loss step up by this fraction is a spike
BIG_GAP = 0.1  # train - val accuracy
SAME_AS_OTHERS = 3  # identical primary in this many other runs
MAJORITY_TOLERANCE = 0.005
ALIASES = {
    "loss": "train_loss", "acc": "train_acc", "accuracy": "train_acc", "train_accuracy": "train_acc",
    "val_accuracy": "val_acc", "valid_acc": "val_acc", "validation_acc": "val_acc", "validation_accuracy": "val_acc",
    "valid_loss": "val_loss", "validation_loss": "val_loss", "test_accuracy": "test_acc",
    "time": "seconds", "elapsed": "seconds", "wall_seconds": "seconds",
}
_MINIMIZE_HINTS = ("loss", "err", "bpb", "ppl", "perplexity", "kl", "mse", "mae")


def normalize(curve: list[dict]) -> list[dict]:
    """Common names for common fields (`loss` is the training loss, `accuracy` train_acc)."""
    out = []
    for point in curve:
        p = {}
        for key, value in point.items():
            name = ALIASES.get(key, key)
            if name not in p or name == key:
                p[name] = value
        out.append(p)
    return out


def direction_of(name: str, primary: str, direction: str) -> str:
    if name == primary:
        return direction
    return "minimize" if any(h in name.lower() for h in _MINIMIZE_HINTS) else "maximize"


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def _series(curve: list[dict], key: str, xs: list[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, p[key]) for x, p in zip(xs, curve) if key in p]
    return [x for x, _ in pairs], [y for _, y in pairs]


def convergence(xs: list[float], ys: list[float], direction: str, k: int = K) -> dict:
    """Slope over the last k points, and whether that trend stands out of the wiggle."""
    wx, wy = xs[-k:], ys[-k:]
    s = slope(wx, wy)
    if s is None:
        return {"k": len(wx), "slope": None, "improvement_per_step": None, "still_improving": False}
    sign = 1.0 if direction == "maximize" else -1.0
    mean = sum(wy) / len(wy)
    resid = math.sqrt(sum((y - (mean + s * (x - sum(wx) / len(wx)))) ** 2 for x, y in zip(wx, wy)) / len(wy))
    trend = sign * s * (wx[-1] - wx[0])
    improving = trend > max(resid, 1e-3 * abs(mean), 1e-12)
    return {"k": len(wx), "slope": rounded(s), "improvement_per_step": rounded(sign * s), "still_improving": improving}


def overfit(curve: list[dict], xs: list[float]) -> dict:
    """Val loss rising from its minimum while train loss falls; else a forecast of the turn."""
    vx, vy = _series(curve, "val_loss", xs)
    out: dict[str, Any] = {"overfitting": False, "turned_at": None, "val_loss_min": None, "val_loss_rise": None,
                           "forecast_turn": None}
    if len(vy) < 3:
        return out
    i_min = min(range(len(vy)), key=lambda i: vy[i])
    out["val_loss_min"] = rounded(vy[i_min])
    rise = vy[-1] - vy[i_min]
    out["val_loss_rise"] = rounded(rise)
    tx, ty = _series(curve, "train_loss", xs)
    after = [(x, y) for x, y in zip(tx, ty) if x >= vx[i_min]]
    train_slope = slope([x for x, _ in after], [y for _, y in after]) if len(after) >= 2 else None
    val_slope = slope(vx[i_min:], vy[i_min:])
    if (len(vy) - 1 - i_min >= 2 and rise > OVERFIT_RISE * max(abs(vy[i_min]), 1e-12)
            and val_slope is not None and val_slope > 0 and (train_slope is None or train_slope < 0)):
        out["overfitting"], out["turned_at"] = True, vx[i_min]
        return out
    # Not turned yet. A val loss that merely flattens (any converging run) is no warning;
    # one whose gap to the train loss widens is on its way up. Where the fitted line of its
    # shrinking per-step deltas crosses zero is the forecast of the turn.
    deltas = [b - a for a, b in zip(vy[-K - 1:], vy[-K:])]
    dx = vx[-len(deltas):]
    if len(deltas) >= 3 and all(d < 0 for d in deltas) and _gap_widening(curve, xs):
        s = slope(dx, deltas)
        if s is not None and s > 0:
            turn = dx[-1] - deltas[-1] / s
            if turn <= vx[-1] + (vx[-1] - vx[0]):  # beyond twice the run is no forecast
                out["forecast_turn"] = round(turn, 1)
    return out


def _gap_widening(curve: list[dict], xs: list[float]) -> bool:
    """val_loss - train_loss grows over the last K points by more than a hair."""
    pairs = [(x, p["val_loss"] - p["train_loss"]) for x, p in zip(xs, curve) if "val_loss" in p and "train_loss" in p][-K:]
    s = slope([x for x, _ in pairs], [g for _, g in pairs]) if len(pairs) >= 3 else None
    if s is None:
        return False
    level = sum(abs(p["val_loss"]) for p in curve[-K:] if "val_loss" in p) / max(1, len(pairs))
    return s * (pairs[-1][0] - pairs[0][0]) > 1e-3 * level


def stability(curve: list[dict], xs: list[float], raw: list[dict]) -> str:
    """'diverging', 'unstable' or 'stable', judged on the training loss (else val loss)."""
    key = "train_loss" if any("train_loss" in p for p in curve) else "val_loss"
    if any(not math.isfinite(v) for p in raw for k, v in p.items() if "loss" in k and isinstance(v, float)):
        return "diverging"
    lx, ly = _series(curve, key, xs)
    if len(ly) < 3:
        return "stable"
    low = min(ly)
    s = slope(lx[-K:], ly[-K:])
    if ly[-1] > 2 * low + 1e-12 and s is not None and s > 0:
        return "diverging"
    spikes = sum(1 for a, b in zip(ly, ly[1:]) if b > a * (1 + SPIKE) and b - a > 1e-9)
    return "unstable" if spikes >= max(2, len(ly) // 5) else "stable"


def analyze_curve(curve: list[dict], footer: dict, primary: str, direction: str = "maximize", *, k: int = K,
                  majority_rate: float | None = None, others: Sequence[float] = (), raw: list[dict] | None = None) -> dict:
    """Every figure and flag for one run, from its curve and its footer metrics."""
    curve = normalize(curve)
    xname = x_key(curve)
    xs = [p[xname] for p in curve] if xname else [float(i + 1) for i in range(len(curve))]
    monitored = next((n for n in (primary, "val_acc", "val_loss", "test_acc", "train_loss", "train_acc")
                      if any(n in p for p in curve)), None)
    last = {key: value for p in curve for key, value in p.items()}
    meta: dict[str, Any] = {"points": len(curve), "x": xname or "index", "monitored": monitored,
                            "final": {key: rounded(v) for key, v in last.items()}}
    flags: list[str] = []
    if monitored:
        mx, my = _series(curve, monitored, xs)
        meta["convergence"] = convergence(mx, my, direction_of(monitored, primary, direction), k)
        if meta["convergence"]["still_improving"]:
            flags.append("still_improving")
    gap = {"acc": _diff(last, "train_acc", "val_acc"), "loss": _diff(last, "val_loss", "train_loss")}
    meta["generalization_gap"] = gap
    meta["overfit"] = overfit(curve, xs)
    if meta["overfit"]["overfitting"]:
        flags.append("overfitting")
    elif meta["overfit"]["forecast_turn"] is not None:
        flags.append("overfit_risk")
    if gap["acc"] is not None and gap["acc"] > BIG_GAP and "overfitting" not in flags:
        flags.append("large_gap")
    meta["stability"] = stability(curve, xs, raw if raw is not None else curve) if curve else "stable"
    if meta["stability"] != "stable":
        flags.append(meta["stability"])
    value = _number(footer.get(primary))
    if value is None and monitored:
        value = _number(last.get(monitored))
    epochs = last.get("epoch")
    seconds = _number(footer.get("train_seconds")) or last.get("seconds")
    meta["efficiency"] = {"value": rounded(value), "epochs": epochs, "seconds": rounded(seconds),
                          "per_epoch": rounded(value / epochs) if value is not None and epochs else None,
                          "per_second": rounded(value / seconds) if value is not None and seconds else None}
    both = {**last, **{k2: v for k2, v in footer.items() if _number(v) is not None}}
    meta["robustness"] = _diff(both, "test_acc", "val_acc")
    if meta["robustness"] is None:
        meta["robustness"] = _diff(both, "val_loss", "test_loss")  # oriented alike: positive is good
    warnings = degenerate(curve, footer, primary, value, majority_rate, others)
    meta["warnings"] = warnings
    if warnings:
        flags.append("degenerate")
    if ("still_improving" not in flags and not {"overfitting", "overfit_risk", "large_gap", "degenerate"} & set(flags)
            and meta["stability"] == "stable" and gap["acc"] is not None and gap["acc"] < 0.02):
        flags.append("converged")
    meta["flags"] = flags
    meta["suggestions"] = suggestions(meta)
    return meta


def degenerate(curve, footer, primary, value, majority_rate, others) -> list[str]:
    out = []
    majority = majority_rate if majority_rate is not None else _number(
        footer.get("majority_rate", footer.get("majority_class_rate")))
    acc_name = primary if "acc" in primary or "top" in primary else "val_acc"
    acc = value if acc_name == primary else _number(footer.get("val_acc", (curve[-1] if curve else {}).get("val_acc")))
    if majority is not None and acc is not None:
        scale = 100.0 if acc > 1.0 >= majority else 1.0  # one in percent, the other a fraction
        if abs(acc - majority * scale) <= MAJORITY_TOLERANCE * scale:
            out.append(f"{acc_name} = {acc:g} equals the majority-class rate {majority:g}: the model may predict one class")
    accs = [p["val_acc"] for p in curve if "val_acc" in p]
    if len(accs) >= 3 and max(accs) == min(accs):
        out.append(f"val_acc frozen at {accs[0]:g} for all {len(accs)} points: the predictions do not change")
    if value is not None:
        same = sum(1 for o in others if rounded(o) == rounded(value))
        if same >= SAME_AS_OTHERS:
            out.append(f"{primary} = {value:g}, identical in {same} other runs with different code: "
                       "the changes do not reach the predictions")
    return out


def suggestions(meta: dict) -> list[dict]:
    """What to try next, from the flags (seed 000's rules)."""
    flags, out = set(meta["flags"]), []
    of = meta["overfit"]
    if "overfitting" in flags:
        out.append({"kind": "regularize", "text": f"val loss rose from epoch {of['turned_at']:g} while train loss fell: "
                    f"more regularization (dropout, weight decay) or augmentation, or stop at epoch {of['turned_at']:g}"})
    elif "overfit_risk" in flags:
        out.append({"kind": "regularize", "text": f"val-loss improvement is shrinking, overfitting forecast around "
                    f"{meta['x']} {of['forecast_turn']:g}: add some regularization before it turns"})
    elif "large_gap" in flags:
        out.append({"kind": "regularize", "text": f"train - val accuracy gap is {meta['generalization_gap']['acc']:.3g}: "
                    "more regularization or augmentation"})
    if "still_improving" in flags:
        c = meta["convergence"]
        out.append({"kind": "faster", "text": f"{meta['monitored']} was still improving ({c['improvement_per_step']:+.3g} per "
                    f"{meta['x']}) when the budget ended: faster epochs (larger batch, smaller model) or a higher LR"})
    if "diverging" in flags:
        out.append({"kind": "lower_lr", "text": "the loss diverged: lower the LR, add warmup or a decay schedule, clip gradients"})
    elif "unstable" in flags:
        out.append({"kind": "schedule", "text": "the loss spikes repeatedly: lower the LR or add a decay schedule"})
    if "degenerate" in flags:
        out.append({"kind": "degenerate", "text": "the model looks degenerate: check labels and loss, try class weights "
                    "or balanced sampling before tuning further"})
    if "converged" in flags:
        out.append({"kind": "capacity", "text": "converged with almost no train-val gap: the model may be too small "
                    "(wider or deeper), or the LR schedule ends too early"})
    return out


def analyze_run(run_dir: str | Path, primary: str, direction: str = "maximize", *, k: int = K,
                majority_rate: float | None = None, others: Sequence[float] = (), write: bool = True) -> dict | None:
    """Analyze one run directory; write meta.json and add "meta_analysis" to metrics.json.

    Returns None (and writes nothing) when the run left neither a curve nor footer metrics.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    try:
        footer = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        footer = {}
    footer = {k2: v for k2, v in footer.items() if k2 != "meta_analysis"} if isinstance(footer, dict) else {}
    curve = load_curve(run_dir)
    raw = _raw_points(run_dir)
    if not curve and not footer:
        return None
    meta = analyze_curve(curve, footer, primary, direction, k=k, majority_rate=majority_rate, others=others, raw=raw)
    if write:
        write_json(run_dir / META_NAME, meta, durable=False)
        if metrics_path.is_file():
            write_json(metrics_path, {**footer, "meta_analysis": meta}, durable=False)
    return meta


def _raw_points(run_dir: Path) -> list[dict]:
    """metrics.jsonl as written, NaN and Infinity included: curves drop them, divergence needs them."""
    path = run_dir / "metrics.jsonl"
    points = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                p = json.loads(line)
            except ValueError:
                continue
            if isinstance(p, dict):
                points.append({k: float(v) for k, v in p.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return points


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _diff(values: dict, a: str, b: str) -> float | None:
    x, y = _number(values.get(a)), _number(values.get(b))
    return rounded(x - y) if x is not None and y is not None else None
