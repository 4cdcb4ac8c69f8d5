"""What the loop tells whoever watches it, stage by stage: the seam of the live views.

    class Printer(Events):
        def stage(self, n, stage, **info): print(n, stage, info)

    Loop(task, tag, agent, events=[Printer()])

The stages are the loop's: propose, screen, commit, measure, confirm, judge, record. A sink
must be quick and must not raise (the loop catches and reports it, then carries on); the
loop always adds a Publisher, which writes the store's live.json for the terminal view and
the dashboard.
"""

from __future__ import annotations

STAGES = ("propose", "screen", "commit", "measure", "confirm", "judge", "record")


class Events:
    """No-op base: override what you need."""

    def session(self, *, planned: int, max_seconds: float | None, remaining=None) -> None:
        """The loop starts: `planned` iterations (baseline and repeats included) in this call."""

    def stage(self, n: int, stage: str, **info) -> None:
        """Iteration `n` enters `stage`; info: `description` once the proposal is known,
        `log_path` and `run_started_at` when a run starts, `curve_dir` where its curve appears."""

    def recorded(self, record, best) -> None:
        """An experiment is in the ledger; `best` is the best record now."""

    def finished(self, reason: str = "") -> None:
        """The loop returns (done, limit, stop, Ctrl-C or error)."""
