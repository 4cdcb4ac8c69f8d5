"""`autoresearch dashboard`: a live page over a run's store (server.py, data.py, app.js)."""

from autoresearch.dashboard.server import Dashboard, new_token

__all__ = ["Dashboard", "new_token"]
