"""Fake `aider`: the arguments, side effects, analytics log and exit codes of aider-chat 0.86.

Like the real one it exits 0 even when the model call failed (the `litellm.<Kind>Error` line
and aider's advice go to stdout), and it writes into the repository unless told not to:
`.aider*` appended to .gitignore without --no-gitignore, `.aider.chat.history.md` and
`.aider.input.history` without explicit history files, `.aider.tags.cache.v4/` unless
`--map-tokens 0`. Unknown options are configargparse's "unrecognized arguments", exit 2.
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import fakecli

USER = str(uuid.uuid4())
FLAGS = ["yes-always"]
TOGGLES = ["git", "auto-commits", "dirty-commits", "gitignore", "stream", "pretty", "fancy-input", "analytics", "check-update",
           "show-model-warnings", "show-release-notes", "suggest-shell-commands", "detect-urls", "restore-chat-history", "dry-run"]


class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"usage: aider [-h] ...\naider: error: {message}", file=sys.stderr)
        sys.exit(2)


def main() -> int:
    parser = Parser(add_help=False)
    parser.add_argument("files", nargs="*")
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--message-file")
    parser.add_argument("--model")
    parser.add_argument("--read", action="append", default=[])
    parser.add_argument("--map-tokens", type=int, default=1024)
    parser.add_argument("--analytics-log")
    parser.add_argument("--chat-history-file", default=".aider.chat.history.md")
    parser.add_argument("--input-history-file", default=".aider.input.history")
    parser.add_argument("--yes-always", action="store_true")
    for name in TOGGLES:
        parser.add_argument(f"--{name}", dest=name.replace("-", "_"), action="store_true", default=name != "dry-run")
        parser.add_argument(f"--no-{name}", dest=name.replace("-", "_"), action="store_false")
    args = parser.parse_args()
    if args.help:
        print(parser.format_help())  # lists every option, as configargparse's help does
        return 0
    cwd = Path.cwd()
    analytics = Path(args.analytics_log) if args.analytics_log else None

    def event(name, **props):
        if analytics:
            with open(analytics, "a") as f:
                f.write(json.dumps({"event": name, "properties": props, "user_id": USER, "time": int(time.time())}) + "\n")

    def chat(text):
        with open(cwd / args.chat_history_file, "a") as f:
            f.write(text)

    message = Path(args.message_file).read_text() if args.message_file else ""
    n = fakecli.call_number()
    fakecli.record("aider", sys.argv[1:], message, os.getcwd(), files=args.files, read=args.read)
    fakecli.leak("OPENAI_API_KEY")
    play = fakecli.scenario(n)
    event("launched")
    if args.gitignore:
        with open(cwd / ".gitignore", "a") as f:
            f.write(".aider*\n")
        print("Added .aider* to .gitignore")
    if args.map_tokens:
        (cwd / ".aider.tags.cache.v4").mkdir(exist_ok=True)
    (cwd / args.input_history_file).write_text(f"\n# {time.ctime()}\n+{message}\n")
    model = args.model or "gpt-4o"
    print(f"Aider v0.86.2\nModel: {model} with diff edit format\nGit repo: .git with 2 files\n"
          f"Repo-map: {'disabled' if not args.map_tokens else 'using 1024 tokens'}")
    for f in args.files:
        print(f"Added {f} to the chat.")
    chat(f"\n# aider chat started at {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n> aider {' '.join(sys.argv[1:])}  \n")
    chat("\n" + "  \n".join(f"#### {line}" for line in message.splitlines()) + "  \n")
    event("message_send_starting")
    if play == "hang":
        fakecli.hang()
    if play == "browser_login":  # aider 0.86 with no model and no key (stdout, then it waits 5 minutes)
        print("No LLM model was specified and no API keys were provided.\n"
              "OpenRouter provides free and paid access to many LLMs.\n\n"
              "Please open this URL in your browser to connect Aider with OpenRouter:\n\n"
              "https://openrouter.ai/auth?callback_url=http://localhost:8484/callback/aider&code_challenge=x\n\n"
              "Waiting up to 5 minutes for you to finish in the browser...\nUse Control-C to interrupt.", flush=True)
        fakecli.hang()
    errors = {
        "not_logged_in": ("litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key "
                          "provided: sk-fake***", "The API provider is not able to authenticate you. Check your API key."),
        "rate_limit": ("litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests",
                       "The API provider has rate limited you. Try again later or check your quotas."),
        "overloaded": ("litellm.InternalServerError: InternalServerError: OpenAIException - The server is overloaded",
                       "The API provider's servers are down or overloaded."),
    }
    errors["invalid_key"] = errors["not_logged_in"]
    if play in errors:
        print("\n".join(errors[play]))
        event("exit", reason="Completed --message-file")
        return 0
    if play == "truncated":
        sys.stdout.write("I'll raise X.\n\ntrain.py\n```python\n<<<<<<< SEA")
        return 0
    sends = 1
    if play == "question":
        reply = fakecli.QUESTION
    elif play == "nomatch":
        reply = "train.py\n```python\n<<<<<<< SEARCH\nY = 1\n=======\nY = 2\n>>>>>>> REPLACE\n```"
        sends = 3  # aider reflects the failure back to the model, up to three times
    else:
        reply = f"train.py\n```python\n<<<<<<< SEARCH\n...\n>>>>>>> REPLACE\n```\n\n{fakecli.explanation()}"
    print(f"\n{reply}\n")
    chat(f"\n{reply}\n\n")
    total = 0.0
    for _ in range(sends):
        total += 0.0135
        event("message_send", main_model=model, weak_model=model, editor_model=model, edit_format="diff",
              prompt_tokens=2400, completion_tokens=310, total_tokens=2710, cost=0.0135, total_cost=round(total, 4))
        print(f"Tokens: 2.4k sent, 310 received. Cost: $0.01 message, ${total:.2f} session.")
    if play == "nomatch":
        print("# 1 SEARCH/REPLACE block failed to match!\n\n## SearchReplaceNoExactMatch: This SEARCH block failed "
              "to exactly match lines in train.py\nOnly 3 reflections allowed, stopping.")
    elif play != "question" and not args.dry_run:
        changed = fakecli.edit(cwd, args.files)
        for f in changed:
            print(f"Applied edit to {f}")
            chat(f"> Applied edit to {f}  \n")
    event("exit", reason="Completed --message-file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
