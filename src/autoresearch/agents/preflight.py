"""Checks a backend runs before the baseline: can this agent work at all tonight?

Each returns None when fine, or the problem with its fix; the backend's `check()` raises it.
They take seconds at most: a DNS lookup and a TCP connect to the API's host, a file read,
or the program's own status command (`claude auth status`, `codex login status`).
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from autoresearch.agents.failures import OFFLINE_FIX

CONNECT_TIMEOUT = 5.0


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why nothing answers a TCP connect at `url`'s host and port, or None when something does."""
    parsed = urlparse(url if "://" in url else f"https://{url}")
    host = parsed.hostname
    if not host:
        return f"{url!r} is not a URL with a host"
    try:
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
    except ValueError:
        return f"{url!r} has an invalid port"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot resolve {host} ({exc}); {OFFLINE_FIX}"
    last = None
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return None
        except OSError as exc:
            last = exc
    return f"cannot connect to {host}:{port} ({last}); {OFFLINE_FIX}"
