import json
import tomllib

import pytest
import yaml

from autoresearch import configfile, knob_sources
from autoresearch.errors import ConfigError

YAML = """\
# experiment config: comments, order and spacing must survive
model:
  name: m2        # search: ["m0", "m1", "m2", "m3", "m4"]
  dropout: 0.3    # search: float(0.0, 0.6)
  layers: [64, 64]
optimizer: {lr: 3.0e-3, kind: "adam"}   # a flow mapping
batch_size: 32    # search: [8, 16, 32, 64]

augment: True
note: 'keep me'
"""

TOML = """\
# top comment
[model]
name = "m2"   # search: ["m2", "m3"]
lr = 3e-3     # search: log(1e-4, 1e-1)

[train]
epochs = 10
"""

JSON = '{\n  "model": {"name": "m2", "width": 64},\n    "lr": 0.003,\n  "flags": {"amp": false}\n}\n'


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]


def test_yaml_keys_spaces_and_in_place_rewrite():
    knobs = {k.name: k for k in configfile.find_keys(YAML, "exp.yaml")}
    assert list(knobs) == ["model.name", "model.dropout", "optimizer.lr", "optimizer.kind", "batch_size", "augment", "note"]
    assert knobs["model.name"].space.choices == ("m0", "m1", "m2", "m3", "m4") and knobs["model.name"].annotated
    assert knobs["model.dropout"].space.kind == "float" and knobs["optimizer.lr"].line == 6
    out = configfile.rewrite(YAML, {"model.name": "m4", "optimizer.lr": 1e-5, "batch_size": 64, "augment": False,
                                    "note": "it's"}, "exp.yaml")
    assert changed_lines(YAML, out) == [
        ("  name: m2        # search: [\"m0\", \"m1\", \"m2\", \"m3\", \"m4\"]", "  name: m4        # search: [\"m0\", \"m1\", \"m2\", \"m3\", \"m4\"]"),
        ('optimizer: {lr: 3.0e-3, kind: "adam"}   # a flow mapping', 'optimizer: {lr: 1.0e-05, kind: "adam"}   # a flow mapping'),
        ("batch_size: 32    # search: [8, 16, 32, 64]", "batch_size: 64    # search: [8, 16, 32, 64]"),
        ("augment: True", "augment: False"),
        ("note: 'keep me'", "note: 'it''s'"),
    ]
    # PyYAML (YAML 1.1, what most training scripts load with) reads the same values.
    loaded = yaml.safe_load(out)
    assert loaded["optimizer"]["lr"] == 1e-5 and isinstance(loaded["optimizer"]["lr"], float)
    assert loaded["model"]["name"] == "m4" and loaded["augment"] is False and loaded["note"] == "it's"


def test_yaml_strings_that_yaml_would_misread_are_quoted():
    out = configfile.rewrite("mode: fast\n", {"mode": "no"}, "c.yaml")
    assert yaml.safe_load(out) == {"mode": "no"} and out == 'mode: "no"\n'
    out = configfile.rewrite("mode: fast\n", {"mode": "a: b # c"}, "c.yml")
    assert yaml.safe_load(out) == {"mode": "a: b # c"}


def test_yaml_block_scalar_falls_back_to_the_round_trip_keeping_comments():
    text = "# keep\ntext: |\n  hello\nlr: 0.1  # search: log(0.01, 1.0)\n"
    out = configfile.rewrite(text, {"text": "bye"}, "c.yaml")
    assert yaml.safe_load(out) == {"text": "bye", "lr": 0.1}
    assert "# keep" in out and "# search: log(0.01, 1.0)" in out


def test_toml_rewrite_keeps_comments_and_layout():
    knobs = {k.name: k for k in configfile.find_keys(TOML, "c.toml")}
    assert knobs["model.lr"].space.kind == "log" and knobs["model.name"].space.choices == ("m2", "m3")
    out = configfile.rewrite(TOML, {"model.lr": 0.01, "model.name": "m3", "train.epochs": 12}, "c.toml")
    assert changed_lines(TOML, out) == [
        ('name = "m2"   # search: ["m2", "m3"]', 'name = "m3"   # search: ["m2", "m3"]'),
        ("lr = 3e-3     # search: log(1e-4, 1e-1)", "lr = 0.01     # search: log(1e-4, 1e-1)"),
        ("epochs = 10", "epochs = 12"),
    ]
    assert tomllib.loads(out)["model"]["lr"] == 0.01


def test_json_rewrite_in_place_and_search_table():
    search = {"model.width": "int(16, 256)", "c.json:lr": "log(1e-4, 1e-1)"}
    knobs = {k.name: k for k in configfile.find_keys(JSON, "c.json", search)}
    assert knobs["model.width"].space.kind == "int" and knobs["lr"].space.kind == "log" and knobs["lr"].annotated
    out = configfile.rewrite(JSON, {"model.width": 128, "lr": 1e-4, "model.name": 'm"3', "flags.amp": True}, "c.json")
    assert changed_lines(JSON, out) == [
        ('  "model": {"name": "m2", "width": 64},', '  "model": {"name": "m\\"3", "width": 128},'),
        ('    "lr": 0.003,', '    "lr": 0.0001,'),
        ('  "flags": {"amp": false}', '  "flags": {"amp": true}'),
    ]
    assert json.loads(out)["model"]["name"] == 'm"3'


def test_a_float_knob_stays_a_float_and_unknown_keys_fail():
    assert yaml.safe_load(configfile.rewrite("lr: 0.5\n", {"lr": 2}, "c.yaml")) == {"lr": 2.0}
    with pytest.raises(KeyError):
        configfile.rewrite("lr: 0.5\n", {"momentum": 0.9}, "c.yaml")


def test_bad_files_and_annotations_name_the_file_and_key():
    with pytest.raises(ConfigError, match=r"c.yaml: cannot parse as YAML"):
        configfile.find_keys("a: [1,\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml: lr: search annotation 'log\(1, oops\)'"):
        configfile.find_keys("lr: 0.5  # search: log(1, oops)\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"top level is a list"):
        configfile.find_keys("[1, 2]\n", "c.json")


def test_search_table_entries_must_name_a_knob(tmp_path):
    (tmp_path / "autoresearch.toml").write_text('[search]\n"optimizer.lrr" = "log(1e-4, 1e-1)"\n')
    (tmp_path / "c.yaml").write_text("optimizer:\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=r"search.optimizer.lrr: names no key of the editable config files"):
        knob_sources.per_file(tmp_path, ["c.yaml"])
    (tmp_path / "autoresearch.toml").write_text('[search]\n"optimizer.lr" = "log(1e-4, 1e-1)"\n')
    [(path, knobs)] = knob_sources.per_file(tmp_path, ["c.yaml"])
    assert path == "c.yaml" and [(k.name, k.space.kind) for k in knobs] == [("optimizer.lr", "log")]


def test_a_search_table_is_accepted_by_the_task_config(make_task):
    from autoresearch.config import load_task

    config = '[task]\nrun = "python train.py"\neditable = ["c.yaml"]\ntime_budget = 5\n\n[metrics]\nprimary = "score"\n' \
             'direction = "maximize"\n\n[search]\n"lr" = "log(1e-4, 1e-1)"\n'
    task = load_task(make_task(config=config, extra={"c.yaml": "lr: 0.01\n"}))
    [(_, knobs)] = knob_sources.per_file(task.dir, task.editable)
    assert knobs[0].name == "lr" and knobs[0].space.kind == "log"


def test_the_axes_analysis_names_config_keys():
    from autoresearch.analysis.axes import changes_from_diff

    diff = ("diff --git a/c.yaml b/c.yaml\n--- a/c.yaml\n+++ b/c.yaml\n@@ -1,2 +1,2 @@\n"
            "-model: m2\n+model: m4\n lr: 0.1\n")
    sources = {"old:c.yaml": "model: m2\nlr: 0.1\n", "new:c.yaml": "model: m4\nlr: 0.1\n"}
    assert changes_from_diff(diff, sources)["constants"] == [{"name": "model", "old": "m2", "new": "m4", "move": "= m4"}]
    assert changes_from_diff(diff, {})["code"] == ["file c.yaml"]  # unreadable revisions: a changed file


def test_the_config_driven_example_exposes_its_yaml_keys_to_the_tuner(tmp_path):
    from autoresearch.agents.base import Context
    from autoresearch.agents.tuner import TunerAgent
    from autoresearch.api import copy_example
    from autoresearch.config import load_task
    from autoresearch.records import Experiment, Status

    task = load_task(copy_example("mnist1d_yaml", tmp_path / "demo"))
    [(path, knobs)] = knob_sources.per_file(task.dir, task.editable)
    assert path == "config.yaml"
    assert [k.name for k in knobs] == ["model.arch", "model.width", "model.depth", "model.dropout", "optimizer.name",
                                       "optimizer.lr", "optimizer.weight_decay", "batch_size"]  # not the seed
    before = (task.dir / "config.yaml").read_text()
    base = Experiment(0, "", "", Status.KEEP, "baseline", metrics={"val_acc": 0.6})
    ctx = Context(task_dir=task.dir, iteration=1, editable=task.editable, readonly=task.readonly, history=(base,),
                  best=base, primary="val_acc", direction="maximize")
    proposal = TunerAgent().propose(ctx)
    assert proposal.ok, proposal.error
    after = (task.dir / "config.yaml").read_text()
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(diff) == 1 and diff[0][0].split("#")[1] == diff[0][1].split("#")[1]  # one value, its comment kept
    assert proposal.data["changed"] == ["model.arch"] and "model.arch mlp -> cnn" == proposal.description


@pytest.mark.slow
def test_the_config_driven_example_runs_offline(tmp_path):
    from autoresearch.api import copy_example, run_loop

    task_dir = copy_example("mnist1d_yaml", tmp_path / "demo", time_budget=3)
    records = run_loop(task_dir, "demo", iterations=1, agent="tuner", say=lambda _: None)
    # The baseline, its noise repeat (a time-budgeted example is noise-aware by default), the tuner's iteration.
    assert [r.status.value for r in records][0] == "keep" and len(records) == 3 and records[1].verdict.noise_repeat
    assert records[0].metrics["val_size"] == 1000  # the footer says how many examples the accuracy is on
    assert all(r.status.value != "crash" for r in records), [r.reason for r in records]
    assert records[0].metrics["val_acc"] > 0.2
