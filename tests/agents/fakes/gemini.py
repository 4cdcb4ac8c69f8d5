"""Fake `gemini`: the arguments, JSON output and exit codes of Gemini CLI 0.61 in headless mode.

Success prints `{"session_id", "response", "stats"}` on stdout; a failure prints
`{"session_id", "error": {"type", "message", "code"}}` on stderr and exits with the FatalError
code (41 auth, 53 turn limit, ...) or, for an API error, the HTTP status (process.exit(429)
reads as 173). stdin comes before the -p text. An untrusted folder drops the approval mode
to "default", where the edit tools are denied in headless mode, as in the real CLI.
"""

import argparse
import json
import os
import sys
import time
import uuid

import fakecli

HELP = """Usage: gemini [options] [command]

Options:
  -m, --model                     Model  [string]
  -p, --prompt                    Run in non-interactive (headless) mode with the given prompt. Appended to input on stdin (if any).  [string]
      --skip-trust                Trust the current workspace for this session.  [boolean]
  -y, --yolo                      Automatically accept all actions  [boolean]
      --approval-mode             Set the approval mode  [string] [choices: "default", "auto_edit", "yolo", "plan"]
  -o, --output-format             The format of the CLI output.  [string] [choices: "text", "json", "stream-json"]
  -v, --version                   Show version number  [boolean]
  -h, --help                      Show help  [boolean]
"""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{HELP}\nUnknown arguments: {message}", file=sys.stderr)
        sys.exit(1)


def stats(prompt=30000, candidates=800, cached=10000, thoughts=700):
    total = prompt + candidates + thoughts
    return {"models": {"gemini-2.5-pro": {
        "api": {"totalRequests": 3, "totalErrors": 0, "totalLatencyMs": 5400},
        "tokens": {"input": prompt - cached, "prompt": prompt, "candidates": candidates, "total": total,
                   "cached": cached, "thoughts": thoughts, "tool": 0}}},
        "tools": {"totalCalls": 2, "totalSuccess": 2, "totalFail": 0, "byName": {}},
        "files": {"totalLinesAdded": 1, "totalLinesRemoved": 1}}


def fail(session: str, kind: str, message: str, code: int) -> int:
    print(json.dumps({"session_id": session, "error": {"type": kind, "message": message, "code": code}}, indent=2),
          file=sys.stderr)
    return code & 0xFF


def main() -> int:
    parser = Parser(add_help=False)
    parser.add_argument("query", nargs="*")
    parser.add_argument("-p", "--prompt")
    parser.add_argument("-o", "--output-format", choices=["text", "json", "stream-json"], default="text")
    parser.add_argument("--approval-mode", choices=["default", "auto_edit", "yolo", "plan"], default="default")
    parser.add_argument("-y", "--yolo", action="store_true")
    parser.add_argument("--skip-trust", action="store_true")
    parser.add_argument("-m", "--model")
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("-v", "--version", action="store_true")
    args = parser.parse_args()
    if fakecli.about_itself(args, HELP, "0.61.0"):
        return 0
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    prompt = f"{stdin}\n\n{args.prompt}" if stdin and args.prompt else stdin or args.prompt or ""
    mode = args.approval_mode
    if not args.skip_trust and os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") != "true" and mode != "default":
        print('Approval mode overridden to "default" because the current folder is not trusted.', file=sys.stderr)
        mode = "default"
    n = fakecli.call_number()
    fakecli.record("gemini", sys.argv[1:], prompt, os.getcwd(), approval_mode=mode)
    fakecli.leak("GEMINI_API_KEY")
    play = fakecli.scenario(n)
    session = str(uuid.uuid4())
    if play == "hang":
        fakecli.hang()
    if play == "offline":  # gemini 0.61 with no network: it retries with backoff for many minutes
        for attempt in range(1, 100):
            print(f"Attempt {attempt} failed. Retrying with backoff... Error: exception TypeError: fetch failed "
                  "sending request\n    at file:///usr/lib/node_modules/@google/gemini-cli/bundle/chunk.js:267671:13",
                  file=sys.stderr, flush=True)
            time.sleep(1)
    if play == "not_logged_in":
        home = os.environ.get("HOME", "~")
        return fail(session, "Error", f"Please set an Auth method in your {home}/.gemini/settings.json or specify one of "
                    "the following environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, "
                    "GOOGLE_GENAI_USE_GCA", 41)
    if play == "invalid_key":
        return fail(session, "ApiError", "[API Error: API key not valid. Please pass a valid API key.]", 400)
    if play == "rate_limit":
        return fail(session, "ApiError", "[API Error: You have exhausted your capacity on this model. "
                    "(Status: RESOURCE_EXHAUSTED, 429 Too Many Requests)]", 429)
    if play == "overloaded":
        return fail(session, "ApiError", "[API Error: The model is overloaded. Please try again later. (Status: UNAVAILABLE)]", 503)
    if play == "max_turns":
        return fail(session, "FatalTurnLimitedError", "Reached max session turns for this session. Increase the number "
                    "of turns by specifying maxSessionTurns in settings.json.", 53)
    if play == "question":
        text = fakecli.QUESTION
    elif mode not in ("auto_edit", "yolo") and fakecli.editable_from(prompt):
        text = "I could not edit train.py: the edit tool was denied in this approval mode."
    else:
        if play != "truncated":
            fakecli.edit(os.getcwd(), fakecli.editable_from(prompt))
        text = fakecli.explanation()
    out = json.dumps({"session_id": session, "response": text, "stats": stats()}, indent=2)
    if play.startswith("truncated"):
        sys.stdout.write(out[: len(out) // 2])
        return 0
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
