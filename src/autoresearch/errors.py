"""The tool's own error types: everything a user can cause ends as one of these."""


class AutoresearchError(Exception):
    """A problem the user can fix; the CLI prints the message without a traceback."""


class ConfigError(AutoresearchError):
    """A task config that is missing, malformed or inconsistent.

    The message names the file, the key and what is expected.
    """

    def __init__(self, path, key: str | None, problem: str):
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {problem}")


class AgentPaused(AutoresearchError):
    """The night paused on the same agent failure repeated (not logged in, no network...): its fix."""


class GitError(AutoresearchError):
    """A git command failed in a way the loop cannot recover from by itself."""
