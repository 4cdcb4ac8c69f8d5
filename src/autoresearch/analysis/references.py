"""`references.toml`: published results to compare against, and the protocol behind each.

Seed 002: a 10-epoch run on a laptop GPU sat beside a 2000-epoch paper number with nothing
saying why they differ. Here every reference declares its protocol, ours is declared too
(in this file or in autoresearch.toml's `[protocol]`), and every difference is listed, so a
pipeline check is never mistaken for a reproduction.

    [protocol]                        # ours; or [protocol] in autoresearch.toml
    epochs = 10
    batch_size = 128
    evaluation = "online probe, trained jointly"
    hardware = "1x RTX 3060"

    [[reference]]
    name = "seq-JEPA, Table 2 (CIFAR-100, crop+jitter+blur)"
    source = "paper, Table 2"         # optional
    [reference.results]               # our metric name = their value
    online_linacc_test = 58.33
    crop_r2 = { value = 0.79, metric = "online_r2_test", label = "Crop R2" }
    [reference.protocol]
    epochs = 2000
    batch_size = 512
    evaluation = "frozen features + linear probe"
    hardware = "A100 40GB"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.errors import ConfigError

REFERENCES_NAME = "references.toml"
_TOP_KEYS = {"protocol", "reference"}
_REFERENCE_KEYS = {"name", "source", "results", "protocol"}
_RESULT_KEYS = {"value", "metric", "label"}

Scalar = str | int | float | bool


@dataclass(frozen=True)
class ReferenceResult:
    label: str  # as the reference names it
    metric: str  # our metric it is compared with
    value: float


@dataclass(frozen=True)
class Reference:
    name: str
    source: str
    results: tuple[ReferenceResult, ...]
    protocol: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolDifference:
    key: str
    ours: Scalar | None  # None: not declared on that side
    theirs: Scalar | None


@dataclass(frozen=True)
class Comparison:
    label: str
    metric: str
    reference: float
    ours: float | None  # None: our run did not report that metric

    @property
    def delta(self) -> float | None:
        return None if self.ours is None else self.ours - self.reference

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.reference == 0:
            return None
        return self.ours / self.reference


@dataclass(frozen=True)
class References:
    path: Path
    protocol: dict[str, Scalar]  # ours
    references: tuple[Reference, ...]

    def differences(self, reference: Reference) -> list[ProtocolDifference]:
        """Every key on which our protocol and the reference's differ or one side is silent."""
        keys = list(dict.fromkeys([*reference.protocol, *self.protocol]))
        out = []
        for key in keys:
            ours, theirs = self.protocol.get(key), reference.protocol.get(key)
            if ours is None or theirs is None or not _same(ours, theirs):
                out.append(ProtocolDifference(key, ours, theirs))
        return out

    def compare(self, reference: Reference, metrics: dict[str, Any]) -> list[Comparison]:
        out = []
        for result in reference.results:
            value = metrics.get(result.metric)
            ours = float(value) if _is_number(value) else None
            out.append(Comparison(result.label, result.metric, result.value, ours))
        return out


def load_references(task_dir: str | Path, config_path: str | Path | None = None) -> References | None:
    """The task's references, or None when it has no references.toml.

    `config_path` is autoresearch.toml, read only for its `[protocol]` table.
    Raises ConfigError naming the file, the key and the fix for anything malformed.
    """
    path = Path(task_dir) / REFERENCES_NAME
    if not path.is_file():
        return None
    raw = _read_toml(path)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(path, unknown[0], "unknown top-level key; use [protocol] for ours and [[reference]] tables")
    ours = _protocol(path, "protocol", raw.get("protocol", {}))
    if config_path is not None and Path(config_path).is_file():
        from_config = _protocol(Path(config_path), "protocol", _read_toml(Path(config_path)).get("protocol", {}))
        for key, value in from_config.items():
            if key in ours and not _same(ours[key], value):
                raise ConfigError(path, f"protocol.{key}",
                                  f"is {ours[key]!r} here but {value!r} in {config_path}; declare our protocol in one place")
            ours.setdefault(key, value)
    tables = raw.get("reference")
    if tables is None:
        raise ConfigError(path, "reference", "no [[reference]] table; add one with name, [reference.results] and [reference.protocol]")
    if isinstance(tables, dict):
        tables = [tables]  # `[reference]` written for a single one: accept it
    if not isinstance(tables, list):
        raise ConfigError(path, "reference", "must be [[reference]] tables")
    references = tuple(_reference(path, n, t) for n, t in enumerate(tables))
    return References(path, ours, references)


def _reference(path: Path, n: int, table: Any) -> Reference:
    where = f"reference[{n}]"
    if not isinstance(table, dict):
        raise ConfigError(path, where, "must be a table with name, results and protocol")
    unknown = sorted(set(table) - _REFERENCE_KEYS)
    if unknown:
        raise ConfigError(path, f"{where}.{unknown[0]}", f"unknown key; a reference has {', '.join(sorted(_REFERENCE_KEYS))}")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(path, f"{where}.name", 'is required: a short title such as name = "Paper X, Table 2"')
    where = f"{where} ({name})"
    source = table.get("source", "")
    if not isinstance(source, str):
        raise ConfigError(path, f"{where}.source", "must be a string (where the numbers come from)")
    results = table.get("results")
    if not isinstance(results, dict) or not results:
        raise ConfigError(path, f"{where}.results",
                          "is required: a table of our metric name = their value, e.g. val_acc = 0.93")
    parsed = tuple(_result(path, f"{where}.results.{key}", key, v) for key, v in results.items())
    protocol = _protocol(path, f"{where}.protocol", table.get("protocol", {}))
    if not protocol:
        raise ConfigError(path, f"{where}.protocol",
                          "is required: the reference's epochs, batch_size, evaluation, hardware, ... (what makes numbers comparable)")
    return Reference(name.strip(), source, parsed, protocol)


def _result(path: Path, where: str, key: str, value: Any) -> ReferenceResult:
    if _is_number(value):
        return ReferenceResult(key, key, float(value))
    if isinstance(value, dict):
        unknown = sorted(set(value) - _RESULT_KEYS)
        if unknown:
            raise ConfigError(path, f"{where}.{unknown[0]}", "unknown key; use value, metric (our name) and label")
        number, metric, label = value.get("value"), value.get("metric", key), value.get("label", key)
        if not _is_number(number):
            raise ConfigError(path, f"{where}.value", f"must be a finite number, got {number!r}")
        if not isinstance(metric, str) or not isinstance(label, str):
            raise ConfigError(path, where, "metric and label must be strings")
        return ReferenceResult(label, metric, float(number))
    raise ConfigError(path, where, f"must be a number or {{ value = ..., metric = \"our_name\" }}, got {value!r}")


def _protocol(path: Path, where: str, table: Any) -> dict[str, Scalar]:
    if not isinstance(table, dict):
        raise ConfigError(path, where, "must be a table of key = value (epochs = 10, hardware = \"...\")")
    for key, value in table.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(path, f"{where}.{key}", f"must be a string, number or boolean, got {value!r}")
    return dict(table)


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: Scalar, b: Scalar) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.lower().split()) == " ".join(b.lower().split())
    return a == b
