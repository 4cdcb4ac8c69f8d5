"""A fake OpenAI-compatible server on 127.0.0.1 that speaks the real chat-completions protocol.

Each test scripts the answers to POST /v1/chat/completions, in order; every request is
recorded (path, headers, JSON body) so a test can check what the model was told.

    with FakeOpenAI([Reply("...blocks..."), Reply(status=429, headers={"Retry-After": "1"})]) as server:
        server.url  # http://127.0.0.1:PORT/v1

The JSON shapes are those of the OpenAI API: a `chat.completion` object with `choices`
and `usage` on success, `{"error": {"message", "type", "param", "code"}}` on failure.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

ERRORS = {
    401: ("Incorrect API key provided: sk-wr***ng. You can find your API key at https://platform.openai.com/account/api-keys.",
          "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", "model_not_allowed"),
    404: ("The model `{model}` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests per min. Please try again in 1s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later", "server_error", None),
}


@dataclass
class Reply:
    """One scripted answer: a completion (status 200) or an HTTP error."""

    content: str = ""  # the answer; for an error status, the error message (else a realistic default)
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering: a hang when beyond the client's timeout
    usage: dict[str, int] | None = None  # default: about four characters a token, like real tokenizers
    trickle: float = 0.0  # send the body one byte every `trickle` seconds: no socket timeout ever fires
    error_code: str | None = None  # the error's `code`, e.g. "insufficient_quota" (else the usual one)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def messages(self) -> list[dict]:
        return (self.body or {}).get("messages", [])

    @property
    def last_user(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


class FakeOpenAI:
    def __init__(self, replies: list[Reply | str] = (), *, model: str = "fake-model", api_key: str | None = None,
                 responder: Callable[[Request], Reply | str] | None = None):
        self.replies = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        self.responder = responder  # when set, it answers every chat request instead of `replies`
        self.model = model
        self.api_key = api_key  # when set, a request without `Authorization: Bearer <key>` gets 401
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()  # wakes scripted hangs
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request: Request) -> Reply:
        if self.responder is not None:
            reply = self.responder(request)
            return reply if isinstance(reply, Reply) else Reply(reply)
        with self._lock:
            if not self.replies:
                return Reply(status=500, content="the test scripted no more replies")
            return self.replies.pop(0)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _read(self) -> Request:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                  time.monotonic())
                with fake._lock:
                    fake.requests.append(request)
                return request

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None,
                      trickle: float = 0.0) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if not trickle:
                        self.wfile.write(data)
                    for i in range(len(data) if trickle else 0):
                        if fake._closing.wait(trickle):
                            return
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to tell it

            def _error(self, status: int, model: str, headers=None, message: str = "", code: str | None = None) -> None:
                default, kind, usual = ERRORS.get(status, (f"error {status}", "server_error", None))
                message, code = message or default, code or usual
                self._send(status, {"error": {"message": message.format(model=model), "type": kind,
                                              "param": None, "code": code}}, headers)

            def _authorized(self, request: Request) -> bool:
                return fake.api_key is None or request.headers.get("authorization") == f"Bearer {fake.api_key}"

            def do_GET(self):
                request = self._read()
                if not self.path.startswith("/v1/models"):
                    return self._send(404, {"error": {"message": f"Invalid URL (GET {self.path})",
                                                      "type": "invalid_request_error", "param": None, "code": None}})
                if not self._authorized(request):
                    return self._error(401, "")
                self._send(200, {"object": "list", "data": [
                    {"id": fake.model, "object": "model", "created": 1700000000, "owned_by": "fake"}]})

            def do_POST(self):
                request = self._read()
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"Invalid URL (POST {self.path})",
                                                      "type": "invalid_request_error", "param": None, "code": None}})
                if not self._authorized(request):
                    return self._error(401, "")
                reply = fake._next(request)
                if reply.delay and fake._closing.wait(reply.delay):
                    return
                model = (request.body or {}).get("model", "")
                if reply.status != 200:
                    return self._error(reply.status, model, reply.headers, reply.content, reply.error_code)
                prompt_chars = sum(len(m.get("content") or "") for m in request.messages)
                usage = reply.usage or {"prompt_tokens": prompt_chars // 4 + 1,
                                        "completion_tokens": len(reply.content) // 4 + 1}
                usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
                self._send(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content, "refusal": None},
                                 "logprobs": None, "finish_reason": reply.finish_reason}],
                    "usage": usage,
                }, reply.headers, reply.trickle)

        return Handler
