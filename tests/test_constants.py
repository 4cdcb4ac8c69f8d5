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
    src = ("A = 1 + 2\nB = [1, 2]\nC = (\n    3\n)\nD = f'x{1}'\nE = b'x'\nF: int = 4\nG = H = 5\n"
           "I = [1, 'a']\nJ = (1,\n     2)\nK = WIDTH * 2\nL = (\n    2\n    ** 3)\n")
    # C's literal sits on one line inside the parentheses, so it can still be rewritten in place.
    # A constant expression and a list of numbers are knobs (issue 14); a mixed list, a name in an
    # expression, a call or an expression spread over lines are not. J's elements are each on one line.
    assert list(by_name(src)) == ["A", "B[0]", "B[1]", "C", "F", "J[0]", "J[1]"]


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


# -- issue 14: knobs that fit real code ---------------------------------------------------

KARPATHY_BLOCK = '''\
from prepare import MAX_SEQ_LEN, TIME_BUDGET, evaluate_bpb

ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension
WINDOW_PATTERN = "SSSL" # L = full, S = half context
TOTAL_BATCH_SIZE = 2**13 # tokens per optimizer step
CHUNK = 4 * 1024
MATRIX_LR = 0.04
WEIGHT_DECAY = 0.2
ADAM_BETAS = (0.8, 0.95) # beta1, beta2
WARMUP_RATIO = 0.0
WARMDOWN_RATIO = 0.5
FINAL_LR_FRAC = 0.0
DEPTH = 8
DEVICE_BATCH_SIZE = 16
EVAL_BATCH_SIZE = 32
CPU_DEPTH = 4
SEED = 42
LOG_EVERY = 10


def build(pattern):
    assert all(c in "SL" for c in pattern)
    return pattern


def main(is_cpu):
    depth = DEPTH if not is_cpu else min(DEPTH, CPU_DEPTH)
    tokens = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
    assert TOTAL_BATCH_SIZE % tokens == 0
    build(WINDOW_PATTERN)
    eval_batch = EVAL_BATCH_SIZE
    opt = make_opt(MATRIX_LR, WEIGHT_DECAY, ADAM_BETAS, WARMUP_RATIO, FINAL_LR_FRAC, SEED, CHUNK)
    for step in range(100):
        lr = MATRIX_LR * WARMDOWN_RATIO
        if step % LOG_EVERY == 0:
            print(f"step {step} lr {lr}")
    val_bpb = evaluate_bpb(depth, eval_batch, ASPECT_RATIO * HEAD_DIM, opt)
    print(f"depth: {depth} eval batch {EVAL_BATCH_SIZE}")
'''


def test_expressions_tuples_and_strings_are_knobs():
    c = by_name(KARPATHY_BLOCK)
    assert c["TOTAL_BATCH_SIZE"].value == 8192 and c["CHUNK"].value == 4096
    assert c["ADAM_BETAS[0]"].value == 0.8 and c["ADAM_BETAS[1]"].value == 0.95
    # A string compared with nothing, but checked against an alphabet: its pattern's lead run moves.
    assert c["WINDOW_PATTERN"].space == Space("choice", choices=("SSSL", "L", "SL", "SSL", "SSSSL"))


def test_safe_ranges_from_names_and_values():
    c = by_name(KARPATHY_BLOCK)
    assert c["WARMDOWN_RATIO"].space == Space("float", 0.0, 1.0)  # was log(0.05, 5.0): a ratio above 1
    assert c["WARMUP_RATIO"].space == Space("float", 0.0, 1.0) and c["FINAL_LR_FRAC"].space == Space("float", 0.0, 1.0)
    assert c["ADAM_BETAS[1]"].space == Space("float", 0.5, 0.999)
    assert c["TOTAL_BATCH_SIZE"].space == Space("pow2", 2048, 32768)  # written as 2**k
    assert c["DEVICE_BATCH_SIZE"].space == Space("pow2", 4, 64) and c["HEAD_DIM"].space == Space("pow2", 32, 512)
    assert c["DEPTH"].space.kind == "int_log" and c["MATRIX_LR"].space == Space("log", 0.004, 0.4)
    # An int with a ratio-like name stays an int; a power of two with no size-like name is an ordinary int.
    assert c["ASPECT_RATIO"].space == Space("int_log", 16, 256)
    for value in (3, 100, 2.5):
        assert Space("pow2", 4, 64).snap(value) in (4, 2, 128, 64) and Space("pow2", 4, 64).snap(value) & (Space("pow2", 4, 64).snap(value) - 1) == 0


def test_constants_that_cannot_change_the_training_are_left_out():
    c = by_name(KARPATHY_BLOCK)
    assert "evaluation or logging" in c["EVAL_BATCH_SIZE"].skip
    assert "capped: min(DEPTH, CPU_DEPTH) takes CPU_DEPTH = 4" in c["DEPTH"].skip and not c["CPU_DEPTH"].skip
    assert "seed" in c["SEED"].skip
    # Read by an `if` in the training loop (it decides how often to print, but also what runs): kept.
    assert not c["LOG_EVERY"].skip and not c["MATRIX_LR"].skip
    names = [k.name for k in searchable(find_constants(KARPATHY_BLOCK))]
    assert "EVAL_BATCH_SIZE" not in names and "DEPTH" not in names and "SEED" not in names
    assert {"TOTAL_BATCH_SIZE", "ADAM_BETAS[0]", "ADAM_BETAS[1]", "WINDOW_PATTERN", "CPU_DEPTH"} <= set(names)
    # An annotation is the author's word: it wins over every inference.
    annotated = KARPATHY_BLOCK.replace("EVAL_BATCH_SIZE = 32", "EVAL_BATCH_SIZE = 32  # search: int(8, 64)")
    assert [k.name for k in searchable(find_constants(annotated))] == ["EVAL_BATCH_SIZE"]


def test_string_values_from_comparisons():
    src = ('ACT = "relu"\nOPT = "adamw"\nNORM = "layer"\nMODE = "x"\n'
           'def f():\n    if ACT == "gelu" or ACT in ("silu", "tanh"):\n        pass\n'
           '    match OPT:\n        case "sgd":\n            pass\n        case "muon":\n            pass\n'
           '    return {"layer": 1, "rms": 2}[NORM]\n')
    c = by_name(src)
    assert c["ACT"].space.choices == ("relu", "gelu", "silu", "tanh")
    assert c["OPT"].space.choices == ("adamw", "sgd", "muon")
    assert c["NORM"].space.choices == ("layer", "rms")
    assert c["MODE"].space is None  # no known alternatives: not a knob


def test_rewrites_keep_the_authors_formatting():
    out = rewrite(KARPATHY_BLOCK, {"TOTAL_BATCH_SIZE": 16384, "CHUNK": 8192, "ADAM_BETAS[1]": 0.99,
                                   "WINDOW_PATTERN": "SL", "WARMDOWN_RATIO": 0.25})
    lines = out.splitlines()
    assert "TOTAL_BATCH_SIZE = 2**14 # tokens per optimizer step" in lines
    assert "CHUNK = 8 * 1024" in lines
    assert "ADAM_BETAS = (0.8, 0.99) # beta1, beta2" in lines
    assert 'WINDOW_PATTERN = "SL" # L = full, S = half context' in lines
    assert "WARMDOWN_RATIO = 0.25" in lines
    assert len([a for a, b in zip(lines, KARPATHY_BLOCK.splitlines()) if a != b]) == 5
    # What cannot be written in the old style is written plainly.
    assert rewrite("B = 2**13\n", {"B": 12000}) == "B = 12000\n"
    assert rewrite("B = 2 ** 13  # x\n", {"B": 1024}) == "B = 2 ** 10  # x\n"
    assert rewrite("B = 1 << 4\n", {"B": 64}) == "B = 1 << 6\n"
    assert rewrite("B = 4 * 1024\n", {"B": 1000}) == "B = 1000\n"
    # A whole tuple at once, by its base name.
    assert rewrite("BETAS = (0.9, 0.99)\n", {"BETAS": (0.8, 0.95)}) == "BETAS = (0.8, 0.95)\n"
    assert by_name(out)["TOTAL_BATCH_SIZE"].value == 16384


def test_hostile_expressions_are_not_evaluated():
    c = by_name("A = 9**9**9**9\nB = 10**400\nC = 1 << 10**6\nD = 2**64 * 2**64\nE = 1 / 0\nF = 2.0**2000\n")
    assert c == {}


def test_pow2_annotation():
    c = by_name("B = 2**13  # search: pow2(1024, 65536)\n")
    assert c["B"].space == Space("pow2", 1024, 65536) and c["B"].annotated
    assert by_name("B = 2**13  # search: pow2(2**10, 2**16)\n")["B"].space == Space("pow2", 1024, 65536)  # as the README shows
    assert by_name("W = 4096  # search: int(4 * 256, 64 * 256)\n")["W"].space == Space("int", 1024, 16384)
    with pytest.raises(ConfigError, match="powers of two"):
        find_constants("B = 2**13  # search: pow2(1000, 65536)\n", "train.py")


def test_range_annotation_on_a_tuple_applies_to_each_element():
    c = by_name("BETAS = (0.9, 0.99)  # search: float(0.5, 0.999)\n")
    assert c["BETAS[0]"].space == c["BETAS[1]"].space == Space("float", 0.5, 0.999)


def test_the_knobs_of_one_source_are_read_once_and_each_caller_gets_its_own_list(monkeypatch):
    import ast

    source = "LR = 0.1  # search: log(1e-4, 1.0)\nDEPTH = 2\n"
    parsed = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda text, *a, **k: parsed.append(text) or real(text, *a, **k))
    first = find_constants(source, "knobs_read_once.py")
    first.clear()  # a caller's own list: the next one still gets every knob
    again = find_constants(source, "knobs_read_once.py")
    assert [c.name for c in again] == ["LR", "DEPTH"] and again[0].space.is_log
    assert parsed.count(source) == 1  # (the annotation has a parse of its own)
