"""The command line as a user types it: real processes, real git."""

import json
import subprocess

import pytest

from conftest import KARPATHY_CONFIG, git
from helpers import cli

KARPATHY_TRAIN = '''\
import os, time
DEPTH = 8
print("step 00001 (0.01%) | loss: 9.0\\r", end="")
print("step 00950 (100.00%) | loss: 3.2")
print("---")
print(f"val_bpb:          {1.0 - DEPTH / 1000:.6f}")
print("training_seconds: 300.1")
print("total_seconds:    325.9")
print("peak_vram_mb:     45060.2")
print("mfu_percent:      39.80")
print(f"depth:            {DEPTH}")
'''

AGENT = '''\
import os, pathlib, re
n = int(os.environ["AUTORESEARCH_ITERATION"])
prompt = open(os.environ["AUTORESEARCH_PROMPT_FILE"]).read()
assert prompt == __import__("sys").stdin.read()
p = pathlib.Path("train.py")
p.write_text(re.sub(r"DEPTH = \\d+", f"DEPTH = {8 + n * (1 if n % 2 else -4)}", p.read_text()))
print(f"depth -> {8 + n * (1 if n % 2 else -4)}")
print("Deeper models fit more in the budget; shallower ones check the trend.")
'''


def karpathy_repo(tmp_path):
    repo = tmp_path / "nanochat-like"
    repo.mkdir()
    (repo / "train.py").write_text(KARPATHY_TRAIN)
    (repo / "prepare.py").write_text("MAX_SEQ_LEN = 2048\nTIME_BUDGET = 300\n")
    (repo / "program.md").write_text("# autoresearch\nLOOP FOREVER.\n")
    (repo / "agent.py").write_text(AGENT)
    # the whole config a karpathy-style repository needs
    (repo / "autoresearch.toml").write_text(KARPATHY_CONFIG + 'deterministic = true\n\n[agent]\nkind = "command"\n'
                                            'command = "python agent.py"\n')
    subprocess.run(["git", "init", "-q", "-b", "master"], cwd=repo, check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "karpathy layout")
    return repo


def test_karpathy_repository_run_status_and_json(tmp_path):
    repo = karpathy_repo(tmp_path)
    r = cli("run", str(repo), "--tag", "mar5", "--iterations", "3")
    assert r.returncode == 0, r.stderr + r.stdout
    rows = (repo / "results.tsv").read_text().splitlines()
    assert rows[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert [row.split("\t")[1] for row in rows[1:]] == ["0.992000", "0.991000", "1.000000", "0.989000"]
    assert [row.split("\t")[3] for row in rows[1:]] == ["keep", "keep", "discard", "keep"]
    assert rows[1].split("\t")[2] == "44.0"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/mar5"
    summary = json.loads((repo / "analysis_summary.json").read_text())  # refreshed after every iteration
    assert [f["iteration"] for f in summary["frontier"]] == [0, 1, 3] and summary["counts"]["experiments"] == 4
    assert (repo / "progress.png").is_file() and (repo / "report.html").is_file()  # left where the run is

    s = cli("status", str(repo), "--tag", "mar5", "--json")
    totals = json.loads(s.stdout)
    assert totals["iterations"] == 4 and totals["keeps"] == 3 and totals["best"]["value"] == 0.989
    assert totals["cost_usd"] == 0 and totals["tokens"] == 0

    human = cli("status", str(repo))
    assert "autoresearch/mar5" in human.stdout and "0.989000" in human.stdout

    again = cli("run", str(repo), "--tag", "mar5", "--iterations", "2")
    assert again.returncode == 0, again.stderr
    assert len((repo / "results.tsv").read_text().splitlines()) == 1 + 6


def test_bad_config_is_one_clear_line_not_a_traceback(tmp_path):
    repo = karpathy_repo(tmp_path)
    (repo / "autoresearch.toml").write_text((repo / "autoresearch.toml").read_text().replace('"minimize"', '"lower"'))
    r = cli("run", str(repo), "--tag", "x", "--iterations", "1")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "autoresearch.toml" in r.stderr and "metrics.direction" in r.stderr and "maximize" in r.stderr


def test_not_a_git_repository(tmp_path):
    repo = karpathy_repo(tmp_path)
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)
    r = cli("run", str(repo), "--tag", "x", "--iterations", "1")
    assert r.returncode == 2 and "not inside a git repository" in r.stderr and "Traceback" not in r.stderr


def test_status_without_runs(tmp_path):
    repo = karpathy_repo(tmp_path)
    r = cli("status", str(repo))
    assert r.returncode == 2 and "no runs yet" in r.stderr


def test_executor_flags_fail_fast_with_a_fix(tmp_path):
    repo = karpathy_repo(tmp_path)
    r = cli("run", str(repo), "--tag", "x", "--iterations", "1", "--executor", "slurm")
    assert r.returncode == 2 and "--executor 'slurm'" in r.stderr and "'ray'" in r.stderr and "Traceback" not in r.stderr
    pytest.importorskip("ray")
    r = cli("run", str(repo), "--tag", "x", "--iterations", "1", "--executor", "ray", "--ray-address", "nohost")
    assert r.returncode == 2 and "host:port" in r.stderr and "Traceback" not in r.stderr
    # a closed port on loopback: refused at once, not after Ray's minutes of retries
    r = cli("run", str(repo), "--tag", "x", "--iterations", "1", "--executor", "ray", "--ray-address", "127.0.0.1:1")
    assert r.returncode == 2 and "nothing answers" in r.stderr and "ray start --head" in r.stderr, r.stderr
    assert "autoresearch/x" not in git(repo, "branch")  # nothing was begun


def test_status_and_report_show_where_each_run_ran(tmp_path):
    repo = karpathy_repo(tmp_path)
    assert cli("run", str(repo), "--tag", "n", "--iterations", "1").returncode == 0
    ledger = repo / ".autoresearch/n/ledger.jsonl"
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    for record, node in zip(lines, ("gpu-a:1a2b3c4d", "gpu-b:5e6f7a8b")):
        record["node"] = node  # as the Ray executor records them
        del record["prev"]  # edited by hand: a ledger from before the hash chain, which still loads
    ledger.write_text("".join(json.dumps(r) + "\n" for r in lines))
    totals = json.loads(cli("status", str(repo), "--json").stdout)
    assert totals["nodes"] == {"gpu-a:1a2b3c4d": 1, "gpu-b:5e6f7a8b": 1}
    human = cli("status", str(repo), "--tag", "n").stdout
    assert "node" in human and "gpu-a:1a2b3c4d" in human and "gpu-b:5e6f7a8b" in human
    assert cli("report", str(repo), "--tag", "n").returncode == 0
    html = (repo / "report.html").read_text()
    assert "ran on <code>gpu-a:1a2b3c4d</code>" in html and "ran on <code>gpu-b:5e6f7a8b</code>" in html
