"""The end-of-night plot and report, made cheap: their imports happen beside a run, not after it.

matplotlib, its fonts and the report's templates take a second or more to load; the report is
drawn once, after the last run. `ReportPrewarm` is a loop observer: after the first recorded
experiment it loads all that on a daemon thread while the next run trains (the run is another
process: the orchestrator's own thread only waits on it), and `wait()` before the final report
makes sure the two never draw at the same time.

    prewarm = ReportPrewarm()
    loop = Loop(task, tag, agent, observers=[refresh, prewarm])
    ...
    prewarm.wait()
    write_report(...)
"""

from __future__ import annotations

import io
import threading

WAIT_SECONDS = 60.0  # a prewarm slower than this is left to finish on its own: the report imports anyway


class ReportPrewarm:
    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __call__(self, loop, record) -> None:
        """Loop observer: the first call starts the prewarm, later ones do nothing."""
        self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=_load, name="autoresearch-report-prewarm", daemon=True)
                self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def wait(self, timeout: float = WAIT_SECONDS) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def _load() -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from autoresearch.analysis import plot, report  # noqa: F401  (pyplot, jinja2, the analysis modules)

        plot._pyplot()
        # One tiny figure through the object API (no pyplot state): the font cache, the text
        # layout and the PNG writer are loaded here rather than by the first real plot.
        fig = Figure(figsize=(1, 1), dpi=20)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        ax.set_title("x")
        FigureCanvasAgg(fig).print_png(io.BytesIO())
        report._env().get_template("report.html.j2")
    except Exception:  # the report itself will say what is wrong, where the user sees it
        pass
