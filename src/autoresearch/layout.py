"""The karpathy/autoresearch layout, recognised: a task config inferred from the repository.

A directory with program.md, train.py and prepare.py is such a repository. Everything the
config needs can be read from it without running anything:

    run          `uv run train.py` for a uv project when uv is installed, else `python train.py`
                 (`python` is the repository's .venv when it has one: interpreter.py)
    editable     train.py
    readonly     prepare.py, program.md, and pyproject.toml / uv.lock (the agent adds no dependency)
    time_budget  TIME_BUDGET of prepare.py when train.py imports it (budget.py), else 300
    metrics      the keys train.py prints after its `print("---")`, or those of a run.log beside it:
                 val_bpb (minimize) when present, else the first validation metric by name;
                 memory_key peak_vram_mb, or the footer's peak_*_mb

`infer` returns the config as TOML tables plus a note per value saying where it came from;
`Inferred.toml()` writes it as a commented autoresearch.toml (`autoresearch init`), and the
zero-config path validates the same tables (config.load_task), so both give one config.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch import budget, interpreter
from autoresearch.errors import ConfigError
from autoresearch.footer import parse_footer

MARKERS = ("program.md", "train.py", "prepare.py")
DEFAULT_BUDGET = 300  # karpathy/autoresearch's five minutes, when nothing in the repository says otherwise
_KEY = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*:")
_MINIMIZE = re.compile(r"bpb|loss|perplexity|ppl|error|err|mse|mae|rmse|nll|wer|cer", re.IGNORECASE)
_MAXIMIZE = re.compile(r"acc|f1|auc|bleu|rouge|score|iou|dice|r2|precision|recall", re.IGNORECASE)
_NOT_A_METRIC = re.compile(r"seconds|time|memory|mem|_mb$|_gb$|steps|params|mfu|tokens|depth|device|lr$|epoch",
                           re.IGNORECASE)
_VALIDATION = re.compile(r"^(val|valid|validation|eval|test)[_\-]", re.IGNORECASE)


def is_karpathy_layout(directory: Path) -> bool:
    directory = Path(directory)
    return all((directory / name).is_file() for name in MARKERS)


@dataclass(frozen=True)
class Inferred:
    """A config read from the repository: `raw` as TOML tables, `notes` per dotted key."""

    directory: Path
    raw: dict
    notes: dict = field(default_factory=dict)
    footer_keys: tuple[str, ...] = ()

    def summary(self) -> list[str]:
        """What `autoresearch run` prints before it starts, one line per setting."""
        t, m = self.raw["task"], self.raw["metrics"]
        rows = [("run", t["run"], "task.run"), ("editable", ", ".join(t["editable"]), "task.editable"),
                ("readonly", ", ".join(t["readonly"]), "task.readonly"),
                ("budget", f"{t['time_budget']:g} s", "task.time_budget"),
                ("metric", f"{m['primary']}, {m['direction']}", "metrics.primary"),
                ("memory", m["memory_key"], "metrics.memory_key")]
        return [f"  {label:<9} {value}" + (f"   ({self.notes[key]})" if self.notes.get(key) else "")
                for label, value, key in rows]

    def toml(self) -> str:
        """The config as a commented autoresearch.toml; `tomllib.loads` of it gives `raw`."""
        t, m = self.raw["task"], self.raw["metrics"]

        def line(key: str, value, note_key: str | None = None, width: int = 34) -> str:
            text = f"{key} = {_toml(value)}"
            note = self.notes.get(note_key or "")
            return f"{text:<{width}} # {note}" if note else text

        keys = ", ".join(self.footer_keys) or "none found; run the baseline once and look at its last lines"
        recognised = ("the karpathy/autoresearch layout (program.md, train.py, prepare.py)"
                      if is_karpathy_layout(self.directory) else "a train.py with a `---` footer")
        out = [
            f"# autoresearch task config for {self.directory.name}, written by `autoresearch init`.",
            f"# Recognised: {recognised}.",
            "# Without this file `autoresearch run` infers the same and keeps it in .autoresearch/<tag>/.",
            "# Paths are relative to this directory; commands run with it as the working directory.",
            "",
            "[task]",
            "# The command of one experiment. `python` is the repository's .venv when it has one,",
            "# else the interpreter autoresearch runs under; `uv run` uses the uv project's environment.",
            line("run", t["run"], "task.run"),
            "# The files the agent may change; a change to any other file fails the experiment.",
            line("editable", t["editable"], "task.editable"),
            "# Files that must stay byte-identical: data, tokenizer, evaluation, the dependencies.",
            line("readonly", t["readonly"], "task.readonly"),
            "# Seconds of training per run (given to the run as AUTORESEARCH_TIME_BUDGET).",
            line("time_budget", t["time_budget"], "task.time_budget"),
            "# Hard wall-clock limit of one run. Unset: the baseline may take 5 x budget + 900 s, later runs",
            "# 2 x the baseline's wall time + 60 s (start-up and evaluation sit outside the budget here).",
            f"# timeout = {budget.default_timeout(t['time_budget']):g}",
            "",
            "[metrics]",
            f"# Footer keys train.py prints after its `---` line: {keys}.",
            line("primary", m["primary"], "metrics.primary"),
            line("direction", m["direction"], "metrics.direction"),
            "# Footer key with the run's peak memory in MB, shown as memory_gb in results.tsv.",
            line("memory_key", m["memory_key"], "metrics.memory_key"),
            "",
            "[agent]",
            "# tuner (offline, moves train.py's UPPERCASE constants) | claude | codex | gemini | aider | openai | command",
            'kind = "tuner"',
            "",
        ]
        return "\n".join(out)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def infer(directory: Path, *, layout_required: bool = True) -> Inferred | None:
    """The config of a karpathy-layout repository, or None when `directory` is not one.

    `layout_required` False (`autoresearch init`): a train.py is enough; prepare.py and
    program.md are read-only where they exist. Raises ConfigError (naming train.py) when no
    metric can be read from it."""
    directory = Path(directory).resolve()
    if not (is_karpathy_layout(directory) if layout_required else (directory / "train.py").is_file()):
        return None
    notes: dict[str, str] = {}
    script = "train.py"
    readonly = [n for n in ("prepare.py", "program.md", "pyproject.toml", "uv.lock") if (directory / n).is_file()]
    notes["task.readonly"] = "the harness, the instructions and the dependencies"

    if interpreter.is_uv_project(directory) and interpreter.find_uv():
        run = f"uv run {script}"
        notes["task.run"] = "a uv project: its own environment, through uv"
    else:
        run = f"python {script}"
        python = interpreter.detect(directory)
        notes["task.run"] = f"python = {python.describe()}"
        if interpreter.is_uv_project(directory):
            notes["task.run"] += "; a uv project, but uv is not installed (pip install uv)"

    harness = budget.harness_budget(directory, [script], readonly)
    if harness is not None:
        seconds = harness.seconds
        notes["task.time_budget"] = harness.describe()
    else:
        seconds = DEFAULT_BUDGET
        notes["task.time_budget"] = f"no TIME_BUDGET imported from prepare.py; karpathy/autoresearch's {DEFAULT_BUDGET} s"

    keys = footer_keys((directory / script).read_text(encoding="utf-8", errors="replace"))
    log = directory / "run.log"
    if log.is_file():
        keys = list(dict.fromkeys([*keys, *parse_footer(log.read_text(encoding="utf-8", errors="replace"))]))
    primary, direction, why = choose_metric(keys)
    if primary is None:
        raise ConfigError(directory / script, None,
                          "no footer metric found (a `print(\"---\")` followed by `print(f\"val_bpb: {...}\")` lines); "
                          "print one, or write autoresearch.toml with [metrics] primary and direction")
    notes["metrics.primary"] = why
    memory = next((k for k in ("peak_vram_mb", "peak_memory_mb") if k in keys), None)
    memory = memory or next((k for k in keys if re.fullmatch(r"peak_\w*_mb", k)), None)
    notes["metrics.memory_key"] = "printed by train.py" if memory else "not printed by train.py; the run's measured peak instead"
    raw = {
        "task": {"run": run, "editable": [script], "readonly": readonly, "time_budget": _number(seconds)},
        "metrics": {"primary": primary, "direction": direction, "memory_key": memory or "peak_vram_mb"},
    }
    return Inferred(directory, raw, notes, tuple(keys))


def _number(seconds: float):
    return int(seconds) if float(seconds).is_integer() else seconds


def footer_keys(source: str) -> list[str]:
    """The keys a script prints after its last `print("---")`, read from its source, in order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id == "print" and n.args), key=lambda n: (n.lineno, n.col_offset))
    keys: list[str] | None = None
    for call in calls:
        text = _leading_text(call.args[0])
        if text is None:
            continue
        if text.strip() == "---":
            keys = []
            continue
        m = _KEY.match(text)
        if keys is not None and m:
            keys.append(m.group(1))
    return list(dict.fromkeys(keys or []))


def _leading_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def choose_metric(keys) -> tuple[str | None, str, str]:
    """(primary, direction, why) from footer keys by convention; (None, "", "") when none fits."""
    keys = list(keys)
    if "val_bpb" in keys:
        return "val_bpb", "minimize", "the footer's val_bpb: bits per byte on validation data, lower is better"
    metrics = [k for k in keys if not _NOT_A_METRIC.search(k) and (_MINIMIZE.search(k) or _MAXIMIZE.search(k))]
    metrics.sort(key=lambda k: 0 if _VALIDATION.match(k) else 1)
    for k in metrics:
        direction = "minimize" if _MINIMIZE.search(k) else "maximize"
        return k, direction, f"the footer's {k}; by its name, {direction} it"
    return None, "", ""
