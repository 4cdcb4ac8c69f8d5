import pytest

from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger
from autoresearch.records import Experiment, Status


def rec(i, status=Status.KEEP, value=0.5):
    return Experiment(iteration=i, commit=f"c{i}", parent="p", status=status, description=f"d{i}",
                      metrics={"acc": value, "loss": float("nan")})


def test_append_and_reload_round_trip(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(rec(0))
    ledger.append(rec(1, Status.DISCARD, 0.4))
    again = Ledger(tmp_path / "ledger.jsonl").records
    assert [r.iteration for r in again] == [0, 1]
    assert again[1].status is Status.DISCARD and again[1].metrics["acc"] == 0.4
    assert Ledger(tmp_path / "ledger.jsonl").best().iteration == 0


def test_torn_last_line_is_dropped_and_truncated(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append(rec(0))
    with open(path, "a") as fh:
        fh.write('{"iteration": 1, "comm')
    reloaded = Ledger(path)
    assert [r.iteration for r in reloaded.records] == [0]
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 1
    reloaded.append(rec(1))
    assert [r.iteration for r in Ledger(path).records] == [0, 1]


def test_corrupt_middle_line_is_a_clear_error(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"bad json\n{"also": 1}\n')
    with pytest.raises(AutoresearchError, match="ledger.jsonl: line 1"):
        Ledger(path).records


def test_append_to_a_ledger_not_yet_read_keeps_one_copy(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(rec(0))
    fresh = Ledger(path)
    fresh.append(rec(1))
    assert [r.iteration for r in fresh.records] == [0, 1]
