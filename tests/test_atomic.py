"""Atomic writes: a reader sees a whole old or new file, and writers that are threads of one
process (the workers) never trip over each other's temporary."""

import os

import pytest

from autoresearch import atomic

from autoresearch.atomic import mirror, write_text
from autoresearch.results_tsv import remove_stale_temporaries

from helpers import errors_in_threads


def test_threads_writing_one_file_at_once(tmp_path):
    target = tmp_path / "strategy.md"

    def write(i):
        for k in range(200):
            write_text(target, f"{i}-{k}\n" * 500, durable=False)
            mirror(target, tmp_path / "copy.md")

    assert errors_in_threads(write) == []  # the workers' bench died of one: FileNotFoundError on rename
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


class _BusyLink:
    """os.link that loses the race with a concurrent writer `losses` times, then works."""

    def __init__(self, losses):
        self.losses, self.calls = losses, 0
        self.real = os.link

    def __call__(self, src, dst):
        self.calls += 1
        if self.calls <= self.losses:
            raise FileNotFoundError(2, "No such file or directory")  # the inode was renamed away
        return self.real(src, dst)


@pytest.mark.parametrize("losses", [0, 1, atomic.LINK_ATTEMPTS - 1])
def test_mirror_retries_a_lost_race_with_growing_pauses(tmp_path, monkeypatch, losses):
    write_text(tmp_path / "a.txt", "new\n")
    busy, pauses = _BusyLink(losses), []
    monkeypatch.setattr(atomic.os, "link", busy)
    monkeypatch.setattr(atomic.time, "sleep", pauses.append)
    mirror(tmp_path / "a.txt", tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "new\n" and busy.calls == losses + 1
    assert os.stat(tmp_path / "b.txt").st_ino == os.stat(tmp_path / "a.txt").st_ino  # a link, not a copy
    assert pauses == sorted(pauses) and len(pauses) == losses and (not pauses or pauses[-1] <= 0.02)


def test_mirror_under_lasting_contention_copies_instead_of_failing(tmp_path, monkeypatch):
    write_text(tmp_path / "a.txt", "new\n")
    busy, pauses = _BusyLink(10**6), []
    monkeypatch.setattr(atomic.os, "link", busy)
    monkeypatch.setattr(atomic.time, "sleep", pauses.append)
    mirror(tmp_path / "a.txt", tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "new\n" and busy.calls == atomic.LINK_ATTEMPTS
    assert sum(pauses) < 0.2  # bounded: a busy file never holds up the loop for long
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]  # no temporary left


def test_mirror_of_a_missing_source_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        mirror(tmp_path / "gone.txt", tmp_path / "b.txt")
