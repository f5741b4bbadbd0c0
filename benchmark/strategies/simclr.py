"""SimCLR pretraining (Chen, Kornblith, Norouzi and Hinton, ICML 2020) for the self-supervised strategies.

``ssl_probe`` and ``ssl_finetune`` start from the same random initialisation as their scratch baseline, train the
backbone contrastively on unlabelled images (by default the target's training images, every label replaced by -1;
``images: source`` uses the source's dataset), then probe or fine-tune on the labelled subset under the run's
budget. The contrastive stage runs in Lightning like every other training, and its weights are cached under a
content key (architecture, preprocessing, images, every SimCLR setting, seed): the probe and the fine-tune of one
seed share one pretraining, and a rerun loads it in a second.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from benchmark.data import seed_hash
from benchmark.loaders import make_loader
from benchmark.losses import nt_xent_loss, simclr_augment
from benchmark.strategies.base import Pretraining
from benchmark.util import file_lock

log = logging.getLogger(__name__)


class SimCLRModule(pl.LightningModule):
    """Backbone (timm pre-logits features) + projection MLP, NT-Xent over two augmented views of every image."""

    def __init__(self, model: nn.Module, proj_dim: int, temperature: float, lr: float, weight_decay: float,
                 augment: dict[str, Any], seed: int):  # fmt: skip
        super().__init__()
        self.model = model
        d = model.num_features
        self.projector = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))
        self.temperature, self.lr, self.weight_decay = temperature, lr, weight_decay
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed_hash("simclr_views", seed) % 2**63)
        self.epoch_losses: list[float] = []
        self._sum, self._n = 0.0, 0

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.model.forward_head(self.model.forward_features(x), pre_logits=True))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0]
        with torch.no_grad():
            # random numbers come from a CPU generator (reproducible on any device), the views are built on x's device
            v1 = simclr_augment(x, self.generator, **self.augment)
            v2 = simclr_augment(x, self.generator, **self.augment)
        loss = nt_xent_loss(self._embed(v1), self._embed(v2), self.temperature)
        self._sum += float(loss.detach()) * len(x)
        self._n += len(x)
        return loss

    def on_train_epoch_end(self) -> None:
        self.epoch_losses.append(self._sum / max(self._n, 1))
        self._sum, self._n = 0.0, 0

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SimCLRPretraining:
    """Mixin for strategies that pretrain their backbone with SimCLR before the labelled stage."""

    def _init_simclr(self, epochs: int = 30, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                     temperature: float = 0.5, proj_dim: int = 64, images: str = "target",
                     augment: dict[str, Any] | None = None) -> None:  # fmt: skip
        if images not in ("target", "source"):
            raise ValueError(f"images must be 'target' or 'source', got {images!r}")
        if int(epochs) < 1 or int(batch_size) < 2:
            raise ValueError(f"SimCLR needs epochs >= 1 and batch_size >= 2, got {epochs} and {batch_size}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.ssl_epochs, self.ssl_batch_size = int(epochs), int(batch_size)
        self.ssl_lr, self.ssl_weight_decay = float(lr), float(weight_decay)
        self.temperature, self.proj_dim, self.images = float(temperature), int(proj_dim), images
        self.augment = dict(augment or {})
        simclr_augment(torch.zeros(1, 1, 4, 4), **self.augment)  # unknown or bad augmentation settings fail now

    def pretrain_identity(self) -> dict[str, Any]:
        return {"method": "simclr", "epochs": self.ssl_epochs, "batch_size": self.ssl_batch_size, "lr": self.ssl_lr,
                "weight_decay": self.ssl_weight_decay, "temperature": self.temperature, "proj_dim": self.proj_dim,
                "augment": self.augment, "data": self.images}  # fmt: skip

    def pretrain(self, model: nn.Module, data: Pretraining) -> dict[str, float]:
        path = data.cache_dir / "ssl" / f"{data.key}.safetensors"
        meta = path.with_suffix(".json")
        with file_lock(path.with_suffix(".lock")):
            if not (path.is_file() and meta.is_file()):
                self._train(model, data, path, meta)
        info = json.loads(meta.read_text())
        state = load_file(str(path))
        model.load_state_dict(state)
        losses = info["epoch_losses"]
        return {"ssl/loss_first_epoch": losses[0], "ssl/loss_last_epoch": losses[-1],
                "ssl/epochs": float(len(losses)), "time/ssl_pretrain_s": info["seconds"]}  # fmt: skip

    def _train(self, model: nn.Module, data: Pretraining, path, meta) -> None:
        t0 = time.perf_counter()
        module = SimCLRModule(model, self.proj_dim, self.temperature, self.ssl_lr, self.ssl_weight_decay,
                              self.augment, data.seed)  # fmt: skip
        n = len(data.images)
        loader = make_loader(data.images, min(self.ssl_batch_size, n), True, data.seed, salt="simclr")
        trainer = pl.Trainer(max_epochs=self.ssl_epochs, accelerator=data.accelerator, devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)  # fmt: skip
        was = model.training
        trainer.fit(module, loader)
        model.train(was)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
        seconds = time.perf_counter() - t0
        meta.write_text(json.dumps({"epoch_losses": module.epoch_losses, "seconds": seconds}))
        log.info("SimCLR pretraining: %d epochs in %.1f s, loss %.3f -> %.3f", self.ssl_epochs, seconds,
                 module.epoch_losses[0], module.epoch_losses[-1])  # fmt: skip
