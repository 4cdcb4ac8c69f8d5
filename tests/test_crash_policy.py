from autoresearch.crash_policy import crash_streak, should_pause, should_stop
from autoresearch.records import Experiment, Status


def rec(i, status, reason=""):
    return Experiment(iteration=i, commit=f"{i:07d}", parent="p", status=status, description="x", reason=reason)


ENV = "env: ModuleNotFoundError: No module named 'einops' at train.py:3; install einops into the interpreter that runs the task"


def test_pause_after_three_environment_errors_in_a_row():
    history = [rec(0, Status.KEEP), rec(1, Status.CRASH, ENV), rec(2, Status.CRASH, ENV)]
    assert should_pause(history) is None
    history.append(rec(3, Status.CRASH, "disk: OSError: [Errno 28] No space left on device at train.py:9; free some disk space"))
    message = should_pause(history)
    assert message.startswith("paused after 3 runs") and "No space left" in message and "fix it and run again" in message
    assert should_pause(history, after=0) is None
    assert should_pause(history, after=4) is None  # the keep at 0 breaks a streak of four


def test_other_crashes_break_an_environment_streak():
    history = [rec(1, Status.CRASH, ENV), rec(2, Status.CRASH, "oom: CUDA out of memory at train.py:1"),
               rec(3, Status.CRASH, ENV), rec(4, Status.CRASH, ENV)]
    assert should_pause(history) is None
    assert should_pause(history, after=2) is not None


def test_consecutive_crash_limit():
    history = [rec(0, Status.KEEP)] + [rec(i, Status.CRASH, f"exit_code: {i}") for i in range(1, 5)]
    assert should_stop(history, 5) is None
    history.append(rec(5, Status.CRASH, "timeout: killed after 60 s"))
    message = should_stop(history, 5)
    assert "5 crashes in a row" in message and "exit_code" in message and "timeout: killed after 60 s" in message
    assert should_stop(history, 0) is None and should_stop(history, None) is None
    assert len(crash_streak(history)) == 5
    history.append(rec(6, Status.DISCARD))
    assert should_stop(history, 1) is None and crash_streak(history) == []


def test_a_lost_node_is_not_held_against_the_ideas():
    history = [rec(i, Status.CRASH, "exit_code: 1") for i in range(3)]
    history.append(rec(3, Status.CRASH, "node_lost: the node running it died (retried once)"))
    history += [rec(i, Status.CRASH, "exit_code: 1") for i in range(4, 6)]
    assert len(crash_streak(history)) == 2 and should_stop(history, 3) is None


def test_the_loop_pauses_on_setup_errors_and_stops_on_a_crash_streak(make_task):
    from autoresearch.config import load_task
    from autoresearch.loop import Limits, Loop
    from helpers import ScriptedAgent

    def add(line):
        def edit(d):
            p = d / "train.py"
            p.write_text(line + "\n" + p.read_text())
            return line
        return edit

    task = make_task()
    said = []
    missing = [add(f"import package_that_is_not_installed_{i}") for i in range(5)]
    records = Loop(load_task(task), "p", ScriptedAgent(*missing), say=said.append).run(Limits(iterations=5))
    assert [r.reason.split(":")[0] for r in records[1:]] == ["env"] * 3  # paused after three
    assert any(s.startswith("paused after 3 runs") for s in said), said

    # code errors are the ideas' doing: they stop the night only at the crash limit (here 2)
    said.clear()
    broken = [add(f"raise ValueError('idea {i}')") for i in range(4)]
    records = Loop(load_task(task), "p", ScriptedAgent(*broken), say=said.append).run(
        Limits(iterations=4, max_consecutive_crashes=2))
    assert [r.reason for r in records] == [f"exit_code: 1, ValueError: idea {i} at train.py:1" for i in range(2)]
    assert any(s.startswith("stopped after 2 crashes in a row") for s in said), said
