"""Agents: one module per backend, all behind `Agent.propose(context) -> Proposal`.

Each backend module has a class with `from_task(task, seed) -> Agent`, a subclass of
`base.Agent`, whose hooks have no-op defaults: `check()` verifies at start-up that the backend
can work (binary present, flags accepted) and raises `AutoresearchError` with a fix when not;
`write_memo(request)` writes the strategy memo (None: the rules do); `repairs`, `name`,
`close()`. `base.as_agent` gives an object with only `propose` those hooks.

May import the core (records, config, errors, environment, constants, ...), never the loop.
"""

from __future__ import annotations

from importlib import import_module

from autoresearch.agents.base import Agent, Context, Repeat
from autoresearch.errors import ConfigError

# kind -> "module:Class"; a backend registers itself here and nowhere else.
BACKENDS: dict[str, str] = {
    "tuner": "autoresearch.agents.tuner:TunerAgent",
    "command": "autoresearch.agents.command:CommandAgent",
    "claude": "autoresearch.agents.claude:ClaudeAgent",
    "codex": "autoresearch.agents.codex:CodexAgent",
    "gemini": "autoresearch.agents.gemini:GeminiAgent",
    "aider": "autoresearch.agents.aider:AiderAgent",
    "openai": "autoresearch.agents.openai:OpenAIAgent",
}
KINDS = tuple(BACKENDS)


def create_agent(kind: str, task, *, seed: int = 0) -> Agent:
    """The agent named by `kind`, configured from the task's [agent] section."""
    if kind not in BACKENDS:
        raise ConfigError(task.path, "agent.kind", f"unknown agent {kind!r}; expected one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[kind].split(":")
    return getattr(import_module(module), cls).from_task(task, seed=seed)


__all__ = ["Agent", "Context", "Repeat", "create_agent", "BACKENDS", "KINDS"]
