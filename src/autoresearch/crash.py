"""Why a run crashed, read from its exit, its timeout flag and the tail of its log.

    classify(exit_code, timed_out, tail, ...) -> Crash(kind, detail) | None

The kind is the first word of the ledger's `reason` (`oom: CUDA out of memory ... at train.py:88`);
the detail is one line and points at file:line when the traceback shows one. `env` and `disk`
mean the code never got a fair chance (a missing package, no GPU driver, a full disk): the idea
is not to blame, and a few in a row pause the loop instead of burning the night.

The log is read the way a person reads it: the last Python traceback decides when there is one,
then the shell's own complaints (`command not found`), then the signal that ended the process.
"""

from __future__ import annotations

import math
import os
import re
import signal
from typing import Iterable, Mapping, NamedTuple

from autoresearch.verdict import ENVIRONMENTAL, Reason, Status, Verdict

TAIL_LINES = 400  # how much of the output end is read: the traceback is at the end
_TAIL_CHARS = 64 * 1024
_DETAIL_CHARS = 200
# The runner appends this line when it kills a run over its memory limit.
MEMORY_LIMIT_MARKER = "[autoresearch: memory limit exceeded"


# One enum for every outcome (verdict.Reason); `CrashKind` is the name earlier versions used.
CrashKind = Reason
ENVIRONMENT_KINDS = ENVIRONMENTAL


class Crash(NamedTuple):
    kind: CrashKind
    detail: str

    @property
    def reason(self) -> str:
        """The ledger's `reason` field: `<kind>: <detail>`."""
        return self.verdict.render()

    @property
    def verdict(self) -> Verdict:
        return Verdict.crash(self.kind, self.detail)


def is_environment(kind: str | Reason) -> bool:
    """True for crashes caused by the setup rather than by the code's idea."""
    try:
        return Reason(kind) in ENVIRONMENTAL
    except ValueError:
        return False


def kind_of(reason: str) -> str:
    """The kind of a recorded crash's `reason` string (its first word); see Verdict.kind."""
    return Verdict.parse(Status.CRASH, reason).kind


# -- patterns ----------------------------------------------------------------------------
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d*\]:\s?")  # torch.distributed prefixes every line
_GPU_OOM = re.compile(r"(CUDA|HIP|MPS backend|XPU|GPU)[^\n]{0,20}out of memory|CUBLAS_STATUS_ALLOC_FAILED"
                      r"|CUDNN_STATUS_(NOT_SUPPORTED|ALLOC_FAILED)[^\n]*memory|RESOURCE_EXHAUSTED: Out of memory", re.I)
_CPU_OOM = re.compile(r"DefaultCPUAllocator: can't allocate memory|std::bad_alloc|\[Errno 12\]"
                      r"|Cannot allocate memory|Unable to allocate [\d.]+ \w+B for an array")
_DISK = re.compile(r"No space left on device|\[Errno 28\]|Disk quota exceeded|\[Errno 122\]|ENOSPC", re.I)
_GPU_SETUP = re.compile(
    r"Found no NVIDIA driver|NVIDIA driver on your system is too old|CUDA driver version is insufficient"
    r"|no CUDA-capable device is detected|No CUDA GPUs are available|CUDA_ERROR_NO_DEVICE|cudaErrorNoDevice"
    r"|CUDA-capable device\(s\) is/are busy or unavailable|Torch not compiled with CUDA enabled"
    r"|no kernel image is available for execution|unsupported display driver / cuda driver combination"
    r"|CUDA unknown error|CUDA_ERROR_NOT_INITIALIZED|uncorrectable ECC error|GPU is lost"
    r"|NVML_SUCCESS == r INTERNAL ASSERT FAILED|Failed to initialize NVML|libcuda\.so[^\n]*(cannot open|not found)", re.I)
_SHARED_LIBRARY = re.compile(r"cannot open shared object file|undefined symbol|DLL load failed|GLIBC_?[\d.]* not found"
                             r"|version `[^']+' not found|incompatible architecture")
_SHELL_MISSING = re.compile(r"^(?:/bin/)?(?:ba|da|z)?sh: (?:line )?\d*:?\s*(?:exec: )?(?P<cmd>[^:\n]+): "
                            r"(?:command )?not found|: (?P<cmd2>\S+): No such file or directory$|: Permission denied$", re.M)
_CANT_OPEN = re.compile(r"can't open file '(?P<file>[^']+)': \[Errno 2\]")
_NAN = re.compile(r"\b(?:loss|grad(?:ient)?s?(?:[ _]norm)?)\b[^\n:=|]{0,40}?(?:\bis\b|=|:|\bbecame\b|\bhas\b)\s*"
                  r"(?:a\s+)?[-+]?(?:nan|inf|infinity|non-finite)\b"
                  r"|\bnon-finite (?:loss|value|gradient)|\bnan (?:loss|detected)|returned nan values", re.I)
_SIGNAL_EXIT = 128  # a shell reports a child killed by signal N as 128 + N


class _Traceback(NamedTuple):
    type: str  # dotted name as printed, e.g. torch.OutOfMemoryError
    message: str
    frames: tuple[tuple[str, int], ...]  # (file, line) oldest first

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]


def _last_traceback(lines: list[str]) -> _Traceback | None:
    """The exception that ended the program: the first unindented `Name: message` after the last frame."""
    last = None
    for i, line in enumerate(lines):
        if _FRAME.match(line):
            last = i
    if last is None:
        return None
    exc = None
    for line in lines[last + 1:]:
        if line[:1].isspace() or not line.strip():
            continue  # source lines, carets, notes
        m = _EXCEPTION.match(line.rstrip())
        if m:
            exc = m
        break
    if exc is None:
        return None
    start = last  # back to the header of the last traceback, or the first frame of a bare SyntaxError
    while start > 0:
        prev = lines[start - 1]
        if prev.startswith("Traceback (most recent call last)") or (prev.strip() and not prev[:1].isspace()):
            break
        start -= 1
    frames = tuple((m["file"], int(m["line"])) for m in map(_FRAME.match, lines[start:last + 1]) if m)
    return _Traceback(exc["type"], (exc["msg"] or "").strip(), frames)


# -- where -------------------------------------------------------------------------------
def _is_in(file: str, names: Iterable[str], task_dir: str | None) -> bool:
    file = file.replace("\\", "/")
    for name in names:
        name = str(name).replace("\\", "/").lstrip("./")
        if file == name or file.endswith("/" + name):
            if task_dir is None or not os.path.isabs(file) or _inside(file, task_dir):
                return True
    return False


def _inside(file: str, task_dir: str) -> bool:
    try:
        return os.path.commonpath([os.path.realpath(file), os.path.realpath(task_dir)]) == os.path.realpath(task_dir)
    except ValueError:
        return False


def _show(file: str, task_dir: str | None) -> str:
    if task_dir and os.path.isabs(file) and _inside(file, task_dir):
        return os.path.relpath(os.path.realpath(file), os.path.realpath(task_dir))
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _where(tb: _Traceback, editable: Iterable[str], task_dir: str | None, *, last: bool = False) -> str:
    """file:line of the frame to blame: the deepest one in an editable file, else the deepest one."""
    if not tb.frames:
        return ""
    editable = tuple(editable)
    chosen = tb.frames[-1]
    if not last:
        for frame in reversed(tb.frames):
            if _is_in(frame[0], editable, task_dir):
                chosen = frame
                break
    return f"{_show(chosen[0], task_dir)}:{chosen[1]}"


def _one_line(text: str, limit: int = _DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _at(text: str, where: str) -> str:
    return _one_line(text) + (f" at {where}" if where else "")


# -- classification ----------------------------------------------------------------------
def classify(exit_code: int | None, timed_out: bool, tail: str, *, metrics: Mapping | None = None,
             primary: str | None = None, editable: Iterable[str] = (), task_dir: str | os.PathLike | None = None,
             timeout: float | None = None, peak_rss_mb: float = 0.0,
             memory_limit_mb: float | None = None) -> Crash | None:
    """Why the run is a crash, or None when it is not one (exit 0 and a finite `primary`).

    `tail` is the end of the output (the runner's output_tail); `editable` the task's editable
    files, to tell the code's own errors from the setup's; `memory_limit_mb` the limit the run
    had (the task's, or the machine's memory) to judge a bare SIGKILL.
    """
    editable = tuple(editable)
    task_dir = os.fspath(task_dir) if task_dir is not None else None
    if timed_out:
        return Crash(CrashKind.TIMEOUT, f"killed after {timeout:g} s" if timeout else "killed at the time limit")
    lines = [_RANK_PREFIX.sub("", line.rstrip("\r")) for line in tail[-_TAIL_CHARS:].splitlines()[-TAIL_LINES:]]
    marker = next((line for line in reversed(lines) if line.startswith(MEMORY_LIMIT_MARKER)), None)
    if marker is not None:
        return Crash(CrashKind.OOM, marker.strip("[]").removeprefix("autoresearch: "))

    if exit_code == 0 and primary is not None and metrics is not None:
        value = metrics.get(primary)
        if isinstance(value, float) and math.isfinite(value):
            return None
    tb = _last_traceback(lines)
    found = _from_traceback(tb, editable, task_dir) if tb else None
    if found is not None:
        return found
    found = _from_text(exit_code, lines, editable, task_dir, peak_rss_mb, memory_limit_mb)
    if found is not None:
        return found
    if exit_code not in (0, None):
        detail = str(exit_code)
        if tb is not None:
            detail += f", {_at(f'{tb.type}: {tb.message}' if tb.message else tb.type, _where(tb, editable, task_dir))}"
        elif _last_words(lines):
            detail += f", last output: {_one_line(_last_words(lines), 120)}"
        return Crash(CrashKind.EXIT_CODE, detail)
    if exit_code is None:
        return Crash(CrashKind.EXIT_CODE, "stopped before it exited")
    if primary is None:
        return None
    value = (metrics or {}).get(primary)
    if isinstance(value, float):  # not finite, or we would have returned above
        return Crash(CrashKind.NAN, f"{primary} = {value}")
    if _NAN.search("\n".join(lines[-20:])):
        return Crash(CrashKind.NAN, _one_line(_NAN.search("\n".join(lines[-20:])).group(0)) + f"; no numeric `{primary}:` line")
    return Crash(CrashKind.NO_METRIC, f"no numeric `{primary}:` line after the last `---`")


def classify_run(result, metrics: Mapping, *, primary: str, editable: Iterable[str] = (),
                 task_dir: str | os.PathLike | None = None, timeout: float | None = None,
                 memory_limit_mb: float | None = None) -> Crash | None:
    """`classify` for a `RunResult`; without a task limit, the machine's memory judges a SIGKILL."""
    if memory_limit_mb is None:
        try:
            import psutil

            memory_limit_mb = psutil.virtual_memory().total / (1024 * 1024)
        except Exception:  # psutil is a dependency; this only guards exotic platforms
            memory_limit_mb = None
    return classify(result.exit_code, result.timed_out, result.output_tail or "", metrics=metrics, primary=primary,
                    editable=editable, task_dir=task_dir, timeout=timeout, peak_rss_mb=result.peak_rss_mb,
                    memory_limit_mb=memory_limit_mb)


def _from_traceback(tb: _Traceback, editable: tuple[str, ...], task_dir: str | None) -> Crash | None:
    kind, msg = tb.short_type, tb.message
    full = f"{tb.type}: {msg}" if msg else tb.type
    where = _where(tb, editable, task_dir)
    if kind.endswith("OutOfMemoryError") or _GPU_OOM.search(msg):
        return Crash(CrashKind.OOM, _at(msg or kind, where))
    if kind.endswith("MemoryError") or _CPU_OOM.search(msg):
        return Crash(CrashKind.OOM, _at(full, where))
    if _DISK.search(msg):
        return Crash(CrashKind.DISK, _at(full, where) + "; free some disk space")
    if kind in ("SyntaxError", "IndentationError", "TabError"):
        located = _where(tb, editable, task_dir, last=True)  # the file that does not parse
        if not tb.frames or _is_in(tb.frames[-1][0], editable, task_dir):
            return Crash(CrashKind.SYNTAX, _at(full, located))
        return Crash(CrashKind.ENV, _at(full, located) + " (not an editable file)")
    if _GPU_SETUP.search(msg):
        return Crash(CrashKind.ENV, _at(full, where) + "; check the GPU driver and CUDA setup")
    if _NAN.search(msg):
        return Crash(CrashKind.NAN, _at(full, where))
    if kind in ("ModuleNotFoundError", "ImportError") or _SHARED_LIBRARY.search(msg):
        return _import_error(tb, full, where, editable)
    return None


def _import_error(tb: _Traceback, full: str, where: str, editable: tuple[str, ...]) -> Crash | None:
    if _SHARED_LIBRARY.search(tb.message):
        return Crash(CrashKind.ENV, _at(full, where) + "; a native library is missing or mismatched")
    m = re.search(r"No module named '([^']+)'", tb.message) or re.search(r"cannot import name '[^']+' from '([^']+)'", tb.message)
    module = m.group(1) if m else ""
    top = module.split(".")[0]
    own = {os.path.splitext(os.path.basename(e))[0] for e in editable} | {e.split("/")[0] for e in editable if "/" in e}
    if top and top in own:
        return None  # the code's own module: a bug in the idea, reported as an exit code
    if "No module named" in tb.message:
        return Crash(CrashKind.ENV, _at(full, where) + f"; install {top or 'it'} into the interpreter that runs the task")
    return Crash(CrashKind.ENV, _at(full, where))


def _from_text(exit_code: int | None, lines: list[str], editable: tuple[str, ...], task_dir: str | None,
               peak_rss_mb: float, memory_limit_mb: float | None) -> Crash | None:
    """What the shell, the loader or the kernel left when there is no Python exception to read."""
    last = "\n".join(lines[-30:])
    if exit_code in (126, 127):
        m = _SHELL_MISSING.search(last)
        what = _one_line(m.group(0), 160) if m else _one_line(_last_words(lines) or "", 160)
        verb = "not found" if exit_code == 127 else "cannot be executed"
        return Crash(CrashKind.ENV, f"command {verb} (exit {exit_code})" + (f": {what}" if what else ""))
    m = _CANT_OPEN.search(last)
    if m and exit_code not in (0, None):
        if _is_in(m["file"], editable, task_dir):  # the code's own file went missing: the idea's doing
            return Crash(CrashKind.EXIT_CODE, f"{exit_code}, the editable script {os.path.basename(m['file'])} is missing")
        return Crash(CrashKind.ENV, f"the run command's script is missing: {_one_line(m.group(0), 160)}")
    if _GPU_OOM.search(last):
        return Crash(CrashKind.OOM, _one_line(_GPU_OOM.search(last).group(0)))
    if _GPU_SETUP.search(last):
        return Crash(CrashKind.ENV, _one_line(_line_with(lines[-30:], _GPU_SETUP)) + "; check the GPU driver and CUDA setup")
    if _DISK.search(last):
        return Crash(CrashKind.DISK, _one_line(_line_with(lines[-30:], _DISK)) + "; free some disk space")
    if _CPU_OOM.search(last):
        return Crash(CrashKind.OOM, _one_line(_line_with(lines[-30:], _CPU_OOM)))
    if exit_code is not None and exit_code not in (0,):
        sig = -exit_code if exit_code < 0 else (exit_code - _SIGNAL_EXIT if exit_code > _SIGNAL_EXIT else 0)
        if sig == signal.SIGKILL:
            return _sigkill(exit_code, lines, peak_rss_mb, memory_limit_mb)
        if sig > 0 and (exit_code < 0 or sig < 32):
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return Crash(CrashKind.EXIT_CODE, f"{exit_code}, killed by {name}")
        if _NAN.search("\n".join(lines[-20:])):
            return Crash(CrashKind.NAN, _one_line(_line_with(lines[-20:], _NAN)))
    return None


def _sigkill(exit_code: int, lines: list[str], peak_rss_mb: float, memory_limit_mb: float | None) -> Crash:
    """Out of memory only with evidence: the memory near its limit, or the kernel saying so.

    The shell's bare "Killed" is no evidence: it prints that for any SIGKILL, whoever sent it."""
    near = bool(memory_limit_mb) and peak_rss_mb >= 0.8 * memory_limit_mb
    kernel = any("Out of memory: Killed process" in line or "oom-kill" in line for line in lines[-5:])
    size = f" at a peak of {peak_rss_mb:.0f} MB" if peak_rss_mb else ""
    if near or kernel:
        return Crash(CrashKind.OOM, f"killed by SIGKILL{size} (the kernel's out-of-memory killer)")
    peak = f"its peak was {peak_rss_mb:.0f} MB" if peak_rss_mb else "its memory is unknown"
    limit = f" of {memory_limit_mb:.0f} MB" if memory_limit_mb else ""
    return Crash(CrashKind.EXIT_CODE, f"{exit_code}, killed by SIGKILL from outside ({peak}{limit}, no sign of "
                                      "running out of memory; dmesg may say who sent it)")


def _line_with(lines: list[str], pattern: re.Pattern) -> str:
    for line in reversed(lines):
        if pattern.search(line):
            return line.strip()
    return ""


def _last_words(lines: list[str]) -> str:
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return ""
