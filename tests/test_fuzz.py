"""Arbitrary input to the footer parser and the config loader: only the tool's own errors escape."""

import math
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoresearch.config import CONFIG_NAME, load_task
from autoresearch.errors import AutoresearchError
from autoresearch.footer import parse_footer, parse_footer_report

FOOTERISH = st.lists(st.one_of(
    st.just("---"), st.just("--- "), st.just("\r"), st.just("\r\n"),
    st.builds(lambda k, v: f"{k}: {v}", st.text(min_size=0, max_size=12),
              st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), st.text(max_size=12))),
    st.text(max_size=40),
), max_size=30).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), FOOTERISH, st.binary()))
def test_footer_parser_never_raises(text):
    report = parse_footer_report(text)
    # repr, not ==: a footer may say `nan`, and nan != nan (two parses give two nan objects).
    assert repr(parse_footer(text)) == repr(report.metrics)
    for key, value in report.metrics.items():
        assert isinstance(key, str) and key and " " not in key
        assert isinstance(value, (float, str))
        if isinstance(value, float) and not math.isnan(value):
            assert value == value
    assert set(report.duplicates) <= set(report.metrics)


KEYS = ["task", "metrics", "agent", "run", "editable", "readonly", "time_budget", "timeout", "primary", "direction",
        "tie_break", "columns", "memory_key", "kind", "command", "env", "memory_limit_mb", "max_consecutive_crashes",
        "pause_after_env_errors", "name", "editabel", "metric", "primry", "extra"]
SCALARS = st.one_of(
    st.integers(min_value=-10**20, max_value=10**20), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.text(max_size=20), st.sampled_from(["train.py", "prepare.py", "../x.py", "/etc/passwd", "minimize", "maximize",
                                           "command", "tuner", "a\u0000b", ""]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)),
    max_leaves=12)
CONFIGS = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), VALUES, max_size=5)
VALID = {"task": {"run": "python train.py", "editable": ["train.py"], "readonly": ["prepare.py"], "time_budget": 5},
         "metrics": {"primary": "score", "direction": "maximize"}}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return '"' + "".join(c if c in string.printable and c not in '"\\\r\n\t\x0b\x0c' else f"\\u{ord(c):04x}"
                             if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(d: dict) -> str:
    return "\n".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in d.items()) + "\n"


def merged(base: dict, extra: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in extra.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def load(text: str | bytes):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "train.py").write_text("X = 1\n")
        (d / "prepare.py").write_text("DATA = 1\n")
        (d / CONFIG_NAME).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            load_task(d)
        except AutoresearchError as exc:
            assert str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_config_loader_on_arbitrary_text(text):
    load(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS)
def test_config_loader_on_arbitrary_structures(extra):
    load(to_toml(merged(VALID, extra)))
    load(to_toml(extra))


def test_the_fuzz_base_config_is_valid():
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "train.py").write_text("X = 1\n")
        (d / "prepare.py").write_text("DATA = 1\n")
        (d / CONFIG_NAME).write_text(to_toml(VALID))
        assert load_task(d).metrics.primary == "score"
