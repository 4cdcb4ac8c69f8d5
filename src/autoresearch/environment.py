"""What the training runs and the agents may see of our environment, and where they may write.

Runs and agents get an environment built from an allow-list, never a copy of ours: the shell
of a user who starts a loop before bed holds cloud credentials, tokens and API keys that an
edited train.py has no business reading (and could print into a log). On top of the safe
defaults come the names the task config lists (`[task] env`, `[agent] env`) and, for an
agent only, the API keys of its own backend.

    run_env(task)            for the training command
    agent_env(kind, task)    for an agent process of backend `kind`
    safe_path(task_dir, p)   a path from an agent, resolved, refused outside the task directory
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping

from autoresearch.errors import AutoresearchError

# Exact names every process may see: locale, terminal, user, temp dirs, caches, thread counts.
SAFE_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "COLORTERM", "TZ",
    "TMPDIR", "TMP", "TEMP",
    "VIRTUAL_ENV", "UV_CACHE_DIR", "PIP_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
    "XDG_RUNTIME_DIR", "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_CACHE", "TRANSFORMERS_OFFLINE", "TORCH_HOME", "TORCHINDUCTOR_CACHE_DIR", "MPLCONFIGDIR",
    "KERAS_HOME", "TFHUB_CACHE_DIR",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "TOKENIZERS_PARALLELISM", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "CC", "CXX",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
})
# Prefixes of families that configure the toolchain and the accelerator, never secrets by design.
# A name under one of these that still looks secret (…_TOKEN, …_KEY) is left out all the same.
SAFE_PREFIXES = ("LC_", "PYTHON", "CUDA_", "NVIDIA_", "CONDA_", "MKL_", "OMP_", "KMP_", "NCCL_", "TORCH_",
                 "PYTORCH_", "TRITON_", "XLA_", "JAX_", "TF_", "ROCM_", "HIP_", "HSA_", "CUBLAS_", "CUDNN_",
                 "AUTORESEARCH_")
_SECRET_LOOKING = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH(?!OR)|COOKIE|SESSION)", re.IGNORECASE)

# What an agent process may see besides the runs' safe names: the settings coding CLIs read.
AGENT_SAFE_NAMES = frozenset({"EDITOR", "VISUAL", "PAGER", "GIT_EDITOR", "NO_COLOR", "FORCE_COLOR", "COLUMNS",
                              "LINES", "CI", "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS", "NODE_PATH", "ALL_PROXY", "all_proxy"})
AGENT_SAFE_PREFIXES = ("NODE_", "NPM_CONFIG_", "npm_config_", "NVM_", "GIT_", "XDG_", "VOLTA_", "PNPM_", "BUN_",
                       "DENO_", "UV_", "PIP_", "SSL_", "LC_")

# What each agent backend needs from the environment beyond the safe defaults.
# Names ending in "*" are prefixes.
AGENT_NAMES: dict[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
               "CLAUDE_CODE_*", "CLAUDE_CONFIG_DIR", "DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER"),
    "codex": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "CODEX_HOME"),
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
               "OLLAMA_HOST"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
               "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_APPLICATION_CREDENTIALS", "GEMINI_MODEL",
               "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_GCA"),
    "aider": ("AIDER_*", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_API_BASE", "OPENAI_BASE_URL",
              "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "OLLAMA_API_BASE",
              "LITELLM_*"),
    "command": (),  # a user's own program: it gets what [agent] env names
    "tuner": (),  # runs inside the orchestrator; no process, no environment
}


def _config(task):
    """The TaskConfig of a Task (or the TaskConfig itself)."""
    return getattr(task, "config", task)


def _is_safe(name: str) -> bool:
    if name in SAFE_NAMES:
        return True
    return name.startswith(SAFE_PREFIXES) and not _SECRET_LOOKING.search(name)


def _pick(source: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    out = {}
    for name in names:
        if name.endswith("*"):
            out.update({k: v for k, v in source.items() if k.startswith(name[:-1])})
        elif name in source:
            out[name] = source[name]
    return out


def safe_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of `base` (default: this process's environment)."""
    base = os.environ if base is None else base
    return {k: v for k, v in base.items() if _is_safe(k)}


def run_env(task, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a training run: the safe defaults plus `[task] env`."""
    base = os.environ if base is None else base
    return {**safe_env(base), **_pick(base, _config(task).task.env)}


def agent_names(kind: str) -> tuple[str, ...]:
    """The names (or `PREFIX*`) a backend gets by default; unknown backends get none."""
    return AGENT_NAMES.get(kind, ())


def agent_env(kind: str, task, base: Mapping[str, str] | None = None, keys: Iterable[str] = ()) -> dict[str, str]:
    """The environment of an agent process, built from an allow-list: the runs' safe names and
    the settings a coding CLI reads (Node, npm, git, editor, terminal), then its backend's keys
    (`agent_names(kind)` and `keys`) and what `[agent] env` names.

    API keys reach only the agent that needs them: a Claude agent never sees OPENAI_API_KEY,
    and no training run sees either. Anything else an agent needs, `[agent] env` names.
    `python` in the agent's shell is the interpreter the training runs under (seed 001, run 4).
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items()
           if _is_safe(k) or ((k in AGENT_SAFE_NAMES or k.startswith(AGENT_SAFE_PREFIXES)) and not _SECRET_LOOKING.search(k))}
    named = _config(task).agent.env if task is not None else ()
    env.update(_pick(base, (*agent_names(kind), *keys, *named)))
    env["PATH"] = f"{python_dir(task)}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def python_dir(task) -> str:
    """The directory put first on PATH, so that `python` is the task's interpreter (interpreter.py)."""
    chosen = getattr(task, "interpreter", None)
    return chosen.bin_dir if chosen is not None else str(Path(sys.executable).parent)


def safe_path(task_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path` (relative to `task_dir`, or absolute) resolved, if it stays inside the task directory.

    Symlinks are followed before the check, so a link that points outside is refused too, and
    so is anything under `.git` or the run store. Raises AutoresearchError naming the path.
    """
    root = Path(task_dir).resolve()
    try:
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    except (ValueError, OSError, RuntimeError) as exc:  # NUL byte, symlink loop
        raise AutoresearchError(f"{path!r}: not a usable path ({exc})") from None
    if not resolved.is_relative_to(root):
        raise AutoresearchError(f"{path!r} resolves to {resolved}, outside the task directory {root}; refused")
    parts = resolved.relative_to(root).parts
    if ".git" in parts or parts[:1] == (".autoresearch",):
        raise AutoresearchError(f"{path!r} is inside .git or .autoresearch, which only the orchestrator may change; refused")
    return resolved
