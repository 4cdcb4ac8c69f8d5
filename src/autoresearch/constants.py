"""UPPERCASE module-level constants of a training script, their search spaces, and rewriting.

A constant is `NAME = <value>` at module level, where the value is

- a literal: int, float, bool or str, a leading minus allowed;
- a constant expression of numbers: `2**13`, `4 * 1024`, `1 << 10`, `3e-4 / 2`;
- a tuple or list of numbers, `ADAM_BETAS = (0.8, 0.95)`: each element is a knob of its own,
  named `ADAM_BETAS[0]`, `ADAM_BETAS[1]`.

Its search space comes from a trailing comment on the same line:

    LR = 3e-3            # search: log(1e-4, 1e-1)
    DROPOUT = 0.1        # search: float(0.0, 0.5)
    EPOCHS = 20          # search: int(5, 50)
    WIDTH = 128          # search: int_log(16, 1024)
    BATCH = 2**13        # search: pow2(2**10, 2**16)   (powers of two only)
    ARCH = "mlp"         # search: ["mlp", "cnn"]

(on a tuple, the range is every element's). The grammar is strict on purpose: a comment whose
text starts with `search:` must be one of these forms, so a typo is an error rather than a
silently unsearched knob. Other comments are ignored.

Without a comment the space is inferred from the name and the value (`default_space`) and from
how the module uses the constant (`knob_use.py`): ratios and fractions stay in [0, 1], sizes
that are powers of two stay on powers of two, a string gets the values the code compares it
with, and a constant only evaluation or logging reads, or one a `min()`/`max()` overrides,
is left out (`Constant.skip` says why).

`rewrite` swaps only the value's characters, in the author's style (`2**13` becomes `2**14`,
not `16384`), so the diff of a tuner's change is one token: formatting, spacing and comments
stay as the author wrote them.

`Constant` is the knob type other knob sources (config files) share: a name, a current value,
where it is written, its `Space`, and whether the author annotated it.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import re
import tokenize
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Union

from autoresearch.errors import ConfigError

Literal = Union[int, float, bool, str]

NAME_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*$")
ANNOTATION_PREFIX = "search:"
GRAMMAR = "log(a, b) | float(a, b) | int(a, b) | int_log(a, b) | [choices] | pow2(a, b)"
_RANGE_FORM = re.compile(r"^(log|float|int|int_log|pow2)\s*\((.*)\)$", re.DOTALL)
_MAX_MAGNITUDE = 2.0**64  # a constant expression larger than this is not a knob (and not evaluated further)
SIGNIFICANT_DIGITS = 3
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


@dataclass(frozen=True)
class Space:
    """Where a constant may move. `low`/`high` for numeric kinds, `choices` for "choice"."""

    kind: str  # "log" | "float" | "int" | "int_log" | "pow2" | "choice"
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.kind != "choice"

    @property
    def is_log(self) -> bool:
        return self.kind in ("log", "int_log", "pow2")

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "int_log", "pow2")

    def snap(self, value):
        """`value` moved onto the space's grid: ints rounded, powers of two to the nearest one."""
        if self.kind == "pow2":
            value = max(float(value), 1.0)
            return 2 ** int(round(math.log2(value)))
        if self.is_int:
            return int(round(value))
        return value

    def describe(self) -> str:
        if self.kind == "choice":
            return "[" + ", ".join(repr(c) for c in self.choices) + "]"
        return f"{self.kind}({self.low}, {self.high})"


@dataclass(frozen=True)
class Constant:
    """One knob: `NAME = value`, or one element `NAME[i]` of a tuple or list of numbers.

    `line` is 1-based; `col_start`/`col_end` are character offsets of the value's text on that
    line, which `rewrite` replaces. `space` is None when no move is known to be safe; `skip`,
    when not empty, says why the tuner leaves the constant out although it has a space.
    """

    name: str
    value: Literal
    line: int
    col_start: int
    col_end: int
    space: Space | None
    annotated: bool = False  # the space came from a `# search:` comment, not a default
    skip: str = ""  # e.g. "only evaluation or logging reads it"; never set on an annotated constant

    @property
    def base_name(self) -> str:
        """The name in the source: `ADAM_BETAS` for the knob `ADAM_BETAS[1]`."""
        return self.name.split("[", 1)[0]


def find_constants(source: str, path: str | None = None) -> list[Constant]:
    """Every module-level UPPERCASE knob of `source`, in file order.

    A name assigned twice keeps only its last assignment (the one Python uses). A tuple or list
    of numbers gives one knob per element. Raises ConfigError for a malformed `# search:`
    annotation or unparsable source.
    """
    return list(_find_constants(source, path))  # a list of its own: the cached tuple stays as it was


# One iteration reads the same file's knobs four times or more (the tuner, its rewrite, the
# seed-only check, the analysis), each a parse and several walks of its syntax tree: once is
# enough. Constants are frozen and their values immutable literals, so sharing them is safe.
@functools.lru_cache(maxsize=32)
def _find_constants(source: str, path: str | None) -> tuple[Constant, ...]:
    from autoresearch import knob_use

    where = path or "<source>"
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ConfigError(where, None, f"cannot parse as Python: {e.msg} (line {e.lineno})") from e
    comments = _comments_by_line(source)
    lines = _source_lines(source)
    # `A = 1; B = 2  # search: ...` annotates B only: the comment belongs to the last statement.
    last_statement_on_line = {node.end_lineno: node for node in tree.body}
    found: dict[str, list[Constant]] = {}
    for node in tree.body:
        name, value_node = _assignment(node)
        if name is None or not NAME_PATTERN.match(name):
            continue
        parts = _knob_parts(name, value_node)
        if not parts:
            continue
        comment = comments.get(node.end_lineno) if last_statement_on_line.get(node.end_lineno) is node else None
        annotation = _annotation_text(comment)
        knobs = []
        for knob_name, value, part in parts:
            if part.lineno != part.end_lineno:
                continue  # spread over lines: nothing we can rewrite in place
            text = lines[part.lineno - 1]
            col_start = _char_offset(text, part.col_offset)
            col_end = _char_offset(text, part.end_col_offset)
            if annotation is not None:
                space = _parse_annotation(annotation, value, knob_name, where)
            else:
                space = default_space(value, name, text[col_start:col_end])
            knobs.append(Constant(knob_name, value, part.lineno, col_start, col_end, space, annotation is not None))
        found.pop(name, None)  # re-insert so order follows the effective (last) assignment
        if knobs:
            found[name] = knobs
    usage = knob_use.analyse(tree, {name: [k.value for k in knobs] for name, knobs in found.items()})
    out = []
    for knobs in found.values():
        for k in knobs:
            if k.annotated:
                out.append(k)
                continue
            if k.space is None and isinstance(k.value, str) and usage.choices.get(k.name):
                k = replace(k, space=Space("choice", choices=usage.choices[k.name]))
            skip = usage.skip.get(k.base_name, "")
            out.append(replace(k, skip=skip) if skip else k)
    return tuple(sorted(out, key=lambda c: (c.line, c.col_start)))


def searchable(constants: Iterable[Constant]) -> list[Constant]:
    """The constants a tuner should move.

    When the author annotated any constant, only the annotated ones: annotating is a
    statement of intent, and defaults would otherwise drag in SEED, N_CLASSES and the like.
    Without any annotation, every constant with a default space that is not left out
    (`Constant.skip`: read only by evaluation or logging, capped by another, a seed).
    """
    constants = [c for c in constants if c.space is not None and _has_alternative(c)]
    annotated = [c for c in constants if c.annotated]
    return annotated if annotated else [c for c in constants if not c.skip]


# Names that say what a safe range is (unannotated constants only).
_FRACTION_NAME = re.compile(r"(^|_)(RATIO|FRAC|FRACTION|DROPOUT|PROB|PROBABILITY|SMOOTHING)(_|$)")
_BETA_NAME = re.compile(r"(^|_)(BETA\d?|BETAS|MOMENTUM|EMA|EMA_DECAY)(_|$)")
_SIZE_NAME = re.compile(r"BATCH|WIDTH|DIM|HIDDEN|CHANNEL|EMBD|EMBED|SEQ_LEN|CONTEXT|TOKENS|SIZE|HEADS|FILTERS|UNITS")
_POWER_TEXT = re.compile(r"^\s*\(?\s*(2\s*\*\*\s*\d+|1\s*<<\s*\d+)\s*\)?\s*$")


def default_space(value: Literal, name: str = "", text: str = "") -> Space | None:
    """The space of an unannotated constant, from its value, its name and how it is written.

    - a positive number: a decade either way (floats, log scale) or a factor 4 (ints);
    - a ratio or fraction (`WARMDOWN_RATIO`, `DROPOUT`, `FINAL_LR_FRAC`) in [0, 1]: float(0, 1);
      a beta or momentum in [0.5, 1): float(0.5, 0.999);
    - an int written as a power of two (`2**13`), or a size (`*BATCH*`, `*DIM*`, `WIDTH`, ...)
      that is one: powers of two only, a factor 4 either way;
    - a bool: both values. Strings and others: None (no way to guess the alternatives here).
    """
    name = name.upper()
    if isinstance(value, bool):
        return Space("choice", choices=(True, False))
    if isinstance(value, int):
        if value <= 0:
            return None
        power_of_two = value & (value - 1) == 0
        if power_of_two and value >= 2 and (_POWER_TEXT.match(text) or _SIZE_NAME.search(name)):
            return Space("pow2", max(1, value // 4), value * 4)
        return Space("int_log", max(1, value // 4), value * 4)
    if isinstance(value, float) and math.isfinite(value):
        if _FRACTION_NAME.search(name) and 0.0 <= value <= 1.0:
            return Space("float", 0.0, 1.0)
        if _BETA_NAME.search(name) and 0.5 <= value < 1.0:
            return Space("float", 0.5, 0.999)
        return Space("log", value / 10, value * 10) if value > 0 else None
    return None  # strings: knob_use may find the values the code compares them with


def rewrite(source: str, new_values: Mapping[str, Literal], path: str | None = None) -> str:
    """`source` with the literals of the named constants replaced, everything else untouched."""
    by_name = {c.name: c for c in find_constants(source, path)}
    new_values = _element_values(new_values, by_name)
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
    """Python source for `value`, in the style of the text it replaces (`2**13` -> `2**14`)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        styled = _in_style(value, old_literal)
        if styled is not None:
            return styled
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


def _element_values(new_values: Mapping[str, Any], by_name: Mapping[str, Constant]) -> dict[str, Any]:
    """`{"BETAS": (0.9, 0.99)}` as `{"BETAS[0]": 0.9, "BETAS[1]": 0.99}` where BETAS is a tuple knob."""
    out: dict[str, Any] = {}
    for name, value in new_values.items():
        if name not in by_name and isinstance(value, (tuple, list)):
            elements = [f"{name}[{i}]" for i in range(len(value))]
            if all(e in by_name for e in elements) and f"{name}[{len(value)}]" not in by_name:
                out.update(zip(elements, value))
                continue
        out[name] = value
    return out


def _knob_parts(name: str, node: ast.expr) -> list[tuple[str, Literal, ast.expr]]:
    """(knob name, value, node of its text) for an assignment's value: one, one per element, or none."""
    value = _literal_value(node)
    if value is None:
        value = numeric_value(node)
    if value is not None:
        return [(name, value, node)]
    if isinstance(node, (ast.Tuple, ast.List)) and 0 < len(node.elts) <= 16:
        values = [numeric_value(e) for e in node.elts]
        if all(v is not None for v in values):
            return [(f"{name}[{i}]", v, e) for i, (v, e) in enumerate(zip(values, node.elts))]
    return []


_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
              ast.Pow: lambda a, b: a ** b, ast.LShift: lambda a, b: a << b}


def numeric_value(node: ast.expr) -> int | float | None:
    """The value of a constant expression of numbers (`2**13`, `4 * 1024`, `-3e-4`), or None.

    The source is untrusted: exponents and shifts are bounded, and so is every intermediate
    value, so `9**9**9**9` is refused instead of evaluated."""
    if isinstance(node, ast.Constant):
        v = node.value
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= _MAX_MAGNITUDE else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = numeric_value(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        a, b = numeric_value(node.left), numeric_value(node.right)
        if a is None or b is None:
            return None
        if isinstance(node.op, (ast.Pow, ast.LShift)):
            if abs(b) > 64 or isinstance(node.op, ast.LShift) and (not all(isinstance(x, int) for x in (a, b)) or b < 0):
                return None
        try:
            v = _OPERATORS[type(node.op)](a, b)
        except (ArithmeticError, ValueError, TypeError):
            return None
        if isinstance(v, complex) or abs(v) > _MAX_MAGNITUDE or isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return None


_POWER_STYLE = re.compile(r"^(\s*\(?\s*(\d+)\s*(\*\*|<<)\s*)(\d+)(\s*\)?\s*)$")
_PRODUCT_STYLE = re.compile(r"^(\s*)(\d+)(\s*\*\s*)(\d+)(\s*)$")


def _in_style(value: int, old: str) -> str | None:
    """`value` written the way `old` was (`2**13` -> `2**14`, `4 * 1024` -> `8 * 1024`), when it fits."""
    m = _POWER_STYLE.match(old)
    if m:
        base = int(m.group(2)) if m.group(3) == "**" else 2
        if m.group(3) == "<<" and m.group(2) != "1" or base < 2 or value < 1:
            return None
        k = round(math.log(value, base))
        return f"{m.group(1)}{k}{m.group(5)}" if base ** k == value else None
    m = _PRODUCT_STYLE.match(old)
    if m:
        left, right = int(m.group(2)), int(m.group(4))
        if right >= left and right and value % right == 0:  # the larger factor is the unit: `4 * 1024`
            return f"{m.group(1)}{value // right}{m.group(3)}{m.group(4)}{m.group(5)}"
        if left > right and left and value % left == 0:
            return f"{m.group(1)}{m.group(2)}{m.group(3)}{value // left}{m.group(5)}"
    return None


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
        # Bounds may be constant expressions too: `pow2(2**10, 2**16)`, `int(4 * 1024, 64 * 1024)`.
        nodes = ast.parse(f"({args},)", mode="eval").body.elts
    except (SyntaxError, ValueError) as e:
        raise malformed() from e
    bounds = [numeric_value(n) for n in nodes]
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds):
        raise malformed("expected two numbers")
    low, high = bounds
    if not low < high:
        raise malformed(f"low {low} must be below high {high}")
    if kind in ("int", "int_log", "pow2") and not all(float(b).is_integer() for b in bounds):
        raise malformed(f"{kind} bounds must be whole numbers")
    if kind in ("log", "int_log", "pow2") and low <= 0:
        raise malformed("log bounds must be positive")
    if kind == "pow2":
        if not all(int(b) & (int(b) - 1) == 0 for b in bounds):
            raise malformed("pow2 bounds must be powers of two")
        return Space("pow2", int(low), int(high))
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

