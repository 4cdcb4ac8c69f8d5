import time
import types

from autoresearch import gpu
from autoresearch.records import Experiment, Status


def test_sampler_without_nvml_samples_nothing(monkeypatch):
    monkeypatch.setattr(gpu, "pynvml", None)
    with gpu.GpuSampler("0") as s:
        pass
    assert s.utilisation is None and s.peak_mb == 0.0


def test_time_split_and_training_share():
    assert gpu.time_split(12.0, 1.5, {"train_seconds": 10.0}) == {"startup": 1.5, "training": 10.0, "other": 0.5}
    assert gpu.time_split(12.0, None, {}) == {}
    runs = [Experiment(iteration=i, commit="c", parent="p", status=Status.KEEP, description="d",
                       wall_seconds=w, metrics={"training_seconds": t}) for i, (w, t) in enumerate([(10.0, 9.0), (20.0, 19.0)])]
    assert gpu.training_share(runs) == round(28 / 30, 4)


def test_visible_devices():
    assert gpu._devices(None) is None and gpu._devices("1,3") == [1, 3] and gpu._devices("") == []


class FakeNvml:
    """Stands in for pynvml on a machine without NVIDIA's driver: two GPUs, the second busy."""

    def __init__(self):
        self.asked = []

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        self.asked.append(i)
        return i

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=[10, 90][h])

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=[1024, 3000][h] * 2**20)


def test_sampler_reads_only_the_runs_gpus(monkeypatch):
    fake = FakeNvml()
    monkeypatch.setattr(gpu, "pynvml", fake)
    with gpu.GpuSampler("1", interval=0.01) as s:
        time.sleep(0.1)
    assert fake.asked == [1] and s.utilisation == 90.0 and s.peak_mb == 3000.0


def test_records_status_and_report_show_gpu_facts_and_the_time_split(make_task, monkeypatch):
    from autoresearch.analysis.report import render_report
    from autoresearch.api import status_of
    from helpers import cli
    from conftest import tiny_config
    from helpers import ScriptedAgent, run, set_x

    monkeypatch.setattr(gpu, "pynvml", FakeNvml())
    task = make_task(train='''\
        X = 1.0
        import time
        time.sleep(0.7)
        print("---")
        print(f"score: {X}")
        print("train_seconds: 0.7")
    ''', config=tiny_config(timeout=30, task='preload = ["json"]\n'))
    loop, records = run(task, ScriptedAgent(set_x(2.0)), 1)
    for r in records:
        assert r.warm and r.startup_seconds is not None and r.startup_seconds < r.wall_seconds
        # A fresh start (timed once by the server) less this run's fork: json costs nothing to import.
        assert r.startup_saved_seconds is not None and r.startup_saved_seconds < 1.0
        assert r.gpu_util == 50.0 and r.gpu_peak_mb == 4024.0  # both GPUs: no CUDA_VISIBLE_DEVICES set
    totals = status_of(task, "t1").totals()
    assert 0.5 < totals["training_share"] <= 1.0 and totals["warm_runs"] == 2
    saved = sum(r.startup_saved_seconds for r in records)
    assert totals["warm_saved_seconds"] == round(saved, 2)
    shown = cli("status", str(task), "--tag", "t1")
    assert (f"wall time spent training: {totals['training_share']:.1%}, 2 warm starts saved "
            f"{totals['warm_saved_seconds']:.1f} s of start-up") in shown.stdout, shown.stdout
    html = render_report(loop.task, loop.store)
    assert f"{100 * totals['training_share']:.1f} % of the runs' wall time was spent training; 2 of 2 runs were warm starts, which saved {saved:.1f} s of start-up" in html
    assert "warm, training 0.7" in html and "GPU 50 % busy" in html and "4024 MB GPU peak" in html
