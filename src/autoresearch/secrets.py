"""Keep secrets out of everything we write: logs, prompts, the ledger, reports."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from autoresearch.atomic import write_bytes

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_MIN_LENGTH = 8  # shorter values ("1", "true") would redact ordinary text
MASK = "[redacted]"
_OURS = "AUTORESEARCH_"  # our own variables (the run token): bookkeeping, not secrets


# user:password@ in a URL (HTTPS_PROXY=http://user:password@proxy:3128): the userinfo is a secret
# whatever the variable is called.
_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/@\s:]+(?::[^/@\s]*)?)@")


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Values of variables whose names look secret (API keys, tokens), and the userinfo of URLs
    in any variable (a proxy's user:password), longest first."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items()
              if _SECRET_NAME.search(k) and not k.startswith(_OURS) and len(v) >= _MIN_LENGTH}
    for v in env.values():
        for userinfo in _USERINFO.findall(v):
            values.add(userinfo)
            user, _, password = userinfo.partition(":")
            if len(password) >= _MIN_LENGTH:
                values.add(password)  # printed alone
    values.update(v for v in extra if v and len(v) >= _MIN_LENGTH)
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_file(path: str | os.PathLike, secrets: Iterable[str]) -> bool:
    """Mask every secret in the file at `path`, in place; True when one was there.

    For logs of processes that were handed a key (`[task] env`, `[agent] env`): what they
    print is theirs, but the copy we keep must not hold the key."""
    needles = [s.encode("utf-8", "surrogateescape") for s in secrets if s]
    if not needles:
        return False
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    masked = data
    for needle in needles:
        masked = masked.replace(needle, MASK.encode())
    if masked == data:
        return False
    write_bytes(path, masked, durable=False)
    return True
