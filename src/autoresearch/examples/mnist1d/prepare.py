"""Fixed harness for the MNIST-1D task: data, time budget, evaluation.

READ-ONLY for agents. Everything that decides whether one train.py beats another
lives here, so that editing train.py cannot move the goalposts.

    python prepare.py      # generate and cache the data (train.py also does this on demand)

The data is MNIST-1D (Greydanus, 2020): 10 classes of 1-D signals of length 40,
generated locally and deterministically by the `mnist1d` package (nothing is
downloaded). Its own 4000/1000 split is used as train/validation.
"""

import os
import tempfile
import time
from pathlib import Path

import numpy as np

# Seconds of training per run. train.py must stop training once this is used up.
# The orchestrator sets the env var from autoresearch.toml; 10 s is the default.
TIME_BUDGET = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "10"))

DATA_DIR = Path(__file__).resolve().parent / "data"
DATA_PATH = DATA_DIR / "mnist1d.npz"
SEQ_LEN = 40
NUM_CLASSES = 10


def _generate():
    # Imported here so that `import prepare` stays cheap once the cache exists.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # fixed seed (42) inside: the data is deterministic
    d = make_dataset(args)     # generates locally; never use get_dataset() (it downloads)
    return {
        "x_train": d["x"].astype(np.float32), "y_train": d["y"].astype(np.int64),
        "x_val": d["x_test"].astype(np.float32), "y_val": d["y_test"].astype(np.int64),
    }


def prepare_data():
    """Generate the dataset into DATA_PATH unless it is already there. Returns the path."""
    if DATA_PATH.exists():
        return DATA_PATH
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    arrays = _generate()
    # Write to a temp file and rename: concurrent runs never see a half-written cache.
    fd, tmp = tempfile.mkstemp(dir=DATA_DIR, prefix=".mnist1d-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, DATA_PATH)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return DATA_PATH


def load_data():
    """Return (x_train, y_train, x_val, y_val) as numpy arrays: float32 (N, 40) and int64 (N,)."""
    with np.load(prepare_data()) as d:
        return d["x_train"], d["y_train"], d["x_val"], d["y_val"]


def val_size():
    """How many examples evaluate() scores. train.py prints it in its footer, so the report can
    say how uncertain the accuracy is (a binomial standard error on this many examples)."""
    return len(load_data()[3])


_val = None


def evaluate(model, device="cpu", batch_size=1000, with_loss=False):
    """Validation accuracy of `model` (a callable mapping float32 (B, 40) to logits (B, 10)).

    This is the number the run is judged by. With with_loss=True it returns
    (accuracy, mean cross-entropy) instead, for learning curves.
    """
    import torch
    import torch.nn.functional as F

    global _val
    if _val is None:  # private copy: whatever train.py does to its arrays cannot touch it
        _, _, x_val, y_val = load_data()
        _val = torch.from_numpy(x_val), torch.from_numpy(y_val)
    x, y = _val[0].to(device), _val[1].to(device)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            logits = model(xb).float()
            if logits.shape != (len(yb), NUM_CLASSES):
                raise ValueError(f"model returned shape {tuple(logits.shape)}, expected ({len(yb)}, {NUM_CLASSES})")
            correct += (logits.argmax(1) == yb).sum().item()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
    if was_training:
        model.train()
    acc = correct / len(y)
    return (acc, loss_sum / len(y)) if with_loss else acc


if __name__ == "__main__":
    t0 = time.time()
    existed = DATA_PATH.exists()
    x_train, y_train, x_val, y_val = load_data()
    print(f"{'found' if existed else 'generated'} {DATA_PATH} in {time.time() - t0:.1f}s: "
          f"train {x_train.shape}, val {x_val.shape}, {NUM_CLASSES} classes, "
          f"time budget {TIME_BUDGET:g}s")
