import json

import pytest

from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger
from autoresearch.records import Experiment, Status

from helpers import adopted_ledger


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


def test_torn_last_line_is_dropped_and_cut_off_by_the_next_append_not_by_a_reader(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append(rec(0))
    with open(path, "a") as fh:
        fh.write('{"iteration": 1, "comm')
    torn = path.read_bytes()
    reloaded = Ledger(path)
    assert [r.iteration for r in reloaded.records] == [0]
    # A reader (status beside a live night) leaves the file alone: that line may be being written.
    assert path.read_bytes() == torn
    reloaded.append(rec(1))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and [json.loads(line)["iteration"] for line in lines] == [0, 1]
    assert [r.iteration for r in Ledger(path).records] == [0, 1]


def test_a_reader_beside_a_live_append_does_not_take_the_ledger_for_tampered(tmp_path):
    # The loop appends a line, then moves the head. A reader that read the lines before an
    # append and the head after it saw a last line and a head that did not match.
    path = tmp_path / "ledger.jsonl"
    writer = Ledger(path)
    writer.append(rec(0))
    writer.append(rec(1, Status.DISCARD, 0.4))

    class AppendAfterRead(type(path)):
        def read_bytes(self):
            data = super().read_bytes()
            writer.append(rec(2, Status.DISCARD, 0.3))  # the loop, between the reader's two reads
            return data

    reader = Ledger(path)
    reader.path = AppendAfterRead(path)
    assert [r.iteration for r in reader.records] == [0, 1]
    assert [r.iteration for r in Ledger(path).records] == [0, 1, 2]


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


def test_records_read_back_equal_the_ones_written(tmp_path):
    full = Experiment(iteration=3, commit="c3", parent="c1", status=Status.CRASH, description="d", explanation="e",
                      reason="exit_code: 1", metrics={"acc": 0.1}, memory_gb=1.5, exit_code=1, wall_seconds=2.0,
                      agent="a", cost_usd=0.1, tokens=7, agent_data={"k": 1}, changed_files=("train.py",),
                      content_hash="h", started_at=1.0, finished_at=2.0, worker=1, repair_of=2, startup_seconds=0.5,
                      warm=True, node="n", gpu_util=50.0, gpu_peak_mb=100.0)
    minimal = {"iteration": 0, "commit": "c", "parent": "p", "status": "keep", "description": "d", "from_v9": 1}
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in (full.to_json(), minimal, minimal)) + "\n\n")
    a, b, c = Ledger(path).records
    assert a == full and a.changed_files == ("train.py",) and a.status is Status.CRASH
    assert b == Experiment(0, "c", "p", Status.KEEP, "d")  # defaults filled, unknown keys ignored
    assert b.metrics is not c.metrics and b.agent_data is not c.agent_data  # fresh, as __init__ makes them


GOOD = '{"iteration": 0, "commit": "c", "parent": "p", "status": "keep", "description": "d"}'


@pytest.mark.parametrize("lines, why", [
    ([f"{GOOD}, {GOOD}", GOOD], "Extra data"),  # as one array: three good records from two lines
    (['{"iteration": 0, "parent": "p", "status": "keep", "description": "d"}'], "missing field(s): commit"),
    (['{"iteration": 0, "commit": "c", "parent": "p", "status": "kept", "description": "d"}'], "'kept'"),
    (["[1]"], "a JSON object expected"),
])
def test_a_bad_line_is_named_even_when_the_file_parses_as_a_whole(tmp_path, lines, why):
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AutoresearchError, match="ledger.jsonl: line 1 ") as err:
        Ledger(path).records
    assert why in str(err.value)


def test_next_iteration_follows_the_highest_number_not_the_last_line(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.next_iteration() == 0
    for i in (0, 2, 1):  # two workers: iteration 2's run finished before iteration 1's
        ledger.append(rec(i))
    assert Ledger(tmp_path / "ledger.jsonl").next_iteration() == 3


def test_after_an_adopted_config_the_best_is_the_rejudged_one_until_a_new_keep(tmp_path):
    from autoresearch.ledger import baseline_of, best_of, bests_of

    ledger = adopted_ledger(tmp_path / "ledger.jsonl")
    records = ledger.records
    assert [r.iteration for r in ledger.bests()] == [3]  # the keeps before were judged by other rules
    assert ledger.best(3).iteration == 2 and ledger.best(4).iteration == 3  # as each record was judged
    assert best_of(records[:4], ledger).iteration == 3 and best_of(records[:3], ledger).iteration == 2
    assert best_of(list(records), ledger).iteration == 3  # a copy of the ledger's records
    assert best_of([*records[:3], records[3]], None).iteration == 2  # records of no ledger: their last keep
    assert ledger.baseline().iteration == 0 and baseline_of(list(records), ledger).iteration == 0
    ledger.append(Experiment(iteration=5, commit="5" * 40, parent="3" * 40, status=Status.KEEP, description="X = 0.2",
                             metrics={"score": 0.2}))
    assert [r.iteration for r in bests_of(records, ledger)] == [5, 3] and ledger.best().iteration == 5


def test_after_an_adopt_that_found_no_best_the_new_baseline_is_the_baseline(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(Experiment(iteration=0, commit="a" * 40, parent="a" * 40, status=Status.KEEP, description="baseline",
                             metrics={"score": 1.0}))
    ledger.append_event("adopt_config", changes=[], rules={}, best=None, previous_best=0)
    assert ledger.best() is None and ledger.bests() == [] and ledger.baseline() is None
    ledger.append(Experiment(iteration=1, commit="a" * 40, parent="a" * 40, status=Status.KEEP, description="baseline",
                             reason="baseline", metrics={"loss": 9.0}))
    assert ledger.baseline().iteration == 1 and ledger.best().iteration == 1
