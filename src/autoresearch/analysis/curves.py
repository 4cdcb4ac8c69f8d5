"""Learning curves: they live in the core now (autoresearch/curves.py), since the loop's live
view and early stopping read them too and the core never imports `analysis`; this is the
earlier import path."""

from autoresearch.curves import Curve, load_curve, numeric_fields, parse_jsonl, parse_log, series_names, x_key  # noqa: F401
