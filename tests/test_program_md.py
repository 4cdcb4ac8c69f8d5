"""program.md inside our loop: what the orchestrator does is marked as handled, nothing is lost."""

import re
from pathlib import Path

from autoresearch.program_md import MARK, mark_handled

from helpers import check_golden

FIXTURE = Path(__file__).parent / "fixtures" / "karpathy" / "program.md"


def test_golden_karpathy_style_program():
    check_golden("program_karpathy_marked.md", mark_handled(FIXTURE.read_text()))


def test_the_orchestrators_work_is_marked_and_the_agents_is_not():
    marked = mark_handled(FIXTURE.read_text())
    lines = {line.split(" [handled")[0]: line for line in marked.splitlines()}

    def is_marked(start):
        line = next(v for k, v in lines.items() if k.startswith(start))
        return "[handled by the orchestrator:" in line

    for start in ("2. **Make the branch**", "4. **Start results.tsv**", "5. **Confirm and go**", "LOOP FOREVER:",
                  "3. git commit", "4. Run it:", "6. If val_bpb went down", "**NEVER STOP**", "**Timeout**",
                  "Log each experiment"):
        assert is_marked(start), start
    for start in ("2. Change `train.py`", "You CAN change", "You CANNOT change", "**The goal: the lowest val_bpb.**",
                  "3. **Read the files in scope**", "## The loop"):
        assert not is_marked(start), start


def test_nothing_is_removed_and_code_blocks_are_untouched():
    text = FIXTURE.read_text()
    marked = mark_handled(text)
    stripped = re.sub(r" \[handled by the orchestrator: [^\]]*\]", "", marked)
    assert stripped == text
    assert 'grep "^val_bpb:" run.log\n```' in marked  # a command inside a fence is the file's, not marked
    assert mark_handled("```\ngit checkout -b x\nLOOP FOREVER\n```\n") == "```\ngit checkout -b x\nLOOP FOREVER\n```\n"


def test_one_marker_per_reason_per_line():
    line = mark_handled("NEVER STOP. The human may be asleep. Run until you are manually stopped.")
    assert line.count("[handled") == 1 and line.endswith(MARK.format("it runs the loop and decides when to stop; this call is one step"))


def test_descriptions_and_abbreviations_are_not_misread():
    assert mark_handled("1. git commit hash (short, 7 chars)") == "1. git commit hash (short, 7 chars)"
    line = mark_handled("It runs on a dedicated branch (e.g. `autoresearch/mar5`).")
    assert line.endswith("`autoresearch/mar5`). " + MARK.format("it made the branch and keeps you on it"))
    timeout = mark_handled("If a run exceeds 10 minutes, kill it and treat it as a failure (discard and revert).")
    assert "runs the training under the time limit" in timeout
    assert "keeps or resets" in mark_handled("8. If it improved, advance the branch, keeping the git commit")
