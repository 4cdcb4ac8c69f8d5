"""`autoresearch suggest`: next configurations from the meta-analysis and the best constants."""

import json
import math
import subprocess
import tomllib

from autoresearch.analysis.meta import analyze_run
from autoresearch.analysis.suggest import AUTO_DIR, propose, step, suggest, toml_value
from autoresearch.config import load_task
from autoresearch.constants import find_constants
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

TRAIN = """\
LR = 0.01            # search: log(1e-4, 1e-1)
DROPOUT = 0.1        # search: float(0.0, 0.5)
WEIGHT_DECAY = 0.0
EPOCHS = 20          # search: int(5, 50)
SCHEDULE = "none"    # search: ["none", "step", "cosine"]
USE_AUG = False
SEED = 0
print("---")
print("score: 0.5")
"""


def constant(line):
    return find_constants(line)[0]


def test_step_moves_inside_the_space():
    assert step(constant("LR = 0.01  # search: log(1e-4, 1e-1)"), "up") == 0.02
    assert step(constant("LR = 0.08  # search: log(1e-4, 1e-1)"), "up") == 0.1  # clamped to the space
    assert step(constant("LR = 0.1  # search: log(1e-4, 1e-1)"), "up") is None  # nowhere to go
    assert step(constant("DROPOUT = 0.1  # search: float(0.0, 0.5)"), "up") == 0.2
    assert step(constant("WEIGHT_DECAY = 0.0"), "up", "weight_decay") == 1e-4
    assert step(constant("DEPTH = 2  # search: int(1, 4)"), "up") == 3
    assert step(constant('SCHEDULE = "none"  # search: ["none", "step", "cosine"]'), "on", "schedule") == "cosine"
    assert step(constant("USE_AUG = False"), "on") is True
    assert step(constant('NAME = "x"'), "on") is None


def test_toml_values():
    assert [toml_value(v) for v in (True, 3, 0.5, 5e-05, "a\"b")] == ["true", "3", "0.5", "5e-05", '"a\\"b"']


def overfit_night(make_task):
    task = load_task(make_task(train=TRAIN))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=task.dir, capture_output=True, text=True).stdout.strip()
    store = RunStore(task.dir, "t")
    store.create()
    (store.root / "ledger.jsonl").write_text(json.dumps(
        Experiment(0, head, head, Status.KEEP, "baseline", metrics={"score": 0.5}).to_json()) + "\n")
    run = store.run_dir(0)
    (run / "metrics.json").write_text(json.dumps({"score": 0.5}))
    curve = [{"epoch": e, "train_loss": 2 * math.exp(-e / 5), "val_loss": 1 + 0.01 * (e - 8) ** 2} for e in range(1, 21)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in curve))
    assert analyze_run(run, "score")["flags"] == ["overfitting"]
    return task, RunStore(task.dir, "t")


def test_overfitting_best_gives_regularization_configs(make_task):
    task, store = overfit_night(make_task)
    proposed = propose(task, store)
    assert [(s.slug, s.changed) for s in proposed] == [
        ("more_dropout", {"DROPOUT": (0.1, 0.2)}),
        ("more_weight_decay", {"WEIGHT_DECAY": (0.0, 1e-4)}),
        ("augment_on", {"USE_AUG": (False, True)}),
        ("early_stop", {"EPOCHS": (20, 8)}),
    ]
    assert all(s.reason.startswith("run #0: val loss rose from epoch 8") for s in proposed)


def test_suggest_writes_a_patch_per_suggestion_for_a_constants_task_and_an_index(make_task):
    task, store = overfit_night(make_task)
    folder = task.dir / AUTO_DIR
    folder.mkdir(parents=True)
    (folder / "auto_009_stale.toml").write_text("LR = 1\n")
    (folder / "mine.toml").write_text("LR = 1\n")  # not ours: left alone
    written = suggest(task, store, max_configs=2)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["auto_001_more_dropout.patch", "auto_002_more_weight_decay.patch", "index.json", "mine.toml"]
    path, suggestion = written[0]
    text = path.read_text()
    assert text.startswith("autoresearch suggest: more_dropout\nwhy: run #0: val loss rose")
    # The patch applies to the best's train.py and moves exactly the one constant.
    check = subprocess.run(["git", "apply", "--check", str(path)], cwd=task.dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", str(path)], cwd=task.dir, check=True)
    from autoresearch.constants import find_constants
    values = {c.name: c.value for c in find_constants((task.dir / "train.py").read_text())}
    assert values == {"LR": 0.01, "DROPOUT": 0.2, "WEIGHT_DECAY": 0.0, "EPOCHS": 20, "SCHEDULE": "none",
                      "USE_AUG": False, "SEED": 0}
    index = json.loads((folder / "index.json").read_text())
    assert index["configs"][1]["changed"] == {"WEIGHT_DECAY": {"from": 0.0, "to": 0.0001}}
    assert index["configs"][0]["kind"] == "patch" and index["configs"][0]["file"] == "auto_001_more_dropout.patch"
    assert index["based_on"].startswith("iteration 0 (commit ")


def test_a_yaml_task_gets_yaml_configs_its_script_can_load(make_task):
    import yaml

    config = ('[task]\nrun = "python train.py --config config.yaml"\neditable = ["config.yaml"]\ntime_budget = 5\n'
              '\n[metrics]\nprimary = "score"\ndirection = "maximize"\n')
    cfg = "# my config\noptimizer:\n  lr: 0.01  # search: log(1e-4, 1e-1)\nmodel: m2  # search: [\"m0\", \"m2\", \"m3\"]\n"
    task = load_task(make_task(config=config, extra={"config.yaml": cfg}))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=task.dir, capture_output=True, text=True).stdout.strip()
    store = RunStore(task.dir, "t")
    store.create()
    store.ledger.append(Experiment(0, head, head, Status.KEEP, "baseline", metrics={"score": 0.5}))
    written = suggest(task, store, max_configs=3)
    assert written and all(p.suffix == ".yaml" for p, _ in written)
    path, s = written[0]
    text = path.read_text()
    assert text.startswith(f"# autoresearch suggest: {s.slug}\n# why: ")
    assert "# my config" in text and "# search: log(1e-4, 1e-1)" in text  # the user's file, comments kept
    loaded = yaml.safe_load(text)
    for key, (_, new) in s.changed.items():
        node = loaded
        for part in key.split("."):
            node = node[part]
        assert node == new
    index = json.loads((task.dir / AUTO_DIR / "index.json").read_text())
    assert [c["kind"] for c in index["configs"]] == ["config"] * len(written)


def test_without_meta_the_summary_drives_the_suggestions(make_task):
    task = load_task(make_task(train=TRAIN))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=task.dir, capture_output=True, text=True).stdout.strip()
    store = RunStore(task.dir, "t")
    store.create()
    rows = [Experiment(0, head, head, Status.KEEP, "baseline", metrics={"score": 0.5}),
            Experiment(1, "x1", head, Status.DISCARD, "LR 0.01 -> 0.005", metrics={"score": 0.4},
                       agent_data={"params": {"LR": 0.005}})]
    (store.root / "ledger.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in rows))
    proposed = propose(task, RunStore(task.dir, "t"), max_configs=3)
    # LR down was run already (its params are in the ledger), so LR is not moved that way again
    assert [s.slug for s in proposed] == ["try_dropout", "try_weight_decay", "try_epochs"]
    assert proposed[0].changed == {"DROPOUT": (0.1, 0.2)}


def test_no_constants_no_suggestion(make_task):
    task = load_task(make_task(train="print('---')\nprint('score: 1.0')\n"))
    store = RunStore(task.dir, "t")
    store.create()
    assert suggest(task, store) == []
