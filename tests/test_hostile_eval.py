"""Hostile runs against the trusted evaluation and the task tree (issue 11, attack 3 and beyond),
through the real loop, with the sandbox and without it.

The task: train.py writes its prediction to pred.json (a declared output); the trusted eval,
`python prepare.py --evaluate`, reads it back with the json module and prints the score. The
baseline (X = 1.0) behaves; an agent's change attacks while predicting worse (X = 0.5), so any
keep, or any score but 0.5, is the attack winning.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from autoresearch.config import load_task
from autoresearch.errors import ConfigError
from autoresearch.execution import pristine
from autoresearch.records import Status
from autoresearch.verdict import Reason, Verdict

from conftest import git
from helpers import ScriptedAgent, needs_sandbox, run
from hostile_helpers import FOOTER, assert_no_wrong_keep, hostile_config, to

PREPARE = '''\
import sys
DATA = "fixed"
if "--evaluate" in sys.argv:
    import json
    pred = json.load(open("pred.json"))
    print("---")
    print(f"score: {pred['x']:.6f}")
'''
TRAIN = '''\
import os, sys, json
X = 1.0
BAD = X != 1.0
json.dump({"x": X}, open("pred.json", "w"))
'''
MODES = [pytest.param("off", id="no-sandbox"), pytest.param("required", id="sandbox", marks=needs_sandbox)]


def make(make_task, body="", *, mode="off", outputs='["pred.json"]', task_extra="", extra=None, train=TRAIN):
    config = hostile_config(mode, timeout=30, task=f'eval = "python prepare.py --evaluate"\noutputs = {outputs}\n{task_extra}')
    task = make_task(train=train + textwrap.dedent(body) + FOOTER, config=config, extra=extra)
    (task / "prepare.py").write_text(PREPARE)
    git(task, "commit", "-qam", "the evaluation harness")
    return task


def night(task, *edits, say=lambda s: None):
    return run(task, ScriptedAgent(*edits), len(edits), tag="e", say=say)[1]


def run_file(task, n, name):
    return (task / ".autoresearch" / "e" / "runs" / f"{n:04d}" / name).read_text()


# -- attack 3: a module shadowing an import of the evaluator -------------------------------------
SHADOW = '''
if BAD:
    open("json.py", "w").write("""
def load(f):
    return {"x": 99.0}
def dump(obj, f):
    f.write('{"x": 99.0}')
""")
    print("planted json.py")
'''


@pytest.mark.parametrize("mode", MODES)
def test_3_a_module_planted_in_the_task_is_never_imported_by_the_eval_nor_kept(make_task, mode):
    task = make(make_task, SHADOW, mode=mode)
    records = night(task, to(0.5), to(2.0))
    planted, honest = records[1], records[2]
    assert "planted json.py" in run_file(task, 1, "log.txt")
    assert planted.status is Status.DISCARD and planted.metrics["score"] == 0.5, planted.reason
    assert "99" not in run_file(task, 1, "eval.log")
    assert not (task / "json.py").exists()  # removed after the run: it poisons nothing later
    # The next experiment (which would plant it again, being X != 1, but predicts 2.0): judged on 2.0.
    assert honest.status is Status.KEEP and honest.metrics["score"] == 2.0, honest.reason
    assert not (task / "json.py").exists()
    assert git(task, "status", "--porcelain").strip() == "?? pred.json"  # the declared output only


# -- what a run leaves in the tree -----------------------------------------------------------------
LITTER = '''
if BAD:
    os.makedirs("sub/deep", exist_ok=True)
    open("sub/deep/junk.bin", "wb").write(b"x" * 100)
    open("junk.txt", "w").write("junk")
    open("ignored/planted.dat", "w").write("the run's")
os.makedirs("out", exist_ok=True)
open(f"out/model-{X}.pt", "wb").write(b"weights")
open("metrics.jsonl", "w").write(json.dumps({"step": 1, "score": X}) + "\\n")
open("notes.txt", "a").write("run was here\\n")  # the user's own file: changed, never removed
os.makedirs("cache", exist_ok=True)
open("cache/data.bin", "w").write(str(X))  # the baseline's cache; a later run's change makes it the run's
if BAD:
    os.symlink("/etc/hostname", "link-out")
'''


@pytest.mark.parametrize("mode", MODES)
def test_files_a_run_creates_are_removed_except_outputs_and_what_was_there(make_task, mode):
    task = make(make_task, LITTER, mode=mode, outputs='["pred.json", "out/*.pt"]')
    (task / "notes.txt").write_text("mine\n")  # untracked, the user's before the night
    (task / ".gitignore").write_text("ignored/\n")
    git(task, "add", ".gitignore")
    git(task, "commit", "-qm", "ignore")
    (task / "ignored").mkdir()
    (task / "ignored" / "big.dat").write_text("the user's data")
    records = night(task, to(0.5))
    assert records[1].status is Status.DISCARD, records[1].reason
    assert not (task / "junk.txt").exists() and not (task / "sub").exists() and not (task / "link-out").exists()
    assert (task / "out" / "model-0.5.pt").read_bytes() == b"weights"  # a declared output stays
    assert (task / "out" / "model-1.0.pt").exists()  # the baseline's output stays too
    assert json.loads((task / "metrics.jsonl").read_text())["score"] == 0.5  # the curve file stays
    assert (task / "notes.txt").read_text().startswith("mine\n")
    assert (task / "ignored" / "big.dat").read_text() == "the user's data"
    assert not (task / "ignored" / "planted.dat").exists()  # ignored by git, created by the run: removed
    assert not (task / "cache" / "data.bin").exists()  # the baseline's, changed by the experiment: gone
    assert (task / "prepare.py").read_text() == PREPARE and (task / "autoresearch.toml").exists()
    assert (task / "results.tsv").exists() and (task / ".autoresearch" / "e" / "ledger.jsonl").exists()


@pytest.mark.parametrize("mode", MODES)
def test_what_the_baseline_creates_stays_while_unchanged(make_task, mode):
    """A data cache the committed code writes on its first run is not regenerated every run."""
    body = '''
    os.makedirs("cache", exist_ok=True)
    if not os.path.exists("cache/data.bin"):
        open("cache/data.bin", "w").write("generated")
        print("generated the cache")
    '''
    task = make(make_task, body, mode=mode)
    records = night(task, to(0.5), to(2.0))
    assert records[2].status is Status.KEEP
    assert (task / "cache" / "data.bin").read_text() == "generated"
    assert "generated the cache" in run_file(task, 0, "log.txt")
    assert "generated the cache" not in run_file(task, 1, "log.txt") + run_file(task, 2, "log.txt")


# -- the outputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_run_without_its_declared_outputs_is_a_guard_crash(make_task, mode):
    body = '''
    if BAD:
        os.remove("pred.json")
        X = 5.0
    '''
    task = make(make_task, body, mode=mode)
    records = night(task, to(0.5))
    crash = records[1]
    assert crash.status is Status.CRASH, crash.reason
    assert Verdict.parse("crash", crash.reason) == Verdict.crash(
        Reason.GUARD, "the run's declared output(s) pred.json are missing")
    assert not (task / ".autoresearch" / "e" / "runs" / "0001" / "eval.log").exists()  # never evaluated
    assert_no_wrong_keep(task, records, "e")


@pytest.mark.parametrize("mode", MODES)
def test_a_stale_output_of_an_earlier_run_is_not_this_runs(make_task, mode):
    """pred.json is there (the baseline's), but this run did not write it: missing."""
    train = TRAIN.replace('json.dump({"x": X}, open("pred.json", "w"))',
                          'if not BAD:\n    json.dump({"x": X}, open("pred.json", "w"))')
    task = make(make_task, "if BAD:\n    X = 5.0\n", mode=mode, train=train)
    records = night(task, to(0.5))
    assert records[1].status is Status.CRASH and "pred.json are missing" in records[1].reason
    assert_no_wrong_keep(task, records, "e")


@pytest.mark.parametrize("mode", MODES)
def test_a_symlink_output_pointing_outside_is_never_followed(make_task, mode, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"x": 99.0}')
    body = f'''
    if BAD:
        os.remove("pred.json")
        os.symlink({str(secret)!r}, "pred.json")
    '''
    task = make(make_task, body, mode=mode)
    records = night(task, to(0.5))
    assert records[1].status is Status.CRASH, records[1].reason
    assert "pred.json are missing (pred.json: a symlink or code is never an output)" in records[1].reason
    assert not os.path.lexists(task / "pred.json") or not (task / "pred.json").is_symlink()
    assert secret.read_text() == '{"x": 99.0}'
    assert_no_wrong_keep(task, records, "e")


@pytest.mark.parametrize("mode", MODES)
def test_an_output_may_not_be_code(make_task, mode):
    """outputs = ["out/*"] and the run writes out/json.py and a .pth: never copied, never kept."""
    body = '''
    os.makedirs("out", exist_ok=True)
    open("out/pred.txt", "w").write(str(X))
    if BAD:
        open("out/json.py", "w").write("raise SystemExit('planted')")
        open("out/evil.pth", "w").write("import os")
    '''
    task = make(make_task, body, mode=mode, outputs='["pred.json", "out/*"]')
    records = night(task, to(0.5))
    assert records[1].status is Status.DISCARD and records[1].metrics["score"] == 0.5, records[1].reason
    assert not (task / "out" / "json.py").exists() and not (task / "out" / "evil.pth").exists()
    assert (task / "out" / "pred.txt").read_text() == "0.5"


def test_huge_outputs_that_do_not_fit_are_a_guard_crash_not_a_full_disk(make_task, monkeypatch):
    """A sparse 1 TB 'checkpoint' where the copy cannot hard-link it (another file system)."""
    body = '''
    open("big.ckpt", "wb").truncate(1 << 40 if BAD else 10)
    '''
    task = make(make_task, body, outputs='["pred.json", "big.ckpt"]')

    def no_link(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")
    monkeypatch.setattr(pristine, "_link", no_link)
    records = night(task, to(0.5))
    assert records[1].status is Status.CRASH and records[1].reason.startswith("guard: the run's outputs (")
    assert "do not fit in the evaluation's copy" in records[1].reason
    assert_no_wrong_keep(task, records, "e")


def test_outputs_are_hard_linked_so_a_big_checkpoint_costs_no_copy(make_task, monkeypatch, tmp_path):
    scratch = tmp_path / "scratch"  # the copy on the task's file system, as /tmp usually is
    scratch.mkdir()
    monkeypatch.setattr(pristine.tempfile, "tempdir", str(scratch))
    body = '''
    open("big.ckpt", "wb").truncate(1 << 40 if BAD else 10)
    '''
    task = make(make_task, body, outputs='["pred.json", "big.ckpt"]')
    records = night(task, to(0.5))
    assert records[1].status is Status.DISCARD and records[1].metrics["score"] == 0.5, records[1].reason
    assert not list(scratch.glob("*/repo/big.ckpt"))  # its link gone once the eval ended


# -- the evaluator's own files ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_a_committed_data_file_the_run_rewrites_reaches_the_eval_as_committed(make_task, mode):
    prepare = PREPARE.replace('pred = json.load(open("pred.json"))',
                              'pred = json.load(open("pred.json"))\n    pred["x"] *= float(open("data/scale.txt").read())')
    body = '''
    if BAD:
        open("data/scale.txt", "w").write("1000")
    '''
    task = make(make_task, body, mode=mode, extra={"data/scale.txt": "1"})
    (task / "prepare.py").write_text(prepare)
    git(task, "commit", "-qam", "a scale")
    records = night(task, to(3.0))
    assert Verdict.parse("crash", records[1].reason) == Verdict.crash(
        Reason.GUARD, "the run modified read-only file(s) data/scale.txt")  # committed, not editable
    assert records[1].metrics.get("score") != 3000.0
    assert (task / "data" / "scale.txt").read_text() == "1"
    assert_no_wrong_keep(task, records, "e")


def test_4_without_the_sandbox_a_rewritten_and_restored_readonly_file_is_a_guard_crash(make_task):
    body = '''
    if BAD:
        original = open("prepare.py").read()
        open("prepare.py", "w").write("print('---'); print('score: 99')\\n")
        open("prepare.py", "w").write(original)
    '''
    task = make(make_task, body, mode="off")
    records = night(task, to(3.0))
    assert records[1].status is Status.CRASH
    assert Verdict.parse("crash", records[1].reason) == Verdict.crash(
        Reason.GUARD, "the run modified read-only file(s) prepare.py")
    assert_no_wrong_keep(task, records, "e")


FAKE_PYTHON = "#!/bin/sh\necho ---\necho 'score: 99.0'\n"


@pytest.mark.parametrize("mode", MODES)
def test_a_run_replacing_the_evals_interpreter_under_the_task_never_scores(make_task, mode):
    """The task's .venv lies in the task directory: `python` of the eval is its bin/python."""
    body = f'''
    if BAD:
        try:
            os.remove(".venv/bin/python")
            open(".venv/bin/python", "w").write({FAKE_PYTHON!r})
            os.chmod(".venv/bin/python", 0o755)
            print("replaced python")
        except OSError as exc:
            print("refused", exc.errno)
    '''
    task = make(make_task, body, mode=mode)
    (task / ".venv" / "bin").mkdir(parents=True)
    os.symlink(sys.executable, task / ".venv" / "bin" / "python")
    (task / ".gitignore").write_text(".venv/\n")
    git(task, "add", ".gitignore")
    git(task, "commit", "-qm", "ignore the venv")
    records = night(task, to(0.5))
    log = run_file(task, 1, "log.txt")
    if mode == "required":
        assert "refused 30" in log  # EROFS: the interpreter's environment is read-only to runs
    else:
        assert "replaced python" in log
        assert records[1].status is Status.CRASH and "read-only file(s) .venv/bin/python" in records[1].reason
    assert records[1].metrics.get("score") != 99.0
    assert_no_wrong_keep(task, records, "e")


# -- the config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("outputs, says", [
    ('["*.py"]', "matches train.py"),
    ('["prep*"]', "matches prepare.py"),
    ('["autoresearch.toml"]', "matches autoresearch.toml"),
    ('["../elsewhere/*.pt"]', "leaves the task directory"),
    ('["/tmp/x.pt"]', "is absolute"),
    ('[".git/objects"]', "git's or the run store's"),
    ('["out/**/*.pth"]', "names code"),
    ('"ckpt.pt"', "must be a list of globs"),
    ('[""]', "is not a path"),
])
def test_bad_outputs_are_a_config_error_naming_the_field_and_the_fix(make_task, outputs, says):
    task = make(make_task, outputs=outputs)
    with pytest.raises(ConfigError) as err:
        load_task(task)
    assert err.value.key == "task.outputs" and says in err.value.problem
    assert str(task / "autoresearch.toml") in str(err.value)


def test_globs():
    assert pristine.matches("ckpt/model.pt", ["ckpt"]) and pristine.matches("ckpt/model.pt", ["ckpt/*.pt"])
    assert pristine.matches("a/b/c.pt", ["**/*.pt"]) and pristine.matches("c.pt", ["**/*.pt"])
    assert not pristine.matches("d/x.pt", ["*.pt"]) and not pristine.matches("pxv", ["p.v"])
    assert pristine.matches("preds.csv", ["pred[s].csv"]) and not pristine.matches("predx.csv", ["pred[!x].csv"])


LITTERING_EVAL = '''\
import os, sys
DATA = "fixed"
if "--evaluate" in sys.argv:
    import json
    pristine = (not os.path.exists("leftover.txt") and os.path.exists("data/keep.txt")
                and open("data/keep.txt").read() == "kept" and not os.path.exists("json_cache"))
    pred = json.load(open("pred.json"))
    print("---")
    print(f"score: {pred['x'] if pristine else 99.0:.6f}")
    open("leftover.txt", "w").write("from an earlier eval")
    os.makedirs("json_cache/deep", exist_ok=True)
    st = os.stat("data/keep.txt")
    try:
        open("data/keep.txt", "w").write("KEPT")  # the same size, and the mtime put back
        os.utime("data/keep.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError:
        pass
'''


@pytest.mark.parametrize("mode", MODES)
def test_what_an_eval_leaves_in_its_copy_never_reaches_the_next_eval(make_task, mode):
    """The copy is one checkout a night, put back to the commit before each eval: a file it wrote,
    a folder, a committed file rewritten with its size and mtime kept, are all gone next time."""
    task = make(make_task, mode=mode, extra={"data/keep.txt": "kept"})
    (task / "prepare.py").write_text(LITTERING_EVAL)
    git(task, "commit", "-qam", "an eval that litters its copy")
    records = night(task, to(0.5), to(2.0), to(3.0))
    assert [r.metrics.get("score") for r in records] == [1.0, 0.5, 2.0, 3.0], [r.reason for r in records]
    assert [r.status for r in records] == [Status.KEEP, Status.DISCARD, Status.KEEP, Status.KEEP]
    assert not (task / "leftover.txt").exists() and (task / "data" / "keep.txt").read_text() == "kept"


@pytest.mark.parametrize("mode", MODES)
def test_an_output_glob_over_committed_files_never_lets_the_run_replace_them(make_task, mode):
    """outputs = ["data/*"] where data/labels.txt is committed: the run's own data/pred.txt is an
    output; rewriting the committed file is a guard crash, and the eval gets the committed one."""
    prepare = PREPARE.replace('pred = json.load(open("pred.json"))',
                              'pred = json.load(open("pred.json"))\n    pred["x"] += float(open("data/labels.txt").read())')
    body = '''
    open("data/pred.txt", "w").write(str(X))
    if BAD and X > 2:
        open("data/labels.txt", "w").write("1000")
    '''
    task = make(make_task, body, mode=mode, outputs='["pred.json", "data/*"]', extra={"data/labels.txt": "0"})
    (task / "prepare.py").write_text(prepare)
    git(task, "commit", "-qam", "labels")
    records = night(task, to(2.0), to(3.0))
    assert records[1].status is Status.KEEP and records[1].metrics["score"] == 2.0, records[1].reason
    assert (task / "data" / "pred.txt").read_text() == "3.0"
    assert Verdict.parse("crash", records[2].reason) == Verdict.crash(
        Reason.GUARD, "the run modified read-only file(s) data/labels.txt")
    assert (task / "data" / "labels.txt").read_text() == "0"
    assert git(task, "rev-parse", "autoresearch/e").strip() == records[1].commit
