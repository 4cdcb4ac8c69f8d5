"""The agent sandbox's view (execution/agent_sandbox.py), one shell command at a time inside bwrap:
what a backend's process may read, change and keep."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from autoresearch.execution import sandbox
from autoresearch.execution.agent_sandbox import AgentSandbox, Mirror
from autoresearch.execution.runner import run_process
from autoresearch.records import RunSpec

pytestmark = pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")


@pytest.fixture
def home():
    """A home with credentials of every kind and each backend's own state, outside /tmp."""
    home = Path(os.path.expanduser("~/.cache/autoresearch-test-home")) / uuid.uuid4().hex
    for rel, text in {".ssh/id_rsa": "SSH-SECRET", ".netrc": "NETRC-SECRET", ".aws/credentials": "AWS-SECRET",
                      ".config/gcloud/token": "GCLOUD-SECRET", ".docker/config.json": "DOCKER-SECRET",
                      ".claude/settings.json": "{}", ".claude.json": '{"n": 1}', ".codex/auth.json": "CODEX-SECRET",
                      ".config/other/ok.txt": "visible", ".bashrc": "# rc\n"}.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def task(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "train.py").write_text("X = 1\n")
    (repo / "prepare.py").write_text("DATA = 'fixed'\n")
    (repo / "data" / "val.bin").write_text("labels\n")
    (repo / ".autoresearch" / "t" / "runs").mkdir(parents=True)
    (repo / ".autoresearch" / "t" / "ledger.jsonl").write_text("{}\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return AgentSandbox(task_dir=repo, repo_root=repo, store_root=repo / ".autoresearch" / "t",
                        editable=("train.py",), readonly=("prepare.py",))


def sh(box: AgentSandbox, home: Path, script: str, kind: str = "claude", tmp_path=None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    log = home.parent / f"log-{uuid.uuid4().hex}"
    try:
        with box.call(kind, env) as view:
            result = run_process(RunSpec(command=script, cwd=str(box.task_dir), env=env, timeout=30,
                                         log_path=str(log), sandbox=view))
        assert result.exit_code == 0, log.read_text()
        return log.read_text()
    finally:
        log.unlink(missing_ok=True)


def test_editable_files_change_even_by_rename_and_nothing_else_comes_back(task, home):
    out = sh(task, home, """
        set -e
        printf 'X = 2\\n' > train.py.tmp && mv train.py.tmp train.py      # as editors write
        echo helper > helper.py                                          # a new file: dropped
        (echo bad > data/val.bin) 2>/dev/null || echo 'data: refused'
        (echo bad > prepare.py) 2>/dev/null || echo 'prepare: refused'
        (mv helper.py prepare.py) 2>/dev/null || echo 'rename over prepare: refused'
        (echo '{}' >> .autoresearch/t/ledger.jsonl) 2>/dev/null || echo 'ledger: refused'
        (touch .git/hooks/post-commit) 2>/dev/null || echo 'hook: refused'
        cat .autoresearch/t/ledger.jsonl
    """)
    for what in ("data", "prepare", "rename over prepare", "ledger", "hook"):
        assert f"{what}: refused" in out, out
    root = task.task_dir
    assert (root / "train.py").read_text() == "X = 2\n"
    assert not (root / "helper.py").exists()
    assert (root / "data" / "val.bin").read_text() == "labels\n" and (root / "prepare.py").read_text() == "DATA = 'fixed'\n"
    assert (root / ".autoresearch" / "t" / "ledger.jsonl").read_text() == "{}\n"
    assert not (root / ".git" / "hooks" / "post-commit").exists()


def test_a_deleted_editable_file_is_deleted(task, home):
    sh(task, home, "rm train.py")
    assert not (task.task_dir / "train.py").exists()


def test_the_backend_keeps_its_own_state_and_sees_no_other_credential(task, home):
    out = sh(task, home, """
        for f in .ssh/id_rsa .netrc .aws/credentials .config/gcloud/token .docker/config.json .codex/auth.json; do
            cat ~/$f 2>/dev/null || echo "$f: hidden"
        done
        cat ~/.config/other/ok.txt; echo
        echo '{"n": 2}' > ~/.claude.json.tmp && mv ~/.claude.json.tmp ~/.claude.json   # as Claude Code saves it
        echo session > ~/.claude/session.jsonl
        (echo planted >> ~/.bashrc) 2>/dev/null || echo 'bashrc: refused'
        (echo x > ~/new-file) 2>/dev/null; true
    """)
    assert "SECRET" not in out, out
    for f in (".ssh/id_rsa", ".netrc", ".aws/credentials", ".config/gcloud/token", ".docker/config.json", ".codex/auth.json"):
        assert f"{f}: hidden" in out
    assert "visible" in out and "bashrc: refused" in out
    assert (home / ".claude.json").read_text() == '{"n": 2}\n'  # came back
    assert (home / ".claude" / "session.jsonl").read_text() == "session\n"
    assert (home / ".bashrc").read_text() == "# rc\n" and not (home / "new-file").exists()


def test_codex_sees_its_own_login_and_not_claudes(task, home):
    out = sh(task, home, "cat ~/.codex/auth.json; echo; cat ~/.claude.json 2>/dev/null || echo 'claude: hidden'", kind="codex")
    assert "CODEX-SECRET" in out and "claude: hidden" in out


def test_a_read_only_call_changes_no_editable_file(task, home):
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    log = home / "memo.log"
    with task.call("claude", env, edits=False) as view:
        run_process(RunSpec(command="echo 'X = 3' > train.py || echo refused", cwd=str(task.task_dir), env=env,
                            timeout=30, log_path=str(log), sandbox=view))
    assert "refused" in log.read_text() or (task.task_dir / "train.py").read_text() == "X = 1\n"
    assert (task.task_dir / "train.py").read_text() == "X = 1\n"


def test_mirror_copy_back_without_a_sandbox(tmp_path):
    """The copy-back alone: an edit, a new editable file, an unchanged one."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.py").write_text("a\n")
    (real / "b.py").write_text("b\n")
    mirror = Mirror(real, tmp_path / "scratch", copied=["a.py", "b.py", "c.py"])
    mirror.args()
    (tmp_path / "scratch" / "a.py").write_text("A\n")
    (tmp_path / "scratch" / "c.py").write_text("c\n")
    assert mirror.copy_back() == ["a.py", "c.py"]
    assert (real / "a.py").read_text() == "A\n" and (real / "b.py").read_text() == "b\n" and (real / "c.py").read_text() == "c\n"
