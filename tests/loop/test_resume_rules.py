"""A resume never silently changes the rules nor resets a user's commit away (issue 12, part 1)."""

from __future__ import annotations

import json

import pytest

from autoresearch.config import load_task
from autoresearch.errors import AutoresearchError
from autoresearch.ledger import Ledger
from autoresearch.loop import Limits, Loop

from conftest import git, tiny_config
from helpers import ScriptedAgent, cli, run, set_x, tsv


def ledger_of(task, tag="t1"):
    return Ledger(task / f".autoresearch/{tag}/ledger.jsonl")


def commit_on_main(task, old, new, message="change the rules"):
    """On main (where the user works), edit autoresearch.toml and commit it."""
    git(task, "checkout", "-q", "main")
    config = task / "autoresearch.toml"
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, new))
    git(task, "commit", "-q", "-am", message)


def resume(task, agent, n, *, adopt=False, tag="t1"):
    said: list[str] = []
    loaded = load_task(task)
    loop = Loop(loaded.adopting_config() if adopt else loaded, tag, agent, say=said.append)
    return loop.run(Limits(iterations=n)), said


def test_a_flipped_direction_is_refused_naming_the_key_and_touching_nothing(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    commit_on_main(task, 'direction = "maximize"', 'direction = "minimize"')
    ledger = (task / ".autoresearch/t1/ledger.jsonl").read_bytes()
    head = git(task, "rev-parse", "autoresearch/t1")
    with pytest.raises(AutoresearchError) as err:
        resume(task, ScriptedAgent(set_x(0.5)), 1)
    text = str(err.value)
    assert 'metrics.direction: "maximize" -> "minimize"' in text and "--adopt-config" in text
    assert "tag 't1'" in text and "nothing was changed" in text
    assert (task / ".autoresearch/t1/ledger.jsonl").read_bytes() == ledger
    assert git(task, "rev-parse", "autoresearch/t1") == head
    assert git(task, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"  # not even checked out


@pytest.mark.parametrize("old,new,key", [
    ('run = "python train.py"', 'run = "python train.py --fast"', "task.run"),
    ("time_budget = 5", "time_budget = 6", "task.time_budget"),
    ('readonly = ["prepare.py"]', "readonly = []", "task.readonly"),
    ('direction = "maximize"', 'direction = "maximize"\nmin_delta = 0.5', "metrics.min_delta"),
    ("time_budget = 5", 'time_budget = 5\neval = "python prepare.py"', "task.eval"),
])
def test_each_rule_key_is_checked(make_task, old, new, key):
    task = make_task()
    run(task, ScriptedAgent(), 0)
    commit_on_main(task, old, new)
    with pytest.raises(AutoresearchError, match=rf"\n  {key}: "):
        resume(task, ScriptedAgent(set_x(2.0)), 1)


def test_other_keys_may_change_freely(make_task):
    task = make_task()
    run(task, ScriptedAgent(), 0)
    commit_on_main(task, "timeout = 20", "timeout = 30\nmax_consecutive_crashes = 3")
    records, _ = resume(task, ScriptedAgent(set_x(2.0)), 1)
    assert [r.status.value for r in records] == ["keep"]


def test_adopting_rejudges_the_best_moves_the_branch_and_status_follows(make_task):
    task = make_task()
    # maximize: 1 (baseline) -> 2 keep -> 3 keep -> 0.5 discard
    _, first = run(task, ScriptedAgent(set_x(2.0), set_x(3.0), set_x(0.5)), 3)
    assert [r.status.value for r in first] == ["keep", "keep", "keep", "discard"]
    commit_on_main(task, 'direction = "maximize"', 'direction = "minimize"')
    records, said = resume(task, ScriptedAgent(set_x(0.7)), 1, adopt=True)
    ledger = ledger_of(task)
    [event] = ledger.events
    assert event["event"] == "adopt_config" and event["best"] == 3 and event["previous_best"] == 2
    assert {"key": "metrics.direction", "old": "maximize", "new": "minimize"} in event["changes"]
    assert len(ledger.records) == 5 and len(tsv(task)) == 6  # an event is no row
    assert any("the best is iteration 3" in s and "moves to it from iteration 2" in s for s in said), said
    # The new iteration started from the re-judged best, and was judged under the new direction.
    assert records[0].parent == first[3].commit and records[0].status.value == "discard"  # 0.7 > 0.5
    assert git(task, "rev-parse", "HEAD").strip() == first[3].commit
    assert ledger.best().iteration == 3

    from autoresearch.api import status_of

    s = status_of(task, "t1")
    totals = s.totals()
    assert totals["direction"] == "minimize" and totals["best"]["iteration"] == 3
    from autoresearch.analysis.morning import answer

    report = answer(s.task, s.store, s.records)  # the report's headline
    assert report["best"].iteration == 3 and report["gain"] == pytest.approx(0.5)  # 1.0 -> 0.5, minimized
    from autoresearch.analysis.summary import summarize
    from autoresearch.api import dashboard_for

    assert summarize(s.task, s.store)["best"]["iteration"] == 3  # analysis_summary.json
    board = dashboard_for(task, "t1", port=0)  # binds 127.0.0.1 only; never served here
    try:
        page = board.snapshot.state()
    finally:
        board.httpd.server_close()
    assert page["direction"] == "minimize" and page["best"]["iteration"] == 3
    # The run branch's autoresearch.toml still says maximize: the adopted rules stand, unasked.
    assert git(task, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/t1"
    assert 'direction = "maximize"' in (task / "autoresearch.toml").read_text()
    again, said = resume(task, ScriptedAgent(set_x(0.2)), 1)
    assert again[0].status.value == "keep" and again[0].reason == "score improved"  # 0.2 < 0.5
    assert any('rules: those this tag adopted (metrics.direction: "maximize" -> "minimize")' in s for s in said), said
    assert status_of(task, "t1").totals()["best"]["iteration"] == 5
    Ledger(ledger.path).reload()  # the chain holds across the event


def adopted_night(make_task):
    """A tag whose adopted direction re-judged a best that is not its last keep: under maximize 1 (baseline)
    -> 2 keep -> 3 keep -> 0.5 discard, then resumed under minimize, where 0.5 (iteration 3) is the best
    and 0.7 (iteration 4) is discarded. Returns the task, the prompt of iteration 4, the resume's records."""
    task = make_task(config=tiny_config(task='final_eval = "python train.py"'))
    run(task, ScriptedAgent(set_x(2.0), set_x(3.0), set_x(0.5)), 3)
    commit_on_main(task, 'direction = "maximize"', 'direction = "minimize"')
    agent = ScriptedAgent(set_x(0.7))
    records, _ = resume(task, agent, 1, adopt=True)
    return task, agent.contexts[0].prompt, records


def test_after_an_adopt_the_prompt_tells_the_agent_the_rejudged_best(make_task):
    _, prompt, _ = adopted_night(make_task)
    assert "iteration 3" in prompt and "0.500000" in prompt
    assert "Best over time: #3: 0.500000\n" in prompt  # not the keeps 1, 2, 3 judged under maximize


def test_after_an_adopt_confirm_status_and_the_report_hold_the_rejudged_best(make_task):
    from autoresearch import integrity
    from autoresearch.api import status_of

    task, _, records = adopted_night(make_task)
    s = status_of(task, "t1")
    rows = integrity.final_eval(s.task, s.store, say=lambda line: None)  # `autoresearch confirm`
    assert [r["iteration"] for r in rows] == [3]  # not the keeps 2, 1, 0: they were judged under maximize
    assert s.gains()[4].value == pytest.approx(-0.2)  # 0.7 against 0.5, not against the last keep's 3.0
    assert s.totals()["baseline"]["iteration"] == 0
    from autoresearch.analysis.report import baseline_and_best

    assert baseline_and_best(s.records, s.store.ledger) == [0, 3]  # the curves `plot` and the report draw


def test_adopting_a_new_primary_no_record_has_runs_a_new_baseline(make_task):
    task = make_task(train='''\
        X = 1.0  # search: float(0.0, 10.0)
        import pathlib
        print("---")
        print(f"score: {X:.6f}")
        if pathlib.Path("print_loss").exists():  # the metric the new rules decide by
            print(f"loss: {10 - X:.6f}")
    ''')
    run(task, ScriptedAgent(), 0)
    (task / "print_loss").write_text("")  # untracked: the tree stays clean
    commit_on_main(task, 'primary = "score"', 'primary = "loss"')
    with pytest.raises(AutoresearchError, match="metrics.primary"):
        resume(task, ScriptedAgent(set_x(2.0)), 1)
    records, said = resume(task, ScriptedAgent(set_x(2.0)), 1, adopt=True)
    assert any("no recorded experiment has loss; a new baseline runs first" in s for s in said), said
    assert records[0].verdict.reason.value == "baseline" and records[0].status.value == "keep"
    assert records[0].commit == records[0].parent and records[0].metrics["loss"] == 9.0
    assert records[1].status.value == "discard", records[1].reason  # loss 8 after 9, under maximize: worse
    from autoresearch.api import status_of

    totals = status_of(task, "t1").totals()  # the gain is the new baseline's, not the old one's (no loss)
    assert totals["baseline"]["iteration"] == records[0].iteration and totals["baseline"]["value"] == 9.0


def test_changing_columns_is_refused_and_adopted_only_with_the_flag(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    before = (task / "results.tsv").read_text()
    commit_on_main(task, 'direction = "maximize"', 'direction = "maximize"\ncolumns = ["score", "peak_vram_mb", "val_loss"]')
    with pytest.raises(AutoresearchError, match=r'metrics.columns: \(unset\) -> \["score", "peak_vram_mb", "val_loss"\]'):
        resume(task, ScriptedAgent(set_x(3.0)), 1)
    assert (task / "results.tsv").read_text() == before  # refused: the header did not change
    _, said = resume(task, ScriptedAgent(set_x(3.0)), 1, adopt=True)
    rows = tsv(task)
    assert rows[0][:4] == ["commit", "score", "peak_vram_mb", "val_loss"] and len(rows) == 4
    assert rows[1][2] == "512.000000"  # recorded values, not "filled with 0.000000"
    assert [r[3] for r in rows[1:]] == ["", "", ""]  # a value no run recorded: empty, not 0.000000
    assert not any("did not match the ledger" in s for s in said), said
    assert not list((task / ".autoresearch/t1").glob("results.tsv.bak*"))


def test_a_commit_on_the_run_branch_is_never_reset_away(make_task):
    task = make_task()
    run(task, ScriptedAgent(set_x(2.0)), 1)
    (task / "train.py").write_text((task / "train.py").read_text() + "# my own idea\n")
    config = task / "autoresearch.toml"
    config.write_text(config.read_text().replace('"maximize"', '"minimize"'))  # and its config
    git(task, "commit", "-q", "-am", "my own idea")
    mine = git(task, "rev-parse", "HEAD").strip()
    ledger = (task / ".autoresearch/t1/ledger.jsonl").read_bytes()
    with pytest.raises(AutoresearchError) as err:
        resume(task, ScriptedAgent(set_x(3.0)), 1)
    text = str(err.value)
    assert f"{mine[:12]} my own idea" in text and "the run did not make" in text
    assert "git branch my-work HEAD && git reset --hard" in text  # the fix
    assert git(task, "rev-parse", "HEAD").strip() == mine
    assert (task / ".autoresearch/t1/ledger.jsonl").read_bytes() == ledger
    # The fix it names works: the commit kept on a branch, the run resumes.
    best = ledger_of(task).best().commit
    git(task, "branch", "my-work", "HEAD")
    git(task, "reset", "-q", "--hard", best)
    records, _ = resume(task, ScriptedAgent(set_x(3.0)), 1)
    assert records[0].status.value == "keep" and git(task, "rev-parse", "my-work").strip() == mine


def test_a_tag_from_before_stored_rules_resumes_and_stores_them(make_task):
    task = make_task()
    run(task, ScriptedAgent(), 0)
    stored = task / ".autoresearch/t1/config.json"
    assert json.loads(stored.read_text())["started"]["metrics"]["direction"] == "maximize"
    stored.unlink()  # as a tag begun by an earlier version left it
    records, said = resume(task, ScriptedAgent(set_x(2.0)), 1)
    assert records[0].status.value == "keep"
    assert any("began before autoresearch stored the rules" in s for s in said), said
    assert json.loads(stored.read_text())["started"]["task"]["run"] == "python train.py"
    commit_on_main(task, 'direction = "maximize"', 'direction = "minimize"')
    with pytest.raises(AutoresearchError, match="metrics.direction"):
        resume(task, ScriptedAgent(set_x(3.0)), 1)


def test_an_edited_event_line_breaks_the_chain(make_task):
    task = make_task()
    run(task, ScriptedAgent(), 0)
    ledger = ledger_of(task)
    ledger.append_event("adopt_config", changes=[], rules={}, best=0, previous_best=0)
    assert len(Ledger(ledger.path).records) == 1 and Ledger(ledger.path).events[0]["best"] == 0
    lines = ledger.path.read_text().splitlines()
    lines[-1] = lines[-1].replace('"best": 0', '"best": 7')
    ledger.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AutoresearchError, match="line 2"):
        Ledger(ledger.path).records


def test_the_cli_refuses_then_adopts_and_status_shows_the_adopted_rules(make_task):
    task = make_task()
    assert cli("run", str(task), "--tag", "t", "-n", "1", "--agent", "tuner").returncode == 0
    commit_on_main(task, 'direction = "maximize"', 'direction = "minimize"')
    refused = cli("run", str(task), "--tag", "t", "-n", "1", "--agent", "tuner")
    assert refused.returncode == 2 and "--adopt-config" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    adopted = cli("run", str(task), "--tag", "t", "-n", "0", "--agent", "tuner", "--adopt-config")
    assert adopted.returncode == 0, adopted.stderr
    assert "adopted the new rules of autoresearch.toml" in adopted.stdout
    status = json.loads(cli("status", str(task), "--tag", "t", "--json").stdout)
    assert status["direction"] == "minimize"
    best, base = status["best"], status["baseline"]
    assert best["value"] <= base["value"]  # under minimize the best is no higher than the baseline


def test_a_damaged_config_json_is_refused_naming_the_file_and_the_fix(make_task):
    task = make_task()
    run(task, ScriptedAgent(), 0)
    stored = task / ".autoresearch/t1/config.json"
    stored.write_text("{")
    ledger = (task / ".autoresearch/t1/ledger.jsonl").read_bytes()
    with pytest.raises(AutoresearchError, match=r"config\.json: not valid JSON .* delete it to store the current"):
        resume(task, ScriptedAgent(set_x(2.0)), 1)
    assert (task / ".autoresearch/t1/ledger.jsonl").read_bytes() == ledger


def test_rejudge_replays_the_runs_that_ran_under_the_new_rules():
    from autoresearch.decision import Rules
    from autoresearch.records import Experiment, Status
    from autoresearch.tag_config import rejudge

    def exp(i, status, value, reason="score improved", commit=None, **metrics):
        return Experiment(i, commit or f"c{i}", "c0", Status(status), f"#{i}", reason=reason,
                          metrics={"score": value, **metrics} if value is not None else metrics)

    records = [exp(0, "keep", 1.0, reason="baseline"), exp(1, "discard", 0.9, reason="noise: baseline repeat 1"),
               exp(2, "keep", 2.0), exp(3, "discard", 0.5, reason="score worse"),
               exp(4, "crash", None, reason="nan: loss is nan"), exp(5, "discard", 0.1, reason="score worse", commit="gone"),
               exp(6, "discard", 0.05, reason="stopped at 30% of the budget: score 0.05 while earlier runs had 1.0 at that time"),
               exp(7, "discard", 0.5, reason="score worse", loss=1.0), exp(8, "keep", 3.0)]
    there = lambda commit: commit != "gone"  # noqa: E731
    assert rejudge(records, Rules("score", "minimize"), exists=there).iteration == 3  # not the repeat, gone, partial
    assert rejudge(records, Rules("score", "maximize"), exists=there).iteration == 8
    ties = Rules("score", "minimize", (("loss", "minimize"),))
    assert rejudge(records, ties, exists=there).iteration == 7  # equal score; a tie-break value beats none
    assert rejudge(records[4:5], ties) is None  # nothing that ran has the primary: a new baseline
