"""The karpathy layout, recognised: zero files added, `autoresearch init` writes the same config."""

import os
import stat
import subprocess
import sys
import tomllib

import pytest

from autoresearch import layout
from autoresearch.api import init_config
from autoresearch.config import CONFIG_NAME, load_task, stored_config
from autoresearch.errors import AutoresearchError, ConfigError

from conftest import git


def cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def no_uv(monkeypatch):
    monkeypatch.setattr(layout.interpreter, "find_uv", lambda: None)


def test_the_fixture_is_recognised_and_its_config_inferred(karpathy_repo, monkeypatch):
    no_uv(monkeypatch)
    inferred = layout.infer(karpathy_repo)
    assert inferred.raw == {
        "task": {"run": "python train.py", "editable": ["train.py"],
                 "readonly": ["prepare.py", "program.md", "pyproject.toml"], "time_budget": 1},
        "metrics": {"primary": "val_bpb", "direction": "minimize", "memory_key": "peak_vram_mb"},
    }
    assert inferred.footer_keys == ("val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "num_steps", "depth")
    assert inferred.notes["task.time_budget"] == "train.py trains for TIME_BUDGET = 1 s from prepare.py"
    assert "lower is better" in inferred.notes["metrics.primary"]
    summary = "\n".join(inferred.summary())
    assert "run       python train.py" in summary and "budget    1 s" in summary and "val_bpb, minimize" in summary
    task = load_task(karpathy_repo)  # no autoresearch.toml: the same, validated
    assert task.inferred is not None and task.run == "python train.py" and task.time_budget == 1
    assert task.metrics.primary == "val_bpb" and task.path == karpathy_repo / CONFIG_NAME


def test_init_writes_the_config_run_infers(karpathy_repo, monkeypatch):
    no_uv(monkeypatch)
    inferred = layout.infer(karpathy_repo).raw
    path = init_config(karpathy_repo)
    text = path.read_text()
    assert text.count("#") > 15  # commented: every setting says what it is and where it came from
    assert "TIME_BUDGET = 1 s from prepare.py" in text and "val_bpb, training_seconds" in text
    written = tomllib.loads(text)
    assert {k: written[k] for k in ("task", "metrics")} == inferred and written["agent"] == {"kind": "tuner"}
    from_file = load_task(karpathy_repo)
    assert from_file.inferred is None
    path.unlink()
    assert load_task(karpathy_repo).config.model_dump() == from_file.config.model_dump()
    path.write_text("x")
    with pytest.raises(AutoresearchError, match="--force"):
        init_config(karpathy_repo)
    assert init_config(karpathy_repo, force=True).read_text() == text
    path.unlink()
    r = cli("init", str(karpathy_repo))
    assert r.returncode == 0 and "wrote" in r.stdout and tomllib.loads(path.read_text())["metrics"] == inferred["metrics"]


def test_init_on_another_layout(tmp_path):
    r = cli("init", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no train.py here" in r.stderr
    (tmp_path / "train.py").write_text("print('---')\nprint('val_loss: 1')\n")
    with pytest.raises(ConfigError, match="autoresearch init"):
        load_task(tmp_path)  # no zero-config run without the whole layout ...
    written = tomllib.loads(init_config(tmp_path).read_text())  # ... but init reads what is there
    assert written["task"]["readonly"] == [] and written["metrics"]["primary"] == "val_loss"
    assert load_task(tmp_path).metrics.direction == "minimize"


def test_no_footer_metric_is_a_clear_error(karpathy_repo):
    (karpathy_repo / "train.py").write_text("print('hello')\n")
    with pytest.raises(ConfigError, match=r"train.py: no footer metric found"):
        layout.infer(karpathy_repo)


def test_metric_conventions_and_a_run_log():
    assert layout.choose_metric(["training_seconds", "val_bpb"])[:2] == ("val_bpb", "minimize")
    assert layout.choose_metric(["train_loss", "val_loss", "total_seconds"])[:2] == ("val_loss", "minimize")
    assert layout.choose_metric(["num_steps", "test_acc"])[:2] == ("test_acc", "maximize")
    assert layout.choose_metric(["peak_memory_mb", "depth"])[0] is None
    keys = layout.footer_keys('print("warmup")\nprint("val_bpb: 9")\nprint("---")\nprint(f"val_loss: {x:.3f}")\n'
                              'print(f"peak_memory_mb:   {m}")\nprint("device: cpu")\n')
    assert keys == ["val_loss", "peak_memory_mb", "device"]


def test_memory_key_and_metric_from_an_existing_run_log(karpathy_repo, monkeypatch):
    no_uv(monkeypatch)
    (karpathy_repo / "train.py").write_text("import json\nfor k, v in json.load(open('m.json')).items():\n"
                                            "    print(f'{k}: {v}')\n")
    (karpathy_repo / "run.log").write_text("step 1\n---\nval_bpb: 1.2\npeak_memory_mb: 300\n")
    raw = layout.infer(karpathy_repo).raw
    assert raw["metrics"] == {"primary": "val_bpb", "direction": "minimize", "memory_key": "peak_memory_mb"}


def test_a_uv_project_runs_through_uv_when_uv_is_installed(karpathy_repo, tmp_path, monkeypatch):
    (karpathy_repo / "uv.lock").write_text("version = 1\n")
    no_uv(monkeypatch)
    raw = layout.infer(karpathy_repo)
    assert raw.raw["task"]["run"] == "python train.py" and "pip install uv" in raw.notes["task.run"]
    assert "uv.lock" in raw.raw["task"]["readonly"]
    fake = tmp_path / "bin" / "uv"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(layout.interpreter, "find_uv", lambda: str(fake))
    assert layout.infer(karpathy_repo).raw["task"]["run"] == "uv run train.py"


def test_zero_config_run_prints_and_keeps_the_inferred_config(karpathy_repo):
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}/usr/bin:/bin"}
    r = cli("run", str(karpathy_repo), "--tag", "dec1", "--iterations", "2", env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    out = r.stdout
    assert "recognised the karpathy/autoresearch layout" in out
    for line in ("run       python train.py", "editable  train.py", "readonly  prepare.py, program.md, pyproject.toml",
                 "budget    1 s", "metric    val_bpb, minimize", "memory    peak_vram_mb"):
        assert line in out
    assert "train.py trains for TIME_BUDGET = 1 s from prepare.py" in out
    assert "no timeout configured: the baseline may take up to 905 s" in out
    kept = stored_config(karpathy_repo, "dec1")
    assert kept.is_file() and not (karpathy_repo / CONFIG_NAME).exists()  # in the run store, not in the repo
    rows = (karpathy_repo / "results.tsv").read_text().splitlines()
    # the baseline twice (a time-budgeted karpathy train.py is noisy: noise-aware by default), then 2 iterations
    assert rows[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and len(rows) == 5
    assert "baseline repeat 1 of 1 (noise estimate)" in rows[2]
    assert git(karpathy_repo, "status", "--porcelain", "--untracked-files=all", "--", "train.py", "prepare.py",
               CONFIG_NAME) == ""
    # A resume reads the config the run kept, whatever the repository looks like now.
    again = cli("run", str(karpathy_repo), "--tag", "dec1", "--iterations", "1", env=env)
    assert again.returncode == 0, again.stderr + again.stdout
    assert f"config: the one inferred when this run began, kept in {kept}" in again.stdout
    assert "recognised the karpathy" not in again.stdout
    status = cli("status", str(karpathy_repo), "--tag", "dec1", "--json")
    assert status.returncode == 0, status.stderr
    assert '"primary": "val_bpb"' in status.stdout and '"iterations": 5' in status.stdout


def test_a_uv_project_runs_through_uv_unchanged(karpathy_repo):
    """uv from PyPI (the test extra installs it beside our interpreter): `uv run train.py` as program.md says."""
    uv = layout.interpreter.find_uv()
    assert uv is not None, "uv is in the [test] extra: pip install uv"
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}/usr/bin:/bin", "UV_OFFLINE": "1"}
    locked = subprocess.run([uv, "lock", "--offline"], cwd=karpathy_repo, capture_output=True, text=True, env=env)
    assert locked.returncode == 0, locked.stderr
    git(karpathy_repo, "add", "uv.lock")
    git(karpathy_repo, "commit", "-qm", "lock")
    r = cli("run", str(karpathy_repo), "--tag", "uv1", "--iterations", "1", env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "run       uv run train.py   (a uv project: its own environment, through uv)" in r.stdout
    assert "readonly  prepare.py, program.md, pyproject.toml, uv.lock" in r.stdout
    rows = (karpathy_repo / "results.tsv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].split("\t")[3] == "keep" and "noise estimate" in rows[2]  # baseline twice
    prompt = (stored_config(karpathy_repo, "uv1").parent / "runs" / "0002" / "prompt.md").read_text()
    assert "runs `uv run train.py`" in prompt and "through `uv run` (the uv project's own environment)" in prompt
    assert (karpathy_repo / ".venv" / "bin" / "python").exists()  # uv made the project's environment
