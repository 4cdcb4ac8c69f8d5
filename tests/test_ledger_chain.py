"""The ledger's hash chain: a record edited, inserted, removed or reordered by hand is refused."""

import json

import pytest

from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger, line_hash
from autoresearch.records import Experiment, Status


def rec(i, status=Status.DISCARD, value=0.5):
    return Experiment(iteration=i, commit=f"c{i}", parent="p", status=status, description=f"d{i}",
                      metrics={"acc": value})


def written(tmp_path, n=3):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    for i in range(n):
        ledger.append(rec(i, Status.KEEP if i == 0 else Status.DISCARD))
    return path


def refused(path, line):
    with pytest.raises(AutoresearchError, match=rf"ledger.jsonl: line {line} .*changed outside autoresearch"):
        Ledger(path).records


def test_each_record_carries_the_hash_of_the_one_before(tmp_path):
    path = written(tmp_path)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["prev"] == line_hash("")
    assert all(json.loads(b)["prev"] == line_hash(a) for a, b in zip(lines, lines[1:]))
    assert [r.iteration for r in Ledger(path).records] == [0, 1, 2]


def test_an_edited_record_is_refused_naming_the_next_line(tmp_path):
    # attack 1 of issue 11: a faked keep with a better score
    path = written(tmp_path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"status": "discard"', '"status": "keep"').replace("0.5", "0.99")
    path.write_text("\n".join(lines) + "\n")
    refused(path, 3)


def test_an_appended_fake_is_refused(tmp_path):
    path = written(tmp_path)
    fake = {**rec(9, Status.KEEP, 0.99).to_json(), "status": "keep"}
    with open(path, "a") as fh:
        fh.write(json.dumps(fake) + "\n")  # no hash
    refused(path, 4)
    lines = path.read_text().splitlines()[:3]
    fake["prev"] = "0" * 64  # a guessed hash
    path.write_text("\n".join([*lines, json.dumps(fake)]) + "\n")
    refused(path, 4)


def test_a_removed_or_reordered_record_is_refused(tmp_path):
    path = written(tmp_path, 4)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2], lines[3]]) + "\n")
    refused(path, 2)
    path.write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n")
    refused(path, 2)


def test_an_old_ledger_without_hashes_loads_and_the_chain_starts_at_the_next_record(tmp_path):
    path = tmp_path / "ledger.jsonl"
    old = [json.dumps(rec(i).to_json(), sort_keys=True) for i in range(2)]
    path.write_text("\n".join(old) + "\n")
    ledger = Ledger(path)
    assert [r.iteration for r in ledger.records] == [0, 1]
    ledger.append(rec(2))
    lines = path.read_text().splitlines()
    assert lines[:2] == old and json.loads(lines[2])["prev"] == line_hash(old[1])
    assert [r.iteration for r in Ledger(path).records] == [0, 1, 2]
    # Once the chain has started, every later line must chain; the old lines before it are as they were.
    path.write_text("\n".join([*lines, json.dumps(rec(3).to_json())]) + "\n")
    refused(path, 4)


def test_a_torn_last_line_is_still_only_dropped(tmp_path):
    path = written(tmp_path, 2)
    with open(path, "a") as fh:
        fh.write('{"iteration": 2, "comm')
    ledger = Ledger(path)
    assert [r.iteration for r in ledger.records] == [0, 1]
    ledger.append(rec(2))
    assert [r.iteration for r in Ledger(path).records] == [0, 1, 2]


def test_a_kill_between_the_append_and_the_head_update_is_not_tampering(tmp_path):
    path = written(tmp_path, 3)
    head = path.with_name("ledger.jsonl.head")
    lines = path.read_text().splitlines()
    head.write_text(line_hash(lines[1]) + "\n")  # the head as it was before the last append
    ledger = Ledger(path)
    assert [r.iteration for r in ledger.records] == [0, 1, 2]
    ledger.append(rec(3))
    assert [r.iteration for r in Ledger(path).records] == [0, 1, 2, 3]
    head.write_text(line_hash(lines[0]) + "\n")  # two behind: not a kill's doing
    refused(path, 4)
