"""Agents: one module per backend, all behind `Agent.propose(context) -> Proposal`."""

from __future__ import annotations

from autoresearch.agents.base import Agent, Context
from autoresearch.errors import ConfigError

KINDS = ("tuner", "command")


def create_agent(kind: str, task, *, command: str | None = None, seed: int = 0) -> Agent:
    """The agent named by `kind`, configured from the task's [agent] section."""
    if kind == "tuner":
        from autoresearch.agents.tuner import TunerAgent  # optuna loads only when needed
        return TunerAgent(seed=seed)
    if kind == "command":
        from autoresearch.agents.command import CommandAgent
        cmd = command if command is not None else task.agent.command
        if not cmd or not cmd.strip():
            raise ConfigError(task.path, "agent.command", 'kind = "command" needs the command that edits the files, e.g. command = "./my_agent.sh"')
        timeout = float(getattr(task.agent, "timeout", None) or 3600)
        return CommandAgent(cmd, timeout=timeout)
    raise ConfigError(task.path, "agent.kind", f"unknown agent {kind!r}; expected one of {', '.join(KINDS)}")


__all__ = ["Agent", "Context", "create_agent", "KINDS"]
