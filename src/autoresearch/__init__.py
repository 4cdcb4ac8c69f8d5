"""autoresearch: autonomous ML research loops.

The data flows one way: task config -> context -> agent -> guard -> commit -> run ->
metrics -> decision -> ledger -> analysis. Each arrow is one module.

What lives where:

    loop/        the iteration as stages over an Attempt, and the session around it
    execution/   how a run runs (Executor, local, warm starts, Ray) under one supervision
    agents/      who proposes: Agent base class, one module per backend
    analysis/    summaries, plots, reports: observers handed to the loop, never its decisions
    live/, dashboard/   watching a night: the loop's events, live.json, the terminal and web views
    top level    the core: config, records, verdict (outcomes as a type), decision, noise, guard,
                 crash, integrity, gitrepo, store, ledger, results_tsv, curves, atomic, cost, cli, api

The core modules import only each other (and agents.base, execution); they never import
`analysis`, which is handed in as an observer (api.py does it) and may import the core.
"""

from autoresearch.errors import AutoresearchError, ConfigError

__version__ = "0.1.0"
__all__ = ["AutoresearchError", "ConfigError", "__version__"]
