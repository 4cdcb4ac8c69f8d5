"""program.md as the agent reads it inside our loop: the orchestrator's work marked as handled.

A karpathy-style program.md is written for an agent that runs the whole loop itself: it says
to create the branch, initialise results.tsv, run `uv run train.py > run.log`, commit, reset,
LOOP FOREVER and NEVER STOP. Here the orchestrator does all of that, and an LLM reads the
first instruction first, so each sentence that asks for the orchestrator's work gets a marker
right after it, `[handled by the orchestrator: ...]`. Nothing is deleted: the file's
descriptions (the footer format, the results.tsv columns) stay useful context. Code blocks are
left as they are; the sentence that introduces one is what gets marked.
"""

from __future__ import annotations

import re

MARK = "[handled by the orchestrator: {}]"

# (pattern over one sentence, what the orchestrator does instead). First match wins.
RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p, re.IGNORECASE), what) for p, what in (
    (r"\bLOOP FOREVER\b|\bNEVER STOP\b|\bdo not pause\b|keep going\?|stopping point|until (?:the human|you are) "
     r"(?:interrupts?|manually stopped)|\bloop runs until\b|\bindefinitely\b",
     "it runs the loop and decides when to stop; this call is one step"),
    (r"work with the user|confirm and go|once you get confirmation|get confirmation|tell the human|ask the human|"
     r"kick off the experiment|confirm (?:that )?setup",
     "the setup was done before the loop began; nobody is there to answer"),
    (r"git checkout -b|\bcreate (?:a |the )?(?:new |fresh )?branch|agree on a (?:run )?tag|propose a tag|"
     r"branch .{0,40}must not (?:already )?exist|dedicated branch",
     "it made the branch and keeps you on it"),
    (r"results\.tsv|\blog (?:it|the results?) to\b|record the results|\bthe tsv\b",
     "it writes results.tsv from each run's footer"),
    (r"run\.log|\buv run train\.py\b|\bpython train\.py\b|run the (?:experiment|training)|you launch it|"
     r"launch the (?:experiment|training)|\bgrep\b|tail -n|\bkill it\b|extract the key metric|"
     r"establish the baseline|run the training script as is",
     "it runs the training under the time limit, logs it and reads the footer"),
    (r"git reset|advance the branch|keeping the git commit|discard and revert|\brewind\b",
     "it keeps or resets the commit by the metric"),
    (r"\bgit commit\b(?! hash)|^\s*(?:\d+\.\s*)?commit\b(?! hash)", "it commits your change"),
))

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*`(\[\"'])")
_ABBREVIATION = re.compile(r"(?:\be\.g|\bi\.e|\betc|\bvs|\bcf)\.$", re.IGNORECASE)
_FENCE = re.compile(r"^\s*(```|~~~)")


def mark_handled(text: str) -> str:
    """`text` with a marker after each sentence that asks for the orchestrator's work."""
    out, in_code = [], False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
            out.append(line)
            continue
        out.append(line if in_code or not line.strip() else _mark_line(line))
    return "\n".join(out)


def _mark_line(line: str) -> str:
    if line.lstrip().startswith("#"):
        return line  # a heading names a topic; the sentences under it are what instruct
    pieces = _split(line)
    reasons = [_reason(p) for p, _ in pieces]
    out = []
    for i, (piece, gap) in enumerate(pieces):
        out.append(piece)
        # Sentences of a line with the same reason share one marker, after the last of them.
        if reasons[i] and reasons[i] not in reasons[i + 1:]:
            out.append(" " + MARK.format(reasons[i]))
        out.append(gap)
    return "".join(out)


def _split(line: str) -> list[tuple[str, str]]:
    """(sentence, the whitespace after it) pairs that join back to `line`."""
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(line):
        if _ABBREVIATION.search(line, 0, m.start()):
            continue  # "e.g. `mar5`" does not end a sentence
        pieces.append((line[start:m.start()], m.group(0)))
        start = m.end()
    pieces.append((line[start:], ""))
    return pieces


def _reason(sentence: str) -> str:
    for pattern, what in RULES:
        if pattern.search(sentence):
            return what
    return ""
