"""Git wrapper: stale lock files left by a git killed mid-command."""

import os
import subprocess
import time

import pytest

from autoresearch.errors import GitError
from autoresearch.gitrepo import Git


def old(path, seconds=30):
    path.write_text("")
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_stale_locks_are_removed_so_git_works_again(make_task):
    task = make_task()
    git = Git(task)
    index = old(task / ".git" / "index.lock")
    ref = old(task / ".git" / "refs" / "heads" / "main.lock")
    with pytest.raises(GitError, match="index.lock"):
        git.reset_hard("HEAD")
    assert sorted(git.remove_stale_locks()) == sorted([index, ref])
    assert not index.exists() and not ref.exists()
    git.reset_hard("HEAD")
    assert git.remove_stale_locks() == []


def test_a_lock_that_may_be_live_is_kept(make_task):
    task = make_task()
    git = Git(task)
    young = task / ".git" / "index.lock"
    young.write_text("")
    assert git.remove_stale_locks() == [] and young.exists()  # just created: maybe a git at work
    old(young)
    waiting = subprocess.Popen(["git", "cat-file", "--batch"], cwd=task, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        assert git.remove_stale_locks() == [] and young.exists()  # a git process works here now
    finally:
        waiting.communicate(b"")
    assert git.remove_stale_locks() == [young]


def test_where_and_put_back(make_task):
    task = make_task()
    git = Git(task)
    branch = git("rev-parse", "--abbrev-ref", "HEAD").strip()
    first = git.head()
    assert git.where() == (f"refs/heads/{branch}", first)
    assert git.put_back(branch, first) is False  # nothing moved: nothing to say
    (task / "train.py").write_text((task / "train.py").read_text() + "# edit\n")
    git("commit", "-qam", "the agent committed")
    git("checkout", "-q", "--detach")
    assert git.where() == ("HEAD", git.head())
    assert git.put_back(branch, first) is True
    assert git.where() == (f"refs/heads/{branch}", first)
    assert "# edit" in (task / "train.py").read_text()  # its edit is kept, to be judged


def test_outside_changes_asks_git_only_when_there_is_an_outside(make_task, monkeypatch):
    from autoresearch.gitrepo import Git

    asked: list[tuple] = []
    real = Git.__call__
    monkeypatch.setattr(Git, "__call__", lambda self, *a, **k: asked.append(a) or real(self, *a, **k))
    root_task = make_task()
    (root_task / "new.txt").write_text("x")
    git = Git(root_task)
    git.prefix()
    asked.clear()
    assert git.outside_changes() == set() and asked == []  # the task is the repository: no status call

    sub = make_task(subdir="task")
    (sub.parent / "helper.py").write_text("x = 1\n")
    (sub / "inside.txt").write_text("x")
    assert Git(sub).outside_changes() == {"helper.py"}
