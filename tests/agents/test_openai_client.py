"""The chat-completions client alone: wall-clock limits, retry policy, error classification."""

import threading
import time

import pytest

from autoresearch.agents.openai_client import ChatClient, ChatError, ChatStopped, _retry_after

from fake_openai_server import FakeOpenAI, Reply

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


def chat(server, **kw):
    options = {"max_retries": 0, "retry_base_delay": 0.01, "request_timeout": 10, **kw}
    stop = options.pop("stop_event", None)
    deadline = time.monotonic() + options.pop("deadline", 30)
    return ChatClient(server.url, "sk-test", **options).chat(BODY, deadline=deadline, stop_event=stop)


def test_reply_fields_are_parsed():
    with FakeOpenAI([Reply("hello", finish_reason="length", usage={"prompt_tokens": 7, "completion_tokens": 3})]) as server:
        reply = chat(server)
    assert (reply.content, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens, reply.total_tokens) == \
        ("hello", "length", 7, 3, 10)
    assert reply.id.startswith("chatcmpl-") and reply.retries == 0


def test_a_server_that_trickles_bytes_is_cut_at_the_wall_clock_limit():
    # One byte every 0.2 s: a socket timeout of 1 s never fires, the wall clock must.
    with FakeOpenAI([Reply("x" * 200, trickle=0.2)]) as server:
        started = time.monotonic()
        with pytest.raises(ChatError, match=r"within 1 s \(timed out\)"):
            chat(server, request_timeout=1)
    assert time.monotonic() - started < 3


def test_stop_event_aborts_a_request_in_flight():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with FakeOpenAI([Reply("late", delay=30)]) as server:
        started = time.monotonic()
        with pytest.raises(ChatStopped):
            chat(server, stop_event=stop)
    assert time.monotonic() - started < 2


def test_stop_event_interrupts_the_backoff_wait():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with FakeOpenAI([Reply(status=429, headers={"Retry-After": "30"}), Reply("never")]) as server:
        started = time.monotonic()
        with pytest.raises(ChatStopped):
            chat(server, stop_event=stop, max_retries=2, deadline=60)
    assert time.monotonic() - started < 2


def test_retry_after_beyond_the_deadline_gives_up_at_once():
    with FakeOpenAI([Reply(status=429, headers={"Retry-After": "120"})]) as server:
        with pytest.raises(ChatError, match="would pass the agent's time limit"):
            chat(server, max_retries=3, deadline=10)


def test_used_up_quota_is_not_retried():
    with FakeOpenAI([Reply(status=429, content="You exceeded your current quota.", error_code="insufficient_quota")]) as server:
        with pytest.raises(ChatError, match="quota is used up"):
            chat(server, max_retries=3)
        assert len(server.chat_requests) == 1


def test_connection_refused_is_retried_then_reported():
    with FakeOpenAI() as server:
        url = server.url
    client = ChatClient(url, "", max_retries=2, retry_base_delay=0.01)
    with pytest.raises(ChatError, match=r"cannot reach .*gave up after 3 attempts"):
        client.chat(BODY, deadline=time.monotonic() + 10)


def test_retry_after_forms():
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < _retry_after({"retry-after": date}) <= 31
    assert _retry_after({"retry-after": "soon"}) is None and _retry_after({}) is None


def test_5xx_is_retried_with_exponential_backoff():
    # No Retry-After: the wait is retry_base_delay x 2^attempt, jittered down to half of it at most.
    with FakeOpenAI([Reply(status=503), Reply(status=500), Reply(status=502), Reply("ok")]) as server:
        reply = chat(server, max_retries=3, retry_base_delay=0.2)
        at = [r.at for r in server.chat_requests]
    assert reply.content == "ok" and reply.retries == 3
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4, gaps
    assert gaps[2] < 2.0  # and bounded: 0.8 s at most here
