import re
import shutil
import subprocess
import sys
import types

import matplotlib.image as mpimg
import numpy as np
import pytest

from autoresearch.analysis.observer import backfill
from autoresearch.analysis.report import _analysis_view, frontier, render_report, write_report
from nights import XSS, build_night


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    return build_night(tmp_path_factory.mktemp("night") / "task")


@pytest.fixture(scope="module")
def html(night):
    # Rendered once: the tests below only read it, and a render draws two plots.
    backfill(*night)  # the per-run meta-analysis, as the loop's observer leaves it
    return render_report(*night)


def test_report_tells_the_story_without_the_tsv(html):
    assert "from 0.7 (baseline) to 0.93" in html and "through 3 kept changes" in html
    assert "biggest single step was #5" in html.lower()
    assert "1 crash" in html and "exit_code: 1" in html
    assert "ValueError: unknown ARCH" in html  # a crash shows the end of its log
    assert "Second line of the explanation." in html  # full explanations, not one-liners
    assert '<details><summary>diff' in html and 'class="add">+LR = 0.003' in html
    assert "$0.80" in html and "29,800 tokens" in html
    # The analysis summary: the axis table, the plateau in words and windows, the hints.
    assert "<h3>Axes</h3>" in html and "<tr><td>WIDTH</td><td>3</td><td>1</td><td>0</td>" in html
    assert "<p>0 iterations since the last keep (#7).</p>" in html and "<td>last 8</td><td>+0.23</td>" in html
    assert "ARCH = cnn gained +0.13 (kept 1 of 1): the best has it" in html
    assert "<td>WIDTH</td><td>3</td><td>1</td><td>0</td><td>-0.001667</td><td>+0.02</td>" in html  # gains signed
    # Each run's training curve in a line, not only behind a click; its suggestion once, in the patterns.
    assert "Training curve: <strong>still improving</strong> (see" in html
    assert "the larger of the noise floor and a quarter of the median keep gain" in html  # the tolerance, explained
    cards = html[html.index('<h2 id="experiments">'):html.index('<h2 id="cost">')]
    assert "val_acc was still improving" not in cards  # not repeated on every card
    patterns = html[html.index('id="patterns-table"'):html.index('<h2 id="all">')]
    assert patterns.count("val_acc was still improving") == 1 and '<a href="#exp-7">#7</a>' in patterns


def test_frontier_lists_every_keep_with_its_gain(night):
    task, store = night
    rows = frontier(store.ledger.records, "val_acc")
    assert [r["iteration"] for r in rows] == [0, 1, 5, 7]
    assert [round(r["gain"], 3) if r["gain"] is not None else None for r in rows] == [None, 0.08, 0.13, 0.02]


def test_agent_text_is_escaped_and_nothing_is_loaded_from_the_network(html):
    assert XSS not in html and "<script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;wider&lt;/b&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "url(" not in html and "@import" not in html
    assert re.search(r'<img[^>]+src="data:image/png;base64,', html)


def test_report_uses_the_analysis_summary_when_present(night, monkeypatch):
    task, store = night
    fake = types.ModuleType("autoresearch.analysis.summary")
    fake.summarize = lambda task, store: {"axes": [{"axis": "LR", "tried": 2, "kept": 1, "best_delta": 0.08}],
                                           "hints": ["try LR 2e-3 with the CNN"]}
    monkeypatch.setitem(sys.modules, "autoresearch.analysis.summary", fake)
    view = _analysis_view(task, store)
    assert [s["title"] for s in view["sections"]] == ["axes", "hints"]
    assert view["sections"][0]["header"] == ["axis", "tried", "kept", "best delta"]
    assert view["sections"][0]["rows"] == [["LR", "2", "1", "0.08"]]



def test_report_survives_a_broken_analysis_module(night, monkeypatch):
    task, store = night
    fake = types.ModuleType("autoresearch.analysis.summary")
    fake.summarize = lambda task, store: 1 / 0
    monkeypatch.setitem(sys.modules, "autoresearch.analysis.summary", fake)
    assert _analysis_view(task, store) is None


def test_report_of_a_run_that_only_crashed(tmp_path):
    from nights import Step, Status

    task, store = build_night(tmp_path / "t", steps=[Step(Status.CRASH, "baseline", {}, None, reason="exit_code: 2")])
    html = render_report(task, store)
    assert "No experiment finished" in html and "no keep yet" in html


def _chromium(*args, cwd):
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={cwd / 'profile'}", "--enable-logging=stderr", "--v=0", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install -y chromium (.ci/run installs it)")
def test_report_renders_in_chromium_with_plot_and_tables(night, tmp_path):
    task, store = night
    path = write_report(task, store, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    # One launch does both: the screenshot and the DOM after load (each launch costs seconds).
    rendered = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", "--dump-dom", path.as_uri(), cwd=tmp_path)
    console = [line for line in rendered.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "console messages while loading the report:\n" + "\n".join(console)
    image = mpimg.imread(shot)
    assert image.shape[:2] == (2000, 1280)
    assert shot.stat().st_size > 50_000 and image[..., :3].std() > 0.05  # a page, not a blank screen
    pixels = (image[..., :3] * 255).round().astype(int)
    # The plot is drawn: its running best is a long horizontal dark-green line (0.8 alpha on
    # white), which no text or card on the page makes.
    step_line = np.abs(pixels - (60, 137, 88)).sum(axis=-1) < 60
    assert max(_longest_run(row) for row in step_line) > 200
    # The frontier table is drawn: its header row is a band of the header grey across the page.
    header = np.abs(pixels - (246, 248, 250)).sum(axis=-1) <= 3
    assert any(header[y, 120:1150].all() for y in range(header.shape[0]))
    dom = rendered.stdout
    assert re.search(r'<img[^>]+id="progress-plot"[^>]+src="data:image/png', dom)
    assert '<table id="frontier-table">' in dom and dom.count("<tr>") >= 8


def _longest_run(mask) -> int:
    edges = np.diff(np.concatenate(([0], mask.astype(int), [0])))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0))
