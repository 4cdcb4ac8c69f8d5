"""The iteration as stages over an Attempt: each run keeps its own facts."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import autoresearch.loop as loop_package
from autoresearch.loop import measure as measure_module
from autoresearch.ledger import Ledger
from autoresearch.records import Status

from conftest import TINY_CONFIG
from helpers import ScriptedAgent, run, set_x


class CountingSampler:
    """A GpuSampler whose k-th run (1, 2, ...) peaks at k * 1000 MB with k * 10 % utilisation."""

    runs = 0

    def __init__(self, visible=None, interval=0.5):
        type(self).runs += 1
        self.peak_mb = type(self).runs * 1000.0
        self.utilisation = type(self).runs * 10.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_a_confirmed_keep_records_its_own_gpu_facts_not_its_confirmations(make_task, monkeypatch):
    monkeypatch.setattr(CountingSampler, "runs", 0)
    monkeypatch.setattr(measure_module, "GpuSampler", CountingSampler)
    task = make_task(config=TINY_CONFIG + "confirm = true\n")
    _, records = run(task, ScriptedAgent(set_x(2.0)), 1)
    assert len(records) == 2  # run() returns the baseline and the iteration; the confirmation is a row of its own
    ledger = sorted(Ledger(task / ".autoresearch/t1/ledger.jsonl").records, key=lambda r: r.iteration)
    baseline, keep, check = ledger
    assert keep.status is Status.KEEP and "confirmed by iteration 2" in keep.reason
    assert check.reason == "confirmation run of iteration 1"
    # run 1 the baseline, run 2 the candidate, run 3 its confirmation
    assert (baseline.gpu_peak_mb, keep.gpu_peak_mb, check.gpu_peak_mb) == (1000.0, 2000.0, 3000.0)
    assert (baseline.gpu_util, keep.gpu_util, check.gpu_util) == (10.0, 20.0, 30.0)


def test_no_function_of_the_loop_package_is_over_40_lines():
    long = []
    for path in Path(loop_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 40:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, long


def test_the_loop_sets_its_attributes_only_in_its_constructor():
    from autoresearch.loop.core import Loop

    tree = ast.parse(inspect.getsource(Loop))
    outside = [f"{f.name}: self.{t.attr}" for f in tree.body[0].body if isinstance(f, ast.FunctionDef) and f.name != "__init__"
               for node in ast.walk(f) if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
               if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"]
    assert not outside, outside
    stages = Path(loop_package.__file__).parent
    for path in stages.glob("*.py"):  # nor do the stages: they write the Attempt
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    assert not (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "loop"), \
                        f"{path.name}:{node.lineno} sets an attribute of the loop"


def test_a_night_adds_no_attribute_to_the_loop_or_what_its_workers_share(make_task):
    # The static check above misses `loop.__dict__.setdefault(...)`, which three modules used.
    from autoresearch.config import load_task
    from autoresearch.loop import Limits, Loop

    loop = Loop(load_task(make_task()), "t1", ScriptedAgent(set_x(0.5), set_x(0.7)), say=lambda s: None)
    before, shared_before = set(vars(loop)), set(vars(loop.shared))
    loop.run(Limits(iterations=2))
    assert set(vars(loop)) == before and set(vars(loop.shared)) == shared_before


def test_no_prefix_test_on_a_reason_string_outside_the_verdict_module():
    src = Path(loop_package.__file__).parent.parent
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "verdict.py":
            continue
        text = path.read_text()
        for needle in (r"reason\.startswith", r"reason\[:\s*\d+\s*\]\s*[!=]=", r"kind_of\(", r"reason\.split\(",
                       r"in \w+\.reason\b"):
            if re.search(needle, text) and not (path.name == "crash.py" and needle == r"kind_of\("):
                offenders.append(f"{path.relative_to(src)}: {needle}")
    assert not offenders, offenders


@pytest.mark.parametrize("kind", ["baseline", "repeat", "agent", "confirmation"])
def test_each_kind_of_attempt_names_itself(kind):
    from autoresearch.loop import Kind

    assert Kind(kind).proposes is (kind == "agent")


CORE = ["loop/__init__.py", "loop/attempt.py", "loop/core.py", "loop/judge.py", "loop/measure.py", "loop/propose.py",
        "loop/record.py", "loop/session.py", "verdict.py", "decision.py", "noise.py", "store.py", "records.py",
        "crash.py", "crash_policy.py", "integrity.py", "ledger.py", "cost.py", "guard.py", "atomic.py"]


@pytest.mark.parametrize("name", CORE)
def test_the_core_never_imports_the_analysis(name):
    path = Path(loop_package.__file__).parent.parent / name
    for node in ast.walk(ast.parse(path.read_text())):  # at the top or inside a function: neither
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        assert not any(m.startswith("autoresearch.analysis") for m in modules), f"{name}:{node.lineno}"
