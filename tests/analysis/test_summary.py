"""The analysis summary on hand-built ledgers whose right answers are worked out by hand."""

import json

import pytest

from autoresearch.analysis.summary import SCHEMA_VERSION, summarize, summary_hints, write_summary
from autoresearch.config import load_task
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

from conftest import tiny_config

K, D, C = Status.KEEP, Status.DISCARD, Status.CRASH
CONFIG = tiny_config(metrics='tie_break = ["aux"]\n')


@pytest.fixture
def plain_task(tmp_path):
    """A task directory without git: hand-built ledgers need none, and tests stay fast."""
    def make(config: str = CONFIG):
        d = tmp_path / "task"
        d.mkdir(exist_ok=True)
        (d / "train.py").write_text("X = 1.0\n")
        (d / "prepare.py").write_text("DATA = 'fixed'\n")
        (d / "autoresearch.toml").write_text(config)
        return d
    return make


def build(make_dir, rows, config=CONFIG, tag="t"):
    """rows: (status, score, aux, description, extra fields); parents follow the keeps."""
    task = load_task(make_dir(config))
    store = RunStore(task.dir, tag)
    store.create()
    lines, best = [], "c0"
    for i, (status, score, aux, description, *extra) in enumerate(rows):
        fields = extra[0] if extra else {}
        metrics = {} if score is None else {"score": score, "aux": aux}
        commit = fields.pop("commit", f"c{i}")
        r = Experiment(iteration=i, commit=commit, parent=best if i else commit, status=status,
                       description=description, metrics=metrics, **fields)
        lines.append(json.dumps(r.to_json()))
        if status is K:
            best = commit
    (store.root / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    return task, RunStore(task.dir, tag)


NIGHT = [
    (K, 0.50, 0.1, "baseline"),
    (D, 0.48, 0.1, "LR 0.01 -> 0.02"),
    (K, 0.60, 0.1, "LR 0.01 -> 0.005"),
    (D, 0.59, 0.1, "WIDTH 32 -> 64"),
    (C, None, None, "WIDTH 32 -> 512", {"reason": "exit_code: 1"}),
    (D, 0.55, 0.3, "DROPOUT 0.0 -> 0.1"),
    (K, 0.62, 0.1, "LR 0.005 -> 0.0025"),
    (D, 0.50, 0.1, "LR 0.0025 -> 0.005"),
    (D, 0.40, 0.1, "LR up"),
    (D, 0.61, 0.1, "ARCH mlp -> cnn"),
    (D, 0.62, 0.1, "LR 0.0025 -> 0.00125", {"reason": "duplicate of iteration 6; not run again", "commit": "c6"}),
    (C, None, None, "agent failed", {"reason": "agent: boom", "commit": "c6"}),
]


@pytest.fixture
def night(plain_task):
    task, store = build(plain_task, NIGHT)
    return task, store, summarize(task, store)


def test_counts_best_and_frontier(night):
    _, _, s = night
    assert s["schema_version"] == SCHEMA_VERSION == 1
    assert s["counts"] == {"experiments": 12, "keep": 3, "discard": 7, "crash": 2, "untrained": 2}
    assert s["best"]["iteration"] == 6 and s["best"]["value"] == 0.62 and s["best"]["changes"] == ["LR down"]
    assert [(f["iteration"], f["commit"], f["gain"]) for f in s["frontier"]] == [(0, "c0", None), (2, "c2", 0.1), (6, "c6", 0.02)]


def test_near_misses_within_tolerance_or_better_on_a_tie_break(night):
    _, _, s = night
    # keep gains 0.1 and 0.02: median 0.06, a quarter of it is the tolerance (no noise floor known)
    assert s["near_miss_tolerance"] == 0.015
    assert [(n["iteration"], n["gap"]) for n in s["near_misses"]] == [(9, -0.01), (3, -0.01), (5, -0.05)]
    assert s["near_misses"][0]["changes"] == ["ARCH = cnn"]
    assert s["near_misses"][2]["why"] == ["aux +0.2 vs the best"]


def test_axis_table(night):
    _, _, s = night
    axes = {a["axis"]: a for a in s["axes"]}
    assert set(axes) == {"LR", "WIDTH", "DROPOUT", "ARCH"}  # the duplicate and the agent failure do not count
    assert axes["LR"] == {"axis": "LR", "tried": 5, "kept": 2, "crashed": 0, "mean_gain": -0.048, "best_gain": 0.1,
                          "tried_since_keep": 2, "last_iteration": 8}
    assert (axes["WIDTH"]["tried"], axes["WIDTH"]["crashed"], axes["WIDTH"]["mean_gain"]) == (2, 1, -0.01)
    moves = {m["move"]: m for m in s["moves"]}
    assert (moves["LR up"]["tried"], moves["LR up"]["kept"]) == (3, 0)
    assert (moves["LR down"]["tried"], moves["LR down"]["kept"], moves["LR down"]["best_gain"]) == (2, 2, 0.1)


def test_losing_regions_are_per_direction_for_constants(night):
    _, _, s = night
    # LR up lost three times; LR down kept gaining, so LR as a whole is no losing region.
    assert [(row["axis"], row["tried_since_keep"], row["ever_kept"]) for row in s["losing_regions"]] == [("LR up", 3, False)]


def test_plateau_and_improvement_windows(night):
    _, _, s = night
    p = s["plateau"]
    # 5 without a keep is the plateau of `[agent] plateau` (default 5): the same rule as the prompt's and the memo's
    assert (p["iterations_since_keep"], p["last_keep_iteration"], p["on_plateau"]) == (5, 6, True)
    assert [(w["iterations"], w["gain"], w["rate"], w["keeps"]) for w in p["windows"]] == [
        (5, 0.0, 0.0, 0), (10, 0.12, 0.012, 2), (12, 0.12, 0.01, 3)]


def test_hints(night):
    _, _, s = night
    kinds = [(h["kind"], h["text"].split(":")[0].split(" gained")[0]) for h in s["hints"]]
    assert ("around_best", "LR down") in kinds
    assert ("avoid", "LR up") in kinds
    combine = next(h["text"] for h in s["hints"] if h["kind"] == "combine")
    assert combine.startswith("combine #9 (ARCH = cnn) with #3 (WIDTH up)")


def test_a_switch_that_gained_is_no_direction_to_step_further(plain_task):
    rows = [(K, 0.5, 0.0, "baseline"), (K, 0.6, 0.0, "ARCH mlp -> cnn"), (K, 0.7, 0.0, "LR 0.1 -> 0.05")]
    task, store = build(plain_task, rows)
    texts = [h["text"] for h in summarize(task, store)["hints"] if h["kind"] == "around_best"]
    assert texts == ["ARCH = cnn gained +0.1 (kept 1 of 1): the best has it; tune the axes around it next",
                     "LR down gained +0.1 (kept 1 of 1): try one more single step that way from the best"]


@pytest.mark.parametrize("plateau, expected", [(0, False), (3, True), (11, False)])
def test_the_plateau_flag_follows_the_agent_plateau_setting(plain_task, plateau, expected):
    rows = [(K, 0.5, 0.0, "baseline")] + [(D, 0.4, 0.0, f"idea {i}") for i in range(10)]
    task, store = build(plain_task, rows, config=CONFIG + f"\n[agent]\nplateau = {plateau}\n")
    assert summarize(task, store)["plateau"]["on_plateau"] is expected


def test_plateau_flag_after_ten_fruitless_iterations(plain_task):
    rows = [(K, 0.5, 0.0, "baseline")] + [(D, 0.4, 0.0, f"idea {i}") for i in range(10)]
    task, store = build(plain_task, rows)
    s = summarize(task, store)
    assert s["plateau"]["on_plateau"] and s["plateau"]["iterations_since_keep"] == 10
    assert any(h["kind"] == "plateau" for h in s["hints"])
    assert s["axes"][0]["axis"] == "topic idea"  # no diff, no constant: the description's words


def test_noise_floor_from_repeated_code_and_seed_only_runs(plain_task):
    rows = [
        (K, 0.50, 0.0, "baseline", {"content_hash": "h0"}),
        (D, 0.52, 0.0, "SEED 0 -> 1", {"content_hash": "h1"}),  # the baseline again, another seed
        (D, 0.30, 0.0, "WIDTH 1 -> 2", {"content_hash": "h2"}),
        (D, 0.34, 0.0, "WIDTH 1 -> 2 rerun", {"content_hash": "h2"}),  # the same code run twice
    ]
    task, store = build(plain_task, rows)
    s = summarize(task, store)
    # groups {0.50, 0.52} and {0.30, 0.34}: pooled variance (0.0002 + 0.0008) / 2
    assert s["noise_floor"] == {"std": 0.022361, "groups": 2, "runs": 4}
    assert s["near_miss_tolerance"] == 0.022361  # no keep gain yet: the noise floor alone


def test_minimize_orients_gains(plain_task):
    config = tiny_config(direction="minimize")
    task, store = build(plain_task, [(K, 1.0, 0, "baseline"), (K, 0.8, 0, "LR down"), (D, 0.9, 0, "LR down")], config)
    s = summarize(task, store)
    assert [f["gain"] for f in s["frontier"]] == [None, 0.2]
    assert {m["move"]: m["best_gain"] for m in s["moves"]} == {"LR down": 0.2}


def test_same_score_in_many_runs_is_flagged(plain_task):
    rows = [(K, 0.3484, 0.9, "baseline")] + [(D, 0.3484, 0.9 - i / 100, f"focal loss {i}") for i in range(1, 6)]
    task, store = build(plain_task, rows)
    warnings = summarize(task, store)["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("score = 0.3484 in 6 of 6 runs")


def test_empty_ledger(plain_task):
    task, store = build(plain_task, [])
    s = summarize(task, store)
    assert s["best"] is None and s["frontier"] == [] and s["plateau"]["iterations_since_keep"] == 0
    write_summary(task, store, s)
    assert "No keep yet" in (task.dir / "analysis_summary.md").read_text()


def test_untried_constants_come_from_the_best_commit(make_task):
    train = "LR = 0.01\nWIDTH = 32\nSEED = 0\nprint('---')\nprint('score: 1.0')\n"
    task = load_task(make_task(train=train, config=CONFIG))
    head = __import__("subprocess").run(["git", "rev-parse", "HEAD"], cwd=task.dir, capture_output=True,
                                         text=True).stdout.strip()
    store = RunStore(task.dir, "t")
    store.create()
    rows = [Experiment(0, head, head, K, "baseline", metrics={"score": 0.5}),
            Experiment(1, "x1", head, D, "LR 0.01 -> 0.02", metrics={"score": 0.4})]
    (store.root / "ledger.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    s = summarize(task, RunStore(task.dir, "t"))
    assert s["untried_constants"] == ["WIDTH"]  # SEED is not a knob to tune
    assert any(h["kind"] == "untried" and h["text"].startswith("never changed: WIDTH;") for h in s["hints"])
    assert any(h["kind"] == "noise" for h in s["hints"])


def test_write_summary_puts_both_files_in_the_task_dir_and_the_store(night):
    task, store, s = night
    json_path, md_path = write_summary(task, store, s)
    assert json_path == task.dir / "analysis_summary.json" and md_path == task.dir / "analysis_summary.md"
    assert json.loads(json_path.read_text())["schema_version"] == 1
    assert json.loads((store.root / "analysis_summary.json").read_text()) == json.loads(json_path.read_text())
    md = md_path.read_text()
    for expected in ("## Frontier", "| 6 | `c6` | 0.62 | +0.02 | LR down |", "## Near misses", "| LR | 5 | 2 | 0 |",
                     "## Losing regions", "- LR up: 3 tries since its last keep", "## Hints"):
        assert expected in md


def test_summary_hints_for_the_prompt(night):
    _, _, s = night
    text = summary_hints(s)
    assert text.startswith("Frontier: #0 0.5 (baseline) -> #2 0.6 (LR down, +0.1) -> #6 0.62 (LR down, +0.02)\n")
    assert "Near misses: #9 ARCH = cnn (0.61, gap -0.01;" in text
    assert "Losing regions (avoid without a new idea): LR up (3 tries, none kept)" in text
    assert "\n- LR down gained +0.1" in text
    assert len(text) < 2000  # the prompt cuts hints beyond this
