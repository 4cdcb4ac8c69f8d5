"""GPU facts of a run, sampled through NVML while it trains (nvidia-ml-py, when present).

On a machine without NVIDIA's driver or without the package, `GpuSampler` samples nothing
and reports None: the loop works the same, the records just lack the GPU columns.
"""

from __future__ import annotations

import threading

try:  # optional: `pip install nvidia-ml-py`
    import pynvml
except ImportError:  # pragma: no cover - depends on the machine
    pynvml = None

TRAIN_KEYS = ("train_seconds", "training_seconds")


def _devices(visible: str | None) -> list[int] | None:
    if visible is None:
        return None  # every GPU of the machine
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return [int(v) for v in ids if v.isdigit()]


class GpuSampler:
    """Samples utilisation and memory of the run's GPUs every `interval` seconds."""

    def __init__(self, visible: str | None, interval: float = 0.5):
        self.interval = interval
        self.samples: list[float] = []
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles = []
        if pynvml is None:
            return
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            wanted = _devices(visible)
            indices = range(count) if wanted is None else [i for i in wanted if i < count]
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except Exception:  # no driver, no GPU: nothing to sample
            self._handles = []

    def __enter__(self) -> "GpuSampler":
        if self._handles:
            self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                utils = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
                used = sum(pynvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles) / 2**20
            except Exception:
                return
            self.samples.append(sum(utils) / len(utils))
            self.peak_mb = max(self.peak_mb, used)

    @property
    def utilisation(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def time_split(wall: float, startup: float | None, metrics: dict) -> dict:
    """Wall time split into start-up, training (the footer's training seconds) and the rest."""
    train = next((metrics[k] for k in TRAIN_KEYS if isinstance(metrics.get(k), float)), None)
    if train is None or wall <= 0:
        return {}
    start = startup or 0.0
    return {"startup": round(start, 3), "training": round(min(train, wall), 3),
            "other": round(max(wall - start - train, 0.0), 3)}


def warm_saved(records) -> float:
    """Seconds the warm starts saved: each warm run's own saving (a fresh start less its fork's), summed."""
    return sum(r.startup_saved_seconds for r in records if r.warm and r.startup_saved_seconds is not None)


def training_share(records) -> float | None:
    """Share of the runs' wall time spent training, over every run that reported it."""
    train = wall = 0.0
    for r in records:
        split = time_split(r.wall_seconds, r.startup_seconds, r.metrics)
        if split:
            train += split["training"]
            wall += r.wall_seconds
    return round(train / wall, 4) if wall else None
