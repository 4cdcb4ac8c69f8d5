"""Watching a night as it happens: the loop's events, the store's live.json, the views on it."""

from autoresearch.live.events import STAGES, Events
from autoresearch.live.publisher import Publisher
from autoresearch.live.state import (clear_stop, eta_seconds, live_path, read_states, request_stop,
                                     stop_requested)

__all__ = ["STAGES", "Events", "Publisher", "clear_stop", "eta_seconds", "live_path", "read_states",
           "request_stop", "stop_requested"]
