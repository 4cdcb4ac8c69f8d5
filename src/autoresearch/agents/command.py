"""The `command` agent: any program that edits the files itself.

The rendered prompt reaches it on stdin and in the file named by AUTORESEARCH_PROMPT_FILE;
AUTORESEARCH_ITERATION says which iteration it is. Its stdout is the explanation, and the
first non-empty line of it the description.

Success is judged by the diff, as for every agent: a command that exits non-zero after
editing the files (a wrapped CLI at its turn limit) still goes to training, with the exit
noted in the ledger; one that exits non-zero without an edit is a crash.
"""

from __future__ import annotations

import re
from contextlib import nullcontext

import shlex
import shutil
import tempfile
from pathlib import Path

from autoresearch.agents.base import Agent, Context
from autoresearch.environment import agent_env
from autoresearch.errors import ConfigError
from autoresearch.guard import content_hash
from autoresearch.records import Proposal, RunSpec
from autoresearch.execution.runner import run_process
from autoresearch.secrets import redact, redact_file, secret_values


# A heading or list marker, or bold, around the first line: markup, not the description ("-nan" stays).
_MARKDOWN = re.compile(r"^(?:#{1,6}\s+|[-*+]\s+|\*\*)+|\*\*$")


def split_explanation(text: str) -> tuple[str, str]:
    """(description, explanation) from an agent's final text.

    A marked `<explanation>` block wins; otherwise the whole text is the explanation.
    """
    start, end = text.rfind("<explanation>"), text.rfind("</explanation>")
    if start != -1 and end > start:
        text = text[start + len("<explanation>"):end]
    text = text.strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _MARKDOWN.sub("", first).strip()[:200], text


class CommandAgent(Agent):
    name = "command"

    def __init__(self, command: str, timeout: float = 3600.0, task=None):
        self.command = command
        self.timeout = timeout
        self.task = task  # for [agent] env; None: no names beyond the safe ones

    @classmethod
    def from_task(cls, task, seed: int = 0) -> "CommandAgent":
        cmd = task.agent.command
        if not cmd.strip():
            raise ConfigError(task.path, "agent.command",
                              'kind = "command" needs the command that edits the files, e.g. command = "./my_agent.sh"')
        return cls(cmd, timeout=task.agent.timeout, task=task)

    def propose(self, context: Context) -> Proposal:
        run_dir = Path(context.prompt_file).parent if context.prompt_file else context.task_dir
        stdout_log = run_dir / "agent.log"
        stderr_log = run_dir / "agent.stderr.log"
        env = {
            **agent_env(self.name, self.task),  # secrets only where [agent] env names them
            "AUTORESEARCH_PROMPT_FILE": str(context.prompt_file),
            "AUTORESEARCH_ITERATION": str(context.iteration),
        }
        before = content_hash(context.task_dir, context.editable)
        with tempfile.TemporaryDirectory(prefix="autoresearch-command-") as scratch:
            # stderr goes to the call's scratch folder (the run store is read-only in the sandbox),
            # then beside the prompt; the shell reads the prompt as stdin, so stdout is the explanation.
            stderr_tmp = Path(scratch) / "stderr"
            script = f"exec 0<{shlex.quote(str(context.prompt_file))} 2>>{shlex.quote(str(stderr_tmp))}\n{self.command}"
            sandboxed = context.sandbox.call(self.name, env, scratch=(scratch,)) if context.sandbox else nullcontext()
            with sandboxed as view:  # sandboxed: its edits of the editable files come back on leaving
                result = run_process(RunSpec(command=script, cwd=str(context.task_dir), env=env,
                                             timeout=self.timeout, log_path=str(stdout_log), sandbox=view),
                                     stop_event=context.stop_event, on_start=context.on_process_start)
            if stderr_tmp.exists():
                with open(stderr_log, "ab") as out, open(stderr_tmp, "rb") as err:
                    shutil.copyfileobj(err, out)
        secrets = secret_values(env)  # the keys [agent] env handed it: never in its logs or the ledger
        for log in (stdout_log, stderr_log):
            redact_file(log, secrets)
        text = stdout_log.read_text(encoding="utf-8", errors="replace") if stdout_log.exists() else ""
        description, explanation = split_explanation(text)
        if result.timed_out:
            return Proposal(description or "agent timed out", explanation, ok=False,
                            error=f"agent command timed out after {self.timeout:g} s")
        if result.exit_code != 0:
            tail = redact(stderr_log.read_text(errors="replace")[-500:], secrets).strip() if stderr_log.exists() else ""
            error = f"agent command exited with {result.exit_code}" + (f": {tail}" if tail else "")
            if result.exit_code is not None and content_hash(context.task_dir, context.editable) != before:
                # The edit is there: the metric judges it; the ledger keeps the exit.
                return Proposal(description or "command edit (non-zero exit)", explanation, data={"warning": error})
            return Proposal(description or "agent failed", explanation, ok=False, error=error)
        return Proposal(description or "(no description)", explanation)
