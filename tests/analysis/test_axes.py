"""Axes of change: diffs mapped to constants and code regions, descriptions as a fallback, the cache."""

import json
import subprocess
import textwrap

from autoresearch.analysis import axes
from autoresearch.analysis.axes import (changes_from_description, changes_from_diff, ensure_axes, labels_of,
                                        move_of, parse_diff, scopes)
from autoresearch.config import load_task
from autoresearch.records import Experiment, Status
from autoresearch.store import RunStore

BEFORE = textwrap.dedent('''\
    import torch

    LR = 0.01  # search: log(1e-4, 1e-1)
    WIDTH = 32
    USE_BN = False
    ARCH = "mlp"


    class MLP:
        def __init__(self):
            self.width = WIDTH

        def forward(self, x):
            return x * 2


    def train():
        return 1
''')
AFTER = (BEFORE.replace("LR = 0.01  # search", "LR = 0.005  # search")
         .replace("WIDTH = 32", "WIDTH = 32  # wider later")  # a comment only: not a move
         .replace("USE_BN = False", "USE_BN = True")
         .replace('ARCH = "mlp"', 'ARCH = "cnn"\nEXTRA = 3')
         .replace("return x * 2", "y = x * 2\n        return y")
         .replace("import torch", "import torch\nimport math"))


def git_diff(tmp_path, before: str, after: str) -> str:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(before)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "a"], cwd=repo, check=True)
    (repo / "train.py").write_text(after)
    return subprocess.run(["git", "diff"], cwd=repo, check=True, capture_output=True, text=True).stdout


def test_moves_name_the_direction():
    assert move_of(0.01, 0.005) == "down"
    assert move_of(32, 64) == "up"
    assert move_of(False, True) == "on"
    assert move_of(True, False) == "off"
    assert move_of("mlp", "cnn") == "= cnn"
    assert move_of(None, 3) == "added"
    assert move_of(3, None) == "removed"


def test_diff_gives_constant_moves_and_innermost_code_regions(tmp_path):
    diff = git_diff(tmp_path, BEFORE, AFTER)
    changes = changes_from_diff(diff, {"old:train.py": BEFORE, "new:train.py": AFTER})
    moves = {c["name"]: c["move"] for c in changes["constants"]}
    assert moves == {"LR": "down", "USE_BN": "on", "ARCH": "= cnn", "EXTRA": "added"}
    lr = next(c for c in changes["constants"] if c["name"] == "LR")
    assert (lr["old"], lr["new"]) == (0.01, 0.005)
    assert set(changes["code"]) == {"def MLP.forward", "top-level code"}


def test_without_sources_the_hunk_headers_give_top_level_names(tmp_path):
    before = "def a():\n    return 1\n\n\n" + "\n".join(f"X{i} = {i}" for i in range(10)) + "\n\n\nclass B:\n    def f(self):\n        return 2\n"
    after = before.replace("return 2", "return 3")
    changes = changes_from_diff(git_diff(tmp_path, before, after))
    assert changes == {"constants": [], "code": ["class B"]}  # git's header knows B, not B.f


def test_parse_diff_tracks_line_numbers_and_new_files():
    diff = textwrap.dedent('''\
        diff --git a/conf.yaml b/conf.yaml
        new file mode 100644
        --- /dev/null
        +++ b/conf.yaml
        @@ -0,0 +1,2 @@
        +a: 1
        +b: 2
        diff --git a/train.py b/train.py
        --- a/train.py
        +++ b/train.py
        @@ -3,2 +3,2 @@ def f():
         x = 1
        -    y = 2
        +    y = 3
        ''')
    conf, train = parse_diff(diff)
    assert (conf.old_path, conf.new_path) == (None, "conf.yaml")
    assert [n for n, _, _ in conf.added] == [1, 2]
    assert train.removed == [(4, "    y = 2", "top-level code")]  # `x = 1` at column 0 ended f
    assert changes_from_diff(diff)["code"] == ["file conf.yaml", "top-level code"]


def test_scopes_are_qualified_and_include_decorators():
    source = "@dec\ndef f():\n    def g():\n        pass\n\nclass C:\n    @property\n    def p(self):\n        return 1\n"
    assert scopes(source) == [(1, 4, "def", "f"), (3, 4, "def", "f.g"), (6, 9, "class", "C"), (7, 9, "def", "C.p")]
    assert scopes("def (:") is None


def test_description_fallback_reads_moves_then_words():
    tuner = changes_from_description("LR 0.01 -> 0.005, WIDTH 32 -> 64")
    assert [(c["name"], c["move"], c["new"]) for c in tuner["constants"]] == [("LR", "down", 0.005), ("WIDTH", "up", 64)]
    assert [c["move"] for c in changes_from_description("LR up")["constants"]] == ["up"]
    assert changes_from_description("X -> 2.0")["constants"] == [{"name": "X", "old": None, "new": 2.0, "move": "set"}]
    assert [c["move"] for c in changes_from_description("lower the DROPOUT a bit")["constants"]] == ["down"]
    words = changes_from_description("wider channels and more dropout - bin_acc +8.5pp", metric_names=["bin_acc"])
    assert words["words"] == ["wider", "channels", "dropout"]  # no stopwords, no metric names
    assert labels_of(words)[0] == "topic wider"


def record(i, status=Status.DISCARD, commit=None, parent="c0", description="", **kw):
    return Experiment(iteration=i, commit=commit or f"c{i}", parent=parent, status=status, description=description, **kw)


def test_ensure_axes_extracts_once_and_caches(make_task, monkeypatch):
    task_dir = make_task()
    task = load_task(task_dir)
    store = RunStore(task.dir, "t")
    store.create()
    run = store.run_dir(1)
    (run / "diff.patch").write_text(textwrap.dedent('''\
        diff --git a/train.py b/train.py
        --- a/train.py
        +++ b/train.py
        @@ -1,1 +1,1 @@
        -X = 1.0  # search: float(0.0, 10.0)
        +X = 2.0  # search: float(0.0, 10.0)
        '''))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=task_dir, capture_output=True, text=True).stdout.strip()
    records = [record(0, Status.KEEP, commit=head, parent=head, description="baseline"),
               record(1, parent=head, description="X up")]
    entries = ensure_axes(task, store, records)
    assert entries[0]["snapshot"] == {"X": 1.0}  # a keep carries its constants, for "never tried"
    assert entries[1]["constants"] == [{"name": "X", "old": 1.0, "new": 2.0, "move": "up"}]
    assert json.loads((run / "axes.json").read_text())["constants"][0]["move"] == "up"
    assert len((store.root / "axes.jsonl").read_text().splitlines()) == 2

    def no_git(*a, **k):
        raise AssertionError("cached entries need no git")

    monkeypatch.setattr(axes, "read_blobs", no_git)
    axes._loaded.clear()
    assert ensure_axes(task, store, records) == entries


def test_index_reads_only_new_lines_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "axes.jsonl"
    line = lambda i: json.dumps({"v": axes.AXES_VERSION, "iteration": i, "commit": f"c{i}"})  # noqa: E731
    path.write_text(line(0) + "\n")
    assert set(axes.load_index(path)) == {0}
    with open(path, "a") as fh:
        fh.write(line(1) + "\n" + line(2)[:10])  # a kill mid-append
    assert set(axes.load_index(path)) == {0, 1}
    path.write_text(line(5) + "\n")  # replaced: read again from the start
    assert set(axes.load_index(path)) == {5}


def test_index_skips_a_bad_line_in_the_middle(tmp_path):
    path = tmp_path / "axes.jsonl"
    line = lambda i: json.dumps({"v": axes.AXES_VERSION, "iteration": i, "commit": f"c{i}"})  # noqa: E731
    path.write_text("\n".join([line(0), "not json", line(3)]) + "\n")
    assert set(axes.load_index(path)) == {0, 3}
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join([line(0), f"{line(1)}, {line(2)}", line(3)]) + "\n")
    assert set(axes.load_index(other)) == {0, 3}  # read as one array, the pair would sneak in


def test_untrained_records_say_nothing_about_their_change():
    def crash(reason):
        return Experiment(1, "c", "p", Status.CRASH, "LR up", reason=reason)

    assert axes.untrained(crash("node_lost: the node running it died (retried once)"))  # Ray: the machine's fault
    assert axes.untrained(crash("guard: changed non-editable file(s) prepare.py; reverted"))
    assert not axes.untrained(crash("exit_code: 1"))
    assert axes.untrained(Experiment(2, "c", "p", Status.DISCARD, "LR up", reason="duplicate of iteration 1; not run again"))
