"""The allow-listed environment of runs and agents, and paths refused outside the task directory."""

import os
import subprocess
import sys

import pytest

from autoresearch.config import load_task
from autoresearch.environment import agent_env, run_env, safe_env, safe_path
from autoresearch.errors import AutoresearchError
from autoresearch.records import RunSpec
from autoresearch.runner import run_process

from conftest import tiny_config

BASE = {
    "PATH": "/usr/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm",
    "CUDA_VISIBLE_DEVICES": "0", "NVIDIA_VISIBLE_DEVICES": "all", "PYTHONPATH": "/src", "OMP_NUM_THREADS": "4",
    "HF_HOME": "/cache/hf", "VIRTUAL_ENV": "/venv", "CONDA_PREFIX": "/conda", "MKL_NUM_THREADS": "2",
    "ANTHROPIC_API_KEY": "sk-ant-planted-0123456789", "OPENAI_API_KEY": "sk-openai-planted-0123456789",
    "GEMINI_API_KEY": "gem-planted-0123456789", "AWS_SECRET_ACCESS_KEY": "aws-planted-0123456789",
    "GITHUB_TOKEN": "ghp_planted0123456789", "HF_TOKEN": "hf_planted0123456789", "WANDB_API_KEY": "wandb-planted-0123",
    "WANDB_MODE": "offline", "CLAUDE_CODE_USE_BEDROCK": "0", "CUDA_API_TOKEN": "looks-secret-0123456789",
    "SOME_RANDOM_VAR": "x",
}
CONFIG = """\
[task]
run = "python train.py"
editable = ["train.py"]
time_budget = 5
{task_extra}
[metrics]
primary = "score"
direction = "maximize"
deterministic = true
[agent]
kind = "command"
command = "true"
{agent_extra}
"""


def task(tmp_path, task_extra="", agent_extra=""):
    (tmp_path / "train.py").write_text("X = 1\n")
    (tmp_path / "autoresearch.toml").write_text(CONFIG.format(task_extra=task_extra, agent_extra=agent_extra))
    return load_task(tmp_path)


def test_run_env_is_the_allow_list_only(tmp_path):
    env = run_env(task(tmp_path), BASE)
    for name in ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                 "PYTHONPATH", "OMP_NUM_THREADS", "HF_HOME", "VIRTUAL_ENV", "CONDA_PREFIX", "MKL_NUM_THREADS"):
        assert env[name] == BASE[name]
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
                 "HF_TOKEN", "WANDB_API_KEY", "WANDB_MODE", "SOME_RANDOM_VAR", "CUDA_API_TOKEN"):
        assert name not in env


def test_task_config_names_more(tmp_path):
    env = run_env(task(tmp_path, task_extra='env = ["WANDB_MODE", "WANDB_API_KEY", "NOT_SET_ANYWHERE"]'), BASE)
    assert env["WANDB_MODE"] == "offline" and env["WANDB_API_KEY"] == BASE["WANDB_API_KEY"]
    assert "NOT_SET_ANYWHERE" not in env and "ANTHROPIC_API_KEY" not in env


def test_api_keys_reach_only_the_agent_that_needs_them(tmp_path):
    t = task(tmp_path)
    claude = agent_env("claude", t, BASE)
    assert claude["ANTHROPIC_API_KEY"] == BASE["ANTHROPIC_API_KEY"] and claude["CLAUDE_CODE_USE_BEDROCK"] == "0"
    assert "OPENAI_API_KEY" not in claude and "GEMINI_API_KEY" not in claude
    codex = agent_env("codex", t, BASE)
    assert "OPENAI_API_KEY" in codex and "ANTHROPIC_API_KEY" not in codex
    gemini = agent_env("gemini", t, BASE)
    assert "GEMINI_API_KEY" in gemini and "OPENAI_API_KEY" not in gemini
    aider = agent_env("aider", t, BASE)
    assert {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"} <= set(aider)
    for kind in ("command", "tuner", "unknown-backend"):
        env = agent_env(kind, t, BASE)
        assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GITHUB_TOKEN"} & set(env)
        assert env["PATH"] == f"{os.path.dirname(sys.executable)}{os.pathsep}/usr/bin"  # `python` is ours
        assert "SOME_RANDOM_VAR" not in env  # an allow-list: what is not on it, [agent] env names
    named = agent_env("command", task(tmp_path, agent_extra='env = ["ANTHROPIC_API_KEY", "SOME_RANDOM_VAR"]'), BASE)
    assert named["ANTHROPIC_API_KEY"] == BASE["ANTHROPIC_API_KEY"] and "OPENAI_API_KEY" not in named
    assert named["SOME_RANDOM_VAR"] == "x"
    cli_settings = {"NODE_OPTIONS": "--max-old-space-size=4096", "GIT_AUTHOR_NAME": "me", "EDITOR": "vi",
                    "NPM_CONFIG_PREFIX": "/npm", "DATABASE_URL": "postgres://u:pw@h/db", "GIT_ASKPASS_TOKEN": "t0k"}
    env = agent_env("claude", t, {**BASE, **cli_settings})
    assert {k: env[k] for k in ("NODE_OPTIONS", "GIT_AUTHOR_NAME", "EDITOR", "NPM_CONFIG_PREFIX")} == \
        {k: cli_settings[k] for k in ("NODE_OPTIONS", "GIT_AUTHOR_NAME", "EDITOR", "NPM_CONFIG_PREFIX")}
    assert "DATABASE_URL" not in env and "GIT_ASKPASS_TOKEN" not in env
    for any_env in (claude, codex, gemini, aider):
        assert "AWS_SECRET_ACCESS_KEY" not in any_env and "HF_TOKEN" not in any_env


def test_a_real_run_cannot_read_a_planted_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-planted-0123456789")
    monkeypatch.setenv("MY_DB_PASSWORD", "hunter2-planted")
    (tmp_path / "train.py").write_text("import os\nprint(sorted(os.environ.items()))\n")
    spec = RunSpec(command=f"{sys.executable} train.py", cwd=str(tmp_path), env=safe_env(),
                   timeout=30, log_path=str(tmp_path / "log.txt"))
    result = run_process(spec)
    assert result.exit_code == 0
    log = (tmp_path / "log.txt").read_text()
    assert "PATH" in log and "planted" not in log


def test_safe_path_inside_is_resolved(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.py").write_text("")
    assert safe_path(tmp_path, "sub/model.py") == (tmp_path / "sub" / "model.py").resolve()
    assert safe_path(tmp_path, "sub/../train.py") == (tmp_path / "train.py").resolve()
    assert safe_path(tmp_path, "new_file.py") == (tmp_path / "new_file.py").resolve()
    assert safe_path(tmp_path, tmp_path / "sub" / "model.py") == (tmp_path / "sub" / "model.py").resolve()
    os.symlink(tmp_path / "sub" / "model.py", tmp_path / "link_inside.py")
    assert safe_path(tmp_path, "link_inside.py") == (tmp_path / "sub" / "model.py").resolve()


@pytest.mark.parametrize("make, path", [
    (lambda d: None, "../outside.py"),
    (lambda d: None, "/etc/passwd"),
    (lambda d: None, "sub/../../x.py"),
    (lambda d: os.symlink("/etc/passwd", d / "innocent.py"), "innocent.py"),
    (lambda d: os.symlink(d.parent, d / "up"), "up/anything.py"),
    (lambda d: (d / ".git").mkdir(), ".git/config"),
    (lambda d: (d / ".git").mkdir(), "sub/.git/hooks/pre-commit"),
    (lambda d: None, ".autoresearch/t/ledger.jsonl"),
    (lambda d: None, "bad\0name.py"),
])
def test_safe_path_refuses_escapes(tmp_path, make, path):
    task_dir = tmp_path / "task"
    (task_dir / "sub").mkdir(parents=True)
    make(task_dir)
    with pytest.raises(AutoresearchError) as info:
        safe_path(task_dir, path)
    assert repr(path) in str(info.value)


def test_symlinked_task_dir_itself_is_fine(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    assert safe_path(tmp_path / "alias", "train.py") == real.resolve() / "train.py"



SPY_TRAIN = """\
import os
X = 1.0
print(sorted(os.environ.items()))
try:
    open("env_seen_by_run.txt", "w").write(repr(sorted(os.environ.items())))
except OSError:  # as the trusted eval, in the sandbox: its pristine copy is read-only
    pass
print("---")
print(f"score: {X:.6f}")
"""
SPY_AGENT = """\
import os, pathlib, re, sys
print("Raise X: try a larger value.")
print(sorted(os.environ.items()))
sys.stderr.write(repr(sorted(os.environ.items())))
p = pathlib.Path("train.py")
p.write_text(re.sub(r"X = [0-9.]+", "X = 2.0", p.read_text()))
"""
# The spy agent lives beside the repository under tmp_path: opened to the agent's sandbox.
SPY_CONFIG = tiny_config(timeout=30, task='outputs = ["env_seen_by_run.txt"]\n') + """
[sandbox]
agent_writable = ["../spy_agent.py"]

[agent]
kind = "command"
command = "python ../spy_agent.py"
"""


def test_a_planted_key_is_in_no_file_the_loop_writes(make_task, monkeypatch):
    """A loop with an agent and a run that both print their whole environment, then every report:
    no file under the repository holds the planted secrets, nor does any commit message."""
    from autoresearch.api import run_loop

    planted = {"ANTHROPIC_API_KEY": "sk-ant-PLANTED-a1b2c3d4e5", "OPENAI_API_KEY": "sk-PLANTED-f6g7h8i9j0",
               "AWS_SECRET_ACCESS_KEY": "PLANTED/aws/k1l2m3n4o5", "MY_DB_PASSWORD": "PLANTED-hunter2-p6q7"}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    task = make_task(train=SPY_TRAIN, config=SPY_CONFIG, extra={"../spy_agent.py": SPY_AGENT})
    records = run_loop(task, "spy", iterations=2, say=lambda s: None)
    assert [r.status.value for r in records][:2] == ["keep", "keep"]
    assert "PATH" in (task / "env_seen_by_run.txt").read_text()  # the spies did look
    assert_no_planted_value(task, planted)


def test_keys_handed_to_the_agent_and_the_runs_stay_out_of_every_file(make_task, monkeypatch):
    """`[agent] env` and `[task] env` hand keys over on purpose; the spies print them on stdout,
    stderr, into the footer's neighbourhood and the trusted and held-out evals: what we keep
    of it all is masked."""
    from autoresearch.api import run_loop

    planted = {"ANTHROPIC_API_KEY": "sk-ant-PLANTED-a1b2c3d4e5", "OPENAI_API_KEY": "sk-PLANTED-f6g7h8i9j0",
               "WANDB_API_KEY": "PLANTED-wandb-k1l2m3n4o5", "MY_DB_PASSWORD": "PLANTED-hunter2-p6q7"}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    config = SPY_CONFIG.replace('timeout = 30\n', 'timeout = 30\nenv = ["WANDB_API_KEY"]\n'
                                'eval = "python train.py"\nfinal_eval = "python train.py"\n', 1) \
        + 'env = ["ANTHROPIC_API_KEY"]\n'
    agent = SPY_AGENT.replace('print("Raise X: try a larger value.")',
                              'print("Raise X: try a larger value, " + os.environ["ANTHROPIC_API_KEY"])')
    task = make_task(train=SPY_TRAIN, config=config, extra={"../spy_agent.py": agent})
    records = run_loop(task, "spy", iterations=2, say=lambda s: None)
    assert [r.status.value for r in records][:2] == ["keep", "keep"]
    seen_by_run = (task / "env_seen_by_run.txt").read_text()
    assert planted["WANDB_API_KEY"] in seen_by_run  # handed over, as the config asks...
    assert planted["ANTHROPIC_API_KEY"] not in seen_by_run and planted["OPENAI_API_KEY"] not in seen_by_run
    (task / "env_seen_by_run.txt").unlink()  # ...and that file is the run's own doing, not ours
    store = task / ".autoresearch" / "spy"
    assert "[redacted]" in (store / "runs" / "0001" / "agent.log").read_text()
    assert "[redacted]" in (store / "runs" / "0001" / "log.txt").read_text()
    assert (store / "final_eval.json").is_file()
    assert_no_planted_value(task, planted)


def assert_no_planted_value(task, planted):
    files = [p for p in task.parent.rglob("*") if p.is_file() and ".git" not in p.relative_to(task.parent).parts]
    assert any(p.name == "agent.log" for p in files) and any(p.name == "report.html" for p in files)
    for path in files:
        data = path.read_bytes()
        for name, value in planted.items():
            assert value.encode() not in data, f"{name} leaked into {path}"
    messages = subprocess.run(["git", "log", "--all", "--format=%B"], cwd=task, capture_output=True, text=True).stdout
    for name, value in planted.items():
        assert value not in messages, f"{name} leaked into a commit message"
