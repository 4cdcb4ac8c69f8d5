"""The package's layering: the core never imports `analysis` (it is handed in as an observer),
and test modules never import from one another (shared helpers live in tests/helpers.py)."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import autoresearch

# Front ends that wire the analysis in (the CLI's commands, api's observer, `autoresearch import`),
# and the packages that are not the core.
NOT_CORE = {"cli", "api", "imports", "import_command", "__main__", "analysis", "dashboard"}
TESTS = Path(__file__).parent


def core_modules() -> list[str]:
    """Every module of the core: the top level, loop/, execution/, live/, agents/."""
    names = []
    for info in pkgutil.walk_packages(autoresearch.__path__, "autoresearch."):
        parts = info.name.split(".")
        if parts[1] in NOT_CORE or parts[1] == "examples":
            continue
        names.append(info.name)
    return names


def test_the_core_imports_no_analysis():
    modules = core_modules()
    assert {"autoresearch.loop", "autoresearch.outer", "autoresearch.execution", "autoresearch.live.publisher",
            "autoresearch.early_stop", "autoresearch.agents.tuner"} <= set(modules)
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except ImportError as exc:\n        print('skipped', name, exc, file=sys.stderr)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('autoresearch.analysis'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [], out.stderr


def test_a_loop_session_reads_hints_without_importing_the_analysis(make_task):
    """At run time too: an iteration's prompt shows the hints the analysis left as text in the store."""
    task = make_task()
    code = f"""
import json, pathlib, sys
sys.path.insert(0, {str(TESTS)!r})
from helpers import ScriptedAgent, run, set_x
task = pathlib.Path({str(task)!r})
loop, _ = run(task, ScriptedAgent(set_x(2.0)), 1)
loop.store.hints_path.write_text("Frontier: left by the analysis\\n")
agent = ScriptedAgent(set_x(3.0))
run(task, agent, 1)
print(json.dumps({{"prompt": agent.contexts[0].prompt,
                  "analysis": sorted(m for m in sys.modules if m.startswith("autoresearch.analysis"))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["analysis"] == []
    assert "## Analysis of all experiments\n\nFrontier: left by the analysis\n" in seen["prompt"]


def imported_test_modules(path: Path) -> list[str]:
    """The test modules `path` imports (`from test_x import`, `import tests.y`, ...)."""
    own = {p.stem for p in TESTS.rglob("test_*.py")}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level:  # `from . import test_x`, `from .test_x import`
            names = [node.module or ""] + [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".") if name else []
            if parts and (parts[0] == "tests" or parts[-1] in own or parts[0] in own):
                found.append(name)
    return found


def test_test_modules_never_import_one_another():
    offenders = {str(p.relative_to(TESTS)): imported_test_modules(p) for p in sorted(TESTS.rglob("*.py"))}
    assert {p: names for p, names in offenders.items() if names} == {}


def test_the_scan_sees_each_way_of_importing_a_test_module(tmp_path):
    for line in ("from test_loop import ScriptedAgent", "import test_prompt", "from tests.helpers import x",
                 "from agents.test_contract import Case", "from . import test_openai"):
        probe = tmp_path / "probe.py"
        probe.write_text(line + "\n")
        assert imported_test_modules(probe), line
    probe.write_text("from helpers import ScriptedAgent\nimport conftest\nfrom autoresearch import loop\n")
    assert imported_test_modules(probe) == []


# Loaded only by the step that uses them: the tuner's TPE (optuna, and numpy under it), the
# final report (matplotlib), the Ray executor, the MLflow export.
HEAVY = ("optuna", "numpy", "matplotlib", "ray", "mlflow")


def _loaded(code: str, cwd: Path | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_the_cli_and_the_api_import_nothing_heavy():
    seen = _loaded("import json, sys\nimport autoresearch.cli, autoresearch.api\n"
                   f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules],\n"
                   "                  'loop': 'autoresearch.loop' in sys.modules}))\n")
    assert seen == {"heavy": [], "loop": False}  # status, report, the dashboard never run the loop


def test_a_tuner_night_reaches_its_first_run_without_anything_heavy(make_task):
    """`autoresearch run` as far as the baseline's run: the tuner is made, the loop prepared."""
    task = make_task()
    code = f"""
import json, os, sys
from autoresearch.loop import core

def first_run(loop, attempt):  # the loop's measure stage: the run would start here
    from autoresearch.agents.tuner import TunerAgent
    print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules],
                      "tuner": isinstance(loop.agent, TunerAgent)}}), flush=True)
    os._exit(0)

core.measure = first_run
import autoresearch.cli
autoresearch.cli.app(["run", {str(task)!r}, "--tag", "t", "--agent", "tuner", "--iterations", "3"])
"""
    assert _loaded(code) == {"heavy": [], "tuner": True}
