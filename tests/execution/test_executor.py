"""The Executor base class and how the loop uses its hooks."""

from __future__ import annotations

import pytest

from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError
from autoresearch.execution import Executor, LocalExecutor, as_executor, executor_for_task
from autoresearch.execution.warm import WarmExecutor
from autoresearch.loop import Limits, Loop

from conftest import git


def test_the_hooks_do_nothing_by_default_and_an_executor_without_run_cannot_be_made():
    class Bare(Executor):
        pass

    with pytest.raises(TypeError, match="run"):
        Bare()  # no run: refused when made, not when the first experiment starts

    class Minimal(Executor):
        def run(self, spec, *, on_start=None, stop_event=None):
            return ("ran", spec)

    ex = Minimal()
    assert ex.check() is None and ex.connect() is None and ex.close() is None
    assert ex.off_reason == "" and ex.name == "executor"
    assert ex.run("spec") == ("ran", "spec")
    with Minimal() as inside:  # a context manager that closes
        assert isinstance(inside, Executor)


def test_a_bare_object_with_run_gets_the_hooks():
    class Plain:
        def run(self, spec, *, on_start=None, stop_event=None):
            return ("ran", spec, on_start, stop_event)

    ex = as_executor(Plain())
    assert isinstance(ex, Executor) and ex.name == "Plain"
    assert ex.run("spec", on_start=1, stop_event=2) == ("ran", "spec", 1, 2)
    ex.check(), ex.connect(), ex.close()
    local = LocalExecutor()
    assert as_executor(local) is local


def test_executor_for_task_follows_the_config(make_task):
    plain = make_task()
    assert type(executor_for_task(load_task(plain), print)) is LocalExecutor


def test_executor_for_task_warm_with_preload(make_task):
    from conftest import TINY_CONFIG

    task = make_task(config=TINY_CONFIG.replace("[task]\n", '[task]\npreload = ["json"]\n'))
    ex = executor_for_task(load_task(task), print)
    try:
        assert isinstance(ex, WarmExecutor) and ex.preload == ("json",)
    finally:
        ex.close()


def test_warm_false_turns_warm_starts_off_whatever_the_preload(make_task):
    from conftest import TINY_CONFIG

    task = make_task(config=TINY_CONFIG.replace("[task]\n", '[task]\npreload = ["json"]\nwarm = false\n'))
    assert load_task(task).config.task.warm is False
    assert type(executor_for_task(load_task(task), print)) is LocalExecutor


def test_warm_must_be_true_or_false(make_task):
    from autoresearch.errors import ConfigError
    from conftest import TINY_CONFIG

    task = make_task(config=TINY_CONFIG.replace("[task]\n", '[task]\nwarm = "sometimes"\n'))
    with pytest.raises(ConfigError, match="warm"):
        load_task(task)


def test_the_bundled_examples_start_warm_by_default(tmp_path):
    """The example declares what its runs import (torch, and torch._dynamo, which an optimizer's
    constructor imports: seconds per fresh run); its runs fork from a server that has them."""
    from autoresearch.api import EXAMPLES, copy_example

    for name in EXAMPLES:
        task = load_task(copy_example(name, tmp_path / name))
        assert task.config.task.warm is True
        assert {"torch", "torch._dynamo"} <= set(task.config.task.preload)
        ex = executor_for_task(task, print)
        try:
            assert isinstance(ex, WarmExecutor) and ex.server_pids == []  # started by the first run, not here
            # The data prepare.py loads comes from the server too, read from this task's folder.
            assert ex.data.calls == ("prepare:load_data",) and ex.data.directory == str(task.dir)
        finally:
            ex.close()


class Hooked(LocalExecutor):
    def __init__(self, fail_connect: bool = False):
        self.calls: list[str] = []
        self.fail_connect = fail_connect

    def check(self):
        self.calls.append("check")

    def connect(self):
        self.calls.append("connect")
        if self.fail_connect:
            raise AutoresearchError("no cluster there")

    def run(self, spec, **kw):
        self.calls.append("run")
        return super().run(spec, **kw)

    def close(self):
        self.calls.append("close")


def test_the_loop_checks_and_connects_before_the_baseline(make_task):
    ex = Hooked()
    Loop(load_task(make_task()), "h", object(), executor=ex, say=lambda s: None).run(Limits(iterations=0))
    assert ex.calls[:3] == ["check", "connect", "run"]
    assert "close" not in ex.calls  # the caller made it: the caller closes it


def test_a_failing_connect_stops_before_a_branch_is_made(make_task):
    task = make_task()
    ex = Hooked(fail_connect=True)
    with pytest.raises(AutoresearchError, match="no cluster there"):
        Loop(load_task(task), "h", object(), executor=ex, say=lambda s: None).run(Limits(iterations=0))
    assert ex.calls == ["check", "connect"]
    assert "autoresearch/h" not in git(task, "branch", "--list")
