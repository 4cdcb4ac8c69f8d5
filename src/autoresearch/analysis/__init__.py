"""Analysis of a run: summaries for the agent and for people, plots and reports.

Everything here reads the store and the ledger and writes derived files (analysis_summary.*,
per-run meta.json, axes.jsonl, plots, report.html); nothing here decides keep or discard.
The loop gets it as an observer (`observer.BackgroundRefresh`, handed in by api.py). May import the core
(records, verdict, store, config, decision, noise, ...); the core never imports this package.
"""
