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


def test_duplicate_keys_last_wins_and_are_reported():
    from autoresearch.footer import parse_footer_report

    text = "---\nval_bpb: 0.99\npeak_vram_mb: 100\nval_bpb: 0.50\nval_bpb: 0.40\npeak_vram_mb: 100\n"
    report = parse_footer_report(text)
    assert report.metrics == {"val_bpb": 0.40, "peak_vram_mb": 100.0}
    assert report.duplicates == ("val_bpb", "peak_vram_mb")
    assert parse_footer(text) == report.metrics  # the dict API is unchanged
    assert parse_footer_report("---\na: 1\nb: 2\n").duplicates == ()
    assert parse_footer_report("no footer").duplicates == ()


def test_invalid_utf8_output_from_a_real_run(tmp_path):
    import sys

    from autoresearch.records import RunSpec
    from autoresearch.runner import run_process

    (tmp_path / "train.py").write_text(
        "import sys\n"
        "sys.stdout.buffer.write(b'step 1 \\xff\\xfe\\xc3\\x28 garbage \\x80\\n')\n"
        "sys.stdout.buffer.write(b'---\\nval_acc: 0.75\\nnote: caf\\xe9\\n')\n")
    spec = RunSpec(command=f"{sys.executable} train.py", cwd=str(tmp_path), env={"PATH": "/usr/bin:/bin"},
                   timeout=30, log_path=str(tmp_path / "log.txt"))
    result = run_process(spec)
    raw = (tmp_path / "log.txt").read_bytes()
    assert b"\xff\xfe" in raw  # the log keeps the bytes as they were
    assert parse_footer(raw)["val_acc"] == 0.75
    assert parse_footer(raw.decode("utf-8", errors="replace"))["note"] == "caf\ufffd"
    assert parse_footer(result.output_tail)["val_acc"] == 0.75
