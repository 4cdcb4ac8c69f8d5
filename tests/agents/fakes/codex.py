"""Fake `codex`: the arguments, JSONL events and exit codes of `codex exec --json` (codex-cli 0.169).

Errors are clap's ("error: unexpected argument ... found", exit 2); a failed turn prints
`turn.failed` and exits 1, after the `error` events codex prints while it reconnects; the
401 text is what the real binary printed against our fake server (test_real_clis.py).
"""

import argparse
import json
import os
import sys
import time
import uuid

import fakecli

HELP = """Run Codex non-interactively

Usage: codex exec [OPTIONS] [PROMPT]

Options:
  -c, --config <key=value>        Override a configuration value
  -m, --model <MODEL>             Model the agent should use
  -s, --sandbox <SANDBOX_MODE>    [possible values: read-only, workspace-write, danger-full-access]
  -C, --cd <DIR>                  Tell the agent to use the specified directory as its working root
      --skip-git-repo-check       Allow running Codex outside a Git repository
      --json                      Print events to stdout as JSONL
  -o, --output-last-message <FILE>
  -h, --help                      Print help
"""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"error: unexpected argument found: {message}\n\nUsage: codex exec [OPTIONS] [PROMPT]", file=sys.stderr)
        sys.exit(2)


def emit(**event):
    print(json.dumps(event), flush=True)


def failed_turn(message: str, reconnects: int = 5) -> int:
    for i in range(1, reconnects + 1):
        emit(type="error", message=f"Reconnecting... {i}/{reconnects} ({message})")
    emit(type="error", message=message)
    emit(type="turn.failed", error={"message": message})
    return 1


def main() -> int:
    if sys.argv[1:2] != ["exec"]:
        print("fake codex: only `codex exec` is faked", file=sys.stderr)
        return 2
    parser = Parser(add_help=False)
    parser.add_argument("prompt", nargs="?")
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-s", "--sandbox", choices=["read-only", "workspace-write", "danger-full-access"])
    parser.add_argument("-C", "--cd")
    parser.add_argument("-m", "--model")
    parser.add_argument("-c", "--config", action="append", default=[])
    parser.add_argument("--skip-git-repo-check", action="store_true")
    parser.add_argument("-o", "--output-last-message")
    args = parser.parse_args(sys.argv[2:])
    if fakecli.about_itself(args, HELP):
        return 0
    prompt = sys.stdin.read() if args.prompt in (None, "-") else args.prompt
    if not prompt.strip():
        print("No prompt provided via stdin.", file=sys.stderr)
        return 1
    workdir = args.cd or os.getcwd()
    n = fakecli.call_number()
    fakecli.record("codex", sys.argv[1:], prompt, os.getcwd(), workdir=workdir)
    fakecli.leak("OPENAI_API_KEY")
    play = fakecli.scenario(n)
    emit(type="thread.started", thread_id=str(uuid.uuid4()))
    if play == "hang":
        fakecli.hang()
    emit(type="turn.started")
    url = "https://api.openai.com/v1/responses"
    if play == "offline":  # codex 0.171 with no network: it reconnects forever
        dns = "stream disconnected before completion: failed to lookup address information: Try again"
        for i in range(2, 6):
            emit(type="error", message=f"Reconnecting... {i}/5 ({dns})")
            time.sleep(0.2)
        while True:
            emit(type="error", message="Reconnecting... waiting for network (Connection failed: error sending request)")
            time.sleep(1)
    if play == "write_failed":  # it cannot write (CODEX_HOME under /tmp, a read-only tree)
        emit(type="item.completed", item={"id": "item_1", "type": "file_change", "status": "failed",
                                          "changes": [{"path": os.path.join(workdir, "train.py"), "kind": "update"}]})
        emit(type="item.completed", item={"id": "item_2", "type": "agent_message", "text": "I could not apply the patch."})
        emit(type="turn.completed", usage={"input_tokens": 100, "cached_input_tokens": 0, "output_tokens": 10})
        return 0
    if play in ("not_logged_in", "invalid_key"):
        return failed_turn(f"unexpected status 401 Unauthorized: Incorrect API key provided: sk-fake***, url: {url}")
    if play == "rate_limit":
        return failed_turn(f"unexpected status 429 Too Many Requests: Rate limit reached for gpt-5-codex, url: {url}")
    if play == "overloaded":
        return failed_turn(f"unexpected status 503 Service Unavailable: The server is overloaded, url: {url}")
    if play == "truncated":
        sys.stdout.write('{"type":"item.completed","item":{"id":"item_0","type":"agent_mes')
        return 0
    emit(type="item.completed", item={"id": "item_0", "type": "reasoning", "text": "**Deciding on the change**"})
    if play in ("success", "truncated_after_edit") and args.sandbox != "read-only":
        changed = fakecli.edit(workdir, fakecli.editable_from(prompt))
        emit(type="item.completed", item={"id": "item_1", "type": "file_change", "status": "completed",
                                          "changes": [{"path": os.path.join(workdir, f), "kind": "update"} for f in changed]})
        if play == "truncated_after_edit":
            sys.stdout.write('{"type":"item.completed","item":{"id":"item_2","type":"agent_mes')
            return 0
    text = fakecli.QUESTION if play == "question" else fakecli.explanation()
    emit(type="item.completed", item={"id": "item_2", "type": "agent_message", "text": text})
    emit(type="turn.completed", usage={"input_tokens": 24000, "cached_input_tokens": 20000, "output_tokens": 900})
    return 0


if __name__ == "__main__":
    sys.exit(main())
