"""Train an MNIST-1D classifier for a fixed wall-clock budget, then report val accuracy.

This is the one file the agent edits. The constants below are the knobs; the
`# search:` comment after each one tells the offline tuner its range.
"""

import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import prepare

# The knobs. Keep them UPPERCASE literals with a `# search:` range: the offline tuner reads
# and rewrites exactly these lines. WIDTH is hidden units (mlp) or channels (cnn); DEPTH is
# hidden layers (mlp) or conv layers (cnn). SEED is fixed so runs are comparable.
ARCH = "mlp"            # search: ["mlp", "cnn"]
WIDTH = 64              # search: int_log(16, 256)
DEPTH = 2               # search: int(1, 4)
LR = 1e-3               # search: log(1e-4, 3e-2)
BATCH_SIZE = 128        # search: int_log(16, 1024)
OPTIMIZER = "adam"      # search: ["adam", "adamw", "sgd"]
WEIGHT_DECAY = 0.0      # search: float(0.0, 0.1)
DROPOUT = 0.0           # search: float(0.0, 0.5)
SEED = 0


class MLP(nn.Module):
    """Sees the 40 samples as a flat vector: it has to learn every shift of a digit separately."""

    def __init__(self):
        super().__init__()
        layers, d = [], prepare.SEQ_LEN
        for _ in range(DEPTH):
            layers += [nn.Linear(d, WIDTH), nn.ReLU(), nn.Dropout(DROPOUT)]
            d = WIDTH
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, prepare.NUM_CLASSES)

    def forward(self, x):
        return self.head(self.body(x))


class CNN(nn.Module):
    """Shared 1-D filters slide along the signal, so a pattern is recognised wherever it sits."""

    def __init__(self):
        super().__init__()
        layers, c = [], 1
        for i in range(DEPTH):
            # Stride 2 after the first layer: halves the length, widens the receptive field.
            layers += [nn.Conv1d(c, WIDTH, 5, stride=1 if i == 0 else 2, padding=2), nn.ReLU()]
            c = WIDTH
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(DROPOUT)
        self.head = nn.Linear(c, prepare.NUM_CLASSES)

    def forward(self, x):
        h = self.body(x.unsqueeze(1))             # (B, 1, 40) -> (B, C, L)
        return self.head(self.drop(h.amax(-1)))   # global max pool: position-invariant features


def main():
    torch.manual_seed(SEED)
    # Tiny models: one CPU thread is as fast as several, and does not stall when
    # concurrent runs share the cores.
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x_np, y_np, _, _ = prepare.load_data()
    x_train, y_train = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
    if ARCH not in ("mlp", "cnn"):
        raise ValueError(f"unknown ARCH {ARCH!r}")
    model = (MLP if ARCH == "mlp" else CNN)().to(device)
    num_params = sum(p.numel() for p in model.parameters())
    if OPTIMIZER == "sgd":  # with the usual momentum; plain SGD is rarely competitive
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=WEIGHT_DECAY)
    elif OPTIMIZER in ("adam", "adamw"):
        cls = torch.optim.Adam if OPTIMIZER == "adam" else torch.optim.AdamW
        opt = cls(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    else:
        raise ValueError(f"unknown OPTIMIZER {OPTIMIZER!r}")

    log = open("metrics.jsonl", "w")  # the learning curve, one JSON record per log line
    n, epoch, train_seconds, last_log = len(y_train), 0, 0.0, -1.0
    loss_sum = correct = seen = 0  # training stats since the last log line
    while train_seconds < prepare.TIME_BUDGET:
        epoch += 1
        model.train()
        t0 = time.perf_counter()
        for idx in torch.randperm(n, device=device).split(BATCH_SIZE):
            # Decay the LR linearly to zero over the budget: large steps early, fine-tuning late.
            for g in opt.param_groups:
                g["lr"] = LR * max(0.0, 1 - train_seconds / prepare.TIME_BUDGET)
            xb, yb = x_train[idx], y_train[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)  # .item() also waits for the GPU: honest timing
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
            now = time.perf_counter()
            train_seconds, t0 = train_seconds + now - t0, now
            if not math.isfinite(loss_sum):
                raise RuntimeError(f"loss diverged in epoch {epoch}; LR={LR} too high?")
            if train_seconds >= prepare.TIME_BUDGET:  # checked every batch: stop mid-epoch
                break
        # MLP epochs take ~20 ms, so log every ~0.5 s of training rather than every epoch.
        # Evaluation happens outside the timed region: it is not charged to the budget.
        if train_seconds - last_log < 0.5 and train_seconds < prepare.TIME_BUDGET:
            continue
        val_acc, val_loss = prepare.evaluate(model, device, with_loss=True)
        rec = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "val_loss": val_loss, "val_acc": val_acc, "seconds": round(train_seconds, 3)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"epoch {epoch} | loss {rec['train_loss']:.3f} | train_acc {rec['train_acc']:.3f} | "
              f"val_acc {val_acc:.3f} | {train_seconds:.1f}s", flush=True)
        loss_sum = correct = seen = 0
        last_log = train_seconds
    log.close()

    val_acc = prepare.evaluate(model, device)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("---")
    print(f"val_acc: {val_acc:.6f}")
    print(f"train_seconds: {train_seconds:.1f}")
    print(f"peak_vram_mb: {peak_mb:.1f}")
    print(f"num_params: {num_params}")
    print(f"val_size: {prepare.val_size()}")


if __name__ == "__main__":
    main()
