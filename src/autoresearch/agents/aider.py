"""The `aider` agent: `aider --message-file ... --yes-always` on the editable files.

Editable files are given as files to edit, read-only files with `--read`. The loop owns git,
so aider does not use it (`--no-git`: else, where git has no identity, aider writes a made-up
one into the repository's .git/config, which the agent sandbox keeps read-only), commits
nothing (`--no-auto-commits --no-dirty-commits`), leaves .gitignore alone (`--no-gitignore`), and writes nothing into the work tree besides the edits: its chat and
input histories go to the scratch directory and the repo map, whose tag cache is a folder in
the repository, is off (`--map-tokens 0`; the files to edit are named anyway). It never runs
shell commands it suggests (`--no-suggest-shell-commands`), nor fetches URLs in the prompt.

Aider exits 0 even when the model call failed, so the outcome comes from its analytics log
(`--analytics-log`, written even with `--no-analytics`): one JSON line per event, e.g.
`{"event": "message_send", "properties": {"prompt_tokens", "completion_tokens",
"total_tokens", "cost", "total_cost", ...}}`; an error shows as no `message_send` event and
a `litellm.<Kind>Error: ...` line on stdout (aider has already retried transient ones).
Checked against aider-chat 0.86 in test_real_clis.py.

[agent] keys: those of every CLI agent (see cli_agent.py); `model` is aider's `--model`
(e.g. "sonnet", "openai/my-model" with OPENAI_API_BASE for a local server). A model is
required: without one aider offers OpenRouter's browser login and waits five minutes for it.
litellm, under aider, would fetch its model price map from the internet on every start;
LITELLM_LOCAL_MODEL_COST_MAP=True makes it use the copy it ships.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from autoresearch.agents.base import Context
from autoresearch.agents.cli_agent import Call, CliAgent, Failure, Outcome, classify, one_line
from autoresearch.agents.failures import message as last_message

FIXED_FLAGS = ("--yes-always", "--no-git", "--no-auto-commits", "--no-dirty-commits", "--no-gitignore", "--no-stream",
               "--no-pretty", "--no-fancy-input", "--no-analytics", "--no-check-update", "--no-show-model-warnings",
               "--no-show-release-notes", "--no-suggest-shell-commands", "--no-detect-urls",
               "--no-restore-chat-history", "--map-tokens", "0")
_LLM_ERROR = re.compile(r"litellm\.\w+(?:Error|Timeout)[^\n]*(?:\n(?!\n)[^\n]*)*")  # the error and its wrapped lines
_WATCHED_STDOUT = re.compile(r"litellm\.\w+(Error|Timeout)|open this URL in your browser|finish in the browser")
_NO_MATCH = re.compile(r"SEARCH/REPLACE blocks? failed to match|SearchReplaceNoExactMatch")
# An edit block in aider's reply, with the file name line and the fence around it: not prose, so
# not the description when the reply has no <explanation> block.
_EDIT_BLOCK = re.compile(r"^(?:[\w./-]+[ \t]*\n)?(?:```[^\n]*\n)?[ \t]*<{5,9} ?SEARCH.*?^[ \t]*>{5,9} ?REPLACE[ \t]*$"
                         r"(?:\n```[ \t]*$)?", re.MULTILINE | re.DOTALL)


class AiderAgent(CliAgent):
    name = "aider"
    program = "aider"
    install = "`pip install aider-chat` (or `python -m pip install aider-install && aider-install`)"
    # aider reaches any provider through litellm: the key of whichever its model needs.
    api_keys = ("AIDER_*", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENROUTER_API_KEY",
                "DEEPSEEK_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "XAI_API_KEY", "AZURE_API_KEY", "COHERE_API_KEY")
    cli_retries = True  # aider retries litellm's transient errors itself, up to a minute
    auth_fix = "set the API key of the model's provider (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY)"
    required_flags = ("--message-file", "--yes-always", "--no-auto-commits", "--no-dirty-commits", "--read",
                      "--model", "--analytics-log", "--no-gitignore", "--map-tokens", "--chat-history-file", "--dry-run")

    def env(self) -> dict[str, str]:
        # litellm's price map from the package, not fetched from the internet on every call
        return {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **super().env()}

    def ready(self, path: str) -> str | None:
        env = self.env()
        if not (self.model or env.get("AIDER_MODEL") or "--model" in self.extra_args):
            return ("no model is named: set `model` under [agent] (e.g. \"sonnet\", or \"openai/NAME\" with "
                    "OPENAI_API_BASE for a local server); without one aider starts a browser login and waits")
        model = self.model or env.get("AIDER_MODEL", "")
        base = env.get("OPENAI_API_BASE") if model.startswith("openai/") else (
            env.get("OLLAMA_API_BASE") if model.startswith(("ollama/", "ollama_chat/")) else None)
        return self.endpoint_problem(base) if base else None

    def watched(self, stream: str, line: str) -> str | None:
        # stdout holds the model's reply too: only litellm's errors and the login prompt count there
        return line if stream == "stderr" or _WATCHED_STDOUT.search(line) else None

    def argv(self, context: Context, binary: str, scratch: Path, prompt_file: Path):
        message = self.prompt_with_rules(context, prompt_file, scratch)
        read = [arg for name in context.readonly for arg in ("--read", name)]
        return [binary, "--message-file", str(message), *self._session(scratch), *read, "--", *context.editable], None

    def memo_argv(self, binary: str, scratch: Path, request_file: Path):
        return [binary, "--message-file", str(request_file), "--dry-run", *self._session(scratch)], None

    def _session(self, scratch: Path) -> list[str]:
        """Flags of every call: nothing written into the work tree, the records in `scratch`."""
        return [*FIXED_FLAGS, "--analytics-log", str(scratch / "analytics.jsonl"), "--chat-history-file",
                str(scratch / "chat.md"), "--input-history-file", str(scratch / "input.txt"),
                *(["--model", self.model] if self.model else []), *self.extra_args]

    def parse(self, call: Call) -> Outcome:
        sends, exceptions = [], []
        log = call.dir / "analytics.jsonl"
        for line in (log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            props = event.get("properties") or {}
            if event.get("event") == "message_send":
                sends.append(props)
            elif event.get("event") == "message_send_exception":
                exceptions.append(str(props.get("exception", "")))
        tokens = sum(int(p.get("total_tokens") or 0) for p in sends)
        dollars = sum(float(p.get("cost") or 0.0) for p in sends)
        data = {"messages": len(sends), "edit_format": sends[-1].get("edit_format") if sends else None}
        outcome = dict(text=_assistant_text(call.dir / "chat.md") or call.stdout, cost_usd=dollars, tokens=tokens,
                       data=data)
        output = call.stdout + "\n" + call.stderr
        if call.exit_code != 0:
            message = last_message(call.stderr) or last_message(call.stdout) or f"exit {call.exit_code}"
            return Outcome(**outcome, failure=classify(message), error=f"exit {call.exit_code}: {message}")
        if not sends:
            errors = _LLM_ERROR.findall(output) + exceptions
            if errors:
                message = one_line(errors[-1])
                return Outcome(**outcome, failure=classify(message), error=message)
            return Outcome(**outcome, failure=Failure.OUTPUT,
                           error=f"no model call recorded in the analytics log: {last_message(output) or 'no output'}")
        if _NO_MATCH.search(output) and "Applied edit to" not in output:
            return Outcome(**outcome, failure=Failure.ERROR, error="its edit blocks did not match the files")
        return Outcome(**outcome)


def _assistant_text(chat: Path) -> str:
    """The model's replies from aider's chat history (user lines are `#### `, tool output `> `)."""
    if not chat.exists():
        return ""
    lines = [line for line in chat.read_text(encoding="utf-8", errors="replace").splitlines()
             if not line.startswith(("#### ", "> ", "# aider chat started"))]
    return _EDIT_BLOCK.sub("", "\n".join(lines)).strip()
