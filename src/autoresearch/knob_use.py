"""How a training script uses its UPPERCASE constants, read from its syntax tree (never run).

Moving a constant is worth a run only if the move can change the training. This module finds
the constants where it cannot, and the values a string constant may take:

- read only by evaluation or logging: every read of the name sits in a `print`/`log`/
  `evaluate...` call, in a function named so, or in an assignment to a name that says so
  (`eval_batch = min(EVAL_BATCH_SIZE, 16)`);
- capped by another constant: `min(DEPTH, CPU_DEPTH)` with DEPTH = 8 and CPU_DEPTH = 4 uses
  4, so moving DEPTH anywhere above 4 changes nothing (`max` alike, from below);
- a seed: moving it changes the noise, not the method;
- a string's values: those the code compares it with (`ARCH == "cnn"`, `ACT in ("relu",
  "gelu")`, `match OPT: case "sgd"`, `{"relu": ...}[ACT]`), or, for a pattern over an
  alphabet the code asserts (`assert all(c in "SL" for c in pattern)`), the same pattern
  with its leading run shorter or longer (`SSSL` -> `L`, `SL`, `SSL`, `SSSSL`).

`analyse` returns both; constants.find_constants applies them to unannotated constants only:
an annotation is the author's word and wins.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

_EVAL_FUNCTION = re.compile(r"^(print|pprint|log|logging|info|debug|warning|warn|write|add_scalar|"
                            r"eval\w*|evaluate\w*|\w*_eval\w*|\w*_evaluate\w*|log_\w*|\w*_log)$", re.IGNORECASE)
_EVAL_VARIABLE = re.compile(r"(^|_)(eval|evaluation|log|logging|val|valid|validation|print|report)(_|$)", re.IGNORECASE)
_SEED_NAME = re.compile(r"(^|_)SEED(_|$)")
_MAX_PATTERN_RUN = 4


@dataclass(frozen=True)
class Usage:
    skip: dict[str, str] = field(default_factory=dict)  # constant name -> why the tuner leaves it out
    choices: dict[str, tuple] = field(default_factory=dict)  # string knob name -> its values, current first


def analyse(tree: ast.Module, values: Mapping[str, Sequence]) -> Usage:
    """`values`: each module-level constant's knob values (one, or one per tuple element)."""
    parents = _parents(tree)
    skip: dict[str, str] = {}
    for name in values:
        if _SEED_NAME.search(name):
            skip[name] = "a seed: moving it changes the noise, not the method"
    reads = _reads(tree, set(values))
    for name, nodes in reads.items():
        if name not in skip and nodes and all(_in_eval_or_logging(n, parents) for n in nodes):
            skip[name] = f"only evaluation or logging reads it (line {nodes[0].lineno})"
    numeric = {n: v[0] for n, v in values.items() if len(v) == 1 and _is_number(v[0])}
    for name, reason in _capped(tree, numeric).items():
        skip.setdefault(name, reason)
    strings = {n: v[0] for n, v in values.items() if len(v) == 1 and isinstance(v[0], str)}
    return Usage(skip, _string_choices(tree, strings))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _reads(tree: ast.AST, names: set[str]) -> dict[str, list[ast.Name]]:
    out: dict[str, list[ast.Name]] = {n: [] for n in names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
            out[node.id].append(node)
    for nodes in out.values():
        nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return out


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
        targets = [node.target]
    else:
        return []
    names = []
    for t in targets:
        for sub in ast.walk(t):
            if isinstance(sub, ast.Name):
                names.append(sub.id)
            elif isinstance(sub, ast.Attribute):
                names.append(sub.attr)
    return names


def _in_eval_or_logging(node: ast.AST, parents: Mapping[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Call) and _EVAL_FUNCTION.match(_callee(node)):
            return True
        if isinstance(node, ast.keyword) and node.arg and _EVAL_VARIABLE.search(node.arg):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _EVAL_FUNCTION.match(node.name):
            return True
        targets = _targets(node)
        if targets:
            return all(_EVAL_VARIABLE.search(t) for t in targets)
    return False


def _capped(tree: ast.AST, numeric: Mapping[str, float]) -> dict[str, str]:
    """Constants that a `min()` holds from above (or a `max()` from below) at their current values."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max")):
            continue
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            continue
        args = [a.id for a in node.args if isinstance(a, ast.Name) and a.id in numeric]
        if len(args) < 2:
            continue
        pick = min if node.func.id == "min" else max
        winner = pick(args, key=lambda n: numeric[n])
        shown = f"{node.func.id}({', '.join(args)})"
        for name in args:
            if numeric[name] != numeric[winner]:
                side = "above" if node.func.id == "min" else "below"
                out.setdefault(name, f"capped: {shown} takes {winner} = {numeric[winner]:g} (line {node.lineno}), "
                                     f"so moving {name} {side} it changes nothing")
    return out


def _string_choices(tree: ast.AST, strings: Mapping[str, str]) -> dict[str, tuple]:
    found: dict[str, list[str]] = {n: [] for n in strings}
    dicts = {name: _str_keys(node.value) for node in getattr(tree, "body", [])
             for name in _targets(node) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [o.id for o in operands if isinstance(o, ast.Name) and o.id in found]
            for name in names:
                for o in operands:
                    found[name].extend(_str_values(o))
        elif isinstance(node, ast.Match) and isinstance(node.subject, ast.Name) and node.subject.id in found:
            for case in node.cases:
                for sub in ast.walk(case.pattern):
                    if isinstance(sub, ast.MatchValue):
                        found[node.subject.id].extend(_str_values(sub.value))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and node.slice.id in found:
            keys = _str_keys(node.value) if isinstance(node.value, ast.Dict) else dicts.get(_name(node.value), [])
            found[node.slice.id].extend(keys)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in found):
            found[node.args[0].id].extend(dicts.get(_name(node.func.value), []))
    alphabets = _asserted_alphabets(tree)
    out = {}
    for name, current in strings.items():
        values = [v for v in found[name] if v != current]
        if not values:
            values = _pattern_variants(current, alphabets)
        if values:
            out[name] = tuple(dict.fromkeys([current, *values]))
    return out


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else ""


def _str_values(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _str_keys(node: ast.Dict) -> list[str]:
    return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def _asserted_alphabets(tree: ast.AST) -> list[str]:
    """`"SL"` from `all(c in "SL" for c in pattern)`, wherever the code checks characters so."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.GeneratorExp | ast.ListComp) and isinstance(node.elt, ast.Compare):
            cmp = node.elt
            if (len(cmp.ops) == 1 and isinstance(cmp.ops[0], ast.In) and isinstance(cmp.comparators[0], ast.Constant)
                    and isinstance(cmp.comparators[0].value, str) and len(set(cmp.comparators[0].value)) >= 2):
                out.append(cmp.comparators[0].value)
    return out


def _pattern_variants(current: str, alphabets: Sequence[str]) -> list[str]:
    """`SSSL` over the alphabet `SL`: the same pattern with a shorter or longer leading run."""
    for alphabet in alphabets:
        chars = set(alphabet)
        if not current or not set(current) <= chars or len(chars) != 2:
            continue
        last = current[-1]
        lead = (chars - {last}).pop()
        if current != lead * (len(current) - 1) + last:
            continue
        return [lead * k + last for k in range(0, max(_MAX_PATTERN_RUN, len(current)) + 1)]
    return []
