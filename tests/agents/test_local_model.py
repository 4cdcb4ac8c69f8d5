"""A short night of the bundled example driven by a real local model: llama.cpp's server on
127.0.0.1 with Gemma 3 270M, the openai backend asking for structured knob changes.

Installed by `.ci/install-agents` (CI runs it); elsewhere skipped, unless
AUTORESEARCH_REQUIRE_REAL=1 makes a missing install a failure.
"""

import os

import pytest

from autoresearch.api import copy_example, run_loop
from autoresearch.records import Status

from local_llama import installed, llama_server, local_task

pytestmark = pytest.mark.slow


def need_llama():
    found = installed()
    if found is None:
        message = "llama-cpp-python[server] and the Gemma model are not installed (run .ci/install-agents)"
        if os.environ.get("AUTORESEARCH_REQUIRE_REAL") == "1" or os.environ.get("CI"):  # CI must run them
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_a_short_night_with_llama_cpp_applies_structured_knob_changes(tmp_path):
    python, model = need_llama()
    with llama_server(python, model, tmp_path / "llama.log") as url:
        task = local_task(copy_example, tmp_path / "night", url)
        records = run_loop(task, "local", iterations=2, say=lambda s: None)
    # After the baseline and its noise repeat (the example trains for a time budget): the model's two.
    proposals = [r for r in records[1:] if not r.verdict.noise_repeat]
    assert len(proposals) == 2
    applied = [r for r in proposals if r.agent_data.get("edit_format") == "knobs"]
    assert len(applied) == 2, [r.reason for r in proposals]  # the schema admits only legal changes
    for r in applied:  # a real change of a knob, trained and judged on its metric
        assert r.status in (Status.KEEP, Status.DISCARD) and "val_acc" in r.metrics, r.reason
        assert " -> " in r.description and r.agent_data["params"]
        assert r.agent_data["response_format"] == "json_object"  # llama-cpp-python refuses json_schema
        assert r.tokens > 1000  # the prompt reached the model
