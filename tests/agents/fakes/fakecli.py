"""What the fake CLIs share: the scenario, the edit they make, and the record of each call.

A fake is driven by environment variables the test sets:

    FAKE_SCENARIO   comma-separated, one per call: call n plays item n (the last one repeats),
                    e.g. "rate_limit,success". Scenarios: success, truncated_after_edit, not_logged_in,
                    invalid_key, max_turns, rate_limit, overloaded, hang, question, truncated,
                    unmarked (a success whose final message has no <explanation> block).
    FAKE_STATE_DIR  where each call appends a line to calls.jsonl (argv, cwd, the secret-looking
                    variables it could see, the prompt it got), for the test to check.
    FAKE_VALUE      the value the edit gives `X` (default 2.0).

Every fake also writes its own API key to stderr, as a CLI with debug logging might: the
backend must redact it before anything reaches the run store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH)", re.IGNORECASE)


def state_dir() -> Path:
    if not os.environ.get("FAKE_STATE_DIR"):  # never write into the work tree of the test
        sys.exit("fake CLI: FAKE_STATE_DIR is not set (add it to [agent] env)")
    return Path(os.environ["FAKE_STATE_DIR"])


def about_itself(args, help_text: str, version: str | None = None) -> bool:
    """`--help` or `--version` (where the CLI has one): prints what the real one prints for it.
    Whether it did, the call then exiting 0 without a prompt."""
    if args.help:
        print(help_text)
        return True
    if version is not None and args.version:
        print(version)
        return True
    return False


def call_number() -> int:
    log = state_dir() / "calls.jsonl"
    return sum(1 for _ in open(log)) + 1 if log.exists() else 1


_unmarked = False  # this call plays "unmarked": a success whose answer has no <explanation> block


def scenario(n: int) -> str:
    global _unmarked
    plays = [s.strip() for s in os.environ.get("FAKE_SCENARIO", "success").split(",") if s.strip()]
    play = plays[min(n, len(plays)) - 1]
    _unmarked = play == "unmarked"
    return "success" if _unmarked else play


def record(name: str, argv: list[str], prompt: str, cwd: str, **extra) -> None:
    state = state_dir()
    entry = {"name": name, "argv": argv, "cwd": cwd, "prompt": prompt, "stdin_is_tty": sys.stdin.isatty(), "at": time.time(),
             "secrets_seen": sorted(k for k in os.environ if SECRET_NAME.search(k) and k != "AUTORESEARCH_RUN_TOKEN"),
             **extra}
    with open(state / "calls.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def leak(key_name: str) -> None:
    """Print the API key on stderr, as a careless debug log would."""
    if os.environ.get(key_name):
        print(f"[debug] auth header: Bearer {os.environ[key_name]}", file=sys.stderr)


def editable_from(prompt: str) -> list[str]:
    """The files to edit, as our rules name them ("Edit only these files in DIR: `a.py`, `b.py`.")."""
    match = re.search(r"Edit only these files[^\n]*?: ((?:`[^`]+`(?:, )?)+)", prompt)
    return re.findall(r"`([^`]+)`", match.group(1)) if match else []


def edit(directory: str | Path, files: list[str]) -> list[str]:
    """Set `X = <FAKE_VALUE>` in the first file that has an X; returns the files changed."""
    value = os.environ.get("FAKE_VALUE", "2.0")
    for name in files:
        path = Path(directory) / name
        if not path.is_file():
            continue
        text = path.read_text()
        new = re.sub(r"(?m)^X = [^\s#]+", f"X = {value}", text, count=1)
        if new != text:
            path.write_text(new)
            return [name]
    return []


def hang() -> None:
    """Never answer, and ignore SIGTERM like a CLI stuck in a network call."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)


EXPLANATION = ("I raised X: the score grows with it.\n\n<explanation>\nRaise X to {value}\n"
               "The score is X itself, so a larger X should score higher. Nothing else changed.\n</explanation>")
QUESTION = "I can raise X or lower it. Which would you prefer? Let me know and I will make the change."


UNMARKED = ("Raised X to {value}: the score is X itself.\n\n"
            "A larger X should score higher; nothing else changed. Ready for the next experiment.")


def explanation() -> str:
    return (UNMARKED if _unmarked else EXPLANATION).format(value=os.environ.get("FAKE_VALUE", "2.0"))
