"""llama.cpp's server (llama-cpp-python) on 127.0.0.1 with the Gemma 3 270M model, for the
local-model tests and bench/local_model.py. `.ci/install-agents` installs both and exports
AUTORESEARCH_LLAMA_PYTHON (the venv's python) and AUTORESEARCH_LLAMA_MODEL (the .gguf file).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def installed() -> tuple[str, str] | None:
    python, model = os.environ.get("AUTORESEARCH_LLAMA_PYTHON"), os.environ.get("AUTORESEARCH_LLAMA_MODEL")
    if python and model and Path(python).is_file() and Path(model).is_file():
        return python, model
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(python: str, model: str, log: Path, n_ctx: int = 8192, start_timeout: float = 180):
    """The server's base URL (…/v1) while it runs; stopped and waited for afterwards."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not answer within {start_timeout:.0f} s") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def local_task(copy_example, directory: Path, url: str, time_budget: float = 3) -> Path:
    """The bundled MNIST-1D example, driven by the openai backend with structured knob edits."""
    task = copy_example("mnist1d", directory, time_budget=time_budget)
    config = task / "autoresearch.toml"
    text = config.read_text().replace('kind = "tuner"', "\n".join([
        'kind = "openai"', 'model = "gemma-3-270m"', f'base_url = "{url}"', 'edit_format = "knobs"',
        "temperature = 0.8", "request_timeout = 300", "timeout = 600", "max_fix_rounds = 1",
        # a short prompt: a 270M model on two cores reads about 30 tokens a second
        "prompt_budget = 3000", "recent = 3"]))
    config.write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(git + ["commit", "-qam", "the local model drives the example"], cwd=task, check=True)
    return task
