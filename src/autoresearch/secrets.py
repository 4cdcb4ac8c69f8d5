"""Keep secrets out of everything we write: logs, prompts, the ledger, reports."""

from __future__ import annotations

import os
import re
from typing import Iterable, Mapping

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_MIN_LENGTH = 8  # shorter values ("1", "true") would redact ordinary text
MASK = "[redacted]"


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Values of variables whose names look secret (API keys, tokens), longest first."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_LENGTH}
    values.update(v for v in extra if v and len(v) >= _MIN_LENGTH)
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text
