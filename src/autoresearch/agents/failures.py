"""What an agent program's own output says went wrong, in a form the loop can act on.

    message(text)            the last meaningful line of stderr (or of a JSON error), whole
    known_cause(text, ...)   a cause that retrying or waiting cannot fix: not logged in, no
                             network, a browser login, an unknown model, a failed file write

Known causes end a call at once (cli_agent watches the output while the program runs): codex
offline reconnects forever, aider without a model waits five minutes for a browser login, and
nothing after that first line will change the outcome. Each cause carries the fix the user
needs, which goes into the ledger's reason; a few identical ones in a row pause the night.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Lines that are never the message: stack frames, Node's and Python's warnings, progress noise.
_NOISE = re.compile(
    r"^\s*(at\s+\S|File \"|Traceback \(most recent call last\)|\^+\s*$|~+\s*$|\(node:\d+\)|\(Use `node --trace-"
    r"|Warning: 256-color|Ripgrep is not available|WARNING: proceeding, even though we could not create PATH aliases"
    r"|Update git (name|email) with|[-=_*#.~\s]+$|[{}\[\]()]+,?$|Use Control-C to interrupt)")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\s+(?:ERROR|WARN|INFO|DEBUG|TRACE)\s+\S+:\s*")
MESSAGE_CHARS = 300


def clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "\n")


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    """One line; when too long, cut at a word boundary with an ellipsis, never mid-word."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def _json_message(line: str) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    if data.get("type") == "error" and data.get("message"):
        return str(data["message"])
    return None


def message(text: str, limit: int = MESSAGE_CHARS) -> str:
    """The program's own last meaningful line of `text` (whole lines only), or "".

    A JSON error object anywhere in the text wins (its `error.message`); otherwise the last
    line that is not a stack frame, a warning of the runtime or decoration.
    """
    text = clean(text)
    obj = _last_json_error(text)
    if obj:
        return shorten(obj, limit)
    for line in reversed(text.splitlines()):
        line = _TIMESTAMP.sub("", line.strip())
        if not line or _NOISE.match(line):
            continue
        found = _json_message(line)
        return shorten(found if found is not None else line, limit)
    return ""


def _last_json_error(text: str) -> str | None:
    """`error.message` of the last multi-line JSON object holding one (gemini prints it pretty)."""
    decoder, found = json.JSONDecoder(), None
    for match in re.finditer(r"(?m)^\{\s*$", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            error = obj.get("error")
            if isinstance(error, dict) and error.get("message"):
                found = str(error["message"])
    return found


@dataclass(frozen=True)
class Cause:
    failure: str  # a cli_agent.Failure value: auth, offline, login, model, write
    fix: str
    pattern: re.Pattern


def _cause(failure: str, pattern: str, fix: str) -> Cause:
    return Cause(failure, fix, re.compile(pattern, re.IGNORECASE))


OFFLINE_FIX = ("the agent cannot reach its API: check the network, DNS or proxy (HTTPS_PROXY), "
               "or point it at a server that is up")
# Shared by every backend; a backend puts its own first (its login command, its model flag).
COMMON_CAUSES = (
    _cause("offline", r"failed to lookup address|waiting for network|getaddrinfo|ENOTFOUND|EAI_AGAIN|"
                      r"Temporary failure in name resolution|Name or service not known|Name does not resolve|"
                      r"Network is unreachable|ENETUNREACH|Could not resolve host|can't reach the API server|"
                      r"fetch failed sending request|nodename nor servname", OFFLINE_FIX),
    _cause("login", r"open this URL in your browser|finish in the browser|visit the following URL to authorize|"
                    r"waiting for authentication", "it wants a browser login, which nobody will do at night: "
                    "log in once by hand, or set its API key and name the variable under [agent] env"),
    _cause("model", r"model[^\n]{0,60}(not found|does not exist|is not supported|not available|unknown|"
                    r"invalid)|(unknown|invalid|unsupported) model|model_not_found|LLM Provider NOT provided",
           "the model name is not one the API serves: fix `model` under [agent]"),
    _cause("write", r"EACCES[^\n]{0,40}(open|write|mkdir)|EROFS|Read-only file system|"
                    r"Permission denied \(os error 13\)|could not write|failed to (write|apply patch)",
           "the agent could not write the files: check their permissions, and that its sandbox "
           "allows the task directory"),
)


def known_cause(text: str, causes=COMMON_CAUSES) -> Cause | None:
    """The first cause whose pattern `text` matches, or None."""
    text = clean(text)
    for cause in causes:
        if cause.pattern.search(text):
            return cause
    return None
