"""GPU readiness: images/s of a ResNet-50 fine-tune at 224 px through the harness against a plain PyTorch loop.

``scripts/gpu_check.sh`` runs it (under 3 minutes on one GPU). Both sides train the same timm model on the same
in-memory batches with bf16 autocast and channels-last layout, and validate one batch per epoch; the first epoch of
each is warm-up and is not timed. Images are random tensors: this measures throughput, not accuracy.
Without a GPU it runs as a dry run on the CPU with a tiny model (test_resnet, 64 px, fp32), so the path is exercised.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import TensorDataset

from benchmark.data import Preprocessing
from benchmark.models import build_model
from benchmark.module import Optimization
from benchmark.strategies.finetune import Finetune
from benchmark.train import Budget, TrainerSettings, fit_and_test


def _data(n: int, size: int, classes: int = 10) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g))


def harness(arch: str, size: int, batch: int, steps: int, epochs: int, gpu: bool) -> float:
    model = build_model(arch, 10, Preprocessing(size))
    settings = TrainerSettings(
        accelerator="gpu" if gpu else "cpu", precision="bf16-mixed" if gpu else "32-true", channels_last=gpu
    )
    timer = EpochTimes()
    budget = Budget(epochs=epochs, min_steps=0, batch_size=batch, optimization=Optimization(lr=1e-3))
    fit_and_test(model, Finetune(), _data(batch * steps, size), _data(batch, size), None, 10, budget, settings, 0,
                 callbacks=[timer])  # fmt: skip
    return batch * steps / statistics.median(timer.times[1:])


class EpochTimes:
    """Wall time of every training epoch (a Lightning callback, defined lazily to keep imports light)."""

    def __new__(cls):
        import pytorch_lightning as pl

        class _Times(pl.Callback):
            def __init__(self):
                self.times, self._t = [], 0.0

            def on_train_epoch_start(self, trainer, pl_module):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self._t = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.times.append(time.perf_counter() - self._t)

        return _Times()


def plain(arch: str, size: int, batch: int, steps: int, epochs: int, gpu: bool) -> float:
    import timm
    import torch.nn.functional as F

    device = "cuda" if gpu else "cpu"
    model = timm.create_model(arch, num_classes=10).to(device)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as the harness (trainer.fused_optimizer)
    train, val = _data(batch * steps, size), _data(batch, size)
    times = []
    for _ in range(epochs):
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            x, y = train.tensors[0][idx].to(device, non_blocking=True), train.tensors[1][idx].to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=gpu):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=gpu):
            model(val.tensors[0].to(device))
        if gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch * steps / statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="the first is warm-up")
    args = parser.parse_args(argv)
    gpu = torch.cuda.is_available()
    arch, size, batch, steps = ("resnet50", 224, 128, 30) if gpu else ("test_resnet", 64, 32, 8)
    where = torch.cuda.get_device_name(0) if gpu else "CPU (dry run: no GPU found)"
    print(f"{where}: {arch} fine-tune at {size} px, batch {batch}, {steps} steps/epoch, {args.epochs} epochs")
    t0 = time.perf_counter()
    h = harness(arch, size, batch, steps, args.epochs, gpu)
    p = plain(arch, size, batch, steps, args.epochs, gpu)
    print(f"harness {h:8.1f} images/s   plain PyTorch loop {p:8.1f} images/s   ratio {p / h:.2f}x "
          f"(plain / harness; {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
