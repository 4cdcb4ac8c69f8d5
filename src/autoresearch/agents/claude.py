"""The `claude` agent: Claude Code in print mode, `claude -p --output-format json`.

The prompt goes in on stdin (no argv length limit), the loop's rules as an appended system
prompt. Edits are auto-accepted (`--permission-mode acceptEdits`) and only the file tools are
pre-approved; anything else (Bash unless `allow_bash`) is denied, since print mode has nobody
to ask. Claude Code computes the cost itself: `total_cost_usd`; tokens are the sum of `usage`.

The result object (checked against Claude Code 2.1 in tests/agents/test_real_clis.py):
`type: "result"`, `subtype` (success | error_max_turns | error_during_execution), `is_error`,
`result` (final text; absent at the turn limit, then `errors` says why), `total_cost_usd`,
`usage` {input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens},
`session_id`, `num_turns`, and on API errors `api_error_status` (401, 429, 529, ...) with a
`result` such as "Not logged in · Please run /login" or "Invalid API key · Fix external API key".

[agent] keys, besides those of every CLI agent (see cli_agent.py):

    max_turns       = 30             # --max-turns (default: Claude Code's own limit)
    permission_mode = "acceptEdits"  # --permission-mode
    allow_bash      = false          # also pre-approve Bash (the agent could then run code)
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from autoresearch.agents.base import Context
from autoresearch.agents.cli_agent import Call, CliAgent, Failure, Outcome, classify, instructions, last_json_object, one_line
from autoresearch.agents.failures import message as last_message

DEFAULT_API = "https://api.anthropic.com"

FILE_TOOLS = ("Read", "Edit", "Write", "Glob", "Grep")
READ_TOOLS = ("Read", "Glob", "Grep")
EDIT_TOOLS = ("Edit", "Write", "NotebookEdit", "Bash")  # denied when it only writes the strategy memo
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class ClaudeAgent(CliAgent):
    name = "claude"
    program = "claude"
    install = "`npm install -g @anthropic-ai/claude-code` (or `pip install claude-agent-sdk`, whose wheel bundles it)"
    # Anthropic API or Claude subscription; Bedrock and Vertex credentials for those providers.
    api_keys = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "GOOGLE_APPLICATION_CREDENTIALS")
    keys = frozenset({"max_turns", "permission_mode", "allow_bash"})
    auth_fix = "log in with `claude /login`, or set ANTHROPIC_API_KEY"
    required_flags = ("--print", "--output-format", "--model", "--permission-mode", "--allowedTools",
                      "--disallowedTools", "--append-system-prompt")  # --max-turns works but is not listed in --help

    def __init__(self, task):
        super().__init__(task)
        self.max_turns = self.option("max_turns", (int,), 0, "a whole number of turns")
        self.permission_mode = self.option("permission_mode", (str,), "acceptEdits", "a permission mode")
        self.allow_bash = self.option("allow_bash", (bool,), False, "true or false")

    def env(self) -> dict[str, str]:
        # One retry policy: ours (retries/backoff), so Claude Code's own (about 10 retries, minutes offline) is off.
        return {**super().env(), "CLAUDE_CODE_MAX_RETRIES": "0"}

    def bundled(self) -> list[str]:
        """`pip install claude-agent-sdk` puts the binary in the package, not on PATH."""
        spec = importlib.util.find_spec("claude_agent_sdk")
        if spec is None or not spec.origin:
            return []
        return [str(Path(spec.origin).parent / "_bundled" / "claude")]

    def ready(self, path: str) -> str | None:
        env = self.env()
        if any(env.get(k) for k in ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")):
            return None  # the cloud provider's credentials: its SDK checks them
        done = self.run_quietly(path, "auth", "status", "--json")
        try:
            status = json.loads(done.stdout) if done is not None else None
        except ValueError:
            status = None  # a version without `auth status`: the first call will tell
        if isinstance(status, dict) and status.get("loggedIn") is False:
            return f"Claude Code is not logged in ({path} auth status); {self.auth_fix}"
        return self.endpoint_problem(env.get("ANTHROPIC_BASE_URL") or DEFAULT_API)

    def argv(self, context: Context, binary: str, scratch: Path, prompt_file: Path):
        tools = FILE_TOOLS + (("Bash",) if self.allow_bash else ())
        argv = [binary, "-p", "--output-format", "json", "--permission-mode", self.permission_mode,
                "--allowedTools", ",".join(tools), "--append-system-prompt", instructions(context, self.run_command)]
        if self.model:
            argv += ["--model", self.model]
        if self.max_turns:
            argv += ["--max-turns", str(self.max_turns)]
        return argv + self.extra_args, prompt_file

    def memo_argv(self, binary: str, scratch: Path, request_file: Path):
        argv = [binary, "-p", "--output-format", "json", "--allowedTools", ",".join(READ_TOOLS),
                "--disallowedTools", ",".join(EDIT_TOOLS)]
        return argv + (["--model", self.model] if self.model else []) + self.extra_args, request_file

    def parse(self, call: Call) -> Outcome:
        result = last_json_object(call.stdout)
        if result is None or result.get("type") != "result":
            message = last_message(call.stderr) or last_message(call.stdout) or "no output"
            failure = classify(message)
            return Outcome(failure=Failure.OUTPUT if failure is Failure.ERROR else failure,
                           error=f"no result object on stdout (exit {call.exit_code}; truncated?): {message}")
        usage = result.get("usage") or {}
        tokens = sum(int(usage.get(k) or 0) for k in USAGE_KEYS)
        data = {k: result[k] for k in ("session_id", "num_turns", "subtype") if k in result}
        data["usage"] = {k: int(usage.get(k) or 0) for k in USAGE_KEYS}
        if result.get("permission_denials"):
            data["permission_denials"] = [d.get("tool_name") for d in result["permission_denials"]]
        text = result.get("result") or ""
        outcome = dict(text=text, cost_usd=float(result.get("total_cost_usd") or 0.0), tokens=tokens, data=data)
        subtype = result.get("subtype", "")
        if not result.get("is_error") and subtype == "success":
            return Outcome(**outcome)
        if subtype == "error_max_turns":
            return Outcome(**outcome, failure=Failure.MAX_TURNS,
                           error=f"stopped at the turn limit ({data.get('num_turns', '?')} turns; raise [agent] max_turns)")
        message = one_line(text or "; ".join(map(str, result.get("errors") or [])) or subtype or "error")
        status = result.get("api_error_status")
        failure = classify(message, status if isinstance(status, int) else None)
        return Outcome(**outcome, failure=failure, error=message)
