"""Atomic writes: a reader sees a whole old or new file, and writers that are threads of one
process (the workers) never trip over each other's temporary."""

import threading

from autoresearch.atomic import mirror, write_text
from autoresearch.results_tsv import remove_stale_temporaries


def test_threads_writing_one_file_at_once(tmp_path):
    target, errors = tmp_path / "strategy.md", []

    def write(i):
        try:
            for k in range(200):
                write_text(target, f"{i}-{k}\n" * 500, durable=False)
                mirror(target, tmp_path / "copy.md")
        except Exception as exc:  # the workers' bench died of this: FileNotFoundError on rename
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = target.read_text().splitlines()
    assert len(lines) == 500 and len(set(lines)) == 1  # one writer's whole text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.md", "strategy.md"]  # no temporary left


def test_a_killed_writers_temporary_is_still_found_by_its_pid(tmp_path):
    dead = 2**22 + 12345  # above any pid_max default: no such process
    (tmp_path / f".results.tsv.tmp.777.{dead}").write_text("torn")
    assert [p.name for p in remove_stale_temporaries(tmp_path / "results.tsv")] == [f".results.tsv.tmp.777.{dead}"]


def test_mirroring_the_same_version_twice_leaves_no_temporary(tmp_path):
    write_text(tmp_path / "results.tsv", "commit\tscore\n")
    mirror(tmp_path / "results.tsv", tmp_path / "copy.tsv")
    mirror(tmp_path / "results.tsv", tmp_path / "copy.tsv")  # rename(2) of two links to one file is a no-op
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.tsv", "results.tsv"]
