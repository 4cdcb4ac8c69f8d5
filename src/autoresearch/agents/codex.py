"""The `codex` agent: OpenAI Codex CLI, `codex exec --json` in a workspace-write sandbox.

`codex exec` reads the prompt from stdin when given `-` (our rules first, then the loop's
prompt: it has no system-prompt flag) and prints JSONL events on stdout:

    {"type":"thread.started","thread_id":"..."}
    {"type":"turn.started"}
    {"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"..."}}
    {"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"...","kind":"update"}],...}}
    {"type":"turn.completed","usage":{"input_tokens":N,"cached_input_tokens":N,"output_tokens":N}}
    {"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: ..."}}   # exit 1
    {"type":"error","message":"Reconnecting... 2/5 (...)"}   # also while it retries by itself

Codex reports tokens, not dollars: the cost comes from the price table (prices.py), with
`input_tokens` including the cached ones. Checked against codex-cli 0.169 in test_real_clis.py.

[agent] keys, besides those of every CLI agent (see cli_agent.py):

    sandbox = "workspace-write"   # --sandbox (read-only | workspace-write | danger-full-access)
    [agent.price]                 # USD per 1M tokens, see prices.py

Inside the agent sandbox ([sandbox] mode; execution/agent_sandbox.py) codex's own sandbox is
off (`danger-full-access`) unless `sandbox` is set: it would nest namespaces inside ours, which
fails where the orchestrator runs as root (its edits then fail), and ours already confines it
to the editable files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from autoresearch.agents.base import Context
from autoresearch.agents.cli_agent import Call, CliAgent, Failure, Outcome, classify, one_line
from autoresearch.agents.failures import message as last_message
from autoresearch.agents.prices import cost, lookup, price_table

DEFAULT_API = "https://api.openai.com/v1"
_PROVIDER_URL = re.compile(r"""base_url\s*=\s*["']([^"']+)["']""")

ASSUMED_MODEL = "gpt-5-codex"  # priced when no model is configured: codex's own default is not reported


class CodexAgent(CliAgent):
    name = "codex"
    program = "codex"
    install = "`npm install -g @openai/codex`"
    api_keys = ("OPENAI_API_KEY", "CODEX_API_KEY", "AZURE_OPENAI_API_KEY")
    help_args = ("exec", "--help")
    keys = frozenset({"sandbox"})
    cli_retries = True  # "Reconnecting... n/5", and its built-in provider's retries cannot be changed
    auth_fix = "run `codex login`, or set OPENAI_API_KEY (or CODEX_API_KEY)"
    required_flags = ("--json", "--sandbox", "--skip-git-repo-check", "--cd", "--model")

    def __init__(self, task):
        super().__init__(task)
        self.sandbox = self.option("sandbox", (str,), "workspace-write", "a codex sandbox mode")
        self.prices = price_table(task, self.options)

    def ready(self, path: str) -> str | None:
        env, extra = self.env(), " ".join(self.extra_args)
        custom = _PROVIDER_URL.search(extra)  # a provider of its own (-c model_providers.x={base_url=...})
        if not custom and not any(env.get(k) for k in self.api_keys):
            done = self.run_quietly(path, "login", "status")
            if done is not None and done.returncode != 0:
                said = last_message(done.stdout + "\n" + done.stderr) or f"exit {done.returncode}"
                return f"codex is not logged in ({path} login status: {said}); {self.auth_fix}"
        return self.endpoint_problem(custom.group(1) if custom else env.get("OPENAI_BASE_URL") or DEFAULT_API)

    def watched(self, stream: str, line: str) -> str | None:
        # Its errors are JSON events on stdout; stderr holds its tracing, which repeats them.
        if stream != "stdout" or not line.startswith("{"):
            return None
        try:
            event = json.loads(line)
        except ValueError:
            return None
        if isinstance(event, dict) and event.get("type") in ("error", "turn.failed"):
            return str(event.get("message") or (event.get("error") or {}).get("message") or "")
        return None

    def argv(self, context: Context, binary: str, scratch: Path, prompt_file: Path):
        stdin = self.prompt_with_rules(context, prompt_file, scratch)
        mode = self.sandbox if context.sandbox is None or "sandbox" in self.options else "danger-full-access"
        argv = [binary, "exec", "--json", "--sandbox", mode, "--skip-git-repo-check", "--cd", str(context.task_dir)]
        if self.model:
            argv += ["--model", self.model]
        return argv + self.extra_args + ["-"], stdin

    def memo_argv(self, binary: str, scratch: Path, request_file: Path):
        argv = [binary, "exec", "--json", "--sandbox", "read-only", "--skip-git-repo-check", "--cd", str(self.task.dir)]
        return argv + (["--model", self.model] if self.model else []) + self.extra_args + ["-"], request_file

    def parse(self, call: Call) -> Outcome:
        text, thread, failed, last_error, write_failed = "", None, None, None, []
        turns, usage, files = 0, {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0}, []
        for line in call.stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line; what came before still counts
            if not isinstance(event, dict):
                continue
            kind, item = event.get("type"), event.get("item") or {}
            if kind == "thread.started":
                thread = event.get("thread_id")
            elif kind == "item.completed" and item.get("type") == "agent_message":
                text = item.get("text") or ""
            elif kind == "item.completed" and item.get("type") == "file_change":
                if item.get("status") == "failed":  # e.g. it cannot write where its sandbox allows
                    write_failed += [c.get("path") for c in item.get("changes") or []]
                else:
                    files += [c.get("path") for c in item.get("changes") or []]
            elif kind == "turn.completed":
                turns += 1
                for key in usage:
                    usage[key] += int((event.get("usage") or {}).get(key) or 0)
            elif kind == "turn.failed":
                failed = (event.get("error") or {}).get("message") or "turn failed"
            elif kind == "error":
                last_error = event.get("message") or ""
        model = self.model or ASSUMED_MODEL
        price = lookup(self.prices, model)
        cached = min(usage["cached_input_tokens"], usage["input_tokens"])
        data = {"thread_id": thread, "usage": usage, "model": model,
                "price": price[0] if price else f"none for {model}: add it under [agent.price]"}
        if files:
            data["files"] = files
        outcome = dict(text=text, tokens=usage["input_tokens"] + usage["output_tokens"], data=data,
                       cost_usd=cost(price[1], usage["input_tokens"] - cached, cached, usage["output_tokens"]) if price else 0.0)
        if failed is not None:
            return Outcome(**outcome, failure=classify(failed), error=one_line(failed))
        if write_failed and not files:
            return Outcome(**outcome, failure=Failure.WRITE,
                           error=f"its edit of {', '.join(map(str, write_failed))} failed (file_change status "
                                 "\"failed\"): check the files' permissions and that the sandbox "
                                 f"({self.sandbox}) allows the task directory; CODEX_HOME must not be under /tmp")
        if turns == 0:
            if last_error:  # it gave up while reconnecting
                return Outcome(**outcome, failure=classify(last_error), error=one_line(last_error))
            return Outcome(**outcome, failure=Failure.OUTPUT,
                           error=f"no turn.completed event (exit {call.exit_code}; truncated output?): "
                                 f"{last_message(call.stderr) or 'no stderr'}")
        if call.exit_code != 0:
            message = last_message(call.stderr) or f"exit {call.exit_code}"
            return Outcome(**outcome, failure=classify(message), error=message)
        return Outcome(**outcome)
