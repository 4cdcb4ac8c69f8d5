from autoresearch.decision import Rules, check_primary, code_lines, decide, rounded
from autoresearch.records import Status

MAX = Rules("bin_acc", "maximize", (("mc_acc", "maximize"),))
MIN = Rules("val_bpb", "minimize")


def test_strictly_better_primary_keeps_whatever_the_tie_break():
    d = decide({"bin_acc": 0.9, "mc_acc": 0.1}, {"bin_acc": 0.8, "mc_acc": 0.9}, MAX)
    assert d.status is Status.KEEP


def test_worse_primary_discards_even_with_better_tie_break():
    d = decide({"bin_acc": 0.79, "mc_acc": 0.99}, {"bin_acc": 0.8, "mc_acc": 0.1}, MAX)
    assert d.status is Status.DISCARD


def test_minimize_direction():
    assert decide({"val_bpb": 0.99}, {"val_bpb": 1.0}, MIN).status is Status.KEEP
    assert decide({"val_bpb": 1.01}, {"val_bpb": 1.0}, MIN).status is Status.DISCARD


def test_equal_primary_tie_break_decides():
    assert decide({"bin_acc": 0.8, "mc_acc": 0.6}, {"bin_acc": 0.8, "mc_acc": 0.5}, MAX).status is Status.KEEP
    assert decide({"bin_acc": 0.8, "mc_acc": 0.4}, {"bin_acc": 0.8, "mc_acc": 0.5}, MAX).status is Status.DISCARD


def test_first_differing_tie_break_decides_in_its_own_direction():
    rules = Rules("acc", "maximize", (("loss", "minimize"), ("f1", "maximize")))
    best = {"acc": 0.5, "loss": 1.0, "f1": 0.5}
    assert decide({"acc": 0.5, "loss": 1.0, "f1": 0.6}, best, rules).status is Status.KEEP
    assert decide({"acc": 0.5, "loss": 0.9, "f1": 0.1}, best, rules).status is Status.KEEP
    assert decide({"acc": 0.5, "loss": 1.1, "f1": 0.9}, best, rules).status is Status.DISCARD


def test_comparison_at_six_decimals():
    # 0.8000001 rounds to 0.800000, the same value results.tsv shows: not an improvement.
    assert decide({"bin_acc": 0.8000001, "mc_acc": 0.5}, {"bin_acc": 0.8, "mc_acc": 0.5}, MAX).status is Status.DISCARD
    assert decide({"bin_acc": 0.8000006, "mc_acc": 0.5}, {"bin_acc": 0.8, "mc_acc": 0.5}, MAX).status is Status.KEEP
    assert rounded(0.1234567) == 0.123457


def test_simplicity_rule_only_when_everything_is_equal():
    best = {"bin_acc": 0.8, "mc_acc": 0.5}
    assert decide(dict(best), best, MAX, simpler=True).status is Status.KEEP
    assert decide(dict(best), best, MAX, simpler=False).status is Status.DISCARD
    assert decide({"bin_acc": 0.8, "mc_acc": 0.4}, best, MAX, simpler=True).status is Status.DISCARD


def test_missing_tie_break_loses_to_present():
    assert decide({"bin_acc": 0.8}, {"bin_acc": 0.8, "mc_acc": 0.5}, MAX).status is Status.DISCARD


def test_check_primary():
    assert check_primary({"a": 1.0}, "a") is None
    assert check_primary({}, "a") == "no_metric"
    assert check_primary({"a": "high"}, "a") == "no_metric"
    assert check_primary({"a": float("nan")}, "a") == "nan"
    assert check_primary({"a": float("-inf")}, "a") == "nan"


def test_code_lines_ignores_blank_and_comment_lines():
    src = "# header\n\nX = 1  # trailing comment counts\n    # indented comment\ny = 2\n"
    assert code_lines(src) == 2


def test_noise_floor_turns_small_gains_into_discards():
    best = {"val_bpb": 1.0}
    assert decide({"val_bpb": 0.995}, best, MIN, floor=0.01).status is Status.DISCARD
    assert "noise floor" in decide({"val_bpb": 0.995}, best, MIN, floor=0.01).reason
    assert decide({"val_bpb": 0.98}, best, MIN, floor=0.01).status is Status.KEEP
    assert decide({"val_bpb": 1.02}, best, MIN, floor=0.01).status is Status.DISCARD
