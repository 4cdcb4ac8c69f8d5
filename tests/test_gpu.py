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
