import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoresearch.constants import Space, default_space, find_constants, render, rewrite, round_value, searchable
from autoresearch.errors import ConfigError

SOURCE = '''"""A training script."""
import torch

LR = 3e-3               # search: log(1e-4, 1e-1)
DROPOUT = 0.1           # search: float(0.0, 0.5)
EPOCHS = 20             # search: int(5, 50)
WIDTH = 128             # search: int_log(16, 1024)
ARCH = "mlp"            # search: ["mlp", "cnn"]
OPT = 'adam'            #search:['adam', 'sgd']
SHIFT = -1e-3           # search: float(-0.01, 0.01)
USE_BN = True
SEED = 0
NAME = "run"            # the run's name
lowercase = 5


def main():
    INSIDE = 3
'''


def by_name(source=SOURCE, path=None):
    return {c.name: c for c in find_constants(source, path)}


def test_each_annotation_form():
    c = by_name()
    assert c["LR"].space == Space("log", 1e-4, 1e-1)
    assert c["DROPOUT"].space == Space("float", 0.0, 0.5)
    assert c["EPOCHS"].space == Space("int", 5, 50)
    assert c["WIDTH"].space == Space("int_log", 16, 1024)
    assert c["ARCH"].space == Space("choice", choices=("mlp", "cnn"))
    assert c["OPT"].space == Space("choice", choices=("adam", "sgd"))
    assert all(c[n].annotated for n in ("LR", "DROPOUT", "EPOCHS", "WIDTH", "ARCH", "OPT", "SHIFT"))


def test_values_lines_and_columns():
    c = by_name()
    assert c["LR"].value == 3e-3 and c["LR"].line == 4
    assert c["SHIFT"].value == -1e-3
    lines = SOURCE.splitlines()
    for const in c.values():
        literal = lines[const.line - 1][const.col_start : const.col_end]
        assert eval(literal) == const.value


def test_only_module_level_uppercase_literals():
    c = by_name()
    assert "lowercase" not in c and "INSIDE" not in c
    assert list(c) == ["LR", "DROPOUT", "EPOCHS", "WIDTH", "ARCH", "OPT", "SHIFT", "USE_BN", "SEED", "NAME"]


def test_non_literal_and_multiline_values_are_skipped():
    src = "A = 1 + 2\nB = [1, 2]\nC = (\n    3\n)\nD = f'x{1}'\nE = b'x'\nF: int = 4\nG = H = 5\n"
    # C's literal sits on one line inside the parentheses, so it can still be rewritten in place.
    assert list(by_name(src)) == ["C", "F"]


def test_unannotated_defaults():
    assert default_space(0.01) == Space("log", 0.001, 0.1)
    assert default_space(64) == Space("int_log", 16, 256)
    assert default_space(1) == Space("int_log", 1, 4)
    assert default_space(True) == Space("choice", choices=(True, False))
    assert default_space(0.0) is None and default_space(-2) is None and default_space(0) is None
    assert default_space("mlp") is None
    c = by_name()
    assert c["USE_BN"].space == Space("choice", choices=(True, False)) and not c["USE_BN"].annotated
    assert c["SEED"].space is None and c["NAME"].space is None


def test_searchable_prefers_annotated_constants():
    assert [c.name for c in searchable(find_constants(SOURCE))] == ["LR", "DROPOUT", "EPOCHS", "WIDTH", "ARCH", "OPT", "SHIFT"]
    plain = "LR = 0.01\nWIDTH = 64\nSEED = 0\nNAME = 'x'\nFLAG = False\n"
    assert [c.name for c in searchable(find_constants(plain))] == ["LR", "WIDTH", "FLAG"]


def test_int_constant_with_integral_log_range_stays_int():
    c = by_name("BATCH = 32  # search: log(8, 256)\n")
    assert c["BATCH"].space == Space("int_log", 8, 256)


def test_annotation_belongs_to_the_last_statement_on_its_line():
    c = by_name("A = 1; B = 0.5  # search: float(0, 1)\n")
    assert not c["A"].annotated and c["B"].space == Space("float", 0.0, 1.0)


def test_other_comments_are_ignored():
    c = by_name("LR = 0.1  # learning rate, search: log(1, 2) is not at the start\n")
    assert not c["LR"].annotated


@pytest.mark.parametrize(
    "annotation",
    ["logx(1e-4, 1e-1)", "log(1e-4)", "log(1e-1, 1e-4)", "log(0, 1)", "int(1.5, 4)", "[]", "[1, [2]]", "mlp, cnn",
     "log(1e-4, 1e-1) and more", "float('a', 'b')"],
)
def test_malformed_annotation_names_file_and_constant(annotation):
    src = f"X = 2\nLR = 0.01  # search: {annotation}\n"
    with pytest.raises(ConfigError) as info:
        find_constants(src, "train.py")
    message = str(info.value)
    assert "train.py" in message and "LR" in message and annotation in message
    assert "log(a, b) | float(a, b) | int(a, b) | int_log(a, b) | [choices]" in message
    assert info.value.key == "LR"


def test_range_on_a_string_is_an_error():
    with pytest.raises(ConfigError, match="ARCH"):
        find_constants("ARCH = 'mlp'  # search: log(1, 2)\n", "train.py")


def test_syntax_error_is_a_config_error():
    with pytest.raises(ConfigError, match="train.py"):
        find_constants("LR = = 1\n", "train.py")


def test_rewrite_replaces_only_the_literal():
    out = rewrite(SOURCE, {"LR": 0.0031234, "ARCH": "cnn", "OPT": "sgd", "EPOCHS": 30, "SHIFT": 3.1e-5, "USE_BN": False})
    lines, original = out.splitlines(), SOURCE.splitlines()
    # The literal is swapped; the spacing after it is kept as it was, so the comment shifts.
    assert lines[3] == original[3].replace("3e-3", "0.00312")
    assert lines[7] == original[7].replace('"mlp"', '"cnn"', 1)
    assert lines[8] == original[8].replace("'adam'", "'sgd'", 1)
    assert lines[5] == original[5].replace("20", "30")
    assert lines[9] == original[9].replace("-1e-3", "3.1e-05")
    assert lines[10] == "USE_BN = False"
    untouched = [i for i in range(len(lines)) if i not in (3, 5, 7, 8, 9, 10)]
    assert [lines[i] for i in untouched] == [SOURCE.splitlines()[i] for i in untouched]
    assert out.endswith("    INSIDE = 3\n")


def test_rewrite_nothing_is_identity():
    assert rewrite(SOURCE, {}) == SOURCE


def test_rewrite_two_constants_on_one_line():
    assert rewrite("A = 1; B = 2.5\n", {"A": 100, "B": 0.25}) == "A = 100; B = 0.25\n"


def test_rewrite_unknown_name_raises():
    with pytest.raises(KeyError, match="NOPE"):
        rewrite(SOURCE, {"NOPE": 1})


def test_render_styles():
    assert render(0.0031) == "0.0031"
    assert render(3.1e-5) == "3.1e-05"
    assert render(0.123456) == "0.123"
    assert render(1234.5) == "1.23e+03" or render(1234.5) == "1230.0"
    assert render(7) == "7" and render(7, "2.0") == "7.0"
    assert render(True) == "True" and render(False) == "False"
    assert render("a'b", "'x'") == "'a\\'b'" and render('a"b', '"x"') == '"a\\"b"'
    assert round_value(0.0031234) == 0.00312 and round_value(5) == 5


def test_non_ascii_source_columns():
    src = 'NAME = "héllo"; LR = 0.5  # search: float(0, 1)\n'
    out = rewrite(src, {"LR": 0.25, "NAME": "wörld"})
    assert by_name(out)["LR"].value == 0.25 and by_name(out)["NAME"].value == "wörld"


floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(round_value)
strings = st.text(max_size=12)


@settings(max_examples=200, deadline=None)
@given(lr=floats, width=st.integers(-10**6, 10**6), arch=strings, opt=strings, flag=st.booleans())
def test_round_trip(lr, width, arch, opt, flag):
    new = {"LR": lr, "WIDTH": width, "ARCH": arch, "OPT": opt, "USE_BN": flag}
    out = rewrite(SOURCE, new)
    found = by_name(out)
    assert {k: found[k].value for k in new} == new
    assert [c.space for c in found.values()] == [c.space for c in by_name().values()]
    # Untouched constants are untouched, and rewriting again with the same values changes nothing.
    assert found["EPOCHS"].value == 20 and found["SEED"].value == 0
    assert rewrite(out, new) == out


def test_form_feed_and_crlf_do_not_shift_lines():
    src = "import os\r\n\x0c\r\nLR = 0.1  # search: log(0.01, 1)\r\nX = 'a\u2028b'\r\nW = 3\r\n"
    out = rewrite(src, {"LR": 0.2, "W": 4})
    assert out == src.replace("0.1 ", "0.2 ").replace("W = 3", "W = 4")
