"""Shared plumbing of the coding-CLI agents (claude, codex, gemini, aider).

One call of a CLI is one `run_process`: its own process group, stdin a file (the prompt) or
/dev/null, the [agent] timeout with the whole group killed, stopped on Ctrl-C, reported to
the loop so a resume can clean up after a crash. stdout (the CLI's JSON) and stderr are
captured apart in a private scratch directory and saved *redacted* as `agent.log` beside the
prompt: a CLI that echoes its API key never puts it in the run store.

A backend supplies `argv()` and `parse()`; this module does the rest: the environment (ours,
less every secret-looking variable but the backend's own API keys and those `[agent] env`
names), bounded retries with exponential backoff on transient errors, the start-up check,
and the Proposal.

Success is judged by the diff, not by the exit code: a call that failed after editing the
files (turn limit, unreadable output) still goes to training, with the failure noted in
the ledger; a call that failed without an edit is a crash with the classified reason.

Keys of [agent] every CLI backend reads, besides `kind`, `timeout` and `env`:

    binary     = "claude"       # program name on PATH, or a path (default: the backend's name)
    model      = "..."          # passed to the CLI's model flag (default: the CLI's own choice)
    extra_args = ["--x", "y"]   # appended to the command line as given (a list or a shell string)
    retries    = 3              # calls after a transient error (rate limit, overload, 5xx): claude only
    backoff    = 10.0           # seconds before the first retry, doubled each time, at most 300
    env        = ["NAME", ...]  # more variables the CLI may see (as [agent] env)
    preflight  = true           # check login, key and API host before the baseline

The same keys in an `[agent.<backend>]` table apply to that backend whatever the kind (and win
over the top-level ones, which belong to `kind`); a key a backend does not know is refused.

One retry policy per backend, never two stacked: claude's own retries are switched off
(CLAUDE_CODE_MAX_RETRIES=0) and ours apply; codex, gemini and aider retry by themselves and
cannot be told not to, so ours are off for them (`retries` is refused there).

Known causes that no retry or wait can fix (not logged in, no network, a browser login, an
unknown model, a failed file write: failures.py) end the call as soon as the program prints
them, with the program's own line and the fix in the ledger; `check()` looks for the likely
ones before the baseline.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoresearch.agents.base import Agent, Context, Memo, MemoFailed
from autoresearch.agents.command import split_explanation
from autoresearch.agents.failures import COMMON_CAUSES, known_cause, message as last_message, shorten
from autoresearch.agents.preflight import unreachable
from autoresearch.environment import agent_env
from autoresearch.errors import AutoresearchError, ConfigError
from autoresearch.guard import content_hash
from autoresearch.prompt import run_interpreter
from autoresearch.records import Proposal, RunSpec
from autoresearch.execution.runner import run_process
from autoresearch.secrets import redact, secret_values

MAX_BACKOFF = 300.0
BACKEND_TABLES = ("claude", "codex", "gemini", "aider", "openai")  # [agent.<name>] sections
COMMON_KEYS = frozenset({"binary", "model", "extra_args", "retries", "backoff", "env", "timeout", "preflight"})
WATCH_INTERVAL = 0.2  # how often a running CLI's output is read for a known cause
CHECK_TIMEOUT = 30.0  # `--help` of a Node CLI can take a few seconds on a cold start
LOG_ARG_CHARS = 200  # longer arguments (the system prompt) are shortened in agent.log


class Failure(str, enum.Enum):
    AUTH = "auth"  # not logged in, invalid key: retrying cannot help
    TRANSIENT = "transient"  # rate limit, overload, 5xx, network: retried with backoff
    MAX_TURNS = "max_turns"
    TIMEOUT = "timeout"  # no answer within [agent] timeout: a hang
    STOPPED = "stopped"  # Ctrl-C
    OUTPUT = "output"  # no readable result: truncated or garbled output
    ERROR = "error"  # anything else the CLI reported
    OFFLINE = "offline"  # no network, DNS, refused connection: waiting would not help
    LOGIN = "login"  # the CLI wants an interactive (browser) login
    MODEL = "model"  # the model name is unknown to the API
    WRITE = "write"  # the CLI could not write the files


# Failures retrying cannot fix: the call ends at once, and a few in a row pause the night.
FATAL = frozenset({Failure.AUTH, Failure.OFFLINE, Failure.LOGIN, Failure.MODEL, Failure.WRITE})


@dataclass(frozen=True)
class Call:
    """What one run of the CLI left behind."""

    stdout: str
    stderr: str
    exit_code: int | None
    dir: Path  # the call's private scratch directory (analytics logs and the like)


@dataclass(frozen=True)
class Outcome:
    """One call, parsed: the agent's final message, or why there is none."""

    text: str = ""
    failure: Failure | None = None
    error: str = ""  # one line for the ledger's crash reason
    cost_usd: float = 0.0
    tokens: int = 0
    data: dict[str, Any] = field(default_factory=dict)


_AUTH = re.compile(
    r"not logged in|please run /login|invalid[ _-]?(x-)?api[ _-]?key|incorrect api key|api key not valid|"
    r"fix external api key|missing (bearer|api key)|authenticat|unauthori[sz]ed|\b40[13]\b|auth method|"
    r"permission_denied|forbidden", re.IGNORECASE)
_TRANSIENT = re.compile(
    r"rate[ _-]?limit|too many requests|\b429\b|overloaded|\b5\d\d\b|server error|internal error|unavailable|"
    r"temporar|try again|timed? ?out|connection (error|reset|refused)|econnreset|econnrefused|eai_again|"
    r"socket hang up|fetch failed|network|stream disconnected|resource_exhausted", re.IGNORECASE)


def classify(message: str, status: int | None = None) -> Failure:
    """AUTH, TRANSIENT or ERROR for an error message (and HTTP status, when the CLI gives one)."""
    if status in (401, 403):
        return Failure.AUTH
    if status == 429 or (isinstance(status, int) and status >= 500):
        return Failure.TRANSIENT
    if _AUTH.search(message):
        return Failure.AUTH
    if _TRANSIENT.search(message):
        return Failure.TRANSIENT
    return Failure.ERROR


def last_json_object(text: str) -> dict | None:
    """The last top-level JSON object in `text` (CLIs print warnings around their JSON)."""
    decoder, found, covered = json.JSONDecoder(), None, 0
    for match in re.finditer(r"(?m)^[ \t]*\{", text):
        if match.start() < covered:
            continue  # inside an object already decoded
        try:
            obj, end = decoder.raw_decode(text, match.end() - 1)
        except ValueError:
            continue
        if isinstance(obj, dict):
            found, covered = obj, end
    return found


def one_line(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters, cut at a word boundary."""
    return shorten(text, limit)


def instructions(context: Context, run_command: str) -> str:
    """The rules every CLI agent gets on top of the prompt (as a system prompt where it has one)."""
    editable = ", ".join(f"`{f}`" for f in context.editable)
    readonly = ", ".join(f"`{f}`" for f in context.readonly)
    return "\n".join([
        "You are the coding agent of an autonomous ML research loop, running without a human: nobody "
        "will answer a question, so never ask one; decide, and make the change.",
        f"- Edit only these files in {context.task_dir}: {editable}."
        + (f" Never modify {readonly}." if readonly else ""),
        f"- Do not run the training and do not commit or use git: the orchestrator commits your change and "
        f"runs `{run_command}` itself, with `python` = {run_interpreter(run_command, context.task_dir)}.",
        "- End your final message with the <explanation> block the prompt asks for: a one-line "
        "description, then 2-5 sentences on what you changed and why.",
    ])


def backend_options(task, name: str) -> tuple[dict, set[str]]:
    """The [agent] keys meant for backend `name`, and which of them come from `[agent.<name>]`.

    Top-level [agent] keys belong to the configured kind; `[agent.<name>]` tables hold keys
    for one backend whatever the kind, so `--agent codex` on a task set up for claude does not
    run codex with claude's binary or model.
    """
    extra = dict(task.agent.model_extra or {})
    own = extra.get(name) if isinstance(extra.get(name), dict) else {}
    top = {k: v for k, v in extra.items() if k not in BACKEND_TABLES} if task.agent.kind == name else {}
    if task.agent.kind == name and "env" in task.agent.model_fields_set:
        top["env"] = list(task.agent.env)
    if task.agent.kind == name and "timeout" in task.agent.model_fields_set:
        top["timeout"] = task.agent.timeout
    return {**top, **own}, set(own)


def check_keys(task, name: str, options: dict, own: set[str], known) -> None:
    """A key this backend does not read is an error, not a silently ignored setting."""
    for key in sorted(options):
        if key in known or isinstance(options[key], dict) and key in ("price", "extra_body"):
            continue
        if key in own or key in (task.agent.model_extra or {}):
            where = f"agent.{name}.{key}" if key in own else f"agent.{key}"
            raise ConfigError(task.path, where, f"the {name} backend has no setting {key!r}; "
                              f"it reads {', '.join(sorted(known))}")


class CliAgent(Agent, abc.ABC):
    """Base of the CLI backends; subclasses set the class attributes and write argv, parse, memo_argv."""

    name = ""
    program = ""  # the binary's usual name
    install = ""  # how to install it, for the error message (Markdown-ish: commands in backticks)
    api_keys: tuple[str, ...] = ()  # the secret-looking variables this CLI needs; "PREFIX*" for a family
    help_args: tuple[str, ...] = ("--help",)
    required_flags: tuple[str, ...] = ()  # flags we pass that `help_args` output must list
    keys: frozenset[str] = frozenset()  # this backend's own [agent] keys, besides COMMON_KEYS
    cli_retries = False  # True: the CLI retries by itself and cannot be stopped, so ours stay off
    auth_fix = ""  # how to log in, for an auth failure's reason
    causes = ()  # this backend's known causes (failures.Cause), tried before the common ones

    def __init__(self, task):
        self.task = task
        self.options, self._own = backend_options(task, self.name)
        check_keys(task, self.name, self.options, self._own, COMMON_KEYS | self.keys)
        self.binary = self.option("binary", (str,), self.program, "a program name or path")
        self.model = self.option("model", (str,), "", "a model name")
        extra = self.option("extra_args", (list, str), [], "a list of arguments or a string")
        self.extra_args = shlex.split(extra) if isinstance(extra, str) else [str(a) for a in extra]
        self.retries = self.option("retries", (int,), 3 if not self.cli_retries else 0, "a whole number of retries")
        if self.cli_retries and self.retries:
            raise ConfigError(task.path, self._where("retries"), f"{self.name} retries transient errors by itself "
                              "and cannot be told not to; ours would stack on its own: remove `retries`")
        self.backoff = float(self.option("backoff", (int, float), 10.0, "seconds"))
        self.env_names = tuple(self.option("env", (list,), [], "a list of variable names"))
        self.preflight = self.option("preflight", (bool,), True, "true or false")
        self.timeout = float(self.option("timeout", (int, float), task.agent.timeout, "seconds"))
        self.run_command = task.run
        self._checked: str | None = None
        self._stop_event: threading.Event | None = None
        self._sandbox = None  # execution.agent_sandbox.AgentSandbox of the last iteration, or None

    def option(self, key: str, kinds: tuple[type, ...], default, expected: str):
        """One backend option, type-checked: a wrong type is a ConfigError naming the key."""
        value = self.options.get(key, default)
        if value is default:
            return default
        where = self._where(key)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise ConfigError(self.task.path, where, f"must be {expected}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(self.task.path, where, f"must be {expected} (not negative), got {value!r}")
        return value

    def _where(self, key: str) -> str:
        return f"agent.{self.name}.{key}" if key in self._own else f"agent.{key}"

    @classmethod
    def from_task(cls, task, seed: int = 0):
        return cls(task)

    # -- what a backend writes ------------------------------------------------------------
    @abc.abstractmethod
    def argv(self, context: Context, binary: str, scratch: Path, prompt_file: Path) -> tuple[list[str], Path | None]:
        """The command line and the file to give as stdin (None: /dev/null)."""

    @abc.abstractmethod
    def parse(self, call: Call) -> Outcome:
        """What the CLI's output says: its final text, cost, tokens, and a failure if any."""

    def prompt_with_rules(self, context: Context, prompt_file: Path, scratch: Path) -> Path:
        """A file with our rules, then the loop's prompt: for CLIs without a system-prompt flag."""
        combined = scratch / "prompt_with_rules.md"
        combined.write_text(instructions(context, self.run_command) + "\n\n" + prompt_file.read_text(encoding="utf-8"),
                            encoding="utf-8")
        return combined

    def env(self) -> dict[str, str]:
        """Ours less the secrets this CLI has no use for (see environment.agent_env), plus the
        names `env` lists in its own table; the CLI's own retries are off where ours apply."""
        env = agent_env(self.name, self.task, keys=(*self.api_keys, *self.env_names))
        return env

    def bundled(self) -> list[str]:
        """Where else the binary may be (claude: inside the claude-agent-sdk wheel)."""
        return []

    # -- start-up check -------------------------------------------------------------------
    def resolve(self) -> str:
        """The binary's path, or an error saying how to install or configure it."""
        found = shutil.which(self.binary, path=self.env()["PATH"])
        if found is None and self.binary == self.program:
            found = next((p for p in self.bundled() if os.access(p, os.X_OK)), None)
        if found is None:
            table = "[agent]" if self.task.agent.kind == self.name else f"[agent.{self.name}]"
            raise AutoresearchError(
                f"agent {self.name!r}: `{self.binary}` not found on PATH. Install it with {self.install}, "
                f"or set `binary = \"/path/to/{self.program}\"` under {table} in {self.task.path}")
        return found

    def check(self, sandbox=None) -> None:
        """Fail in a second, with a fix, when the CLI is missing or does not take our flags.

        `--help` and the status commands start the user's binary: in the agent's `sandbox` (as its
        calls run, read-only), never with the orchestrator's rights over the home and the task."""
        if self._checked:
            return
        self._sandbox = sandbox
        path = self.resolve()
        try:
            done = self._probe(path, *self.help_args)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AutoresearchError(f"agent {self.name!r}: `{path} {' '.join(self.help_args)}` failed ({exc}); "
                                    f"reinstall it with {self.install}") from None
        listed = done.stdout + done.stderr
        missing = [f for f in self.required_flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", listed)]
        if missing:
            raise AutoresearchError(
                f"agent {self.name!r}: `{path}` does not accept {', '.join(missing)} (not in its "
                f"`{' '.join(self.help_args)}`); this version is not supported, upgrade it with {self.install}")
        if self.preflight:
            problem = self.ready(path)
            if problem:
                raise AutoresearchError(f"agent {self.name!r} cannot work: {problem} (or set `preflight = false` "
                                        f"under [agent] to skip this check)")
        self._checked = path

    def ready(self, path: str) -> str | None:
        """Before the baseline: why this CLI cannot work (not logged in, no key, API unreachable), or None."""
        return None

    def endpoint_problem(self, url: str) -> str | None:
        return unreachable(url)

    def run_quietly(self, path: str, *args: str) -> subprocess.CompletedProcess | None:
        """`path args` as `_probe` runs it, or None when it cannot run in CHECK_TIMEOUT."""
        try:
            return self._probe(path, *args)
        except (OSError, subprocess.TimeoutExpired):
            return None

    def _probe(self, path: str, *args: str) -> subprocess.CompletedProcess:
        """`path args` with the agent's environment, and in its sandbox when it has one: the
        credentials of the home hidden, its own state writable, the task read-only (`edits` off)."""
        env = self.env()
        sandboxed = (self._sandbox.call(self.name, env, edits=False, programs=[path]) if self._sandbox
                     else contextlib.nullcontext())
        with sandboxed as view:
            argv = view.argv([path, *args], str(self.task.dir), env=env) if view is not None else [path, *args]
            return subprocess.run(argv, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL,
                                  env=env, timeout=CHECK_TIMEOUT)

    # -- one iteration --------------------------------------------------------------------
    def propose(self, context: Context) -> Proposal:
        binary = self._checked or self.resolve()
        self._stop_event = context.stop_event  # the memo call between iterations stops on Ctrl-C too
        self._sandbox = context.sandbox  # and runs in the same sandbox, its files read-only
        run_dir = Path(context.prompt_file).parent if context.prompt_file else None
        before = content_hash(context.task_dir, context.editable)
        outcomes: list[Outcome] = []
        with tempfile.TemporaryDirectory(prefix=f"autoresearch-{self.name}-") as tmp:
            scratch = Path(tmp)
            prompt_file = Path(context.prompt_file) if context.prompt_file else scratch / "prompt.md"
            if not context.prompt_file:
                prompt_file.write_text(context.prompt, encoding="utf-8")
            log = (run_dir or scratch) / "agent.log"
            for attempt in range(1, self.retries + 2):
                outcome = self._call(lambda d: self.argv(context, binary, d, prompt_file), context.task_dir,
                                     scratch / f"call{attempt}", attempt, log, context.stop_event,
                                     context.on_process_start, edits=True)
                outcomes.append(outcome)
                if outcome.failure is not Failure.TRANSIENT or attempt > self.retries:
                    break
                if content_hash(context.task_dir, context.editable) != before:
                    break  # it edited before failing: judge the edit rather than start over
                if _wait(context.stop_event, min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)):
                    break
        changed = content_hash(context.task_dir, context.editable) != before
        return self._proposal(outcomes, changed)

    def write_memo(self, request: str) -> Memo:
        """The strategy memo (outer.refresh_memo_if_due), written by the same CLI in a read-only mode.

        One call, no retry: on any failure the outer loop falls back to its rules-based memo.
        Should the CLI edit a file anyway, the file is put back as it was. Its cost comes back
        with the memo, or with the MemoFailed error: the outer loop records it either way.
        """
        binary = self._checked or self.resolve()
        files = [self.task.dir / f for f in (*self.task.editable, *self.task.readonly)]
        before = {f: f.read_bytes() for f in files if f.is_file()}
        with tempfile.TemporaryDirectory(prefix=f"autoresearch-{self.name}-memo-") as tmp:
            request_file = Path(tmp) / "memo_request.md"
            request_file.write_text(request, encoding="utf-8")
            outcome = self._call(lambda d: self.memo_argv(binary, d, request_file), self.task.dir,
                                 Path(tmp) / "call", 1, Path(tmp) / "agent.log", self._stop_event, None,
                                 edits=False)
        for f, data in before.items():
            if not f.is_file() or f.read_bytes() != data:
                f.write_bytes(data)
        if outcome.failure is not None or not outcome.text.strip():
            raise MemoFailed(f"{self.name}: {outcome.error or 'empty answer'}", cost_usd=outcome.cost_usd,
                             tokens=outcome.tokens)
        return Memo(outcome.text, cost_usd=round(outcome.cost_usd, 6), tokens=outcome.tokens)

    @abc.abstractmethod
    def memo_argv(self, binary: str, scratch: Path, request_file: Path) -> tuple[list[str], Path | None]:
        """The command line for a read-only answer to `request_file` (the strategy memo)."""

    def _call(self, make_argv, cwd: Path, scratch: Path, attempt: int, log: Path,
              stop_event: threading.Event | None, on_start, *, edits: bool) -> Outcome:
        scratch.mkdir()
        argv, stdin = make_argv(scratch)
        stdout_path, stderr_path = scratch / "stdout", scratch / "stderr"
        env = self.env()
        # In the sandbox: the call's private folder (the prompt, stdout, stderr) writable, the
        # editable files too unless `edits` is False (the memo), the CLI's own state folders.
        sandboxed = self._sandbox.call(self.name, env, scratch=(str(scratch.parent),), edits=edits,
                                       programs=argv[:1]) if self._sandbox else contextlib.nullcontext()
        command = (f"exec {shlex.join(argv)} <{shlex.quote(str(stdin or os.devnull))} "
                   f"2>{shlex.quote(str(stderr_path))}")
        watcher = _Watcher(self, {"stdout": stdout_path, "stderr": stderr_path}, stop_event)
        watcher.start()
        try:
            with sandboxed as view:  # sandboxed: its edits of the editable files come back on leaving
                result = run_process(RunSpec(command=command, cwd=str(cwd), env=env, timeout=self.timeout,
                                             log_path=str(stdout_path), sandbox=view),
                                     stop_event=watcher.kill, on_start=on_start)
        finally:
            watcher.finish()
        call = Call(_read(stdout_path), _read(stderr_path), result.exit_code, scratch)
        try:
            outcome = self.parse(call)
        except Exception as exc:  # a CLI that changed its output must not end the night
            outcome = Outcome(failure=Failure.OUTPUT, error=f"unreadable output ({type(exc).__name__}: {exc})")
        killed = watcher.found is not None and (result.exit_code is None or outcome.failure is not None)
        if killed:  # ended at once (or failed): nothing after that line would have helped
            cause, line = watcher.found
            outcome = Outcome(outcome.text, Failure(cause.failure), f"{line} ({cause.fix})",
                              outcome.cost_usd, outcome.tokens, outcome.data)
        elif outcome.failure is not None and outcome.failure not in FATAL | {Failure.MAX_TURNS}:
            cause = self.cause_of(outcome.error)
            if cause is not None:
                outcome = replace(outcome, failure=Failure(cause.failure), error=f"{outcome.error} ({cause.fix})")
        if outcome.failure is Failure.AUTH and self.auth_fix and self.auth_fix not in outcome.error:
            outcome = replace(outcome, error=f"{outcome.error} ({self.auth_fix})")
        if killed:
            pass
        elif result.timed_out:  # keep what was spent, but a hang is a hang
            outcome = Outcome(outcome.text, Failure.TIMEOUT, f"no answer within the [agent] timeout of "
                              f"{self.timeout:g} s (hung?); killed", outcome.cost_usd, outcome.tokens, outcome.data)
        elif result.exit_code is None:
            outcome = Outcome(outcome.text, Failure.STOPPED, "stopped", outcome.cost_usd, outcome.tokens, outcome.data)
        secrets = secret_values(os.environ) + secret_values(env)
        _append_log(log, attempt, argv, call, result.wall_seconds, outcome, secrets)
        # The text and the error go to the ledger and the next prompt: a key the CLI echoed stops here.
        return replace(outcome, text=redact(outcome.text, secrets), error=redact(outcome.error, secrets),
                       data=json.loads(redact(json.dumps(outcome.data), secrets)))

    def cause_of(self, text: str):
        """The known cause (failures.Cause) `text` shows, this backend's own first."""
        return known_cause(text, (*self.causes, *COMMON_CAUSES))

    def watched(self, stream: str, line: str) -> str | None:
        """The text of an output line worth classifying while the CLI runs, or None.

        By default stderr lines only: stdout holds the model's own words, which may mention
        anything. A backend whose errors come on stdout (codex's JSON events) overrides it.
        """
        return line if stream == "stderr" else None

    def _proposal(self, outcomes: list[Outcome], changed: bool) -> Proposal:
        last = outcomes[-1]
        cost = round(sum(o.cost_usd for o in outcomes), 6)
        tokens = sum(o.tokens for o in outcomes)
        description, explanation = split_explanation(last.text)
        data = {**last.data, "attempts": len(outcomes)}
        if last.failure is not None:
            data["failure"] = last.failure.value
        failures = [f"{o.failure.value}: {o.error}" for o in outcomes if o.failure]
        if failures:
            data["failures"] = failures
        if last.failure is None:
            return Proposal(description or "(no description)", explanation, cost_usd=cost, tokens=tokens, data=data)
        error = f"{self.name}: {last.error}"
        if last.failure is Failure.TRANSIENT and len(outcomes) > 1:
            error += f" (gave up after {len(outcomes)} attempts)"
        if changed and last.failure not in (Failure.TIMEOUT, Failure.STOPPED) and last.failure not in FATAL:
            # The edit is there: the metric judges it; the ledger keeps what went wrong.
            data["warning"] = error
            return Proposal(description or f"{self.name} edit ({last.failure.value})", explanation,
                            cost_usd=cost, tokens=tokens, data=data)
        return Proposal(description or "agent failed", explanation, ok=False, error=error,
                        cost_usd=cost, tokens=tokens, data=data)


class _Watcher:
    """Reads a running CLI's output as it comes; on a known cause, sets `kill` to end the call.

    `kill` is also set when the loop's own stop event is (Ctrl-C), so run_process has one event.
    """

    def __init__(self, agent: "CliAgent", paths: dict[str, Path], stop_event: threading.Event | None):
        self.agent, self.paths, self.stop_event = agent, paths, stop_event
        self.kill, self.done = threading.Event(), threading.Event()
        self.found = None  # (Cause, the program's line)
        self.thread = threading.Thread(target=self._run, name=f"watch-{agent.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        offsets = {name: 0 for name in self.paths}
        partial = {name: "" for name in self.paths}
        while True:
            finished = self.done.is_set()  # one last read after the process ended
            if self.stop_event is not None and self.stop_event.is_set():
                self.kill.set()
            for name, path in self.paths.items():
                try:
                    with open(path, "rb") as fh:
                        fh.seek(offsets[name])
                        chunk = fh.read()
                except OSError:
                    continue
                offsets[name] += len(chunk)
                lines = (partial[name] + chunk.decode("utf-8", "replace")).split("\n")
                partial[name] = lines.pop()
                for line in lines:
                    text = self.agent.watched(name, line)
                    cause = self.agent.cause_of(text) if text and text.strip() else None
                    if cause is not None and Failure(cause.failure) in FATAL:
                        self.found = (cause, last_message(text) or shorten(text))
                        self.kill.set()
                        return
            if finished or self.done.wait(WATCH_INTERVAL):
                if finished:
                    return


def _wait(stop_event: threading.Event | None, seconds: float) -> bool:
    """Sleep `seconds`; True when a stop was requested meanwhile."""
    if stop_event is None:
        time.sleep(seconds)
        return False
    return stop_event.wait(seconds)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _shown(arg: str) -> str:
    return arg if len(arg) <= LOG_ARG_CHARS else f"{arg[:80]}…[{len(arg)} chars]"


def _append_log(log: Path, attempt: int, argv: list[str], call: Call, wall: float, outcome: Outcome,
                secrets: list[str]) -> None:
    status = "ok" if outcome.failure is None else f"{outcome.failure.value}: {outcome.error}"
    text = (f"=== attempt {attempt}: exit {call.exit_code} after {wall:.1f} s: {status}\n"
            f"$ {shlex.join(_shown(a) for a in argv)}\n"
            f"--- stdout ---\n{call.stdout}\n--- stderr ---\n{call.stderr}\n")
    with open(log, "a", encoding="utf-8") as f:
        f.write(redact(text, secrets))
