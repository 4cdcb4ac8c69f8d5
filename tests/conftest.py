import os
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def tiny_config(time_budget: float = 5, timeout: float | None = 20, primary: str = "score", metrics: str = "",
                task: str = "", deterministic: bool = True, direction: str = "maximize") -> str:
    """The tiny task's config: another budget, timeout (None: the default), primary or direction
    where a test needs one; `task` and `metrics` add lines to those sections ([metrics] comes last,
    so a test may add sections after it).

    The tiny train.py prints the same score for the same code, so it says so (`deterministic`): one
    baseline, as the tests count rows; `metrics` that set noise_runs or deterministic decide themselves."""
    declared = deterministic and "noise_runs" not in metrics and "deterministic" not in metrics
    det = "deterministic = true\n" if declared else ""
    timeout_line = "" if timeout is None else f"timeout = {timeout:g}\n"
    return f"""\
[task]
run = "python train.py"
editable = ["train.py"]
readonly = ["prepare.py"]
time_budget = {time_budget:g}
{timeout_line}{task}
[metrics]
primary = "{primary}"
direction = "{direction}"
{det}{metrics}"""


# The tiny task's config; tests add an [agent] section (or more) after it.
TINY_CONFIG = tiny_config()
# The config a karpathy-style repository needs: a five-minute budget, val_bpb to minimise.
KARPATHY_CONFIG = tiny_config(time_budget=300, timeout=None, primary="val_bpb", direction="minimize",
                              deterministic=False)


@pytest.fixture
def make_task(tmp_path):
    """A tiny task whose train.py prints a footer computed from its constants, in a git repo."""

    def make(train: str | None = None, config: str | None = None, extra: dict | None = None,
             subdir: str = "") -> Path:
        root = tmp_path / "repo"
        task = root / subdir if subdir else root
        task.mkdir(parents=True, exist_ok=True)
        (task / "train.py").write_text(textwrap.dedent(train or '''\
            X = 1.0  # search: float(0.0, 10.0)
            print("training")
            print("---")
            print(f"score: {X:.6f}")
            print("peak_vram_mb: 512.0")
        '''))
        (task / "prepare.py").write_text("DATA = 'fixed'\n")
        (task / "program.md").write_text("# Tiny task\nMaximise score.\n")
        (task / "autoresearch.toml").write_text(textwrap.dedent(config or TINY_CONFIG))
        for name, content in (extra or {}).items():
            p = task / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(content))
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
        subprocess.run(GIT + ["add", "-A"], cwd=root, check=True)
        subprocess.run(GIT + ["commit", "-q", "-m", "init"], cwd=root, check=True)
        return task

    return make


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch):
    # Tests commit in throwaway repositories; give git an identity without touching ~/.gitconfig.
    monkeypatch.setenv("GIT_AUTHOR_NAME", "test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")


KARPATHY_FIXTURE = Path(__file__).parent / "fixtures" / "karpathy"


@pytest.fixture
def karpathy_repo(tmp_path):
    """Our own karpathy-layout repository (program.md, train.py, read-only prepare.py with
    TIME_BUDGET, pyproject.toml, a tracked progress.png), committed, with no autoresearch.toml."""
    import shutil

    repo = tmp_path / "tinybpb"
    shutil.copytree(KARPATHY_FIXTURE, repo)
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tinybpb")
    return repo


SECRET_SSH = "ssh-secret-" + "7f3a9c"
SECRET_NETRC = "netrc-password-" + "51b2e8"


@pytest.fixture
def fake_home(monkeypatch):
    """A HOME with credentials (SECRET_SSH, SECRET_NETRC), outside /tmp, whose private copy in a
    sandbox would hide them anyway; the real home's are never touched."""
    home = Path(os.path.expanduser("~/.cache/autoresearch-test-home")) / uuid.uuid4().hex
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY-----\n{SECRET_SSH}\n")
    (home / ".netrc").write_text(f"machine example.com login bob password {SECRET_NETRC}\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {SECRET_NETRC}\n")
    monkeypatch.setenv("HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)
