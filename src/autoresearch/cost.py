"""What a run has spent: the one place that sums it.

The experiments' agent calls are in the ledger (`cost_usd`, `tokens` of each record); the
strategy memo's LLM calls are no iteration and live beside it in `memo_calls.jsonl`. Status,
the report and `--max-cost-usd` all read `spend`, so they can never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Spend:
    experiments_usd: float = 0.0
    experiments_tokens: int = 0
    memo_usd: float = 0.0
    memo_tokens: int = 0

    @property
    def cost_usd(self) -> float:
        return round(self.experiments_usd + self.memo_usd, 6)

    @property
    def tokens(self) -> int:
        return self.experiments_tokens + self.memo_tokens


def memo_calls_path(store) -> Path:
    return store.root / "memo_calls.jsonl"


def memo_spend(store) -> tuple[float, int]:
    """(dollars, tokens) the strategy memo calls of a run have cost so far."""
    path = memo_calls_path(store)
    if not path.is_file():
        return 0.0, 0
    cost, tokens = 0.0, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            cost, tokens = cost + float(entry.get("cost_usd") or 0.0), tokens + int(entry.get("tokens") or 0)
        except (ValueError, TypeError, AttributeError):
            continue  # a line torn by a kill mid-append: that call's cost is lost, not the run
    return round(cost, 6), tokens


def spend(store, records: Iterable | None = None) -> Spend:
    """Everything a run's agent calls cost: its experiments (the ledger's, or `records`) and its memo."""
    rows = list(store.ledger.records if records is None else records)
    memo_usd, memo_tokens = memo_spend(store)
    return Spend(sum(r.cost_usd for r in rows), sum(r.tokens for r in rows), memo_usd, memo_tokens)
