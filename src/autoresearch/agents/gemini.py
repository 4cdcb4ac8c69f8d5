"""The `gemini` agent: Gemini CLI in headless mode, `gemini -p ... --output-format json`.

Gemini CLI puts stdin before the `-p` text, so the prompt (our rules, then the loop's
prompt) goes in on stdin and `-p` only says what to do with it. `--approval-mode auto_edit`
approves the edit tools; others are denied in headless mode. An untrusted folder silently
downgrades the approval mode to "default", so the workspace is trusted for the call through
GEMINI_CLI_TRUST_WORKSPACE=true (the env form of `--skip-trust`, which older versions lack).

Output (checked against gemini-cli 0.61 in test_real_clis.py): one JSON object
`{"session_id", "response", "stats": {"models": {name: {"tokens": {"prompt", "candidates",
"total", "cached", "thoughts", ...}}}, ...}}` on stdout; on failure `{"session_id", "error":
{"type", "message", "code"}}` on stderr. Exit codes (FatalError classes of the CLI): 0 ok,
1 general or API error, 41 authentication, 42 input, 44 sandbox, 52 config, 53 turn limit,
54 tool execution, 55 untrusted workspace, 130 cancelled. No cost is reported: it comes from
the price table (prices.py).

[agent] keys, besides those of every CLI agent (see cli_agent.py):

    approval_mode = "auto_edit"   # --approval-mode (yolo also approves shell commands)
    [agent.price]                 # USD per 1M tokens, see prices.py
"""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.agents.base import Context
from autoresearch.agents.cli_agent import (Call, CliAgent, Failure, Outcome, classify,
                                           last_json_object, one_line)
from autoresearch.agents.failures import message as last_message
from autoresearch.agents.prices import cost, lookup, price_table

DEFAULT_API = "https://generativelanguage.googleapis.com"
AUTH_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_GCA",
            "GOOGLE_APPLICATION_CREDENTIALS")

EXIT_CODES = {41: Failure.AUTH, 42: Failure.ERROR, 44: Failure.ERROR, 52: Failure.ERROR, 53: Failure.MAX_TURNS,
              54: Failure.ERROR, 55: Failure.ERROR, 130: Failure.STOPPED}
PROMPT_FLAG_TEXT = "Carry out the task above: edit the files, then end with the <explanation> block."


class GeminiAgent(CliAgent):
    name = "gemini"
    program = "gemini"
    install = "`npm install -g @google/gemini-cli`"
    api_keys = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS")
    required_flags = ("--prompt", "--output-format", "--approval-mode", "--model")
    keys = frozenset({"approval_mode"})
    cli_retries = True  # "Attempt n failed. Retrying with backoff...": no setting turns it off
    auth_fix = "set GEMINI_API_KEY, or run `gemini` once to log in"

    def __init__(self, task):
        super().__init__(task)
        self.approval_mode = self.option("approval_mode", (str,), "auto_edit", "a gemini approval mode")
        self.prices = price_table(task, self.options)

    def env(self) -> dict[str, str]:
        return {**super().env(), "GEMINI_CLI_TRUST_WORKSPACE": "true"}

    def ready(self, path: str) -> str | None:
        env = self.env()
        home = Path(env.get("HOME") or Path.home())
        if not any(env.get(k) for k in AUTH_ENV):
            try:
                settings = json.loads((home / ".gemini" / "settings.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                settings = {}
            auth = ((settings.get("security") or {}).get("auth") or {}) if isinstance(settings, dict) else {}
            selected = auth.get("selectedType") or (settings.get("selectedAuthType") if isinstance(settings, dict) else None)
            if not selected:
                return (f"gemini has no login: no {', '.join(AUTH_ENV[:2])} and no auth method in "
                        f"{home / '.gemini' / 'settings.json'}; {self.auth_fix}")
            if selected == "oauth-personal" and not (home / ".gemini" / "oauth_creds.json").is_file():
                return f"gemini is set to log in with Google but {home / '.gemini' / 'oauth_creds.json'} is missing; {self.auth_fix}"
        if env.get("GOOGLE_GENAI_USE_VERTEXAI"):
            return None
        return self.endpoint_problem(env.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_API)

    def argv(self, context: Context, binary: str, scratch: Path, prompt_file: Path):
        stdin = self.prompt_with_rules(context, prompt_file, scratch)
        argv = [binary, "--prompt", PROMPT_FLAG_TEXT, "--output-format", "json", "--approval-mode", self.approval_mode]
        if self.model:
            argv += ["--model", self.model]
        return argv + self.extra_args, stdin

    def memo_argv(self, binary: str, scratch: Path, request_file: Path):
        # "default" approval mode: in headless mode every tool that would ask is denied, edits included.
        argv = [binary, "--prompt", "Answer the request above.", "--output-format", "json", "--approval-mode", "default"]
        return argv + (["--model", self.model] if self.model else []) + self.extra_args, request_file

    def parse(self, call: Call) -> Outcome:
        result = last_json_object(call.stdout) or last_json_object(call.stderr)
        if result is None:
            message = last_message(call.stderr) or last_message(call.stdout) or "no output"
            failure = EXIT_CODES.get(call.exit_code) or classify(message)
            return Outcome(failure=Failure.OUTPUT if failure is Failure.ERROR else failure,
                           error=f"no JSON result (exit {call.exit_code}; truncated?): {message}")
        tokens, dollars, priced = 0, 0.0, {}
        for model, metrics in ((result.get("stats") or {}).get("models") or {}).items():
            t = metrics.get("tokens") or {}
            tokens += int(t.get("total") or 0)
            cached = int(t.get("cached") or 0)
            price = lookup(self.prices, model)
            priced[model] = price[0] if price else "none: add it under [agent.price]"
            if price:
                dollars += cost(price[1], max(int(t.get("prompt") or 0) - cached, 0), cached,
                                int(t.get("candidates") or 0) + int(t.get("thoughts") or 0))
        data = {"session_id": result.get("session_id"), "price": priced}
        outcome = dict(text=result.get("response") or "", cost_usd=dollars, tokens=tokens, data=data)
        error = result.get("error")
        if not error and call.exit_code == 0:
            return Outcome(**outcome)
        error = error if isinstance(error, dict) else {"message": str(error or "")}
        message = one_line(error.get("message") or last_message(call.stderr) or f"exit {call.exit_code}")
        code = error.get("code") if isinstance(error.get("code"), int) else call.exit_code
        failure = EXIT_CODES.get(code) or classify(message, code if isinstance(code, int) and code >= 400 else None)
        return Outcome(**outcome, failure=failure, error=message)
