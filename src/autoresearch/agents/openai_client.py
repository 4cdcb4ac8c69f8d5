"""A small client for OpenAI-compatible chat-completions servers, on the standard library.

Why not the `openai` package: the core stays light, and the few things this loop needs are
easier to guarantee by hand: every request has a wall-clock limit (a socket timeout alone
lets a server that trickles bytes hold us forever), Ctrl-C aborts a request in flight,
transient failures are retried with backoff that honours Retry-After, and fatal ones (bad
key, wrong model, wrong URL) fail at once with a message that says which.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from autoresearch.errors import AutoresearchError

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_POLL = 0.05  # how often a waiting request looks at the stop event and the clock


class ChatError(AutoresearchError):
    """A request that failed for good: `fatal` ones would fail again if retried."""

    def __init__(self, message: str, *, fatal: bool = True, status: int | None = None,
                 format_refused: bool = False, timed_out: bool = False):
        super().__init__(message)
        self.fatal = fatal
        self.status = status
        self.format_refused = format_refused  # the server does not take this request's response_format
        self.timed_out = timed_out  # sent, and no complete answer in time: the server may still be on it


class ChatStopped(ChatError):
    """The stop event was set (Ctrl-C) while a request was in flight or waiting."""


@dataclass(frozen=True)
class ChatReply:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    id: str = ""
    retries: int = 0


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ChatClient:
    def __init__(self, base_url: str, api_key: str = "", *, key_hint: str = "the API key",
                 request_timeout: float = 600.0, max_retries: int = 5, retry_base_delay: float = 1.0,
                 retry_max_delay: float = 60.0, on_event: Callable[[str], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.key_hint = key_hint  # where the key comes from, for messages ("$OPENAI_API_KEY")
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.on_event = on_event or (lambda message: None)

    # -- public ------------------------------------------------------------------------
    def chat(self, body: dict[str, Any], *, deadline: float, stop_event: threading.Event | None = None) -> ChatReply:
        """POST /chat/completions, retrying transient failures until `deadline` (monotonic)."""
        url = f"{self.base_url}/chat/completions"
        payload = json.dumps(body).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChatError("the agent's time limit ran out before the model answered (agent.timeout)")
            timeout = min(self.request_timeout, remaining)
            try:
                response = self._exchange("POST", url, payload, timeout, stop_event)
                if response.status == 200:
                    return _parse_reply(response.body, retries=attempt)
                error = self._classify(response, body.get("model", ""))
                retry_after = _retry_after(response.headers)
            except ChatError as exc:  # no answer at all: a timeout, a refused connection, a stop
                error, retry_after = exc, None
            if error.timed_out and timeout < self.request_timeout:
                raise ChatError(f"{error}: the agent's time limit ran out (agent.timeout)", status=error.status,
                                timed_out=True)
            if error.timed_out and body:
                # Not sent again: the server may still be computing the first one, and a single-slot
                # server (llama.cpp, Ollama) would queue the duplicate behind it.
                raise ChatError(f"{error}; not retried, since the server may still be working on it: raise "
                                "agent.request_timeout for a slow server", status=error.status, timed_out=True)
            if error.fatal:
                raise error
            if attempt == self.max_retries:
                raise ChatError(f"{error} (gave up after {attempt + 1} attempts)", fatal=True, status=error.status)
            backoff = min(self.retry_max_delay, self.retry_base_delay * 2 ** attempt) * random.uniform(0.5, 1.0)
            delay = max(backoff, retry_after or 0.0)
            if time.monotonic() + delay >= deadline:
                raise ChatError(f"{error}; waiting {delay:.0f} s to retry would pass the agent's time limit (agent.timeout)",
                                fatal=True, status=error.status)
            self.on_event(f"{error}; retry {attempt + 1}/{self.max_retries} in {delay:.1f} s")
            if (stop_event or threading.Event()).wait(delay):
                raise ChatStopped("stopped while waiting to retry")
        raise AssertionError("unreachable")

    def probe(self, timeout: float = 10.0, model: str = "") -> None:
        """GET /models once: fail now on no server, a bad key or a wrong URL, not after the baseline."""
        try:
            response = self._exchange("GET", f"{self.base_url}/models", None, timeout, None)
        except ChatError as exc:
            if "timed out" in str(exc):
                return  # a busy server is still a server; the real requests have their own limits
            raise ChatError(f"no OpenAI-compatible server answers at {self.base_url}: {exc}. Start it "
                            "(e.g. `vllm serve MODEL`, `ollama serve`) or fix agent.base_url / OPENAI_BASE_URL") from None
        if response.status in (401, 403, 404):
            raise self._classify(response, model)

    # -- one request -------------------------------------------------------------------
    def _exchange(self, method: str, url: str, payload: bytes | None, timeout: float,
                  stop_event: threading.Event | None) -> _Response:
        """One HTTP request in a worker thread, so the clock and the stop event can abort it."""
        sockets: list[socket.socket] = []
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["response"] = self._send(method, url, payload, timeout, sockets)
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="openai-request", daemon=True)
        worker.start()
        end = time.monotonic() + timeout
        while worker.is_alive():
            if stop_event is not None and stop_event.is_set():
                _abort(sockets)
                raise ChatStopped("stopped while waiting for the model")
            left = end - time.monotonic()
            if left <= 0:
                _abort(sockets)
                raise ChatError(f"no complete answer from {url} within {timeout:.0f} s (timed out)", fatal=False,
                                timed_out=True)
            worker.join(min(_POLL, left))
        if "error" in outcome:
            exc = outcome["error"]
            if isinstance(exc, (TimeoutError, socket.timeout)) or "timed out" in str(exc):
                raise ChatError(f"no complete answer from {url} within {timeout:.0f} s (timed out)", fatal=False,
                                timed_out=True)
            if isinstance(exc, (OSError, http.client.HTTPException, urllib.error.URLError)):
                reason = getattr(exc, "reason", None) or exc
                raise ChatError(f"cannot reach {url}: {reason}", fatal=False)
            raise ChatError(f"request to {url} failed: {type(exc).__name__}: {exc}")  # e.g. a malformed URL
        return outcome["response"]

    def _send(self, method: str, url: str, payload: bytes | None, timeout: float,
              sockets: list[socket.socket]) -> _Response:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": "autoresearch"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=payload, headers=headers, method=method)
        # Default handlers stay (proxies from the environment work); ours only note the sockets.
        opener = urllib.request.build_opener(_TrackedHTTP(sockets), _TrackedHTTPS(sockets))
        try:
            with opener.open(request, timeout=timeout) as response:
                return _Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            return _Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, body)

    def _classify(self, response: _Response, model: str) -> ChatError:
        status, message = response.status, _server_message(response.body)
        said = f": {message}" if message else ""
        if status in (400, 422, 500) and re.search(r"response_format|json_schema", message):
            return ChatError(f"HTTP {status} from {self.base_url}: it does not take this response_format{said}",
                             status=status, format_refused=True)
        if status == 401:
            return ChatError(f"{self.base_url} rejected the API key (401 Unauthorized){said}; "
                             f"check {self.key_hint}", status=status)
        if status == 403:
            return ChatError(f"{self.base_url} refused access (403 Forbidden){said}; the key in {self.key_hint} "
                             "may lack access to this model or endpoint", status=status)
        if status == 404:
            return ChatError(f"not found (404) at {self.base_url}{said}; check agent.model ({model!r}) and "
                             "agent.base_url (an OpenAI-compatible base URL usually ends in /v1)", status=status)
        if status == 429 and "insufficient_quota" in response.body.decode("utf-8", "replace"):
            return ChatError(f"the account's quota is used up (429 insufficient_quota){said}", status=status)
        if status in _RETRY_STATUS or status >= 500:
            return ChatError(f"HTTP {status} from {self.base_url}{said}", fatal=False, status=status)
        return ChatError(f"HTTP {status} from {self.base_url}{said}", status=status)


def _parse_reply(body: bytes, *, retries: int) -> ChatReply:
    try:
        data = json.loads(body)
    except ValueError:
        raise ChatError(f"the answer is not JSON: {body[:200]!r}", fatal=False) from None
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        if isinstance(data, dict) and "error" in data:  # some servers say 200 and put the error inside
            raise ChatError(f"the server answered with an error: {_server_message(body)}", fatal=False) from None
        raise ChatError(f"not a chat-completions answer: {body[:200]!r}", fatal=False) from None
    usage = data.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return ChatReply(content=content, finish_reason=choice.get("finish_reason") or "",
                     prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=int(usage.get("total_tokens") or prompt + completion),
                     id=str(data.get("id", "")), retries=retries)


def _server_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "")[:300]
    if isinstance(error, str):
        return error[:300]
    return text[:300]


def _retry_after(headers: dict[str, str]) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, Retry-After seconds or an HTTP date."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _abort(sockets: list[socket.socket]) -> None:
    # shutdown() wakes a recv() blocked in the worker thread; close() alone would not.
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _tracked(base: type[http.client.HTTPConnection], sockets: list) -> type:
    class Tracked(base):  # type: ignore[misc, valid-type]
        def connect(self):
            super().connect()
            sockets.append(self.sock)
    return Tracked


class _TrackedHTTP(urllib.request.HTTPHandler):
    def __init__(self, sockets: list):
        super().__init__()
        self._connection = _tracked(http.client.HTTPConnection, sockets)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _TrackedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, sockets: list):
        super().__init__()
        self._connection = _tracked(http.client.HTTPSConnection, sockets)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)
