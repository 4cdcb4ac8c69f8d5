"""Knobs in YAML, JSON and TOML config files: keys by dotted path, their search spaces, rewriting.

A knob is a scalar (number, bool, string) under nested mappings, named by its dotted path:

    optimizer:
      lr: 3.0e-3          # search: log(1e-4, 1e-1)
      name: adam          # search: ["adam", "sgd"]
    model: {width: 64}    # no annotation: a default space, as for Python constants

The `# search:` grammar is the one of Python constants (constants.py). JSON has no comments,
so its spaces (and any others) can come from `[search]` in autoresearch.toml:

    [search]
    "optimizer.lr" = "log(1e-4, 1e-1)"
    "configs/m3.json:model.width" = "int(16, 256)"   # file-qualified when several files share a key

Knobs are the same `Constant` records the tuner reads from Python files, so the tuner, its
history and the analysis treat both alike.

Rewriting swaps only the characters of the changed scalar, checked by parsing the result
again; where that cannot be done in place (a multi-line scalar) the whole document goes
through ruamel.yaml's round trip instead, which keeps comments and key order. TOML goes
through tomlkit, which keeps every comment and all formatting by itself. Floats are written
so that YAML 1.1 readers (PyYAML's `safe_load`) read them as floats too: `1.0e-05`, never `1e-05`.
"""

from __future__ import annotations

import io
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from autoresearch.constants import Constant, Space, _parse_annotation, default_space, round_value
from autoresearch.errors import ConfigError

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
SEARCH_TABLE = "search"
_ANNOTATION = re.compile(r"(?:^|\s)#\s*search:(?P<text>.*)$")
_PLAIN_SAFE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
# Words YAML 1.1 (PyYAML) reads as booleans or null: a string equal to one must be quoted.
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "~"}
_DOUBLE = re.compile(r'"(?:[^"\\]|\\.)*"')
_SINGLE = re.compile(r"'(?:[^']|'')*'")


def format_of(path: str | Path) -> str | None:
    """"yaml", "json" or "toml" for a config file name, else None."""
    return FORMATS.get(Path(str(path)).suffix.lower())


def load(text: str, path: str | Path) -> dict:
    """The document as plain Python data (dicts, lists, scalars); ConfigError when it does not parse."""
    fmt = format_of(path)
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "json":
            data = json.loads(text)
        else:
            data = _plain(_yaml().load(text))
    except Exception as e:  # each parser has its own error types; all mean the same to the user
        raise ConfigError(path, None, f"cannot parse as {fmt.upper() if fmt else 'a config file'}: "
                          f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"the top level is a {type(data).__name__}; knobs need a mapping of keys")
    return data


def flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    """Every scalar under nested mappings, by dotted path (lists and keys with dots are skipped)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or "." in key or ":" in key:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)) and not (isinstance(value, float) and not math.isfinite(value)):
            out[name] = value
    return out


def search_table(task_dir: str | Path) -> dict[str, str]:
    """`[search]` of the task's autoresearch.toml: knob -> annotation text."""
    path = Path(task_dir) / "autoresearch.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}  # no config, or a broken one: load_task reports that, not the tuner
    table = raw.get(SEARCH_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(path, SEARCH_TABLE, 'must be a table of "dotted.key" = "log(a, b)" entries')
    for key, text in table.items():
        if not isinstance(text, str):
            raise ConfigError(path, f"{SEARCH_TABLE}.{key}", 'must be a string such as "log(1e-4, 1e-1)" or \'["a", "b"]\'')
    return dict(table)


def find_keys(text: str, path: str, search: Mapping[str, str] | None = None) -> list[Constant]:
    """The knobs of one config file, in file order, with their spaces.

    `search` (from `[search]`) wins over a `# search:` comment; a key is looked up there both
    file-qualified (`path:key`) and bare.
    """
    data = load(text, path)
    lines, comments = _positions_and_comments(text, path)
    search = search or {}
    found = []
    for name, value in flatten(data).items():
        annotation = search.get(f"{path}:{name}", search.get(name))
        where = "autoresearch.toml [search]" if annotation is not None else path
        if annotation is None:
            annotation = comments.get(name)
        space = _parse_annotation(annotation.strip(), value, name, where) if annotation is not None else default_space(value)
        found.append(Constant(name, value, lines.get(name, 0), 0, 0, space, annotation is not None))
    return found  # flatten keeps the document's order


def unknown_search_keys(search: Mapping[str, str], knob_names: set[str], paths: set[str]) -> list[str]:
    """Entries of `[search]` that name no knob of the editable config files (a typo, most likely)."""
    out = []
    for key in search:
        path, _, name = key.rpartition(":") if ":" in key else ("", "", key)
        if path and path not in paths or name not in knob_names:
            out.append(key)
    return out


def rewrite(text: str, new_values: Mapping[str, Any], path: str) -> str:
    """`text` with the named keys set to the new values, comments and formatting kept."""
    fmt = format_of(path)
    current = flatten(load(text, path))
    missing = [k for k in new_values if k not in current]
    if missing:
        raise KeyError(f"no scalar key {', '.join(missing)} in {path}")
    values = {k: _coerce(v, current[k]) for k, v in new_values.items()}
    expected = _set_all(load(text, path), values)
    if fmt == "toml":
        return _rewrite_toml(text, values, path, expected)
    try:
        out = _in_place(text, values, fmt)
        if load(out, path) == expected:
            return out
    except _NotInPlace:
        pass
    out = _round_trip_yaml(text, values)
    if fmt == "json" or load(out, path) != expected:
        raise ConfigError(path, ", ".join(values), "could not rewrite the value in place without changing "
                          "anything else; simplify the line (one scalar per line)")
    return out


# -- reading ----------------------------------------------------------------------------


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round-trip: keeps comments, order, quotes and line/column information
    y.preserve_quotes = True
    return y


def _plain(node):
    if isinstance(node, Mapping):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _positions_and_comments(text: str, path: str) -> tuple[dict[str, int], dict[str, str]]:
    """Each dotted key's 1-based line (YAML, JSON) and the text of its `# search:` comment."""
    fmt = format_of(path)
    lines: dict[str, int] = {}
    comments: dict[str, str] = {}
    if fmt == "toml":
        import tomlkit

        def walk_toml(node, prefix):
            for key, item in node.items():
                name = f"{prefix}{key}"
                if isinstance(item, Mapping):
                    walk_toml(item, f"{name}.")
                    continue
                trivia = getattr(item, "trivia", None)
                match = _ANNOTATION.search(trivia.comment) if trivia is not None and trivia.comment else None
                if match:
                    comments[name] = match.group("text")
        walk_toml(tomlkit.parse(text), "")
        return lines, comments
    try:
        root = _yaml().load(text)
    except Exception:
        return lines, comments
    text_lines = text.splitlines()

    def walk(node, prefix):
        for key in node:
            value = node[key]
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, f"{name}.")
                continue
            try:
                line = node.lc.value(key)[0]
            except (AttributeError, KeyError, TypeError):
                continue
            lines[name] = line + 1
            if fmt == "yaml" and line < len(text_lines):
                match = _ANNOTATION.search(text_lines[line])
                if match:
                    comments[name] = match.group("text")
    if isinstance(root, Mapping):
        walk(root, "")
    return lines, comments


# -- writing ----------------------------------------------------------------------------


class _NotInPlace(Exception):
    pass


def _coerce(value, old):
    """The new value in the old one's type where that is lossless (a float knob stays a float)."""
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return round_value(value) if isinstance(value, float) else value


def _set_all(data: dict, values: Mapping[str, Any]) -> dict:
    for dotted, value in values.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return data


def _in_place(text: str, values: Mapping[str, Any], fmt: str) -> str:
    root = _yaml().load(text)  # JSON is YAML: one reader gives both their positions
    lines = text.splitlines(keepends=True)
    edits = []
    for dotted, value in values.items():
        node = root
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        line, col = node.lc.value(last)
        flow = fmt == "json" or bool(getattr(node, "fa", None) and node.fa.flow_style())
        end = _scalar_end(lines[line], col, flow)
        old = lines[line][col:end]
        edits.append((line, col, end, _render(value, old, fmt)))
    for line, col, end, token in sorted(edits, key=lambda e: (e[0], -e[1])):
        lines[line] = lines[line][:col] + token + lines[line][end:]
    return "".join(lines)


def _scalar_end(line: str, col: int, flow: bool) -> int:
    rest = line[col:]
    for pattern in (_DOUBLE, _SINGLE):
        if rest[:1] == pattern.pattern[0]:
            match = pattern.match(rest)
            if not match:
                raise _NotInPlace  # a quoted scalar that goes on to the next line
            return col + match.end()
    body = rest.rstrip("\r\n")
    stops = [m.start() for m in re.finditer(r"\s#", body)]
    if flow:
        stops += [i for i, ch in enumerate(body) if ch in ",]}"]
    end = min(stops) if stops else len(body)
    token = body[:end].rstrip()
    if not token or token in ("|", ">") or token[0] in "|>&*!":
        raise _NotInPlace  # block scalars, anchors, aliases, tags: leave them to the round trip
    return col + len(token)


def _render(value, old: str, fmt: str) -> str:
    if isinstance(value, bool):
        word = "true" if value else "false"
        return word.capitalize() if old[:1].isupper() and fmt == "yaml" else word.upper() if old.isupper() and fmt == "yaml" else word
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        if fmt == "json" or old.startswith('"'):
            return json.dumps(value)
        if old.startswith("'"):
            return "'" + value.replace("'", "''") + "'"
        if _PLAIN_SAFE.match(value) and value.lower() not in _YAML11_WORDS:
            return value
        return json.dumps(value)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to a config file")


def _float_text(value: float) -> str:
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exponent[0] not in "+-":
            exponent = "+" + exponent
        text = f"{mantissa}e{exponent}"
    return text


def _round_trip_yaml(text: str, values: Mapping[str, Any]) -> str:
    y = _yaml()
    root = y.load(text)
    for dotted, value in values.items():
        node = root
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    out = io.StringIO()
    y.dump(root, out)
    return out.getvalue()


def _rewrite_toml(text: str, values: Mapping[str, Any], path: str, expected: dict) -> str:
    import tomlkit

    doc = tomlkit.parse(text)
    for dotted, value in values.items():
        node = doc
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        old = node[last]
        trivia = old.trivia if hasattr(old, "trivia") else None
        item = tomlkit.item(value)
        if trivia is not None:
            item.trivia.indent, item.trivia.comment_ws = trivia.indent, trivia.comment_ws
            item.trivia.comment, item.trivia.trail = trivia.comment, trivia.trail
        node[last] = item
    out = tomlkit.dumps(doc)
    if tomllib.loads(out) != expected:
        raise ConfigError(path, ", ".join(values), "rewriting changed other keys; this should not happen, please report it")
    return out


__all__ = ["FORMATS", "Space", "find_keys", "flatten", "format_of", "load", "rewrite", "search_table",
           "unknown_search_keys"]
