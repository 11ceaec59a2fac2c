#!/usr/bin/env python3
"""Train the bundled digits classifier and export it as a portable ExecuTorch program.

Run:  conformance/.venv/bin/python conformance/train_digits.py

Data: scikit-learn's handwritten digits (sklearn.datasets.load_digits, shipped inside
the package: 1797 grey 8x8 images, values 0..16, scaled here to 0..1), split 80/20
stratified with a fixed seed.

Writes models/digits/:
    digits.pte           portable program (no delegate), input float32 [N,1,8,8] (N dynamic, 1..64),
                         output float32 [N,10] class probabilities (softmax is inside the model)
    samples.npy          float32 [16,1,8,8]: the first 16 held-out test images
    labels.npy           int64 [16]: their labels
    expected_probs.npy   float32 [16,10]: the ExecuTorch runtime's output on samples.npy
    README.md            how it was trained and the accuracies measured
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "models" / "digits"
SEED = 1234
EPOCHS = 40
BATCH = 64


class DigitsNet(nn.Module):
    """Tiny CNN: 2 conv layers, a max pool and a 2-layer head. Returns logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.drop(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


class WithSoftmax(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return F.softmax(self.net(x), dim=-1)


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def tensor(a: np.ndarray) -> torch.Tensor:
    """A torch tensor with canonical strides. torch.from_numpy on x[:, None] keeps numpy's stride for the
    size-1 dim, and the ExecuTorch runtime derives dim order from strides, so such an input reads as dim
    order (0,2,1,3) and the portable convolution rejects it."""
    return torch.from_numpy(np.array(a, copy=True, order="C")).contiguous().clone(memory_format=torch.contiguous_format)


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean())


def main() -> int:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(2)
    xtr, xte, ytr, yte = load_data()
    print(f"train {len(xtr)}, test {len(xte)}")

    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    xt, yt = tensor(xtr), tensor(ytr)
    g = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        net.train()
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            xb = xt[idx]
            # light augmentation: random 1-pixel shifts
            sh = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=sh, dims=(2, 3))
            loss = F.cross_entropy(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            net.eval()
            with torch.no_grad():
                acc = accuracy(net(tensor(xte)).numpy(), yte)
            print(f"epoch {epoch + 1}: loss {total / len(xt):.4f}, test acc {acc:.4f}")

    model = WithSoftmax(net).eval()
    with torch.no_grad():
        eager_test = model(tensor(xte)).numpy()
    eager_acc = accuracy(eager_test, yte)
    train_acc = accuracy(model(tensor(xtr)).detach().numpy(), ytr)
    print(f"eager: train acc {train_acc:.4f}, test acc {eager_acc:.4f}")
    if eager_acc < 0.95:
        print("ERROR: test accuracy below 95%", file=sys.stderr)
        return 1

    # Export: portable kernels only, dynamic batch 1..64.
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.runtime import Runtime
    from torch.export import Dim

    samples = np.ascontiguousarray(xte[:16])
    labels = np.ascontiguousarray(yte[:16])
    batch = Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (tensor(samples),), dynamic_shapes=({0: batch},))
    et = to_edge_transform_and_lower(ep).to_executorch()
    OUT.mkdir(parents=True, exist_ok=True)
    pte = OUT / "digits.pte"
    pte.write_bytes(et.buffer)
    plan = deserialize_pte_binary(et.buffer).program.execution_plan[0]
    ops = sorted(o.name + ("." + o.overload if o.overload else "") for o in plan.operators)

    method = Runtime.get().load_program(str(pte)).load_method("forward")
    ref = method.execute([tensor(samples)])[0].numpy().copy()
    ref_test = np.concatenate(
        [method.execute([tensor(np.ascontiguousarray(xte[i : i + 64]))])[0].numpy().copy() for i in range(0, len(xte), 64)]
    )
    ref_acc = accuracy(ref_test, yte)
    max_diff = float(np.abs(ref - eager_test[:16]).max())
    sample_acc = accuracy(ref, labels)
    print(f"reference runtime: test acc {ref_acc:.4f}, sample acc {sample_acc:.4f}, max |ref - eager| on samples {max_diff:.3g}")

    np.save(OUT / "samples.npy", samples.astype(np.float32))
    np.save(OUT / "labels.npy", labels.astype(np.int64))
    np.save(OUT / "expected_probs.npy", np.ascontiguousarray(ref.astype(np.float32)))

    info = {
        "seed": SEED,
        "epochs": EPOCHS,
        "train_size": len(xtr),
        "test_size": len(xte),
        "train_acc": round(train_acc, 4),
        "test_acc_eager": round(eager_acc, 4),
        "test_acc_executorch": round(ref_acc, 4),
        "samples_correct": int((ref.argmax(1) == labels).sum()),
        "ops": ops,
        "pte_bytes": pte.stat().st_size,
        "max_abs_diff_ref_vs_eager": max_diff,
    }
    readme = f"""# digits: bundled example model

A tiny CNN classifying scikit-learn's handwritten digits (8x8 grey images, 10 classes),
exported as a portable ExecuTorch program (no delegate; only portable ATen kernels).
Generated by `conformance/train_digits.py` (re-run it to reproduce; seed {SEED}).

| file | content |
| --- | --- |
| `digits.pte` | the program ({info['pte_bytes']} bytes), method `forward` |
| `samples.npy` | float32 [16,1,8,8]: the first 16 held-out test images, pixel values / 16 (range 0..1) |
| `labels.npy` | int64 [16]: their true labels |
| `expected_probs.npy` | float32 [16,10]: output of the ExecuTorch runtime (`executorch.runtime`) on `samples.npy` |

## Model

- input: float32 `[N, 1, 8, 8]`, N dynamic in 1..64 (`torch.export.Dim("batch", min=1, max=64)`),
  pixels scaled to 0..1 (`load_digits().images / 16`)
- output: float32 `[N, 10]` class probabilities (softmax is part of the model)
- layers: conv3x3(1->16)+ReLU, conv3x3(16->32)+ReLU, max_pool 2x2, linear(512->64)+ReLU,
  dropout 0.2 (identity at inference), linear(64->10), softmax
- operators in the program: {', '.join('`' + o + '`' for o in ops)}

## Training

`sklearn.datasets.load_digits()` (1797 images), stratified 80/20 split
(`train_test_split(test_size=0.2, random_state={SEED})`: {len(xtr)} train, {len(xte)} test).
Adam (lr 2e-3, weight decay 1e-4, cosine schedule), {EPOCHS} epochs, batch {BATCH}, random 1-pixel
shifts as augmentation, cross-entropy on logits.

## Accuracy

| | accuracy |
| --- | --- |
| train (eager) | {train_acc:.4f} |
| test (eager PyTorch) | {eager_acc:.4f} |
| test (ExecuTorch runtime, batches of 64) | {ref_acc:.4f} |
| the 16 bundled samples (ExecuTorch) | {info['samples_correct']}/16 |

Max |ExecuTorch - eager| on the samples: {max_diff:.3g}. A runtime reproducing `expected_probs.npy`
to within 1e-5 absolute is a faithful implementation.
"""
    (OUT / "README.md").write_text(readme)
    print(json.dumps({k: v for k, v in info.items() if k != "ops"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
