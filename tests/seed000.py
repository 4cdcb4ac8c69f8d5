"""A seed-000-like history of our own: 20 hand-made runs of five model families.

m0 overfits (~97 % train, ~66 % test, val loss turning up), m1 is unstable (loss spikes,
~20-32 % test), m2, m3 and m4 are close (74-78 %). Each run folder holds `config.yaml` (the
seed's UPPERCASE keys), `result_<name>.json` and a `log.txt` of epoch lines.
"""

from __future__ import annotations

import json
from pathlib import Path

FAMILIES = {
    "m0": [0.660, 0.655, 0.665, 0.650],
    "m1": [0.320, 0.220, 0.280, 0.250],
    "m2": [0.745, 0.755, 0.764, 0.750],
    "m3": [0.755, 0.765, 0.776, 0.760],
    "m4": [0.760, 0.770, 0.780, 0.765],
}
OPTIMIZERS = ["adam", "sgd", "adam", "sgd"]
LRS = [0.003, 0.01, 0.002, 0.05]
BATCHES = [32, 16, 32, 8]
EPOCHS = 10


def _losses(family: str, i: int) -> tuple[list[float], list[float]]:
    if family == "m1":  # spikes every other epoch
        train = [2.3, 1.8, 2.4, 1.6, 2.2, 1.5, 2.3, 1.4, 2.1, 1.6]
        return train, [t + 0.1 for t in train]
    train = [1.6 * 0.8 ** e for e in range(EPOCHS)]
    if family == "m0":  # val loss turns up from epoch 4 while train loss keeps falling
        val = [1.5, 1.2, 1.0, 0.9, 0.95, 1.05, 1.2, 1.35, 1.5, 1.7]
    else:
        val = [1.7 * 0.9 ** e + 0.3 for e in range(EPOCHS)]
    return train, val


def write_history(root: Path) -> list[Path]:
    folders = []
    for family, tests in FAMILIES.items():
        for i, test in enumerate(tests):
            name = f"{family}_{OPTIMIZERS[i]}_bs{BATCHES[i]}_r{i}"
            folder = root / "runs" / name
            folder.mkdir(parents=True)
            (folder / "config.yaml").write_text(
                f"MODEL: {family}\nOPTIMIZER: {OPTIMIZERS[i]}\nLR: {LRS[i]}\nBATCH_SIZE: {BATCHES[i]}\n"
                f"AUGMENT_MODE: {'true' if i % 2 else 'false'}\n")
            train_acc = 0.97 if family == "m0" else test + 0.03
            val_acc = test + 0.01 if family != "m1" else test + 0.05
            result = {"model": family, "train_acc": train_acc, "val_acc": val_acc, "test_acc": test,
                      "epochs_trained": EPOCHS}
            (folder / f"result_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
            train, val = _losses(family, i)
            lines = [f"epoch {e + 1} loss {train[e]:.4f} val_loss {val[e]:.4f} "
                     f"train_acc {train_acc * (e + 1) / EPOCHS:.4f} val_acc {val_acc * (e + 1) / EPOCHS:.4f}"
                     for e in range(EPOCHS)]
            (folder / "log.txt").write_text("\n".join(lines) + "\n")
            folders.append(folder)
    return folders


TASK_CONFIG = """\
[task]
run = "python train.py --config config.yaml"
editable = ["config.yaml"]
readonly = ["prepare.py"]
time_budget = 5
timeout = 30

[metrics]
primary = "test_acc"
direction = "maximize"
deterministic = true
"""

CONFIG_YAML = """\
# a seed-000-like experiment config
model: m2          # search: ["m0", "m1", "m2", "m3", "m4"]
optimizer: adam    # search: ["adam", "sgd"]
lr: 3.0e-3         # search: log(1e-4, 1e-1)
batch_size: 32     # search: [8, 16, 32, 64]
"""

TRAIN = """\
import argparse, math, yaml
p = argparse.ArgumentParser(); p.add_argument("--config"); args = p.parse_args()
cfg = yaml.safe_load(open(args.config))
base = {"m0": 0.66, "m1": 0.28, "m2": 0.75, "m3": 0.765, "m4": 0.775}[cfg["model"]]
score = base - 0.01 * abs(math.log10(cfg["lr"] / 3e-3)) + (0.005 if cfg["batch_size"] == 32 else 0.0)
print("---")
print(f"test_acc: {score:.6f}")
print(f"val_acc: {score + 0.01:.6f}")
print(f"train_acc: {score + 0.03:.6f}")
"""
