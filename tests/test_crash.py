"""Crash reasons read from real runs: each script below really runs, and its real log is classified."""

import sys
import textwrap

import pytest

from autoresearch import crash
from autoresearch.crash import Crash, CrashKind, classify, classify_run, is_environment
from autoresearch.records import CrashReason, RunSpec
from autoresearch.runner import run_process

PY = sys.executable


def run(tmp_path, files: dict, command: str = "python train.py", timeout: float = 30, env_extra=None, **kw):
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(body))
    env = {"PATH": f"{sys.exec_prefix}/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    spec = RunSpec(command=command, cwd=str(tmp_path), env=env, timeout=timeout, log_path=str(tmp_path / "log.txt"))
    return run_process(spec, **kw)


def judge(tmp_path, result, metrics=None, editable=("train.py",)):
    return classify_run(result, metrics or {}, primary="score", editable=editable, task_dir=tmp_path, timeout=30)


@pytest.mark.parametrize("files, kind, words", [
    # the main script does not parse: no "Traceback" header, just the location
    ({"train.py": "X = 1\nx = (\nprint(x)\n"}, CrashKind.SYNTAX, ["SyntaxError", "train.py:2"]),
    # an editable module imported by train.py does not parse
    ({"train.py": "import model\n", "model.py": "def f():\n  return 1\n   x = 2\n"},
     CrashKind.SYNTAX, ["IndentationError", "model.py:3"]),
    # a package that is not installed
    ({"train.py": "X = 1\nimport einops_not_installed_here\n"}, CrashKind.ENV,
     ["ModuleNotFoundError", "einops_not_installed_here", "train.py:2", "install"]),
    # CPU out of memory, numpy and plain Python
    ({"train.py": "import numpy\nnumpy.zeros((10**7, 10**7))\n"}, CrashKind.OOM, ["Unable to allocate", "train.py:2"]),
    ({"train.py": "def grow():\n    raise MemoryError()\ngrow()\n"}, CrashKind.OOM, ["MemoryError", "train.py:2"]),
    # out of disk: writing to a full device
    ({"train.py": "print('step 1')\nopen('/dev/full', 'w').write('x' * 100000)\n"}, CrashKind.DISK,
     ["No space left on device", "train.py:2"]),
    # a loss that went to NaN, raised by the script itself
    ({"train.py": "import math\nloss = float('nan')\nif math.isnan(loss):\n    raise ValueError(f'loss is {loss}')\n"},
     CrashKind.NAN, ["ValueError: loss is nan", "train.py:4"]),
    # karpathy-style: prints the step line with loss nan, then FAIL and exit 1
    ({"train.py": "import sys\nprint('step 00012 (1.2%) | loss: nan | lrm: 1.00')\nprint('FAIL')\nsys.exit(1)\n"},
     CrashKind.NAN, ["loss: nan"]),
    # an ordinary bug, blamed on the editable file's frame, not the library's
    ({"train.py": "import json\nX = 1\njson.loads('{bad')\n"}, CrashKind.EXIT_CODE, ["1, json.decoder.JSONDecodeError", "train.py:3"]),
    # a read-only helper that does not parse: not the idea's fault
    ({"train.py": "import prepare\n", "prepare.py": "def f(:\n"}, CrashKind.ENV, ["SyntaxError", "prepare.py:1", "not an editable"]),
])
def test_real_python_failures(tmp_path, files, kind, words):
    result = run(tmp_path, files, command=f"{PY} train.py")
    found = judge(tmp_path, result, editable=("train.py", "model.py"))
    assert found is not None and found.kind is kind, (found, result.output_tail)
    for w in words:
        assert w in found.detail, (found, result.output_tail)
    assert "\n" not in found.detail


def test_loss_is_nan_message_wins_over_plain_exit(tmp_path):
    result = run(tmp_path, {"train.py": "import sys\nprint('step 3: loss is nan, stopping', file=sys.stderr)\nsys.exit(2)\n"},
                 command=f"{PY} train.py")
    assert judge(tmp_path, result).kind is CrashKind.NAN


@pytest.mark.parametrize("command, words", [
    ("pythn_does_not_exist train.py", ["not found", "127", "pythn_does_not_exist"]),
    ("/nonexistent/bin/python train.py", ["not found", "/nonexistent/bin/python"]),
    ("./train.sh", ["cannot be executed", "126"]),
])
def test_shell_cannot_start_the_command(tmp_path, command, words):
    result = run(tmp_path, {"train.py": "print(1)\n", "train.sh": "echo hi\n"}, command=command)
    found = judge(tmp_path, result)
    assert found.kind is CrashKind.ENV and is_environment(found.kind), (found, result.output_tail)
    for w in words:
        assert w in found.detail


def test_missing_script_of_the_run_command(tmp_path):
    result = run(tmp_path, {"other.py": "print(1)\n"}, command=f"{PY} prepare_and_train.py")
    found = judge(tmp_path, result)
    assert found.kind is CrashKind.ENV and "prepare_and_train.py" in found.detail
    # the editable script itself missing is the idea's doing (it deleted its own file)
    gone = judge(tmp_path, run(tmp_path, {}, command=f"{PY} train.py"), editable=("train.py",))
    assert gone.kind is CrashKind.EXIT_CODE and "train.py" in gone.detail


@pytest.mark.slow  # importing torch takes seconds
def test_torch_cpu_allocation_failure(tmp_path):
    pytest.importorskip("torch")
    result = run(tmp_path, {"train.py": "import torch\nX = 1\nx = torch.zeros(10**7, 10**7)\n"}, command=f"{PY} train.py")
    found = judge(tmp_path, result)
    assert found.kind is CrashKind.OOM and "can't allocate memory" in found.detail and "train.py:3" in found.detail


@pytest.mark.slow
def test_cuda_requested_on_a_machine_without_it(tmp_path):
    pytest.importorskip("torch")  # an extra of the examples; the test extra installs it
    # On a machine with a GPU the run is told there is none: the same case everywhere, never a skip.
    result = run(tmp_path, {"train.py": "import torch\nX = 1\nx = torch.zeros(3).cuda()\n"}, command=f"{PY} train.py",
                 env_extra={"CUDA_VISIBLE_DEVICES": ""})
    found = judge(tmp_path, result)
    assert found.kind is CrashKind.ENV and "train.py:3" in found.detail, found


def test_timeout_and_signals(tmp_path):
    assert classify(None, True, "step 1\n", timeout=12).reason == "timeout: killed after 12 s"
    hang = run(tmp_path, {"train.py": "import time\nprint('working', flush=True)\ntime.sleep(30)\n"},
               command=f"{PY} train.py", timeout=0.5)
    assert judge(tmp_path, hang).kind is CrashKind.TIMEOUT
    segv = run(tmp_path, {"train.py": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"}, command=f"exec {PY} train.py")
    found = judge(tmp_path, segv)
    assert found.kind is CrashKind.EXIT_CODE and "SIGSEGV" in found.detail
    killed = run(tmp_path, {"train.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"}, command=f"exec {PY} train.py")
    assert judge(tmp_path, killed).kind is CrashKind.EXIT_CODE and "SIGKILL" in judge(tmp_path, killed).detail
    # the same SIGKILL at 95% of the memory limit is the out-of-memory killer's
    near = classify(-9, False, "", peak_rss_mb=950, memory_limit_mb=1000, primary="score", metrics={})
    assert near.kind is CrashKind.OOM and "950 MB" in near.detail
    # the kernel saying so is evidence too; the shell's bare "Killed" (printed for any SIGKILL) is not
    kernel = "epoch 3\n[ 812.3] Out of memory: Killed process 4242 (python)\n"
    assert classify(137, False, kernel, primary="score", metrics={}).kind is CrashKind.OOM


def test_a_sigkill_at_8_mb_is_not_called_out_of_memory():
    found = classify(137, False, "epoch 3\nKilled\n", peak_rss_mb=8, memory_limit_mb=16000, primary="score", metrics={})
    assert found.kind is CrashKind.EXIT_CODE and "out-of-memory killer" not in found.detail
    assert "peak was 8 MB of 16000 MB" in found.detail and "no sign of running out of memory" in found.detail


def test_metric_checks_after_a_clean_exit(tmp_path):
    ok = run(tmp_path, {"train.py": "print('---')\nprint('score: 0.5')\n"}, command=f"{PY} train.py")
    assert judge(tmp_path, ok, {"score": 0.5}) is None
    assert judge(tmp_path, ok, {"score": float("inf")}).reason == "nan: score = inf"
    assert judge(tmp_path, ok, {}).reason.startswith("no_metric: no numeric `score:` line")
    assert judge(tmp_path, ok, {"score": "high"}).kind is CrashKind.NO_METRIC
    # exit 0 without a metric but with a CUDA OOM caught and printed: the OOM is the reason
    caught = "Traceback (most recent call last):\n  File \"/t/train.py\", line 9, in <module>\ntorch.OutOfMemoryError: CUDA out of memory.\n"
    assert classify(0, False, caught, metrics={}, primary="score").kind is CrashKind.OOM


def test_memory_limit_marker_from_the_runner(tmp_path):
    result = run(tmp_path, {"train.py": """\
        import time
        chunks = []
        while True:
            chunks.append(bytearray(20 * 1024 * 1024))
            time.sleep(0.01)
    """}, command=f"exec {PY} train.py", memory_limit_mb=150)
    found = judge(tmp_path, result)
    assert found.kind is CrashKind.OOM and "the limit is 150 MB" in found.detail, (found, result.output_tail)


# Real CUDA logs, as torch prints them (no GPU on the machine that runs the fast suite).
CUDA_OOM_NEW = '''\
step 00010 | loss: 3.2101 | dt: 812ms
Traceback (most recent call last):
  File "/home/me/task/train.py", line 88, in <module>
    logits = model(x)
             ^^^^^^^^
  File "/home/me/.venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1751, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
  File "/home/me/.venv/lib/python3.11/site-packages/torch/nn/functional.py", line 2141, in gelu
    return torch._C._nn.gelu(input)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 10.38 GiB is free. Including non-PyTorch memory, this process has 68.80 GiB memory in use. Of the allocated memory 67.21 GiB is allocated by PyTorch, and 1.07 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.
'''
CUDA_OOM_OLD = '''\
Traceback (most recent call last):
  File "train.py", line 41, in <module>
    loss.backward()
RuntimeError: CUDA out of memory. Tried to allocate 2.87 GiB (GPU 0; 14.76 GiB total capacity; 8.77 GiB already allocated; 19.75 MiB free; 13.71 GiB reserved in total by PyTorch)
'''
NO_DRIVER = '''\
Traceback (most recent call last):
  File "/home/me/task/train.py", line 12, in <module>
    model = Net().cuda()
  File "/usr/lib/python3/dist-packages/torch/cuda/__init__.py", line 302, in _lazy_init
    torch._C._cuda_init()
RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver from http://www.nvidia.com/Download/index.aspx
'''
DRIVER_TOO_OLD = "[rank0]: Traceback (most recent call last):\n[rank0]:   File \"/w/train.py\", line 5, in <module>\n" \
                 "[rank0]: RuntimeError: CUDA error: CUDA driver version is insufficient for CUDA runtime version\n"
SHARED_LIB = '''\
Traceback (most recent call last):
  File "/w/train.py", line 1, in <module>
    import torch
  File "/w/.venv/lib/python3.11/site-packages/torch/__init__.py", line 367, in <module>
    from torch._C import *  # noqa: F403
ImportError: libcudnn.so.9: cannot open shared object file: No such file or directory
'''
DEVICE_ASSERT = '''\
Traceback (most recent call last):
  File "/w/train.py", line 70, in <module>
    loss = F.cross_entropy(logits, y)
RuntimeError: CUDA error: device-side assert triggered
'''


@pytest.mark.parametrize("log, kind, words", [
    (CUDA_OOM_NEW, CrashKind.OOM, ["CUDA out of memory. Tried to allocate 20.00 GiB", "train.py:88"]),
    (CUDA_OOM_OLD, CrashKind.OOM, ["CUDA out of memory", "train.py:41"]),
    (NO_DRIVER, CrashKind.ENV, ["Found no NVIDIA driver", "train.py:12"]),
    (DRIVER_TOO_OLD, CrashKind.ENV, ["driver version is insufficient", "train.py:5"]),
    (SHARED_LIB, CrashKind.ENV, ["libcudnn.so.9", "torch/__init__.py:367"]),
    (DEVICE_ASSERT, CrashKind.EXIT_CODE, ["device-side assert", "train.py:70"]),
])
def test_cuda_logs(log, kind, words):
    found = classify(1, False, log, primary="score", metrics={}, editable=("train.py",), task_dir="/home/me/task")
    assert found.kind is kind, found
    for w in words:
        assert w in found.detail, found
    assert len(found.detail) <= 260


def test_reason_kinds_match_the_ledger_vocabulary():
    for reason in CrashReason:
        if reason.value in {k.value for k in CrashKind}:
            assert CrashKind(reason.value).value == reason.value
    assert crash.kind_of("oom: CUDA out of memory at train.py:3") == "oom"
    assert is_environment("env") and is_environment(CrashKind.DISK) and not is_environment("oom")
    assert not is_environment("guard") and not is_environment("")
    assert Crash(CrashKind.SYNTAX, "x").reason == "syntax: x"
    kind, detail = Crash(CrashKind.OOM, "d")
    assert (kind, detail) == (CrashKind.OOM, "d")
