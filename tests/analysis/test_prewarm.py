"""The final report's imports load beside a run (prewarm.py), and its progress plot is drawn once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from autoresearch.analysis.prewarm import ReportPrewarm


def test_the_prewarm_loads_the_reports_modules_once_on_a_thread_of_its_own():
    script = textwrap.dedent("""
        import sys, threading
        from autoresearch.analysis.prewarm import ReportPrewarm
        assert "matplotlib.pyplot" not in sys.modules and "jinja2" not in sys.modules
        p = ReportPrewarm()
        p(None, None)
        first = p._thread
        p(None, None)  # every later record: nothing new starts
        assert p._thread is first and first is not threading.current_thread()
        p.wait()
        assert not first.is_alive()
        import matplotlib
        assert "matplotlib.pyplot" in sys.modules and "jinja2" in sys.modules
        assert matplotlib.get_backend().lower() == "agg"  # never a window
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_wait_without_a_start_returns_at_once():
    p = ReportPrewarm()
    p.wait()
    assert not p.started


def test_the_final_report_embeds_the_progress_plot_it_just_drew(make_task, monkeypatch):
    from autoresearch.analysis import plot
    from autoresearch.api import run_loop

    drawn = []
    real = plot.plot_progress
    monkeypatch.setattr(plot, "plot_progress", lambda *a, **k: drawn.append(a[2]) or real(*a, **k))
    said: list[str] = []
    task = make_task()
    run_loop(task, "t1", iterations=0, agent="tuner", say=said.append)
    report = next(line for line in said if line.startswith("report: "))
    assert len(drawn) == 1 and str(drawn[0]) in report  # progress.png, drawn once, embedded as it is
    html = (task / "report.html").read_text()
    import base64

    assert base64.b64encode(drawn[0].read_bytes()).decode() in html
