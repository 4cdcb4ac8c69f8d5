import matplotlib.image as mpimg
import pytest

from autoresearch.analysis.curves import load_curve, parse_log
from autoresearch.analysis.plot import label_keeps, plot_curves, plot_progress, zoom
from nights import build_night


@pytest.fixture
def night(tmp_path):
    return build_night(tmp_path / "task")


def test_zoom_clips_one_diverged_discard_but_keeps_the_frontier():
    points = [(0, 0.70, True), (1, 0.78, True), (2, 0.76, False), (3, 0.10, False), (5, 0.91, True), (7, 0.93, True)]
    window = zoom(points, maximize=True)
    assert window.low < 0.70 and window.high > 0.93
    assert window.low > 0.4  # not squashed down to the diverged run
    assert window.clipped == ((3, 0.10),)


def test_zoom_for_minimize_clips_on_the_high_side():
    points = [(0, 1.00, True), (1, 0.98, True), (2, 0.99, False), (3, 9.0, False), (4, 0.97, True)]
    window = zoom(points, maximize=False)
    assert window.low < 0.97 and 1.0 < window.high < 1.2
    assert window.clipped == ((3, 9.0),)


def test_zoom_without_any_improvement_still_has_a_window():
    window = zoom([(0, 0.5, True), (1, 0.4, False), (2, 0.45, False)], maximize=True)
    assert window.low < 0.4 < 0.5 < window.high and not window.clipped


def test_progress_plot_is_a_real_png(night, tmp_path):
    task, store = night
    path = plot_progress(task, store, tmp_path / "out" / "progress.png")
    image = mpimg.imread(path)
    assert image.shape[0] > 400 and image.shape[1] > 800
    assert image.std() > 0.05  # not a blank canvas


def test_progress_plot_of_an_empty_run(night, tmp_path):
    task, store = night
    path = plot_progress(task, store, tmp_path / "empty.png", records=[])
    assert mpimg.imread(path).shape[0] > 0


def test_curves_from_jsonl_and_from_log_lines(night, tmp_path):
    task, store = night
    assert load_curve(store.root / "runs" / "0001")[0] == {"epoch": 1.0, "train_loss": 1.5, "val_loss": 1.61,
                                                           "val_acc": pytest.approx(0.39)}
    from_log = load_curve(store.root / "runs" / "0000")  # no metrics.jsonl: the epoch lines of log.txt
    assert [p["epoch"] for p in from_log] == [1, 2, 3, 4, 5]
    assert from_log[0] == {"epoch": 1.0, "loss": 2.0, "train_acc": 0.54, "val_acc": 0.49}
    assert plot_curves(store, [0, 1, 7], tmp_path / "curves.png").is_file()
    assert plot_curves(store, [99], tmp_path / "none.png") is None  # no such run: nothing to draw


def test_parse_log_understands_common_epoch_line_styles():
    text = "Epoch 2/10: train_loss=1.5, val/loss: 1.7 acc 45.2%\nstep 3 loss 1\n---\nval_acc: 0.5\n"
    assert parse_log(text) == [{"epoch": 2.0, "train_loss": 1.5, "val/loss": 1.7, "acc": 45.2}]


def test_dense_keeps_get_labels_for_baseline_best_and_the_biggest_gains():
    kept = [(0, 1.0), (1, 0.99), (2, 0.90), (3, 0.89), (10, 0.88)]  # minimize: 2 is the big step
    assert label_keeps(kept, maximize=False, min_gap=1.5) == [(0, 1.0), (2, 0.90), (10, 0.88)]
    assert label_keeps(kept, maximize=False, min_gap=0.5) == kept
    assert label_keeps([], maximize=True, min_gap=1) == []


def test_progress_plot_draws_what_the_issue_asks(night, tmp_path, monkeypatch):
    """Discards small and grey, keeps larger and green with their descriptions, the running best
    as a step line, crashes left out, the diverged discard clipped to the zoomed window."""
    from matplotlib.colors import to_hex

    from autoresearch.analysis import plot

    task, store = night
    drawn = {}
    save = plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, path: (drawn.setdefault("ax", fig.axes[0]), save(fig, path))[1])
    plot_progress(task, store, tmp_path / "progress.png")
    ax = drawn["ax"]
    by_label = {c.get_label(): c for c in ax.collections}
    discards, keeps = by_label["discard"], by_label["keep"]
    assert [tuple(p) for p in discards.get_offsets()] == [(2, 0.76), (6, 0.905)]  # #3 (0.10) clipped, #4 crashed
    assert to_hex(discards.get_facecolor()[0]) == plot.GREY
    assert [tuple(p) for p in keeps.get_offsets()] == [(0, 0.70), (1, 0.78), (5, 0.91), (7, 0.93)]
    assert to_hex(keeps.get_facecolor()[0]) == plot.GREEN and keeps.get_sizes()[0] > discards.get_sizes()[0]
    assert [tuple(p) for p in by_label["discard off the scale (1)"].get_offsets()][0][0] == 3
    assert not any(4 in c.get_offsets()[:, 0] for c in ax.collections)  # the crash is nowhere
    (best,) = [line for line in ax.lines if line.get_label() == "running best"]
    assert best.get_drawstyle() == "steps-post" and list(best.get_ydata()) == [0.70, 0.78, 0.91, 0.93, 0.93]
    labels = [t.get_text() for t in ax.texts]
    assert "baseline" in labels and "switch to a CNN" in labels and "0.1" in labels  # the clipped value, written
    low, high = ax.get_ylim()
    assert 0.5 < low < 0.70 and 0.93 < high < 1.1  # zoomed to the climb, not to the diverged run
    assert "1 crashed (not shown)" in ax.get_title()


@pytest.mark.parametrize("low, high", [(16, 256), (16, 1024), (1.2e-3, 4.5e-3), (1e-4, 3e-2), (2e-3, 3e-3), (2.01e-3, 2.4e-3), (1e-6, 1.0)])
def test_a_log_knob_axis_has_readable_labels_that_do_not_run_into_each_other(low, high):
    # Seen in the example's report: BATCH_SIZE's axis over 16 to 256 labelled 2x10^1 ... 6x10^2, overlapping.
    from autoresearch.analysis.plot import _pyplot, sparse_log_ticks

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.4), dpi=100)
    xs = [low, (low * high) ** 0.5, high]
    ax.scatter(xs, [0.9, 0.95, 0.93])
    ax.set_xscale("log")
    sparse_log_ticks(ax.xaxis, xs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    shown = [(tick.get_position()[0], tick) for tick in ax.get_xticklabels(which="both")
             if tick.get_visible() and tick.get_text() and lo <= tick.get_position()[0] <= hi]
    boxes = sorted((tick.get_window_extent(renderer) for _, tick in shown), key=lambda b: b.x0)
    plt.close(fig)
    assert len(boxes) >= 2  # an axis with one label or none says nothing of the scale
    assert all(b.x0 >= a.x1 for a, b in zip(boxes, boxes[1:]))
    assert all("times" not in tick.get_text() and "^" not in tick.get_text() for _, tick in shown)
