"""The `openai` agent: any OpenAI-compatible chat-completions server edits the code.

Hosted APIs, vLLM, Ollama, the llama.cpp server, LM Studio... The model sees the rendered
prompt and the current editable files, and answers with SEARCH/REPLACE blocks
(`edit_blocks.py`); the orchestrator applies them. A block that does not apply, or Python
that no longer parses, goes back to the model with the exact reason, at most
`max_fix_rounds` times; then the iteration fails and the files are as they were.

Settings, in the task's `[agent]` section:

    [agent]
    kind = "openai"
    model = "qwen2.5-coder:14b"          # required: the model name the server serves
    base_url = "http://127.0.0.1:11434/v1"  # else $OPENAI_BASE_URL, $OPENAI_API_BASE, https://api.openai.com/v1
    api_key_env = "OPENAI_API_KEY"       # the NAME of the variable holding the key (never the key:
                                         # the config is committed); local servers need none
    max_fix_rounds = 3                   # answers sent back with the reason a block did not apply
    temperature = 0.7                    # omitted from the request when not set
    max_tokens = 8192                    # idem; an answer cut off at it is continued (max_continuations)
    max_continuations = 2
    price_in = 2.5                       # USD per 1M prompt tokens; cost is 0 when unset (local models)
    price_out = 10.0                     # USD per 1M completion tokens
    request_timeout = 600                # seconds, wall clock, for one HTTP request
    timeout = 3600                       # seconds, wall clock, for the whole iteration (all requests)
    max_retries = 5                      # on 429, 5xx, timeouts and connection errors, with backoff
    retry_base_delay = 1.0               # first backoff in seconds, doubled each retry, with jitter

    edit_format = "blocks"               # "blocks": SEARCH/REPLACE, free-form edits (the default);
                                         # "knobs": a structured knob change (below); "auto": knobs
                                         # when the task has any, else blocks

    [agent.extra_body]                   # more request fields, passed as they are: a server's own
    top_p = 0.9                          # options (vLLM `guided_grammar`, llama.cpp `grammar`, a seed...)

The same keys in an `[agent.openai]` table apply whatever the kind (`--agent openai` on a task
set up for another backend); a key this backend does not read is refused.

Structured edits (`edit_format = "knobs"`), for small local models: the request carries
`response_format` with a JSON schema of the task's knobs (the tuner's: knobs.py) and their
allowed values, which llama.cpp's server, vLLM and Ollama enforce by constrained decoding, so
every answer is one real, legal knob change; it is applied as the tuner applies its own.
A server that refuses `{"type": "json_schema"}` is asked with `{"type": "json_object",
"schema": ...}` (llama-cpp-python's form), and one that refuses both gets SEARCH/REPLACE.

A request that timed out is not sent again: the server may still be working on it, and a
single-slot local server would queue the duplicate behind it (raise `request_timeout`).

Two server quirks worth knowing: OpenAI's reasoning models refuse `max_tokens` and
`temperature` (leave them unset; put `max_completion_tokens` in extra_body), and Ollama cuts
a long prompt silently at its context length (start it with a larger OLLAMA_CONTEXT_LENGTH).

The API key lives only in memory and the Authorization header; everything written (the
transcript `agent.log` in the run directory, the ledger, errors) is redacted.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from autoresearch.agents.base import Agent, Context, Memo, MemoFailed
from autoresearch.agents.command import split_explanation
from autoresearch.agents import knobs as knob_edits
from autoresearch.agents.edit_blocks import EditError, apply_blocks, parse_blocks
from autoresearch.agents.openai_client import ChatClient, ChatError, ChatReply, ChatStopped
from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.records import Proposal
from autoresearch.secrets import redact, secret_values

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_READONLY_CHARS = 20_000  # a read-only file larger than this is named, not shown
# Reasoning models served raw (DeepSeek-R1, Qwen3 on vLLM without a reasoning parser) think in the
# content; drafts of blocks in there are not the answer.
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_BLOCK = re.compile(r"^[ \t]*<{5,9} ?SEARCH.*?^[ \t]*>{5,9} ?REPLACE[ \t]*$", re.MULTILINE | re.DOTALL)

SYSTEM = """\
You are the coding agent of an autonomous ML research loop. You cannot run commands or open
files: the user message holds the task, the history of experiments and the current content of
the files. Make the change you think most likely to improve the metric.

You edit files only with SEARCH/REPLACE blocks, which the orchestrator applies:

path/to/file.py
<<<<<<< SEARCH
the exact current lines to change
=======
the new lines
>>>>>>> REPLACE

Rules:
- Edit only these files: {editable}.{readonly}
- The SEARCH part copies the current lines exactly, every space and comment included, and must
  match exactly one place in the file: include a few unchanged lines around the change if needed.
  Use several small blocks for changes in several places.
- To create a new editable file, leave the SEARCH part empty.
- Every edited Python file must still parse.
- Nobody will answer questions: decide yourself, and always answer with edit blocks.
- Do not run the training or commit: the orchestrator does both.
- End your answer with the <explanation> block described in the task.
"""

FIX = """\
Your edit was NOT applied; the files are unchanged, exactly as shown in my first message.
{reasons}

Answer again with the complete set of SEARCH/REPLACE blocks for your change (all of them,
not only the failed ones), then the <explanation> block."""

NO_BLOCKS = ("your answer contains no SEARCH/REPLACE block, so nothing changed. Nobody will answer "
             "questions: decide yourself and answer with edit blocks")

MEMO_SYSTEM = ("You keep the strategy memo of an autonomous ML research loop: what works, what fails and why, "
               "what to try next and what to stop trying. Answer with the memo only, in Markdown.")

CONTINUE = "Your answer was cut off by the length limit. Continue exactly where it stopped, without repeating anything."

KNOBS_SYSTEM = """\
You are the coding agent of an autonomous ML research loop. The user message holds the task,
the history of experiments, the current files and the knobs you may change. Choose the change
of one or two knobs you think most likely to improve the metric, and answer with a JSON object
only: {"changes": [{"knob": NAME, "value": VALUE}], "why": "one sentence"}. VALUE must be one
of the allowed new values listed for that knob. Avoid changes the history shows did not help.
"""
KNOBS_FIX = """\
Your answer was NOT applied; the files are unchanged. {reason}

Answer again with the JSON object only: {{"changes": [{{"knob": NAME, "value": VALUE}}], "why": "..."}},
with VALUE one of the allowed new values of that knob."""
KNOBS_MAX_TOKENS = 512  # a knob answer is short; without a limit a small model may fill its context
OPTIONS = frozenset({"model", "base_url", "api_key_env", "max_fix_rounds", "temperature", "max_tokens",
                     "max_continuations", "price_in", "price_out", "request_timeout", "timeout", "max_retries",
                     "retry_base_delay", "extra_body", "edit_format"})
EDIT_FORMATS = ("blocks", "knobs", "auto")
# response_format forms, tried in turn until the server takes one (then kept for the night)
FORMATS = ("json_schema", "json_object", None)


class OpenAIAgent(Agent):
    name = "openai"

    def __init__(self, model: str, *, base_url: str = DEFAULT_BASE_URL, api_key_env: str = "OPENAI_API_KEY",
                 max_fix_rounds: int = 3, temperature: float | None = None, max_tokens: int | None = None,
                 max_continuations: int = 2, price_in: float = 0.0, price_out: float = 0.0,
                 request_timeout: float = 600.0, timeout: float = 3600.0, max_retries: int = 5,
                 retry_base_delay: float = 1.0, extra_body: dict | None = None, edit_format: str = "blocks"):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.max_fix_rounds = max_fix_rounds
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_continuations = max_continuations
        self.price_in, self.price_out = price_in, price_out
        self.request_timeout = request_timeout
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_base_delay = retry_base_delay
        self.extra_body = dict(extra_body or {})
        self.edit_format = edit_format
        self._format = 0  # index into FORMATS: the response_format form this server takes

    @classmethod
    def from_task(cls, task, seed: int = 0) -> "OpenAIAgent":
        from autoresearch.agents.cli_agent import backend_options, check_keys

        extra, own = backend_options(task, "openai")
        if "api_key" in extra:
            raise ConfigError(task.path, "agent.api_key", "never put the key in the task config (it is committed "
                              "with the task); export it and name the variable with api_key_env = \"OPENAI_API_KEY\"")
        check_keys(task, "openai", extra, own, OPTIONS)
        model = str(extra.get("model", "")).strip()
        if not model:
            raise ConfigError(task.path, "agent.model",
                              'kind = "openai" needs the model the server serves, e.g. model = "gpt-4.1" or "qwen2.5-coder:14b"')
        base_url = (str(extra.get("base_url") or "") or os.environ.get("OPENAI_BASE_URL")
                    or os.environ.get("OPENAI_API_BASE") or DEFAULT_BASE_URL)

        def number(key, kind, default, minimum=0):
            value = extra.get(key, default)
            if value is None:
                return None
            try:
                value = kind(value)
            except (TypeError, ValueError):
                raise ConfigError(task.path, f"agent.{key}", f"must be a {kind.__name__}, got {value!r}") from None
            if value < minimum:
                raise ConfigError(task.path, f"agent.{key}", f"must be at least {minimum}, got {value!r}")
            return value

        edit_format = extra.get("edit_format", "blocks")
        if edit_format not in EDIT_FORMATS:
            raise ConfigError(task.path, "agent.edit_format", f"must be one of {', '.join(EDIT_FORMATS)}, got {edit_format!r}")
        extra_body = extra.get("extra_body", {})
        if not isinstance(extra_body, dict):
            raise ConfigError(task.path, "agent.extra_body", f"must be a table of request fields, got {extra_body!r}")
        return cls(
            model, base_url=base_url, extra_body=extra_body, api_key_env=str(extra.get("api_key_env") or "OPENAI_API_KEY"),
            max_fix_rounds=number("max_fix_rounds", int, 3), temperature=number("temperature", float, None),
            max_tokens=number("max_tokens", int, None, 1), max_continuations=number("max_continuations", int, 2),
            price_in=number("price_in", float, 0.0), price_out=number("price_out", float, 0.0),
            request_timeout=number("request_timeout", float, 600.0, 0.001),
            timeout=number("timeout", float, task.agent.timeout, 0.001), edit_format=edit_format,
            max_retries=number("max_retries", int, 5), retry_base_delay=number("retry_base_delay", float, 1.0),
        )

    # -- start-up check ------------------------------------------------------------------
    def check(self, sandbox=None) -> None:  # starts no process: nothing to sandbox
        url = urlparse(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise AutoresearchError(f"agent.base_url {self.base_url!r} is not an http(s) URL; "
                                    "e.g. http://127.0.0.1:8000/v1 for vLLM or http://127.0.0.1:11434/v1 for Ollama")
        if not self._key() and url.hostname == "api.openai.com":
            raise AutoresearchError(f"${self.api_key_env} is not set: export your API key in it "
                                    "(or name another variable with agent.api_key_env)")
        try:
            self._client().probe(model=self.model)
        except ChatError as exc:
            raise AutoresearchError(redact(str(exc), self._secrets())) from None

    # -- one iteration -------------------------------------------------------------------
    def propose(self, context: Context) -> Proposal:
        deadline = time.monotonic() + self.timeout
        secrets = self._secrets()
        log = _Transcript(Path(context.prompt_file).parent / "agent.log" if context.prompt_file else None, secrets)
        usage = _Usage()
        client = self._client(on_event=lambda message: log.write("event", message))
        messages = [{"role": "system", "content": _system(context)},
                    {"role": "user", "content": _user(context)}]
        log.write("request", f"model {self.model} at {self.base_url}; the prompt is prompt.md plus the files")
        if self.edit_format != "blocks":
            found = knob_edits.knobs(context.task_dir, context.editable)
            if found and self._format < len(FORMATS) - 1:
                proposal = self._propose_knobs(context, found, client, usage, deadline, log, secrets)
                if proposal is not None:
                    return proposal
                messages[1] = {"role": "user", "content": _user(context)}  # the server takes no schema
            elif not found:
                log.write("edit format", "no knobs found in the editable files: SEARCH/REPLACE blocks")
        default_path = context.editable[0] if len(context.editable) == 1 else None
        reasons: list[str] = []
        for round_ in range(self.max_fix_rounds + 1):
            try:
                text = _THINK.sub("", self._ask(client, messages, usage, deadline, context.stop_event, log))
            except ChatStopped:
                return self._result(usage, round_, error="stopped", secrets=secrets)
            except _CutOff as exc:  # the complete blocks of a cut-off answer still count
                text = _THINK.sub("", exc.text)
                if not parse_blocks_quietly(text, default_path):
                    return self._result(usage, round_, error=str(exc), secrets=secrets)
            except ChatError as exc:
                return self._result(usage, round_, error=str(exc), secrets=secrets)
            messages.append({"role": "assistant", "content": text})
            try:
                blocks = parse_blocks(text, default_path=default_path)
                if not blocks:
                    raise EditError([NO_BLOCKS])
                changed = apply_blocks(context.task_dir, blocks, context.editable, context.readonly)
            except EditError as exc:
                reasons = exc.reasons
                log.write("not applied", "\n".join(reasons))
                messages.append({"role": "user", "content": FIX.format(reasons="\n".join(f"- {r}" for r in reasons))})
                continue
            description, explanation = split_explanation(_BLOCK.sub("", text))
            return self._result(usage, round_, description=description or f"edit {', '.join(changed)}",
                                explanation=explanation, secrets=secrets, changed=changed)
        first = text.strip().splitlines()[0][:200] if text.strip() else "(empty)"
        summary = "; ".join(_one_reason(r) for r in reasons)  # the closest-lines excerpts stay in agent.log
        if reasons == [NO_BLOCKS]:
            error = f"the model answered without any SEARCH/REPLACE block {self.max_fix_rounds + 1} times; it said: {first}"
        else:
            error = f"the edit did not apply after {self.max_fix_rounds + 1} answers: {summary}"
        return self._result(usage, self.max_fix_rounds, error=error[:1000], secrets=secrets)

    def write_memo(self, request: str) -> Memo:
        """The outer loop's strategy memo (outer.refresh_memo_if_due), written by the same model.

        Its tokens and cost come back with it (or with MemoFailed): the outer loop records them.
        """
        secrets = self._secrets()
        messages = [{"role": "system", "content": MEMO_SYSTEM}, {"role": "user", "content": request}]
        deadline = time.monotonic() + min(self.timeout, self.request_timeout * (self.max_retries + 1))
        usage = _Usage()
        try:
            text = self._ask(self._client(), messages, usage, deadline, None, _Transcript(None, secrets))
        except ChatError as exc:
            raise MemoFailed(redact(str(exc), secrets), cost_usd=self._cost(usage), tokens=usage.total) from None
        return Memo(redact(text, secrets), cost_usd=self._cost(usage), tokens=usage.total)

    def _cost(self, usage: "_Usage") -> float:
        return round((usage.prompt * self.price_in + usage.completion * self.price_out) / 1e6, 6)

    def _ask(self, client: ChatClient, messages: list[dict], usage: "_Usage", deadline: float,
             stop_event: threading.Event | None, log: "_Transcript") -> str:
        """One answer; an answer cut off by the length limit is continued, then joined."""
        parts: list[str] = []
        conversation = list(messages)
        for _ in range(self.max_continuations + 1):
            reply = client.chat(self._body(conversation), deadline=deadline, stop_event=stop_event)
            usage.add(reply)
            log.write(f"answer ({reply.finish_reason or 'no finish_reason'}, "
                      f"{reply.prompt_tokens}+{reply.completion_tokens} tokens)", reply.content)
            parts.append(reply.content)
            if reply.finish_reason != "length":
                return "".join(parts)
            if len(parts) > self.max_continuations:
                break
            usage.continuations += 1  # counted when asked for, not when the last answer was cut too
            conversation += [{"role": "assistant", "content": reply.content}, {"role": "user", "content": CONTINUE}]
        raise _CutOff(f"the answer was cut off by the length limit {self.max_continuations + 1} times "
                      f"(max_tokens = {self.max_tokens or 'the server default'}); raise agent.max_tokens", "".join(parts))

    def _propose_knobs(self, context: Context, found: dict, client: ChatClient, usage: "_Usage", deadline: float,
                       log: "_Transcript", secrets) -> Proposal | None:
        """One structured knob change; None when the server takes no schema (then: SEARCH/REPLACE)."""
        schema = knob_edits.schema(found)
        messages = [{"role": "system", "content": KNOBS_SYSTEM},
                    {"role": "user", "content": context.prompt.rstrip() + "\n\n## Knobs you may change\n\n"
                     + knob_edits.describe(found) + "\n\nAnswer with the JSON object only."}]
        reason = ""
        for round_ in range(self.max_fix_rounds + 1):
            while True:
                form = FORMATS[self._format]
                body = self._body(messages)
                body["max_tokens"] = self.max_tokens or KNOBS_MAX_TOKENS
                if form == "json_schema":
                    body["response_format"] = {"type": "json_schema", "json_schema": {
                        "name": "knob_change", "strict": True, "schema": schema}}
                else:
                    body["response_format"] = {"type": "json_object", "schema": schema}
                try:
                    reply = client.chat(body, deadline=deadline, stop_event=context.stop_event)
                    break
                except ChatStopped:
                    return self._result(usage, round_, error="stopped", secrets=secrets)
                except ChatError as exc:
                    if not exc.format_refused:
                        return self._result(usage, round_, error=str(exc), secrets=secrets)
                    log.write("response_format refused", f"{form}: {exc}")
                    self._format += 1
                    if FORMATS[self._format] is None:
                        return None
            usage.add(reply)
            log.write(f"answer ({reply.finish_reason or 'no finish_reason'}, {reply.prompt_tokens}+"
                      f"{reply.completion_tokens} tokens, response_format {form})", reply.content)
            messages.append({"role": "assistant", "content": reply.content})
            try:
                description, why, changed, values = knob_edits.apply(context.task_dir, found,
                                                                     knob_edits.parse(_THINK.sub("", reply.content)))
            except knob_edits.AnswerError as exc:
                reason = str(exc)
                log.write("not applied", reason)
                messages.append({"role": "user", "content": KNOBS_FIX.format(reason=reason)})
                continue
            proposal = self._result(usage, round_, description=description, explanation=why, secrets=secrets,
                                    changed=changed)
            return replace(proposal, data={**proposal.data, "edit_format": "knobs", "response_format": form,
                                           "params": {k: v for k, v in values.items()}})
        return self._result(usage, self.max_fix_rounds, error=f"no usable knob change after "
                            f"{self.max_fix_rounds + 1} answers: {reason}"[:1000], secrets=secrets)

    def _body(self, messages: list[dict]) -> dict:
        # The fields this agent relies on win over extra_body: a stream would not parse.
        body: dict = {**self.extra_body, "model": self.model, "messages": messages, "stream": False}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def _result(self, usage: "_Usage", fix_rounds: int, *, secrets, error: str = "", description: str = "",
                explanation: str = "", changed=()) -> Proposal:
        cost = self._cost(usage)
        data = {"model": self.model, "requests": usage.requests, "retries": usage.retries,
                "fix_rounds": fix_rounds, "continuations": usage.continuations,
                "prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
                "priced": bool(self.price_in or self.price_out)}
        if changed:
            data["edited"] = list(changed)
        if error:
            return Proposal("agent failed", "", ok=False, error=redact(error, secrets), cost_usd=cost,
                            tokens=usage.total, data=data)
        return Proposal(redact(description, secrets), redact(explanation, secrets), cost_usd=cost,
                        tokens=usage.total, data=data)

    def _key(self) -> str:
        return os.environ.get(self.api_key_env, "")

    def _secrets(self) -> list[str]:
        return secret_values(extra=[self._key()])

    def _client(self, on_event=None) -> ChatClient:
        return ChatClient(self.base_url, self._key(), key_hint=f"${self.api_key_env}",
                          request_timeout=self.request_timeout, max_retries=self.max_retries,
                          retry_base_delay=self.retry_base_delay, on_event=on_event)


class _CutOff(ChatError):
    """Every answer was cut at the length limit; `text` is what came, joined."""

    def __init__(self, message: str, text: str):
        super().__init__(message)
        self.text = text


def parse_blocks_quietly(text: str, default_path: str | None) -> list:
    try:
        return parse_blocks(text, default_path=default_path)
    except EditError:
        return []


def _one_reason(reason: str) -> str:
    """A reason's first line, without the lead-in of the excerpt that followed it in agent.log."""
    first = reason.partition("\n")[0]
    return re.sub(r"[;,]? *(the closest lines are [\d-]+, )?which read exactly:$", "", first).rstrip(" ;,:")


class _Usage:
    def __init__(self):
        self.prompt = self.completion = self.total = self.requests = self.retries = self.continuations = 0

    def add(self, reply: ChatReply) -> None:
        self.prompt += reply.prompt_tokens
        self.completion += reply.completion_tokens
        self.total += reply.total_tokens
        self.requests += 1 + reply.retries
        self.retries += reply.retries


class _Transcript:
    """What the model answered and why an answer was sent back, redacted, appended as it happens."""

    def __init__(self, path: Path | None, secrets: list[str]):
        self.path, self.secrets = path, secrets  # no path (no run directory): nothing written

    def write(self, title: str, text: str) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(redact(f"## {time.strftime('%H:%M:%S')} {title}\n\n{text.rstrip()}\n\n", self.secrets))


def _system(context: Context) -> str:
    readonly = (f" Never modify: {', '.join(context.readonly)} (checked byte for byte; blocks for them are refused)."
                if context.readonly else "")
    return SYSTEM.format(editable=", ".join(context.editable), readonly=readonly)


def _user(context: Context) -> str:
    parts = [context.prompt.rstrip(), "", "## Current files", ""]
    for name in context.editable:
        parts.append(_shown(context.task_dir, name, "editable"))
    for name in context.readonly:
        parts.append(_shown(context.task_dir, name, "read-only, for reference", limit=_READONLY_CHARS))
    return "\n".join(parts)


def _shown(task_dir: Path, name: str, role: str, limit: int | None = None) -> str:
    path = Path(task_dir) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"### {name} ({role})\n\n(does not exist yet)\n"
    except (UnicodeDecodeError, OSError):
        return f"### {name} ({role})\n\n(not a text file; not shown)\n"
    if limit is not None and len(text) > limit:
        return f"### {name} ({role})\n\n({len(text)} characters; not shown)\n"
    # A fence longer than any backtick run inside, so the file cannot close it early.
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    language = "python" if name.endswith(".py") else ""
    return f"### {name} ({role})\n\n{fence}{language}\n{text.rstrip(chr(10))}\n{fence}\n"
