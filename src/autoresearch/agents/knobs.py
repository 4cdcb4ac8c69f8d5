"""Knob changes as structured answers: a JSON schema of the task's knobs and their allowed
values, for servers that enforce one by constrained decoding (llama.cpp, vLLM, Ollama), and
the application of an answer as a change of those knobs.

The knobs are the tuner's: the searchable UPPERCASE constants of the editable files, found by
constants.py (`# search:` annotations, or the default spaces), keyed `NAME`, or `file.py:NAME`
where a name is in several files. Each knob's allowed values are a short list of candidates
in its space other than its current value, so every answer the schema admits is a real, legal
change: a small model cannot ramble, write SEARCH text that never matches, or replace a line
with itself.

    knobs(task_dir, editable)            -> {key: Knob}
    schema(knobs)                        -> the JSON schema of one answer
    apply(task_dir, knobs, answer)       -> (description, explanation, changed files)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.environment import safe_path
from autoresearch.constants import Constant, find_constants, rewrite, round_value, searchable
from autoresearch.errors import ConfigError

CANDIDATES = 8  # values offered per numeric knob
MAX_CHANGES = 2  # knobs one answer may change
WHY_CHARS = 240  # the reason's length limit: a small model stops there instead of rambling


class AnswerError(ValueError):
    """The answer is not a knob change this task allows (the reason goes back to the model)."""


@dataclass(frozen=True)
class Knob:
    key: str
    path: str
    constant: Constant

    @property
    def value(self):
        return self.constant.value

    def candidates(self) -> list:
        """Values in the knob's space other than the current one, nearest first (at most CANDIDATES)."""
        space, current = self.constant.space, self.constant.value
        if space is None:
            return []
        if space.kind == "choice":
            return [c for c in space.choices if c != current]
        low, high = float(space.low), float(space.high)
        if space.is_log and low > 0:
            points = [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / 15) for i in range(16)]
        else:
            points = [low + (high - low) * i / 15 for i in range(16)]
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            for factor in (0.5, 2.0, 0.8, 1.25):  # the usual next steps from where it is
                if low <= current * factor <= high:
                    points.append(current * factor)
        values = []
        for p in points:
            v = int(round(p)) if space.is_int else round_value(float(p))
            if isinstance(current, float) and space.is_int:
                v = float(v)
            if v != current and v not in values and low <= v <= high:
                values.append(v)
        if isinstance(current, (int, float)) and not isinstance(current, bool) and current != 0:
            values.sort(key=lambda v: abs(math.log(abs(v) / abs(current))) if v and space.is_log else abs(v - current))
        return values[:CANDIDATES]


def knobs(task_dir: Path, editable) -> dict[str, Knob]:
    """The tuner's knobs of the editable Python files (those that do not parse are skipped)."""
    per_file: list[tuple[str, list[Constant]]] = []
    for path in editable:
        file = Path(task_dir) / path
        if not path.endswith(".py") or not file.is_file():
            continue
        try:
            per_file.append((path, searchable(find_constants(file.read_text(encoding="utf-8"), path))))
        except (ConfigError, UnicodeDecodeError):
            continue
    counts: dict[str, int] = {}
    for _, constants in per_file:
        for c in constants:
            counts[c.name] = counts.get(c.name, 0) + 1
    out = {}
    for path, constants in per_file:
        for c in constants:
            key = c.name if counts[c.name] == 1 else f"{path}:{c.name}"
            knob = Knob(key, path, c)
            if knob.candidates():
                out[key] = knob
    return out


def schema(knobs: dict[str, Knob]) -> dict:
    """One answer: 1-MAX_CHANGES knob changes, each a knob with one of its allowed values, and why."""
    options = [{"type": "object",
                "properties": {"knob": {"const": k.key}, "value": {"enum": k.candidates()}},
                "required": ["knob", "value"], "additionalProperties": False}
               for k in knobs.values()]
    return {"type": "object",
            "properties": {"changes": {"type": "array", "items": {"anyOf": options}, "minItems": 1,
                                       "maxItems": MAX_CHANGES},
                           "why": {"type": "string", "maxLength": WHY_CHARS}},
            "required": ["changes", "why"], "additionalProperties": False}


def describe(knobs: dict[str, Knob]) -> str:
    """The knobs as the model reads them: current value and allowed values."""
    lines = []
    for k in knobs.values():
        shown = ", ".join(json.dumps(v) for v in k.candidates())
        lines.append(f"- {k.key} (in {k.path}, line {k.constant.line}) = {json.dumps(k.value)}; "
                     f"allowed new values: {shown}")
    return "\n".join(lines)


def parse(text: str) -> dict:
    """The JSON object of an answer (a fenced block or prose around it is tolerated)."""
    text = text.strip()
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise AnswerError("the answer is not a JSON object")
    try:
        data = json.loads(text[start:end + 1])
    except ValueError as exc:
        raise AnswerError(f"the answer is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AnswerError("the answer is not a JSON object")
    return data


def apply(task_dir: Path, knobs: dict[str, Knob], answer: dict) -> tuple[str, str, list[str], dict]:
    """Write the answer's knob changes; (description, explanation, changed files, params).

    Checked as the schema says, whether or not the server enforced it: an unknown knob, a value
    outside the allowed ones or no change at all raises AnswerError and writes nothing.
    """
    changes = answer.get("changes")
    if isinstance(changes, dict):
        changes = [changes]
    if not isinstance(changes, list) or not changes:
        raise AnswerError('the answer has no "changes" list')
    values: dict[str, Any] = {}
    for change in changes[:MAX_CHANGES]:
        if not isinstance(change, dict) or change.get("knob") not in knobs:
            name = change.get("knob") if isinstance(change, dict) else change
            raise AnswerError(f"{name!r} is not one of the knobs: {', '.join(knobs)}")
        knob = knobs[change["knob"]]
        value = change.get("value")
        allowed = knob.candidates()
        match = next((a for a in allowed if a == value and type(a) is type(value)
                      or isinstance(a, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
                      and math.isclose(a, value, rel_tol=1e-9)), None)
        if match is None:
            raise AnswerError(f"{json.dumps(value)} is not an allowed value of {knob.key}: {json.dumps(allowed)}")
        values[knob.key] = match
    by_file: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        by_file.setdefault(knobs[key].path, {})[knobs[key].constant.name] = value
    for path, new in by_file.items():
        file = safe_path(task_dir, path)  # never through a link out of the task
        file.write_text(rewrite(file.read_text(encoding="utf-8"), new, path), encoding="utf-8")
    description = ", ".join(f"{key} {json.dumps(knobs[key].value)} -> {json.dumps(v)}" for key, v in values.items())
    why = " ".join(str(answer.get("why") or "").split())
    return description, why or description, sorted(by_file), values
