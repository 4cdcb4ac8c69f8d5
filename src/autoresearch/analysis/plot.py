"""The progress plot (every experiment, keeps labelled, running best) and learning-curve plots.

Both write PNGs with matplotlib's Agg backend: no display, no GUI toolkit, safe in a loop
that runs overnight on a headless box.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from autoresearch.curves import load_curve, series_names, x_key
from autoresearch.records import Experiment, Status

LABEL_CHARS = 34
GREY, GREEN, DARK_GREEN, RED = "#9aa0a6", "#1e9e4a", "#0b6b2e", "#c0392b"


@dataclass(frozen=True)
class YRange:
    """The zoomed y window and the points that fall outside it on the bad side."""

    low: float
    high: float
    clipped: tuple[tuple[int, float], ...]  # (iteration, value) of points drawn at the edge


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # before pyplot: never try to open a window
    import matplotlib.pyplot as plt

    return plt


def primary_value(record: Experiment, primary: str) -> float | None:
    value = record.metrics.get(primary)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def zoom(points: Sequence[tuple[int, float, bool]], maximize: bool) -> YRange:
    """A y window from a bit on the bad side of the baseline to a bit past the best.

    `points` are (iteration, value, kept). The window is sized by the baseline-to-best span, so
    one diverged run cannot squash the frontier into a flat line; discards worse than the
    window are clipped to its edge and reported, never silently dropped.
    """
    values = [v for _, v, _ in points]
    keeps = [v for _, v, kept in points if kept] or values[:1]
    sign = 1.0 if maximize else -1.0  # work in "higher is better" units
    baseline, best = sign * keeps[0], max(sign * v for v in keeps)
    # How far each point falls short of the baseline (0 when it does not).
    shortfall = sorted(max(0.0, baseline - sign * v) for v in values)
    span = best - baseline
    below = 0.25 * span  # a climb: a little room under the baseline is enough
    if span <= 0:  # nothing beat the baseline: size the window by the discards themselves
        worse = [d for d in shortfall if d > 0]
        span = worse[len(worse) // 2] if worse else max(abs(baseline) * 0.01, 1e-9)
        below = span
    # Show the bulk of the points (75th percentile of the shortfall), but never more than 3 spans.
    typical = shortfall[int(0.75 * (len(shortfall) - 1))]
    bad_edge = baseline - min(max(below, typical), 3 * span)
    good_edge = max(sign * v for v in values)
    pad = 0.08 * (good_edge - bad_edge)
    # Extra room on the good side: the keeps' labels sit above (maximize) their points.
    low, high = bad_edge - pad, good_edge + 4 * pad
    clipped = tuple((i, v) for i, v, _ in points if sign * v < low)
    if not maximize:
        low, high = -high, -low
    return YRange(low, high, clipped)


LOG_SPAN = 10.0  # positive values spanning this factor or more are plotted on a log scale


def wants_log(values: Sequence[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_SPAN


def physical(window: YRange, values: Sequence[float]) -> YRange:
    """No axis past a bound every value respects: below 0 for losses and errors, above 1 for rates."""
    low, high = window.low, window.high
    if values and min(values) >= 0:
        low = max(low, 0.0) if low <= 0 else low
    if values and min(values) >= 0 and max(values) <= 1:
        high = min(high, 1.0)
    return YRange(low, high, window.clipped)


def label_keeps(kept: Sequence[tuple[int, float]], maximize: bool, min_gap: float) -> list[tuple[int, float]]:
    """The keeps worth a label: baseline and best always, then the biggest gains that are at
    least `min_gap` experiments from every label already placed (dense keeps would overprint)."""
    if not kept:
        return []
    sign = 1.0 if maximize else -1.0
    gains = [(sign * (v - kept[n - 1][1]) if n else math.inf, i, v) for n, (i, v) in enumerate(kept)]
    order = [gains[0], gains[-1]] + sorted(gains[1:-1], key=lambda g: -g[0])
    chosen: list[tuple[int, float]] = []
    for _, i, v in order:
        if all(abs(i - j) >= min_gap for j, _ in chosen) or not chosen:
            chosen.append((i, v))
    return sorted(set(chosen))


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


HUGE = 1e100  # beyond this, spans and paddings of the values can overflow to inf


def value_scale(values: Sequence[float]) -> float:
    """1.0, or the power of ten to divide values by when they are near the float limit (1.7e308)."""
    largest = max((abs(v) for v in values), default=0.0)
    return 10.0 ** math.floor(math.log10(largest)) if largest > HUGE else 1.0


def plot_progress(task, store, path: str | Path, records: Sequence[Experiment] | None = None) -> Path:
    """Write the progress plot of a run to `path` (PNG) and return the path."""
    plt = _pyplot()
    primary, direction = task.metrics.primary, task.metrics.direction
    maximize = direction == "maximize"
    records = list(store.ledger.records if records is None else records)
    points = [(r.iteration, v, r.status is Status.KEEP) for r in records
              if r.status is not Status.CRASH and (v := primary_value(r, primary)) is not None]
    crashes = sum(1 for r in records if r.status is Status.CRASH)
    scale = value_scale([v for _, v, _ in points])
    points = [(i, v / scale, k) for i, v, k in points]  # huge finite values: the axis arithmetic stays finite

    fig, ax = plt.subplots(figsize=(12, 6), dpi=110)
    kept = [(i, v) for i, v, k in points if k]
    title = f"{primary} ({direction}): {len(records)} experiments, {len(kept)} kept"
    ax.set_title(title + (f", {crashes} crashed (not shown)" if crashes else ""), fontsize=12)
    ax.set_xlabel("experiment #")
    ax.set_ylabel(f"{primary} ({'higher' if maximize else 'lower'} is better)"
                  + (f", in units of {scale:.0e}" if scale != 1.0 else ""))
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    if not points:
        ax.text(0.5, 0.5, "no finished experiment with a numeric " + primary, ha="center", va="center",
                transform=ax.transAxes, color=GREY)
        return _save(fig, path)

    window = zoom(points, maximize)
    values = [v for _, v, _ in points]
    log = wants_log(values)
    if log:  # a bad baseline next to late gains: only a log scale shows both
        window = YRange(min(values) / 1.4, max(values) * 1.4, ())
        ax.set_yscale("log")
    window = physical(window, values)
    clipped = {i for i, _ in window.clipped}
    shown = [(i, v) for i, v, k in points if not k and i not in clipped]
    ax.scatter([i for i, _ in shown], [v for _, v in shown], s=14, color=GREY, alpha=0.7,
               label="discard", zorder=2)
    if window.clipped:
        # Drawn just inside the bad edge, with the true value beside it.
        inset = 0.015 * (window.high - window.low)
        edge = window.low + inset if maximize else window.high - inset
        ax.scatter([i for i, _ in window.clipped], [edge] * len(window.clipped), s=30, color=GREY,
                   marker="v" if maximize else "^", zorder=2,
                   label=f"discard off the scale ({len(window.clipped)})")
        for i, v in window.clipped:
            ax.annotate(f"{v * scale:.4g}", (i, edge), xytext=(5, 0), textcoords="offset points", fontsize=7,
                        color=GREY, va="center")
    ax.scatter([i for i, _ in kept], [v for _, v in kept], s=46, color=GREEN, edgecolor=DARK_GREEN,
               label="keep", zorder=4)
    last = max(i for i, _, _ in points)
    steps_x = [i for i, _ in kept] + [last]
    steps_y = [v for _, v in kept] + [kept[-1][1]] if kept else []
    if kept:
        ax.step(steps_x, steps_y, where="post", color=DARK_GREEN, linewidth=1.6, alpha=0.8,
                label="running best", zorder=3)
    by_iteration = {r.iteration: r for r in records}
    first = min(i for i, _, _ in points)
    width = last - first + 1
    for i, v in label_keeps(kept, maximize, min_gap=0.03 * width):
        # Up and to the left of the point on the good side (down-left when minimizing): the
        # region beyond the earlier running best, where no discard can sit. Slanted against
        # the rising frontier, labels of neighbouring keeps stay apart instead of overlapping.
        ax.annotate(shorten(by_iteration[i].description), (i, v), xytext=(-3, 4 if maximize else -4),
                    textcoords="offset points", fontsize=7.5, color=DARK_GREEN, rotation=-30 if maximize else 30,
                    rotation_mode="anchor", ha="right", va="bottom" if maximize else "top", zorder=5, clip_on=True)
    ax.set_ylim(window.low, window.high)
    ax.set_xlim(first - max(2.0, 0.14 * width), last + max(1.0, 0.03 * width))  # room for the first labels
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # Ticks only where experiments are: none in the room left for the first labels.
    ax.set_xticks([t for t in MaxNLocator(integer=True).tick_values(first, last) if first <= t <= last])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0f}"))
    if log:
        from matplotlib.ticker import LogLocator

        ax.set_ylabel(ax.get_ylabel() + ", log scale")
        plain = FuncFormatter(lambda y, _: f"{y:.3g}")  # 0.2, not 2 x 10^-1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(plain)
    ax.legend(loc="lower right" if maximize else "upper right", fontsize=8, framealpha=0.9)
    return _save(fig, path)


def plot_curves(store, iterations: Sequence[int], path: str | Path, records=None) -> Path | None:
    """Learning curves of the chosen runs, one panel per quantity; None when no run has a curve."""
    plt = _pyplot()
    by_iteration = {r.iteration: r for r in (store.ledger.records if records is None else records)}
    curves = {}
    for i in iterations:
        curve = load_curve(store.run_path(i))
        if curve:
            curves[i] = curve
    if not curves:
        return None
    names: dict[str, None] = {}
    for curve in curves.values():
        names.update(dict.fromkeys(series_names(curve)))
    panels = _panels(list(names))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), dpi=100, squeeze=False)
    for ax, (title, members) in zip(axes[0], panels):
        ax.set_title(title, fontsize=11)
        ax.grid(True, color="#e5e5e5", linewidth=0.6)
        for n, (i, curve) in enumerate(curves.items()):
            color = plt.cm.tab10(n % 10)
            key = time_key(curve) or x_key(curve)
            ax.set_xlabel(f"{key} (s)" if key == time_key(curve) else key or "point")
            for name in members:
                xs = [p.get(key, k) if key else k for k, p in enumerate(curve) if name in p]
                ys = [p[name] for p in curve if name in p]
                if ys:
                    style = "--" if name.startswith("train") else "-"
                    record = by_iteration.get(i)
                    label = f"#{i} {shorten(record.description, 24) if record else ''} {name}"
                    ax.plot(xs, ys, style, color=color, linewidth=1.4, label=label)
        ax.legend(fontsize=7)
    return _save(fig, path)


MAX_KNOB_PANELS = 6


def plot_knobs(task, store, path: str | Path, records=None) -> Path | None:
    """The primary against each numeric knob that took two values or more: one panel each."""
    from autoresearch.analysis.knobs import knob_values

    plt = _pyplot()
    primary, maximize = task.metrics.primary, task.metrics.direction == "maximize"
    records = [r for r in (store.ledger.records if records is None else records)
               if r.status is not Status.CRASH and primary_value(r, primary) is not None]
    values = knob_values(task, records)
    knobs: dict[str, set] = {}
    for r in records:
        for name, v in values.get(r.iteration, {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                knobs.setdefault(name, set()).add(v)
    varied = [n for n, vs in knobs.items() if len(vs) >= 2][:MAX_KNOB_PANELS]
    if not varied:
        return None
    cols = min(3, len(varied))
    rows = (len(varied) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(varied):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, varied):
        pts = [(values[r.iteration][name], primary_value(r, primary), r.status is Status.KEEP) for r in records
               if isinstance(values.get(r.iteration, {}).get(name), (int, float))]
        xs = [x for x, _, _ in pts]
        ys = [y for _, y, _ in pts]
        ax.scatter([x for x, _, k in pts if not k], [y for _, y, k in pts if not k], s=14, color=GREY, label="discard")
        ax.scatter([x for x, _, k in pts if k], [y for _, y, k in pts if k], s=30, color=GREEN, edgecolor=DARK_GREEN,
                   label="keep")
        if wants_log(xs):
            ax.set_xscale("log")
            sparse_log_ticks(ax.xaxis, xs)
        if wants_log(ys):
            ax.set_yscale("log")
        else:
            pad = 0.08 * ((max(ys) - min(ys)) or abs(max(ys)) or 1.0)
            window = physical(YRange(min(ys) - pad, max(ys) + pad, ()), ys)
            ax.set_ylim(window.low, window.high)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(f"{primary} ({'higher' if maximize else 'lower'} is better)", fontsize=8)
        ax.grid(True, color="#e5e5e5", linewidth=0.6)
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def sparse_log_ticks(axis, values) -> None:
    """Two to six labels over the span of `values`, at 1, 3 or 2 and 5 times a power of ten,
    written plainly (0.002, 50).

    Over one or two decades (BATCH_SIZE 16 to 256, say) matplotlib labels the minor ticks as
    well, 2x10^1 to 9x10^2, and in a report panel they run into each other."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    positive = [v for v in values if v > 0]
    if not positive:
        return
    low, high = min(positive), max(positive)
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    ticks: list[float] = []
    for subs in ((1,), (1, 3), (1, 2, 5), tuple(range(1, 10))):
        ticks = [float(f"{s * 10.0 ** k:.12g}") for k in decades for s in subs if low <= s * 10.0 ** k <= high]
        if len(ticks) >= 2:  # the coarsest that labels the span twice
            break
    if len(ticks) > 6:  # many decades: every second or third
        ticks = ticks[:: math.ceil(len(ticks) / 6)]
    if len(ticks) < 2:  # a span narrower than one step of a power of ten: its two ends
        ticks = [float(f"{low:.3g}"), float(f"{high:.3g}")]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


TIME_KEYS = ("seconds", "train_seconds", "elapsed", "time", "wall_seconds")


def time_key(curve) -> str | None:
    """The run's own clock, when every point has one: the budget is seconds, so a fast
    85-epoch run and a slow 14-epoch run only compare on a time axis."""
    return next((k for k in TIME_KEYS if curve and all(k in p for p in curve)), None)


def _panels(names: list[str]) -> list[tuple[str, list[str]]]:
    """Losses together, accuracies together, everything else in one panel."""
    groups: dict[str, list[str]] = {"loss": [], "accuracy": [], "other": []}
    for name in names:
        low = name.lower()
        group = "loss" if "loss" in low else "accuracy" if "acc" in low else "other"
        groups[group].append(name)
    return [(title, members) for title, members in groups.items() if members]


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed: a viewer refreshing mid-night never sees half a PNG.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
