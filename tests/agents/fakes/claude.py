"""Fake `claude`: the arguments, JSON result objects and exit codes of Claude Code 2.1 in print mode.

The shapes are trimmed copies of what the real binary printed (tests/agents/test_real_clis.py
runs the real one): an unknown option is commander's "error: unknown option" with exit 1,
every result is one JSON object on stdout, and any error result exits 1.
"""

import argparse
import json
import os
import sys
import uuid

import fakecli

HELP = """Usage: claude [options] [command] [prompt]

Options:
  --allowedTools, --allowed-tools <tools...>  Comma or space-separated list of tool names to allow
  --append-system-prompt <prompt>            Add text to the end of the default system prompt
  --disallowedTools, --disallowed-tools <tools...>
  --max-budget-usd <amount>
  --model <model>                            Model for the current session
  --output-format <format>                   "text" (default), "json" (single result), or "stream-json"
  --permission-mode <mode>                   (choices: "acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan")
  -p, --print                                Print response and exit (useful for pipes)
  --verbose                                  Override the verbose setting
  -v, --version                              Output the version number
"""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: unknown option '{message}'", file=sys.stderr)
        sys.exit(1)


def result(subtype="success", is_error=False, text=None, cost=0.0123, usage=None, **extra):
    usage = usage or {"input_tokens": 1200, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 4000,
                      "output_tokens": 250}
    out = {"type": "result", "subtype": subtype, "is_error": is_error, "duration_ms": 2100, "duration_api_ms": 1900,
           "num_turns": 3, "session_id": str(uuid.uuid4()), "total_cost_usd": cost,
           "usage": {**usage, "server_tool_use": {"web_search_requests": 0}, "service_tier": "standard"},
           "modelUsage": {}, "permission_denials": [], "api_error_status": None, "uuid": str(uuid.uuid4())}
    if text is not None:
        out["result"] = text
    out.update(extra)
    return out


def tools(values) -> set:
    return {t for v in values or [] for t in v.replace(",", " ").split()}


def can_edit(args) -> bool:
    allowed = args.permission_mode in ("acceptEdits", "bypassPermissions") or "Edit" in tools(args.allowedTools)
    return allowed and "Edit" not in tools(args.disallowedTools)


def main() -> int:
    if sys.argv[1:3] == ["auth", "status"]:  # what Claude Code 2.1 prints (--json is its default)
        logged_in = bool(os.environ.get("ANTHROPIC_API_KEY")) and os.environ.get("FAKE_LOGGED_IN") != "0"
        print(json.dumps({"loggedIn": logged_in, "authMethod": "api_key" if logged_in else "none",
                          "apiProvider": "firstParty"}, indent=2))
        return 0 if logged_in else 1
    parser = Parser(add_help=False)
    parser.add_argument("prompt", nargs="?")
    parser.add_argument("-p", "--print", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("--output-format", choices=["text", "json", "stream-json"], default="text")
    parser.add_argument("--model")
    parser.add_argument("--max-turns", type=int)
    parser.add_argument("--permission-mode", choices=["acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan"])
    parser.add_argument("--allowedTools", "--allowed-tools", nargs="+")
    parser.add_argument("--disallowedTools", "--disallowed-tools", nargs="+")
    parser.add_argument("--append-system-prompt")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if fakecli.about_itself(args, HELP, "2.1.330 (Claude Code)"):
        return 0
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    if args.print and not prompt.strip():
        print("Error: Input must be provided either through stdin or as a prompt argument when using --print",
              file=sys.stderr)
        return 1
    n = fakecli.call_number()
    fakecli.record("claude", sys.argv[1:], prompt, os.getcwd(), system=args.append_system_prompt)
    fakecli.leak("ANTHROPIC_API_KEY")
    play = fakecli.scenario(n)
    files = fakecli.editable_from(args.append_system_prompt or prompt)
    if play == "hang":
        fakecli.hang()
    if play == "not_logged_in":
        out = result(is_error=True, text="Not logged in · Please run /login", cost=0, usage={}, num_turns=1,
                     terminal_reason="api_error")
    elif play == "invalid_key":
        out = result(is_error=True, text="Invalid API key · Fix external API key", cost=0, usage={},
                     api_error_status=401, api_error_type="authentication_error", terminal_reason="api_error")
    elif play == "offline":  # Claude Code 2.1 with CLAUDE_CODE_MAX_RETRIES=0 and no network
        out = result(is_error=True, cost=0, usage={}, api_error_status=None, terminal_reason="api_error",
                     text="API Error: Can't reach the API server — check your internet or DNS (EAI_AGAIN)")
    elif play == "rate_limit":
        out = result(is_error=True, cost=0, usage={}, api_error_status=429, api_error_type="rate_limit_error",
                     text="API Error: Request rejected (429) · Number of requests has exceeded your rate limit")
    elif play == "overloaded":
        out = result(is_error=True, cost=0, usage={}, api_error_status=529, api_error_type="overloaded_error",
                     text="API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment.")
    elif play == "max_turns":
        out = result(subtype="error_max_turns", is_error=True, cost=0.004, num_turns=args.max_turns or 2,
                     terminal_reason="max_turns", errors=[f"Reached maximum number of turns ({args.max_turns or 1})"])
    elif play == "question":
        out = result(text=fakecli.QUESTION)
    elif files and not can_edit(args):  # print mode has nobody to approve an edit: it is denied
        out = result(text="I could not edit train.py: permission to use Edit was denied.",
                     permission_denials=[{"tool_name": "Edit", "tool_use_id": "toolu_01", "tool_input": {}}])
    else:  # success, truncated, truncated_after_edit
        if play != "truncated":
            fakecli.edit(os.getcwd(), files)
        out = result(text=fakecli.explanation())
    text = json.dumps(out)
    if play.startswith("truncated"):
        sys.stdout.write(text[: len(text) // 2])
        return 0
    print(text)
    return 1 if out["is_error"] else 0


if __name__ == "__main__":
    sys.exit(main())
