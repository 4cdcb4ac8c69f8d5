"""Model prices for the CLIs that report tokens but no cost (codex, gemini).

USD per million tokens as (input, cached input, output), list prices when this was written:
an estimate for the ledger, not a bill. A task overrides or extends the table under [agent]:

    [agent.price]
    "gpt-5-codex" = [1.25, 0.125, 10.0]          # input, cached input, output
    "my-local-model" = {input = 0, cached_input = 0, output = 0}

A model matches its exact name, else the longest name in the table it starts with
("gpt-5-codex-2025-09" uses "gpt-5-codex"); "*" is the fallback when nothing matches.
"""

from __future__ import annotations

from autoresearch.errors import ConfigError

Price = tuple[float, float, float]

PRICES: dict[str, Price] = {
    # OpenAI, for codex
    "gpt-5": (1.25, 0.125, 10.0),
    "gpt-5-codex": (1.25, 0.125, 10.0),
    "gpt-5.1": (1.25, 0.125, 10.0),
    "gpt-5.1-codex": (1.25, 0.125, 10.0),
    "gpt-5-mini": (0.25, 0.025, 2.0),
    "gpt-5.1-codex-mini": (0.25, 0.025, 2.0),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "o3": (2.0, 0.50, 8.0),
    "o4-mini": (1.10, 0.275, 4.40),
    "gpt-4.1": (2.0, 0.50, 8.0),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    # Google, for gemini (the <=200k-token prompt tier)
    "gemini-2.5-pro": (1.25, 0.125, 10.0),
    "gemini-2.5-flash": (0.30, 0.03, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.01, 0.40),
    "gemini-3-pro-preview": (2.0, 0.20, 12.0),
}


def price_table(task, options: dict) -> dict[str, Price]:
    """The built-in table with the backend's `price` table (see cli_agent.backend_options) on top."""
    raw = options.get("price", {})
    if not isinstance(raw, dict):
        raise ConfigError(task.path, "agent.price", f"must be a table of model = [input, cached_input, output], got {raw!r}")
    table = dict(PRICES)
    for model, value in raw.items():
        if isinstance(value, dict):
            value = [value.get("input"), value.get("cached_input", value.get("input")), value.get("output")]
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)):
            raise ConfigError(task.path, f"agent.price.{model}",
                              f"must be [input, cached_input, output] in USD per 1M tokens, got {value!r}")
        table[model] = tuple(float(v) for v in value)
    return table


def lookup(table: dict[str, Price], model: str) -> tuple[str, Price] | None:
    """(the table entry used, its price) for `model`, or None when nothing matches."""
    if model in table:
        return model, table[model]
    prefixes = [name for name in table if name != "*" and model.startswith(name)]
    if prefixes:
        name = max(prefixes, key=len)
        return name, table[name]
    return ("*", table["*"]) if "*" in table else None


def cost(price: Price, uncached_input: int, cached_input: int, output: int) -> float:
    return (uncached_input * price[0] + cached_input * price[1] + output * price[2]) / 1e6
