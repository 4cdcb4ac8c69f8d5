from autoresearch import results_tsv
from autoresearch.records import Experiment, Status


def exp(i, status, metrics, desc="x", mem=1.26):
    return Experiment(iteration=i, commit=f"{i:07d}abcdef", parent="p", status=status,
                      description=desc, metrics=metrics, memory_gb=mem)


def test_seed_004_table():
    rows = [
        exp(0, Status.KEEP, {"mc_acc": 0.286, "bin_acc": 0.811}, "baseline (wide arch, SGD lr=0.01)", 0.3),
        exp(1, Status.CRASH, {"mc_acc": 0.5}, "doubled width\t(OOM)\nsecond line", 9.9),
    ]
    text = results_tsv.render(rows, ["mc_acc", "bin_acc"])
    lines = text.splitlines()
    assert lines[0] == "commit\tmc_acc\tbin_acc\tmemory_gb\tstatus\tdescription"
    assert lines[1] == "0000000\t0.286000\t0.811000\t0.3\tkeep\tbaseline (wide arch, SGD lr=0.01)"
    assert lines[2] == "0000001\t0.000000\t0.000000\t0.0\tcrash\tdoubled width (OOM) second line"
    assert all(len(line.split("\t")) == 6 for line in lines)


def test_a_missing_or_nan_metric_is_an_empty_cell_and_a_crash_keeps_its_zeros():
    text = results_tsv.render([exp(0, Status.DISCARD, {"a": float("nan")}), exp(1, Status.CRASH, {})], ["a", "b"])
    assert [line.split("\t")[1:3] for line in text.splitlines()[1:]] == [["", ""], ["0.000000", "0.000000"]]


def test_a_table_an_earlier_version_wrote_with_zeros_for_missing_values_is_no_damage(tmp_path):
    path = tmp_path / "results.tsv"
    rows = [exp(0, Status.KEEP, {"a": 1.0}), exp(1, Status.DISCARD, {"a": float("nan")})]
    path.write_text("commit\ta\tb\tmemory_gb\tstatus\tdescription\n"
                    "0000000\t1.000000\t0.000000\t1.3\tkeep\tx\n"
                    "0000001\t0.000000\t0.000000\t1.3\tdiscard\tx\n")
    assert results_tsv.check_and_repair(path, rows, ["a", "b"], backup_dir=tmp_path / "store") is None
    assert path.read_text().splitlines()[1:] == ["0000000\t1.000000\t\t1.3\tkeep\tx", "0000001\t\t\t1.3\tdiscard\tx"]


def _ledger():
    return [exp(0, Status.KEEP, {"a": 1.0}, "baseline"), exp(1, Status.DISCARD, {"a": 0.5}, "worse"),
            exp(2, Status.KEEP, {"a": 2.0}, "better")]


def test_matching_file_is_left_alone(tmp_path):
    path = tmp_path / "results.tsv"
    results_tsv.write(path, _ledger(), ["a"])
    assert results_tsv.check_and_repair(path, _ledger(), ["a"]) is None
    assert not list(tmp_path.glob("*.bak-*"))


import os  # noqa: E402

import pytest  # noqa: E402


@pytest.mark.parametrize("damage, words", [
    (lambda t: t.replace("worse", "worse - my note"), "line 3 differs"),  # hand-edited
    (lambda t: t[: len(t) - 9], "torn last line"),  # torn
    (lambda t: "\n".join(t.splitlines()[:2]) + "\n", "1 rows for 3 experiments"),  # rows lost
    (lambda t: t + t.splitlines()[-1] + "\n", "4 rows for 3 experiments"),  # duplicated row
    (lambda t: t.encode("utf-8")[:20] + b"\xff\xfe" + t.encode("utf-8")[20:], "not valid UTF-8"),
])
def test_damaged_file_is_rebuilt_from_the_ledger_with_a_backup(tmp_path, damage, words):
    path = tmp_path / "results.tsv"
    good = results_tsv.render(_ledger(), ["a"])
    bad = damage(good)
    path.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    message = results_tsv.check_and_repair(path, _ledger(), ["a"], backup_dir=tmp_path / "store")
    assert message and words in message and str(path) in message, message
    assert path.read_text() == good
    backups = list((tmp_path / "store").glob("results.tsv.bak-*"))
    assert len(backups) == 1
    assert backups[0].read_bytes() == (bad if isinstance(bad, bytes) else bad.encode())
    assert str(backups[0]) in message
    # a second damage in the same second gets its own backup
    path.write_text("junk\n")
    results_tsv.check_and_repair(path, _ledger(), ["a"], backup_dir=tmp_path / "store")
    assert len(list((tmp_path / "store").glob("results.tsv.bak-*"))) == 2


def test_missing_file_is_rebuilt(tmp_path):
    path = tmp_path / "results.tsv"
    assert "missing" in results_tsv.check_and_repair(path, _ledger(), ["a"])
    assert path.read_text() == results_tsv.render(_ledger(), ["a"])
    assert results_tsv.check_and_repair(tmp_path / "new.tsv", [], ["a"]) is None


def test_another_tags_table_is_not_damage(tmp_path):
    other = tmp_path / "other-tag-copy.tsv"
    results_tsv.write(other, [exp(0, Status.KEEP, {"a": 9.0})], ["a"])
    path = tmp_path / "results.tsv"
    path.hardlink_to(other)
    assert results_tsv.check_and_repair(path, _ledger(), ["a"], others=[other]) is None
    assert path.read_text() == results_tsv.render(_ledger(), ["a"])
    assert not list(tmp_path.glob("*.bak-*"))


def test_table_backs_up_a_hand_edit_made_while_the_loop_runs(tmp_path):
    path = tmp_path / "results.tsv"
    table = results_tsv.Table(path, ["a"], backup_dir=tmp_path / "store")
    assert "missing" in table.reset(_ledger()[:2])
    path.write_text(path.read_text() + "my own row\n")
    message = table.add(_ledger()[2])
    assert "changed by hand" in message
    assert path.read_text() == results_tsv.render(_ledger(), ["a"])
    (backup,) = (tmp_path / "store").glob("results.tsv.bak-*")
    assert backup.read_text().endswith("my own row\n")
    assert table.add(exp(3, Status.DISCARD, {"a": 0.1})) is None


def test_table_without_backup_dir_keeps_the_old_behaviour(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text("some other tag's table\n")
    table = results_tsv.Table(path, ["a"])
    assert table.reset(_ledger()) is None
    assert path.read_text() == results_tsv.render(_ledger(), ["a"])
    assert not list(tmp_path.glob("*.bak-*"))


def test_reset_removes_temporaries_of_a_writer_killed_mid_write(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "results.tsv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".results.tsv.tmp.{int(dead.stdout)}"
    stale.write_text("half a tab")
    live = tmp_path / f".results.tsv.tmp.{os.getppid()}"  # a live writer: left alone
    live.write_text("in progress")
    mine_elsewhere = tmp_path / ".other.tsv.tmp.1"
    mine_elsewhere.write_text("not ours")
    results_tsv.Table(path, ["a"]).reset(_ledger())
    assert not stale.exists() and live.exists() and mine_elsewhere.exists()
