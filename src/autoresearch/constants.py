"""UPPERCASE module-level constants of a training script, their search spaces, and rewriting.

A constant is `NAME = <literal>` at module level (int, float, bool or str, a leading
minus allowed). Its search space comes from a trailing comment on the same line:

    LR = 3e-3            # search: log(1e-4, 1e-1)
    DROPOUT = 0.1        # search: float(0.0, 0.5)
    EPOCHS = 20          # search: int(5, 50)
    WIDTH = 128          # search: int_log(16, 1024)
    ARCH = "mlp"         # search: ["mlp", "cnn"]

The grammar is strict on purpose: a comment whose text starts with `search:` must be one
of these forms, so a typo is an error rather than a silently unsearched knob. Other
comments are ignored.

`rewrite` swaps only the literal's characters, so the diff of a tuner's change is one
token: formatting, spacing and comments stay as the author wrote them.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

from autoresearch.errors import ConfigError

Literal = Union[int, float, bool, str]

NAME_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*$")
ANNOTATION_PREFIX = "search:"
GRAMMAR = "log(a, b) | float(a, b) | int(a, b) | int_log(a, b) | [choices]"
_RANGE_FORM = re.compile(r"^(log|float|int|int_log)\s*\((.*)\)$", re.DOTALL)
SIGNIFICANT_DIGITS = 3
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


@dataclass(frozen=True)
class Space:
    """Where a constant may move. `low`/`high` for numeric kinds, `choices` for "choice"."""

    kind: str  # "log" | "float" | "int" | "int_log" | "choice"
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.kind != "choice"

    @property
    def is_log(self) -> bool:
        return self.kind in ("log", "int_log")

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "int_log")

    def describe(self) -> str:
        if self.kind == "choice":
            return "[" + ", ".join(repr(c) for c in self.choices) + "]"
        return f"{self.kind}({self.low}, {self.high})"


@dataclass(frozen=True)
class Constant:
    """One `NAME = literal` line. Columns are character offsets of the literal on `line` (1-based)."""

    name: str
    value: Literal
    line: int
    col_start: int
    col_end: int
    space: Space | None
    annotated: bool = False  # the space came from a `# search:` comment, not a default


def find_constants(source: str, path: str | None = None) -> list[Constant]:
    """Every module-level UPPERCASE literal constant of `source`, in file order.

    A name assigned twice keeps only its last assignment (the one Python uses).
    Raises ConfigError for a malformed `# search:` annotation or unparsable source.
    """
    where = path or "<source>"
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ConfigError(where, None, f"cannot parse as Python: {e.msg} (line {e.lineno})") from e
    comments = _comments_by_line(source)
    lines = _source_lines(source)
    # `A = 1; B = 2  # search: ...` annotates B only: the comment belongs to the last statement.
    last_statement_on_line = {node.end_lineno: node for node in tree.body}
    found: dict[str, Constant] = {}
    for node in tree.body:
        name, value_node = _assignment(node)
        if name is None or not NAME_PATTERN.match(name):
            continue
        value = _literal_value(value_node)
        if value is None or value_node.lineno != value_node.end_lineno:
            continue  # not a plain literal, or spread over lines: nothing we can rewrite in place
        text = lines[value_node.lineno - 1]
        col_start = _char_offset(text, value_node.col_offset)
        col_end = _char_offset(text, value_node.end_col_offset)
        comment = comments.get(value_node.lineno) if last_statement_on_line.get(node.end_lineno) is node else None
        annotation = _annotation_text(comment)
        if annotation is not None:
            space = _parse_annotation(annotation, value, name, where)
        else:
            space = default_space(value)
        found.pop(name, None)  # re-insert so order follows the effective (last) assignment
        found[name] = Constant(name, value, value_node.lineno, col_start, col_end, space, annotation is not None)
    return sorted(found.values(), key=lambda c: c.line)


def searchable(constants: Iterable[Constant]) -> list[Constant]:
    """The constants a tuner should move.

    When the author annotated any constant, only the annotated ones: annotating is a
    statement of intent, and defaults would otherwise drag in SEED, N_CLASSES and the like.
    Without any annotation, every constant with a default space.
    """
    constants = [c for c in constants if c.space is not None and _has_alternative(c)]
    annotated = [c for c in constants if c.annotated]
    return annotated if annotated else constants


def default_space(value: Literal) -> Space | None:
    """The space of an unannotated constant: a decade either way for positive numbers."""
    if isinstance(value, bool):
        return Space("choice", choices=(True, False))
    if isinstance(value, int):
        return Space("int_log", max(1, value // 4), value * 4) if value > 0 else None
    if isinstance(value, float):
        return Space("log", value / 10, value * 10) if value > 0 and math.isfinite(value) else None
    return None  # strings: no way to guess the alternatives


def rewrite(source: str, new_values: Mapping[str, Literal], path: str | None = None) -> str:
    """`source` with the literals of the named constants replaced, everything else untouched."""
    by_name = {c.name: c for c in find_constants(source, path)}
    missing = [n for n in new_values if n not in by_name]
    if missing:
        raise KeyError(f"no UPPERCASE literal constant named {', '.join(missing)} in {path or 'the source'}")
    lines = _source_lines(source)
    # Right to left within a line, so earlier columns stay valid (`A = 1; B = 2`).
    edits = sorted(((by_name[n], v) for n, v in new_values.items()), key=lambda e: (e[0].line, -e[0].col_start))
    for const, value in edits:
        text = lines[const.line - 1]
        old_literal = text[const.col_start : const.col_end]
        lines[const.line - 1] = text[: const.col_start] + render(value, old_literal) + text[const.col_end :]
    return "".join(lines)


def render(value: Literal, old_literal: str = "") -> str:
    """Python source for `value`, in the style of the literal it replaces."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        if _is_float_literal(old_literal):
            return repr(float(value))  # keep a float constant a float: `2.0`, not `2`
        return str(value)
    if isinstance(value, float):
        return repr(round_value(value))
    if isinstance(value, str):
        return _quote(value, _quote_char(old_literal))
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a constant")


def round_value(value: Literal) -> Literal:
    """The value as `render` writes it: floats to 3 significant digits, the rest unchanged.

    The tuner records params after this rounding, so the ledger matches the file.
    """
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def _source_lines(source: str) -> list[str]:
    # Python's own line breaks only: str.splitlines also splits at form feeds and \u2028,
    # which would put ast's line numbers off by one.
    return _LINE.findall(source)


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None, None


def _literal_value(node: ast.expr) -> Literal | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value  # bool is an int subclass, so it is included
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    return None


def _char_offset(line: str, byte_offset: int) -> int:
    # ast columns count UTF-8 bytes; string slicing counts characters.
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))


def _comments_by_line(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string
    except (tokenize.TokenError, SyntaxError):
        pass  # ast.parse already accepted the source; a tokenizer quirk only loses comments
    return comments


def _annotation_text(comment: str | None) -> str | None:
    if comment is None:
        return None
    text = comment.lstrip("#").strip()
    if not text.startswith(ANNOTATION_PREFIX):
        return None
    return text[len(ANNOTATION_PREFIX) :].strip()


def _parse_annotation(text: str, value: Literal, name: str, where: str) -> Space:
    def malformed(detail: str = "") -> ConfigError:
        problem = f"search annotation '{text}' is not one of {GRAMMAR}"
        return ConfigError(where, name, problem + (f" ({detail})" if detail else ""))

    if text.startswith("["):
        try:
            choices = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise malformed() from e
        if not isinstance(choices, list) or not choices:
            raise malformed("the list of choices is empty")
        if not all(isinstance(c, (int, float, bool, str)) for c in choices):
            raise malformed("choices must be numbers, strings or booleans")
        return Space("choice", choices=tuple(dict.fromkeys(choices)))
    match = _RANGE_FORM.match(text)
    if not match:
        raise malformed()
    if isinstance(value, (bool, str)):
        raise malformed(f"{name} is {type(value).__name__}; a range needs a number, use [choices]")
    kind, args = match.group(1), match.group(2)
    try:
        bounds = ast.literal_eval(f"({args},)")
    except (ValueError, SyntaxError) as e:
        raise malformed() from e
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
        raise malformed("expected two numbers")
    low, high = bounds
    if not low < high:
        raise malformed(f"low {low} must be below high {high}")
    if kind in ("int", "int_log") and not all(float(b).is_integer() for b in bounds):
        raise malformed(f"{kind} bounds must be whole numbers")
    if kind in ("log", "int_log") and low <= 0:
        raise malformed("log bounds must be positive")
    # An int constant with integral float-style bounds (`BATCH = 32  # search: log(8, 256)`)
    # is meant as an int: writing 45.3 would break `range(BATCH)`.
    if isinstance(value, int) and not isinstance(value, bool) and all(float(b).is_integer() for b in bounds):
        kind = {"log": "int_log", "float": "int"}.get(kind, kind)
    if kind in ("int", "int_log"):
        return Space(kind, int(low), int(high))
    return Space(kind, float(low), float(high))


def _has_alternative(constant: Constant) -> bool:
    space = constant.space
    if space is None:
        return False
    if space.kind == "choice":
        return any(c != constant.value for c in space.choices)
    return True


def _is_float_literal(literal: str) -> bool:
    try:
        return isinstance(ast.literal_eval(literal), float)
    except (ValueError, SyntaxError):
        return False


def _quote_char(old_literal: str) -> str:
    stripped = old_literal.lstrip("rRuUbB")
    return '"' if stripped.startswith('"') else "'"


def _quote(value: str, quote: str) -> str:
    # unicode_escape covers backslashes, newlines and non-ASCII; then only our quote needs escaping.
    body = value.encode("unicode_escape").decode("ascii").replace(quote, "\\" + quote)
    return quote + body + quote


def values_of(constants: Sequence[Constant]) -> dict[str, Literal]:
    return {c.name: c.value for c in constants}
