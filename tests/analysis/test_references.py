import textwrap

import pytest

from autoresearch.analysis.references import load_references
from autoresearch.analysis.report import render_report
from autoresearch.errors import ConfigError
from nights import build_night

SEED_002 = """\
[protocol]
epochs = 10
batch_size = 128
evaluation = "online probe, trained jointly"
hardware = "1x RTX 3060"

[[reference]]
name = "seq-JEPA, Table 2"
source = "paper"
[reference.results]
val_acc = 0.9
crop_r2 = { value = 0.79, metric = "online_r2_test", label = "Crop R2" }
[reference.protocol]
epochs = 2000
batch_size = 512
evaluation = "frozen features + linear probe"
hardware = "A100 40GB"
"""


def write(tmp_path, text, name="references.toml"):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_every_protocol_difference_is_listed(tmp_path):
    refs = load_references(write(tmp_path, SEED_002))
    (ref,) = refs.references
    assert [(d.key, d.ours, d.theirs) for d in refs.differences(ref)] == [
        ("epochs", 10, 2000), ("batch_size", 128, 512),
        ("evaluation", "online probe, trained jointly", "frozen features + linear probe"),
        ("hardware", "1x RTX 3060", "A100 40GB")]
    comparisons = refs.compare(ref, {"val_acc": 0.93})
    assert [(c.label, c.ours, c.reference) for c in comparisons] == [("val_acc", 0.93, 0.9), ("Crop R2", None, 0.79)]
    assert comparisons[0].delta == pytest.approx(0.03)


def test_same_protocol_and_a_side_that_is_silent(tmp_path):
    text = SEED_002.replace("epochs = 2000", "epochs = 10").replace("batch_size = 512", "batch_size = 128") \
        .replace("frozen features + linear probe", "Online probe,  trained jointly").replace("A100 40GB", "1x RTX 3060")
    refs = load_references(write(tmp_path, text + 'seed = 0\n'))
    assert [(d.key, d.ours, d.theirs) for d in refs.differences(refs.references[0])] == [("seed", None, 0)]


def test_our_protocol_may_live_in_autoresearch_toml(tmp_path):
    write(tmp_path, "[protocol]\nepochs = 10\n", "autoresearch.toml")
    text = SEED_002.split("[[reference]]")[1]
    refs = load_references(write(tmp_path, "[[reference]]" + text), tmp_path / "autoresearch.toml")
    assert refs.protocol == {"epochs": 10}
    write(tmp_path, "[protocol]\nepochs = 10\n[[reference]]" + text)  # declared twice, differently
    write(tmp_path, "[protocol]\nepochs = 12\n", "autoresearch.toml")
    with pytest.raises(ConfigError, match="protocol.epochs.*declare our protocol in one place"):
        load_references(tmp_path, tmp_path / "autoresearch.toml")


@pytest.mark.parametrize("text, key, fix", [
    ("[[reference]]\nname = 'x'\n[reference.protocol]\nepochs = 1\n", "results", "our metric name = their value"),
    ("[[reference]]\n[reference.results]\na = 1\n", "reference[0].name", "is required"),
    ("[[reference]]\nname = 'x'\n[reference.results]\na = 'high'\n[reference.protocol]\ne = 1\n",
     "results.a", "must be a number"),
    ("[[reference]]\nname = 'x'\n[reference.results]\na = 1\n", "protocol", "epochs, batch_size"),
    ("[[reference]]\nname = 'x'\nepochs = 3\n", "reference[0].epochs", "unknown key"),
    ("[paper]\nx = 1\n", "paper", "unknown top-level key"),
    ("[protocol]\nepochs = [1, 2]\n", "protocol.epochs", "string, number or boolean"),
    ("[protocol\n", None, "not valid TOML"),
    ("[protocol]\nepochs = 1\n", "reference", "no [[reference]] table"),
])
def test_errors_name_the_file_the_key_and_the_fix(tmp_path, text, key, fix):
    write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_references(tmp_path)
    assert str(tmp_path / "references.toml") in str(err.value)
    if key:
        assert key in err.value.key
    assert fix in str(err.value)


def test_no_file_means_no_references(tmp_path):
    assert load_references(tmp_path) is None


def test_report_shows_the_banner_and_the_deltas(tmp_path):
    task, store = build_night(tmp_path / "task")
    (task.dir / "references.toml").write_text(SEED_002)
    html = render_report(task, store)
    assert "Pipeline check, not a reproduction" in html and "4 points" in html
    assert "frozen features + linear probe" in html and "not measured" in html
    assert "+0.03" in html and "103 %" in html
