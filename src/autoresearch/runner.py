"""Old import path: the local runner lives in autoresearch.execution (runner.py, supervise.py)."""

from autoresearch.execution.runner import run_process  # noqa: F401
from autoresearch.execution.supervise import (  # noqa: F401
    CHUNK_BYTES,
    CREATE_TIME_TOLERANCE,
    GRACE_SECONDS,
    LOG_TAIL_BYTES,
    OUTPUT_TAIL_BYTES,
    READER_JOIN_SECONDS,
    RUN_TOKEN_ENV,
    SCAN_CPU_SHARE,
    LogReader as _LogReader,
    TreeWatch as _TreeWatch,
    alive as _alive,
    append_quietly,
    kill_process_group,
    kill_token,
    kill_tree_if_alive,
    memory_note,
    processes_with_token as _processes_with_token,
    signal_all as _signal_all,
    terminate as _terminate,
    watch_until_done,
)
