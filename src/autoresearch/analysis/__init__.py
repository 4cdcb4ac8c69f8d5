"""Analysis of a run: summaries for the agent and for people, plots and reports."""
