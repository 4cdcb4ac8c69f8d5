"""Execution: how one experiment's command runs, and how nothing of it survives the run.

What lives here (each module's docstring says more):

- `executor`: the `Executor` base class (`run`, plus the no-op hooks `check`, `connect`,
  `close`, `name`, `off_reason` the loop calls on every executor) and `LocalExecutor`;
  `as_executor(obj)` gives a bare object with a `run` method the base class's hooks;
  `executor_for_task(task, say)` is the one the task's config asks for.
- `runner`: `run_process(spec)`, a fresh process in its own session.
- `warm` + `forkserver`: `WarmExecutor`, runs forked from a server that preloaded modules
  (forkserver.py is a script the server runs, never imported).
- `ray_executor` (the driver side, imports Ray lazily) + `ray_node` (the node side, never
  imports Ray): `RayExecutor`, runs as Ray tasks.
- `supervise`: the one supervision module every way of starting a run goes through.
- `sandbox`: bubblewrap around a run (`View`, `run_view`, `Policy` for `[sandbox] mode`); a
  RunSpec with `sandbox=View(...)` is run inside it by runner.py (warm starts fall back to
  fresh processes for it; Ray nodes move the view onto their scratch tree).
- `pristine`: what a run leaves in the task tree, and the copy the trusted evaluation runs on.
- `scratch`: folders in the temporary directory marked with their owner, so that the next
  start removes those a killed orchestrator left (`make`, `sweep`).

The supervision API (supervise.py), for whoever starts processes for a run:

    log = open_log(spec)                       # before starting anything: errors raise here
    token = run_token(spec)                    # RUN_TOKEN_ENV: put it in the child's environment
    ...start the leader in its own session, its stdout+stderr into a pipe...
    seen = supervise(leader, spec, read_fd, log, token=token, start=t0, on_start=..., begin=...,
                     stop_event=..., poll_interval=..., grace=..., known=...)
    return seen.result(spec, exit_code, notes=[...], memory_limit_mb=spec.memory_limit_mb, **extra)

`leader` is a `supervise.Leader`: `pid`, `exited()` (without reaping), `wait(seconds)` (the poll's
pause: e.g. a stop event's wait, or reading a socket), `lost()` (the exit status can no longer
come), `reap(seconds)`. `supervise` returns `Supervised(why, seconds, peak_bytes, last_bytes,
truncated, tail)` with why in exit / lost / memory / stop / timeout; a stop request is
`stop_event.set()`, seen within one poll interval. Around it: `kill_tree_if_alive(pid,
create_time, token=)` and `kill_token(token)` (a resume killing what a dead orchestrator left),
`terminate(pgid, procs, grace)`, `processes_with_token(token)`, `LogReader`, `TreeWatch`,
`memory_note`, `append_quietly`.

May import: records, errors, crash (the memory-limit marker), config types; never the loop,
the agents or analysis. The old module paths (autoresearch.runner, .executor, .warm,
.ray_executor, .ray_node) re-export these.
"""

from autoresearch.execution.executor import Executor, LocalExecutor, as_executor, executor_for_task

__all__ = ["Executor", "LocalExecutor", "as_executor", "executor_for_task"]
