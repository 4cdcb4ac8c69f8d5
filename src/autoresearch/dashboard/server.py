"""`autoresearch dashboard`: a live page over a run's store, served by the standard library.

    serve(task, store, port=8765)                     # http://127.0.0.1:8765/
    serve(task, store, host="0.0.0.0", token="...")   # another address: only with a token

The page (page.html, app.js, style.css beside this file; no CDN, it works offline) polls
/api/state every two seconds. What a run wrote (descriptions, diffs, logs) is untrusted: the
page puts it in as text, never as HTML, under a Content-Security-Policy that allows only
its own script. Requests must name this server in their Host header (a DNS-rebinding page
cannot reach it), and the stop button's POST needs a custom header, which another site's
page cannot send without a CORS preflight that this server never grants.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from autoresearch.dashboard.data import Snapshot
from autoresearch.errors import AutoresearchError
from autoresearch.live.state import request_stop

LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC = {"/": ("page.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STOP_HEADER = "X-Autoresearch-Stop"
TOKEN_HEADER = "X-Autoresearch-Token"


def _asset(name: str) -> bytes:
    return (resources.files("autoresearch.dashboard") / name).read_bytes()


class Dashboard:
    def __init__(self, task, store, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None):
        if host not in LOOPBACK and not token:
            raise AutoresearchError(f"--host {host}: another address than 127.0.0.1 needs a token "
                                    "(--token <secret>); anyone who can reach the port could stop your run")
        self.task, self.store, self.host, self.token = task, store, host, token
        self.snapshot = Snapshot(task, store)
        self._lock = threading.Lock()  # one snapshot rebuild at a time
        handler = type("Handler", (_Handler,), {"dashboard": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise AutoresearchError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                                    "pick another with --port") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.25)

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests); `close()` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="autoresearch-dashboard", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def allowed_host(self, header: str | None) -> bool:
        if not header:
            return False
        if self.host not in LOOPBACK:
            return True  # the token guards it; the name users type for a remote host is theirs
        name = re.sub(r":\d+$", "", header.strip()).strip("[]").lower()
        return name in LOOPBACK


def new_token() -> str:
    return secrets.token_urlsafe(18)


class _Handler(BaseHTTPRequestHandler):
    dashboard: Dashboard
    server_version = "autoresearch-dashboard"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # a page polling every 2 s would flood the terminal

    # -- checks --------------------------------------------------------------------------------
    def _authorised(self, query: dict) -> bool:
        d = self.dashboard
        if not d.allowed_host(self.headers.get("Host")):
            self._send(421, b"wrong Host header\n", "text/plain")
            return False
        if d.token:
            given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), d.token.encode()):
                self._send(403, b"missing or wrong token: open the URL the dashboard printed\n", "text/plain")
                return False
        return True

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token is in the URL
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, code: int = 200) -> None:
        self._send(code, json.dumps(data, allow_nan=False, default=str).encode(), "application/json")

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._authorised(query):
            return
        d = self.dashboard
        if url.path in STATIC:
            name, ctype = STATIC[url.path]
            return self._send(200, _asset(name), ctype)
        if url.path == "/api/state":
            with d._lock:
                return self._json(d.snapshot.state())
        match = re.fullmatch(r"/api/experiment/(\d{1,9})", url.path)
        if match:
            with d._lock:
                found = d.snapshot.experiment(int(match.group(1)))
            return self._json(found) if found is not None else self._json({"error": "no such experiment"}, 404)
        self._json({"error": "not found"}, 404)

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        if not self._authorised(parse_qs(url.query)):
            return
        if url.path != "/api/stop":
            return self._json({"error": "not found"}, 404)
        if self.headers.get(STOP_HEADER) != "1":
            return self._json({"error": f"the stop request needs the {STOP_HEADER}: 1 header"}, 400)
        path = request_stop(self.dashboard.store.root, "dashboard")
        self._json({"stop_requested": True, "file": str(path)})
