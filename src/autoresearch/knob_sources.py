"""Where knobs live: UPPERCASE constants of Python files, or keys of YAML/JSON/TOML config files.

The one seam the tuner (and any other reader of knobs) goes through: `find` lists a file's
knobs as `Constant` records, `rewrite` changes their values keeping everything else, each
dispatching on the file's kind. `per_file` reads every editable file that can hold knobs and
applies `[search]` of autoresearch.toml, whose entries must each name a knob.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from autoresearch import configfile, constants
from autoresearch.constants import Constant
from autoresearch.errors import ConfigError


def has_knobs(path: str) -> bool:
    return path.endswith(".py") or configfile.format_of(path) is not None


def find(source: str, path: str, search: Mapping[str, str] | None = None) -> list[Constant]:
    if configfile.format_of(path) is not None:
        return configfile.find_keys(source, path, search)
    return constants.find_constants(source, path)


def rewrite(source: str, values: Mapping[str, Any], path: str) -> str:
    if configfile.format_of(path) is not None:
        return configfile.rewrite(source, values, path)
    return constants.rewrite(source, values, path)


def values(source: str | None, path: str) -> dict[str, Any]:
    """name -> value of a file's knobs; {} when it cannot be read (an old, broken revision)."""
    if source is None:
        return {}
    try:
        return {c.name: c.value for c in find(source, path)}
    except (ConfigError, ValueError, TypeError):
        return {}


def per_file(task_dir: Path, files: Sequence[str]) -> list[tuple[str, list[Constant]]]:
    """The searchable knobs of each editable file that can hold them, `[search]` applied."""
    task_dir = Path(task_dir)
    search = configfile.search_table(task_dir)
    out, names, config_paths = [], set(), set()
    for path in files:
        file = task_dir / path
        if not has_knobs(path) or not file.is_file():
            continue
        found = find(file.read_text(encoding="utf-8"), path, search)
        if configfile.format_of(path) is not None:
            config_paths.add(path)
            names.update(c.name for c in found)
        out.append((path, constants.searchable(found)))
    unknown = configfile.unknown_search_keys(search, names, config_paths)
    if unknown:
        raise ConfigError(task_dir / "autoresearch.toml", f"search.{unknown[0]}",
                          f"names no key of the editable config files ({', '.join(sorted(config_paths)) or 'none'}); "
                          "use the dotted path of a scalar key, e.g. \"optimizer.lr\", or \"file.yaml:optimizer.lr\"")
    return out
