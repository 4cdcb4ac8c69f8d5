"""Structured edits for the `openai` backend: a knob change under a JSON schema, the fallbacks
when the server refuses the schema, and the smaller fixes of the free-form path.
Against the fake chat-completions server on 127.0.0.1 (tests/agents/fake_openai_server.py).
"""

import json

import pytest

from autoresearch.agents import knobs
from autoresearch.records import Status

from fake_openai_server import Reply
from openai_harness import GOOD, LINE, answer, run  # noqa: F401 (fixture)

KNOBS = 'edit_format = "knobs"\n'


def change(value, knob="X", why="A larger X scores higher."):
    return json.dumps({"changes": [{"knob": knob, "value": value}], "why": why})


def refused(form):
    return Reply(f"1 validation error: body.response_format.type: Input should be 'text' or 'json_object', "
                 f"got '{form}'", status=500)


def test_the_schema_lists_each_knob_with_real_new_values_only(make_task):
    found = knobs.knobs(make_task(), ["train.py"])
    assert list(found) == ["X"]
    values = found["X"].candidates()
    assert 1.0 not in values and all(0.0 <= v <= 10.0 for v in values) and 2.0 in values
    options = knobs.schema(found)["properties"]["changes"]["items"]["anyOf"]
    assert options == [{"type": "object", "properties": {"knob": {"const": "X"}, "value": {"enum": values}},
                        "required": ["knob", "value"], "additionalProperties": False}]


def test_a_structured_answer_is_applied_as_a_knob_change(run):
    r = run([change(2.0)], extra_config=KNOBS)
    assert r.last.status is Status.KEEP, r.last.reason
    assert r.last.metrics["score"] == 2.0 and r.last.description == "X 1.0 -> 2.0"
    assert r.last.agent_data["params"] == {"X": 2.0} and r.last.agent_data["response_format"] == "json_schema"
    body = r.chats[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert "allowed new values" in r.chats[0].last_user and body["max_tokens"] == knobs_max()
    assert LINE.replace("1.0", "2.0") in (r.task / "train.py").read_text()  # only the literal changed


def knobs_max():
    from autoresearch.agents.openai import KNOBS_MAX_TOKENS
    return KNOBS_MAX_TOKENS


def test_a_refused_schema_falls_back_to_json_object_then_stays_there(run):
    r = run([refused("json_schema"), change(2.0), change(2.5 if 2.5 in cands() else cands()[-1])],
            extra_config=KNOBS, iterations=2)
    assert r.records[1].status is Status.KEEP and r.records[1].agent_data["response_format"] == "json_object"
    forms = [c.body["response_format"]["type"] for c in r.chats]
    assert forms == ["json_schema", "json_object", "json_object"]  # learnt once for the night
    assert r.chats[1].body["response_format"]["schema"]["required"] == ["changes", "why"]


def cands():
    from autoresearch.agents.knobs import Knob
    from autoresearch.constants import find_constants
    return Knob("X", "train.py", find_constants(LINE)[0]).candidates()


def test_a_server_that_takes_no_schema_gets_search_replace(run):
    r = run([refused("json_schema"), refused("json_object"), GOOD], extra_config=KNOBS)
    assert r.last.status is Status.KEEP, r.last.reason
    assert "response_format" not in r.chats[2].body and "SEARCH" in r.chats[2].messages[0]["content"]


def test_a_value_outside_the_allowed_ones_goes_back_with_the_reason(run):
    r = run([change(1.0), change(99.0), change(2.0)], extra_config=KNOBS)
    assert r.last.status is Status.KEEP, r.last.reason
    assert "not an allowed value of X" in r.chats[1].last_user and len(r.chats) == 3


def test_auto_asks_for_a_knob_change_where_there_are_knobs(run, make_task):
    r = run([change(2.0)], extra_config='edit_format = "auto"\n')
    assert r.last.status is Status.KEEP and r.chats[0].body["response_format"]["type"] == "json_schema"


def test_a_file_without_knobs_has_none(tmp_path):
    (tmp_path / "train.py").write_text("import os\nprint('score:', os.getpid())\n")
    (tmp_path / "broken.py").write_text("X = (\n")
    assert knobs.knobs(tmp_path, ["train.py", "broken.py", "missing.py"]) == {}


def test_edit_format_is_checked(run, make_task):
    from autoresearch.config import load_task
    from autoresearch.agents import create_agent
    from autoresearch.errors import ConfigError
    from conftest import TINY_CONFIG
    text = TINY_CONFIG + '\n[agent]\nkind = "openai"\nmodel = "m"\nedit_format = "json"\n'
    with pytest.raises(ConfigError, match="agent.edit_format: must be one of blocks, knobs, auto"):
        create_agent("openai", load_task(make_task(config=text)))
    text = TINY_CONFIG + '\n[agent]\nkind = "claude"\n\n[agent.openai]\nmodel = "m"\nbinary = "x"\n'
    with pytest.raises(ConfigError, match="agent.openai.binary: the openai backend has no setting 'binary'"):
        create_agent("openai", load_task(make_task(config=text)))


def test_the_openai_table_is_read_whatever_the_kind(run, make_task, monkeypatch):
    from autoresearch.config import load_task
    from autoresearch.agents import create_agent
    from conftest import TINY_CONFIG
    text = TINY_CONFIG + '\n[agent]\nkind = "claude"\n\n[agent.openai]\nmodel = "local"\nbase_url = "http://127.0.0.1:9/v1"\ntimeout = 42\n'
    agent = create_agent("openai", load_task(make_task(config=text)))
    assert (agent.model, agent.base_url, agent.timeout) == ("local", "http://127.0.0.1:9/v1", 42)


# -- the smaller items of the free-form path ---------------------------------------------------

def test_a_cut_off_answers_complete_blocks_still_apply(run):
    cut = GOOD.split("<explanation>")[0] + "<explanation>\nRaise X to 2.0\nThe sc"
    r = run([Reply(cut, finish_reason="length"), Reply("ore grows", finish_reason="length"),
             Reply(" with X, so", finish_reason="length")], extra_config="max_continuations = 2\n")
    assert r.last.status is Status.KEEP, r.last.reason
    assert r.last.agent_data["continuations"] == 2  # two asked for; the third cut answer is not one


def test_a_failed_edit_reason_does_not_end_in_a_dangling_lead_in(run):
    wrong = answer(search="X = 1.5  # search: float(0.0, 10.0)\n")
    r = run([wrong] * 3)
    assert r.last.status is Status.CRASH
    assert not r.last.reason.rstrip().endswith(":") and "which read exactly" not in r.last.reason
