"""Model servers on 127.0.0.1 that speak the real wire protocols, for the real CLIs to talk to.

    AnthropicServer   POST /v1/messages, streamed (SSE) or not, with tool_use blocks: Claude Code
    ResponsesServer   POST /v1/responses, streamed (SSE), with custom_tool_call items: Codex
    GeminiServer      POST /v1beta/models/M:streamGenerateContent?alt=sse, with functionCall parts: Gemini CLI

Each takes a script: one entry per model turn, in order, each a list of output blocks or an
`Error(status)`. Requests are recorded for the test to check what the CLI sent. Requests that
are not part of the agent's loop (Claude Code's side queries carry no tools) get a short text
answer without consuming the script. Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"input_tokens": 100, "output_tokens": 20}


@dataclass
class Error:
    status: int
    kind: str = ""
    message: str = ""


ANTHROPIC_ERRORS = {401: ("authentication_error", "invalid x-api-key"),
                    429: ("rate_limit_error", "Number of requests has exceeded your rate limit"),
                    529: ("overloaded_error", "Overloaded"), 500: ("api_error", "Internal server error")}


class _Server:
    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_turn(self):
        with self.lock:
            return self.script.pop(0) if self.script else Error(500, message="the test scripted no more turns")

    def answer(self, handler, request: dict) -> None:
        raise NotImplementedError

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw) if raw else {}
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                server.answer(self, body)

            def do_GET(self):
                self.json(404, {"error": {"message": f"no {self.path}"}})

            def json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def sse(self, events: list[dict]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for event in events:
                    self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

        return Handler


class AnthropicServer(_Server):
    """The Messages API: script entries are lists of content blocks (text / tool_use) or Error."""

    def agent_requests(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["body"].get("tools")]

    def answer(self, h, body: dict) -> None:
        turn = self.next_turn() if body.get("tools") else [{"type": "text", "text": "ok"}]
        if isinstance(turn, Error):
            kind, message = ANTHROPIC_ERRORS.get(turn.status, ("api_error", "error"))
            return h.json(turn.status, {"type": "error", "error": {"type": turn.kind or kind,
                                                                   "message": turn.message or message}})
        blocks = [{**b, "id": b.get("id", f"toolu_{i:02d}")} if b["type"] == "tool_use" else b for i, b in enumerate(turn)]
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        usage = {**USAGE, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model"),
                   "stop_reason": stop, "stop_sequence": None}
        if not body.get("stream"):
            return h.json(200, {**message, "content": blocks, "usage": usage})
        events = [{"type": "message_start", "message": {**message, "stop_reason": None, "content": [],
                                                         "usage": {**usage, "output_tokens": 1}}}]
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                events += [{"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                           {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": block["text"]}}]
            else:
                events += [{"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}},
                           {"type": "content_block_delta", "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}}]
            events.append({"type": "content_block_stop", "index": i})
        events += [{"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": USAGE["output_tokens"]}},
                   {"type": "message_stop"}]
        h.sse(events)


class ResponsesServer(_Server):
    """The Responses API: script entries are lists of output items (message / custom_tool_call) or Error."""

    def answer(self, h, body: dict) -> None:
        turn = self.next_turn()
        if isinstance(turn, Error):
            return h.json(turn.status, {"error": {"message": turn.message or f"error {turn.status}",
                                                  "type": turn.kind or "invalid_request_error", "code": None}})
        events = [{"type": "response.created", "response": {"id": "resp_fake"}}]
        for i, item in enumerate(turn):
            if item["type"] == "message" and isinstance(item.get("content"), str):
                item = {"type": "message", "role": "assistant", "id": f"msg_{i}",
                        "content": [{"type": "output_text", "text": item["content"]}]}
            events.append({"type": "response.output_item.done", "output_index": i, "item": item})
        events.append({"type": "response.completed", "response": {"id": "resp_fake", "usage": {
            "input_tokens": USAGE["input_tokens"], "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": USAGE["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": USAGE["input_tokens"] + USAGE["output_tokens"]}}})
        h.sse(events)


class GeminiServer(_Server):
    """The Gemini API: script entries are lists of parts ({"text"} / {"functionCall"}) or Error.

    Only streamGenerateContent calls with tools are the agent's turns; anything else (token
    counts, side queries) gets a short answer without consuming the script.
    """

    def answer(self, h, body: dict) -> None:
        path = h.path
        if ":countTokens" in path:
            return h.json(200, {"totalTokens": USAGE["input_tokens"]})
        turn = self.next_turn() if body.get("tools") and ":streamGenerateContent" in path else [{"text": "ok"}]
        if isinstance(turn, Error):
            status = {401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}.get(turn.status, "INTERNAL")
            return h.json(turn.status, {"error": {"code": turn.status, "message": turn.message or status, "status": status}})
        response = {"candidates": [{"content": {"role": "model", "parts": turn}, "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": USAGE["input_tokens"],
                                      "candidatesTokenCount": USAGE["output_tokens"],
                                      "totalTokenCount": USAGE["input_tokens"] + USAGE["output_tokens"]},
                    "modelVersion": path.split("/models/")[-1].split(":")[0]}
        if "alt=sse" not in path:
            return h.json(200, response)
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("connection", "close")
        h.end_headers()
        h.wfile.write(f"data: {json.dumps(response)}\n\n".encode())
        h.wfile.flush()
        h.close_connection = True
