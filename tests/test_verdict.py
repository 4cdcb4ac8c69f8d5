"""Every reason string the loop has written parses to the Verdict it means and renders back byte for byte."""

from __future__ import annotations

import pytest

from autoresearch import crash_policy, outer
from autoresearch.crash import Crash, CrashKind
from autoresearch.records import CrashReason, Experiment
from autoresearch.verdict import Reason, Status, Verdict

K, D, C = Status.KEEP, Status.DISCARD, Status.CRASH

# (status, the string an earlier version wrote, the Verdict it means)
LEGACY = [
    (C, "timeout: killed after 660 s", Verdict(C, Reason.TIMEOUT, "killed after 660 s")),
    (C, "timeout: killed at the time limit", Verdict(C, Reason.TIMEOUT, "killed at the time limit")),
    (C, "oom: CUDA out of memory. Tried to allocate 20.00 GiB at train.py:88",
     Verdict(C, Reason.OOM, "CUDA out of memory. Tried to allocate 20.00 GiB at train.py:88")),
    (C, "oom: memory limit exceeded: 2100 MB, the limit is 2000 MB",
     Verdict(C, Reason.OOM, "memory limit exceeded: 2100 MB, the limit is 2000 MB")),
    (C, "env: ModuleNotFoundError: No module named 'einops' at train.py:2; install einops into the interpreter "
        "that runs the task", Verdict(C, Reason.ENV, "ModuleNotFoundError: No module named 'einops' at train.py:2; "
                                       "install einops into the interpreter that runs the task")),
    (C, "disk: OSError: [Errno 28] No space left on device at train.py:2; free some disk space",
     Verdict(C, Reason.DISK, "OSError: [Errno 28] No space left on device at train.py:2; free some disk space")),
    (C, "syntax: SyntaxError: '(' was never closed at train.py:2",
     Verdict(C, Reason.SYNTAX, "SyntaxError: '(' was never closed at train.py:2")),
    (C, "nan: loss = nan", Verdict(C, Reason.NAN, "loss = nan")),
    (C, "no_metric: no numeric `val_bpb:` line after the last `---`",
     Verdict(C, Reason.NO_METRIC, "no numeric `val_bpb:` line after the last `---`")),
    (C, "exit_code: 1, ValueError: boom at train.py:9", Verdict(C, Reason.EXIT_CODE, "1, ValueError: boom at train.py:9")),
    (C, "exit_code: -9, killed by SIGKILL (often the kernel's out-of-memory killer; see dmesg)",
     Verdict(C, Reason.EXIT_CODE, "-9, killed by SIGKILL (often the kernel's out-of-memory killer; see dmesg)")),
    (C, "guard: changed non-editable file(s) prepare.py; reverted",
     Verdict(C, Reason.GUARD, "changed non-editable file(s) prepare.py; reverted")),
    (C, "guard: the run modified read-only file(s) prepare.py", Verdict(C, Reason.GUARD, "the run modified read-only file(s) prepare.py")),
    (C, "agent: no change to the editable files", Verdict(C, Reason.AGENT, "no change to the editable files")),
    (C, "agent: claude exited with 1: rate limited", Verdict(C, Reason.AGENT, "claude exited with 1: rate limited")),
    (C, "node_lost: the node running it died (retried once)", Verdict(C, Reason.NODE_LOST, "the node running it died (retried once)")),
    (C, "guard: the run's declared output(s) ckpt/*.pt are missing",
     Verdict(C, Reason.GUARD, "the run's declared output(s) ckpt/*.pt are missing")),
    (C, "guard: the run's declared output(s) pred.json are missing (pred.json: a symlink or code is never an output)",
     Verdict(C, Reason.GUARD, "the run's declared output(s) pred.json are missing (pred.json: a symlink or code is never an output)")),
    (C, "guard: the run's outputs (1048576 MB) do not fit in the evaluation's copy (900 MB free in /tmp); set TMPDIR to a disk with room",
     Verdict(C, Reason.GUARD, "the run's outputs (1048576 MB) do not fit in the evaluation's copy (900 MB free in /tmp); "
                              "set TMPDIR to a disk with room")),
    (C, "eval: `python prepare.py --evaluate` exited with 1, see eval.log (it runs on a pristine copy with only "
        "[task] outputs; the run also wrote pred.json)",
     Verdict(C, Reason.EVAL, "`python prepare.py --evaluate` exited with 1, see eval.log (it runs on a pristine copy "
                             "with only [task] outputs; the run also wrote pred.json)")),
    (C, "eval: timed out after 30 s", Verdict(C, Reason.EVAL, "timed out after 30 s")),
    (C, "eval: `python eval.py` exited with 2, see eval.log", Verdict(C, Reason.EVAL, "`python eval.py` exited with 2, see eval.log")),
    (K, "baseline", Verdict(K, Reason.BASELINE)),
    (K, "baseline; flagged: the run printed score=0.900000, the trusted eval says 0.500000",
     Verdict(K, Reason.BASELINE, flag="the run printed score=0.900000, the trusted eval says 0.500000")),
    (D, "noise: baseline repeat 2", Verdict(D, Reason.NOISE_REPEAT, of=2)),
    (D, "confirmation run of iteration 7", Verdict(D, Reason.CONFIRMATION, of=7)),
    (C, "confirmation run of iteration 7: the run failed", Verdict(C, Reason.CONFIRMATION, "the run failed", of=7)),
    (D, "duplicate of iteration 3; not run again", Verdict(D, Reason.DUPLICATE, of=3)),
    (D, "duplicate of iteration 4 (running on another worker); not run",
     Verdict(D, Reason.DUPLICATE, "running on another worker", of=4)),
    (K, "val_bpb improved", Verdict(K, Reason.IMPROVED, "val_bpb improved")),
    (K, "val_bpb improved; confirmed by iteration 9", Verdict(K, Reason.IMPROVED, "val_bpb improved", confirmed_by=9)),
    (K, "score improved; flagged: the run printed score=1.000000, the trusted eval says 0.900000; confirmed by iteration 12",
     Verdict(K, Reason.IMPROVED, "score improved", flag="the run printed score=1.000000, the trusted eval says 0.900000",
             confirmed_by=12)),
    (D, "val_bpb worse", Verdict(D, Reason.WORSE, "val_bpb worse")),
    (D, "val_bpb worse; flagged: the run printed val_bpb=0.1, the trusted eval says 0.9",
     Verdict(D, Reason.WORSE, "val_bpb worse", flag="the run printed val_bpb=0.1, the trusted eval says 0.9")),
    (K, "bin_acc equal, tie-break mc_acc improved", Verdict(K, Reason.TIE_BREAK_IMPROVED, "bin_acc equal, tie-break mc_acc improved")),
    (D, "bin_acc equal, tie-break mc_acc worse", Verdict(D, Reason.TIE_BREAK_WORSE, "bin_acc equal, tie-break mc_acc worse")),
    (K, "all metrics equal and the code is simpler", Verdict(K, Reason.SIMPLER, "all metrics equal and the code is simpler")),
    (D, "no improvement", Verdict(D, Reason.NO_IMPROVEMENT, "no improvement")),
    (D, "score gain 0.001000 is within the noise floor 0.004000",
     Verdict(D, Reason.WITHIN_NOISE, "score gain 0.001000 is within the noise floor 0.004000")),
    # Since noise-aware keeps are the default, the sentence says where the floor comes from.
    (D, "val_acc gain 0.012000 is within the noise floor 0.014142: 2 x the spread (std 0.007071) of 2 runs of the "
        "same code",
     Verdict(D, Reason.WITHIN_NOISE, "val_acc gain 0.012000 is within the noise floor 0.014142: 2 x the spread "
                                     "(std 0.007071) of 2 runs of the same code")),
    (D, "score gain 0.008000 is within the noise floor 0.010000: the mean gain of iterations 2 and 3, against "
        "2 x the spread (std 0.007071) of 2 runs of the same code / sqrt(2)",
     Verdict(D, Reason.WITHIN_NOISE, "score gain 0.008000 is within the noise floor 0.010000: the mean gain of "
                                     "iterations 2 and 3, against 2 x the spread (std 0.007071) of 2 runs of the "
                                     "same code / sqrt(2)")),
    (D, "score gain 0.004000 does not pay for 2048 MB of peak_vram_mb above the soft limit 1024 MB (needs 0.020000)",
     Verdict(D, Reason.MEMORY_COST,
             "score gain 0.004000 does not pay for 2048 MB of peak_vram_mb above the soft limit 1024 MB (needs 0.020000)")),
    (D, "a seed change alone is never a keep (noise floor 0.004000)", Verdict(D, Reason.SEED_ONLY, "0.004000")),
    (D, "not confirmed by iteration 8 under another seed", Verdict(D, Reason.NOT_CONFIRMED, of=8)),
    (D, "stopped at 38% of the budget: val_acc 0.71 while earlier runs had 0.9 at that time",
     Verdict(D, Reason.STOPPED_EARLY, "stopped at 38% of the budget: val_acc 0.71 while earlier runs had 0.9 at that time")),
    (Status.IMPORTED, "imported from /data/runs/m0_adam", Verdict(Status.IMPORTED, Reason.IMPORTED, "/data/runs/m0_adam")),
]


@pytest.mark.parametrize("status, text, verdict", LEGACY, ids=[t for _, t, _ in LEGACY])
def test_each_legacy_string_parses_to_its_verdict_and_renders_back(status, text, verdict):
    assert Verdict.parse(status, text) == verdict
    assert verdict.render() == text
    assert str(verdict) == text


def test_every_reason_but_other_has_a_legacy_string():
    assert {v.reason for _, _, v in LEGACY} == set(Reason) - {Reason.OTHER}


@pytest.mark.parametrize("text", ["", "something a newer version wrote", "oomph", "baseline!", "noise: baseline repeat x",
                                  "duplicate of iteration 3", "val_bpb improved; confirmed by iteration x",
                                  "a seed change alone is never a keep", "confirmation run of iteration"])
def test_an_unknown_string_is_kept_verbatim(text):
    v = Verdict.parse(Status.DISCARD, text)
    assert v.render() == text
    if v.reason is Reason.OTHER:
        assert not (v.untrained or v.repairable or v.environmental or v.noise_repeat or v.duplicate)


def test_old_enum_names_are_the_one_reason_enum():
    assert CrashKind is Reason and CrashReason is Reason
    assert Crash(CrashKind.OOM, "d").reason == "oom: d" and Crash(CrashKind.OOM, "d").verdict == Verdict(C, Reason.OOM, "d")


def _old_untrained(status, reason):  # axes.untrained before the Verdict type
    if status is Status.CRASH:
        return reason.startswith(("agent", "guard", "node_lost"))
    return reason.startswith("duplicate of iteration")


def _old_repairable(status, reason):  # outer.repair_target before the Verdict type
    hints = ("ModuleNotFoundError", "command not found", "No such file or directory: 'python",
             "CUDA driver", "libcuda", "cannot open shared object file")
    return (status is Status.CRASH and reason.startswith(("exit_code", "nan", "no_metric", "syntax"))
            and not any(h in reason for h in hints))


def _old_kind(reason):
    return reason.split(":", 1)[0].strip()


@pytest.mark.parametrize("status, text, verdict", LEGACY, ids=[t for _, t, _ in LEGACY])
def test_predicates_mean_what_the_prefix_tests_meant(status, text, verdict):
    assert verdict.untrained == _old_untrained(status, text)
    assert verdict.repairable == _old_repairable(status, text)
    assert verdict.environmental == (status is Status.CRASH and _old_kind(text) in ("env", "disk"))
    assert verdict.ends_streak == (status is not Status.CRASH or _old_kind(text) == "node_lost")
    assert verdict.noise_repeat == text.startswith("noise: baseline repeat")
    assert verdict.kind == _old_kind(text)


def test_a_setup_failure_that_exited_is_not_repairable():
    v = Verdict.parse(C, "exit_code: 127, sh: python9: command not found")
    assert v.reason is Reason.EXIT_CODE and not v.repairable


def _record(i, status, reason, commit="c", parent="p"):
    return Experiment(iteration=i, commit=f"{commit}{i}", parent=parent, status=status, description="d", reason=reason)


def test_the_consumers_read_the_verdict():
    history = [_record(0, K, "baseline"), _record(1, C, "exit_code: 1, ValueError: x at train.py:3")]
    assert outer.repair_target(history, object(), 2) is history[1]
    history[-1:] = [_record(1, C, "timeout: killed after 60 s")]
    assert outer.repair_target(history, object(), 2) is None
    streak = [_record(i, C, "oom: x") for i in range(1, 4)] + [_record(4, C, "node_lost: gone")]
    assert crash_policy.crash_streak(streak) == []
    envs = [_record(i, C, "env: no driver; check the GPU driver") for i in range(3)]
    assert "no driver; check the GPU driver" in crash_policy.should_pause(envs, 3)
    assert crash_policy.should_stop(streak[:3], 3).startswith("stopped after 3 crashes in a row (oom; the last: oom: x)")
