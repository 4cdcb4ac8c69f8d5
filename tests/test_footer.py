import math

from autoresearch.footer import parse_footer


def test_reads_key_values_after_separator():
    text = "epoch 1 loss 0.5\n---\nval_bpb: 0.997900\ntrain_seconds: 300.1\narch: baseline\n"
    assert parse_footer(text) == {"val_bpb": 0.9979, "train_seconds": 300.1, "arch": "baseline"}


def test_keys_padded_with_spaces():
    text = "---\nval_bpb:          0.997900\npeak_vram_mb:     45060.2\n  mfu_percent :  39.80\n"
    m = parse_footer(text)
    assert m["val_bpb"] == 0.9979 and m["peak_vram_mb"] == 45060.2 and m["mfu_percent"] == 39.8


def test_last_separator_wins():
    text = "---\nval_bpb: 9.0\n---\nsome log\n---\nval_bpb: 1.5\n"
    assert parse_footer(text) == {"val_bpb": 1.5}


def test_fake_footer_before_the_real_one_is_ignored():
    text = "---\nval_acc: 0.99\ntraining...\n---\nval_acc: 0.71\n"
    assert parse_footer(text)["val_acc"] == 0.71


def test_carriage_return_progress_lines():
    text = "step 1/10\rstep 5/10\rstep 10/10\n---\r\nval_acc: 0.5\r\nloss: 0.25\n"
    assert parse_footer(text) == {"val_acc": 0.5, "loss": 0.25}


def test_progress_bar_overwriting_the_separator_line():
    text = "100%|####|\r---\nval_acc: 0.25\n"
    assert parse_footer(text) == {"val_acc": 0.25}


def test_no_separator_means_no_metrics():
    assert parse_footer("val_acc: 0.9\n") == {}
    assert parse_footer("") == {}


def test_separator_must_be_exact():
    assert parse_footer("----\nval_acc: 0.9\n") == {}
    assert parse_footer("--- \nval_acc: 0.9\n") == {"val_acc": 0.9}
    assert parse_footer("x ---\nval_acc: 0.9\n") == {}


def test_nan_and_inf_are_kept_for_the_judge():
    m = parse_footer("---\nval_acc: nan\nloss: inf\n")
    assert math.isnan(m["val_acc"]) and math.isinf(m["loss"])


def test_lines_that_are_not_key_value_are_skipped():
    m = parse_footer("---\nval_acc: 0.5\nTraceback (most recent call last):\nnot a metric line\n")
    assert m == {"val_acc": 0.5}
