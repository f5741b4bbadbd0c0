"""Contract tests over conf/strategy: every strategy trains exactly the parameters it declares.

"Declares" = the parameters left with ``requires_grad`` after the strategy's hooks ran for the epoch. During each
epoch of a real Lightning fit, exactly those parameters must change, and BatchNorm layers whose parameters are all
frozen must keep their running statistics (frozen BN in train mode would silently drift).
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONF, options
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import TensorDataset

from benchmark.data import Preprocessing
from benchmark.module import Optimization
from benchmark.sources.models import build_model
from benchmark.strategies.base import TransferStrategy
from benchmark.train import Budget, TrainerSettings, fit_and_test


def _camel(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.split("_"))


class EpochAudit(pl.Callback):
    """Snapshot parameters and frozen-BN buffers after the strategy's epoch hook; compare at epoch end."""

    def __init__(self):
        self.epochs: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx:
            return
        model = pl_module.model
        frozen_bn = [
            n
            for n, m in model.named_modules()
            if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters(recurse=False))
        ]
        self._declared = {n for n, p in model.named_parameters() if p.requires_grad}
        self._params = {n: p.detach().clone() for n, p in model.named_parameters()}
        self._buffers = {
            f"{n}.{b}": t.detach().clone()
            for n in frozen_bn
            for b, t in model.get_submodule(n).named_buffers(recurse=False)
            if t.dtype.is_floating_point
        }

    def on_train_epoch_end(self, trainer, pl_module):
        model = pl_module.model
        now = dict(model.named_parameters())
        changed = {n for n, before in self._params.items() if not torch.equal(before, now[n].detach())}
        buffers = dict(model.named_buffers())
        drifted = {n for n, before in self._buffers.items() if not torch.equal(before, buffers[n])}
        self.epochs.append({"declared": self._declared, "changed": changed, "drifted": drifted})


def _data(n: int = 48, classes: int = 4) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % classes)


@pytest.mark.parametrize("strategy_id", options("strategy"))
def test_strategy_naming_follows_the_registry(strategy_id):
    cfg = OmegaConf.load(CONF / "strategy" / f"{strategy_id}.yaml")
    assert cfg._target_ == f"benchmark.strategies.{strategy_id}.{_camel(strategy_id)}"
    strategy = instantiate(cfg)
    assert isinstance(strategy, TransferStrategy)
    assert strategy.role == ("baseline" if strategy_id == "scratch" else "transfer") or not strategy.uses_pretrained


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit"])
@pytest.mark.parametrize("strategy_id", options("strategy"))
def test_strategy_trains_exactly_what_it_declares(strategy_id, arch):
    strategy = instantiate(OmegaConf.load(CONF / "strategy" / f"{strategy_id}.yaml"))
    pl.seed_everything(0, verbose=False)
    model = build_model(arch, 4, Preprocessing(32))
    audit = EpochAudit()
    budget = Budget(epochs=2, min_steps=0, batch_size=16, optimization=Optimization(lr=1e-2, warmup_fraction=0.0))
    fit_and_test(model, strategy, _data(), _data(16), None, 4, budget, TrainerSettings(), seed=0, callbacks=[audit])
    assert len(audit.epochs) == 2
    all_params = {n for n, _ in model.named_parameters()}
    head = {n for n in all_params if n.startswith(("fc.", "head."))}
    for epoch, e in enumerate(audit.epochs):
        assert e["declared"], f"{strategy_id} trains nothing in epoch {epoch}"
        assert e["changed"] == e["declared"], (
            f"{strategy_id}/{arch} epoch {epoch}: changed-but-frozen {sorted(e['changed'] - e['declared'])[:5]}, "
            f"trainable-but-unchanged {sorted(e['declared'] - e['changed'])[:5]}"
        )
        assert not e["drifted"], f"frozen BatchNorm statistics moved: {sorted(e['drifted'])[:5]}"
        assert head <= e["declared"], "the new classifier must always train"
    if strategy_id == "linear_probe":
        assert all(e["declared"] == head for e in audit.epochs)
    if strategy_id in ("scratch", "finetune"):
        assert all(e["declared"] == all_params for e in audit.epochs)
    if strategy_id == "lp_ft":
        assert audit.epochs[0]["declared"] == head and audit.epochs[1]["declared"] == all_params
    if strategy_id == "partial_finetune":
        assert head < audit.epochs[0]["declared"] < all_params


def test_partial_finetune_rejects_freezing_the_head():
    from benchmark.strategies.partial_finetune import PartialFinetune

    model = build_model("test_resnet", 4, Preprocessing(32))
    with pytest.raises(ValueError, match=r"frozen_stages=9.*choose 0..5"):
        PartialFinetune(frozen_stages=9).param_groups(model)


def test_lp_ft_lowers_the_learning_rate_that_reaches_the_optimizer():
    """The LR factor a strategy sets must arrive in the optimizer (not only in a group attribute)."""
    from benchmark.strategies.lp_ft import LpFt

    class LrProbe(pl.Callback):
        def __init__(self):
            self.lrs: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            head_param = pl_module.model.get_classifier().weight
            for g in trainer.optimizers[0].param_groups:
                if any(p is head_param for p in g["params"]):
                    self.lrs.append(g["lr"])

    model = build_model("test_resnet", 4, Preprocessing(32))
    probe = LrProbe()
    budget = Budget(epochs=2, min_steps=0, batch_size=48, optimization=Optimization(lr=1e-2, warmup_fraction=0.0))
    fit_and_test(
        model, LpFt(0.5, 0.1), _data(), _data(16), None, 4, budget, TrainerSettings(), seed=0, callbacks=[probe]
    )
    first, second = probe.lrs[0], probe.lrs[1]
    assert first == pytest.approx(1e-2)
    assert second < 0.1 * first * 1.01  # fine-tuning phase: 0.1 x base rate x cosine factor


def test_layerwise_rates_reach_the_optimizer():
    """timm only records lr_scale; the harness must apply it: read the rates back from the optimizer."""
    from benchmark.strategies.layerwise_lr import LayerwiseLr

    rates: dict[str, float] = {}

    class Read(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            names = {id(p): n for n, p in pl_module.model.named_parameters()}
            for g in trainer.optimizers[0].param_groups:
                for p in g["params"]:
                    rates[names[id(p)]] = g["lr"]

    model = build_model("test_resnet", 4, Preprocessing(32))
    budget = Budget(epochs=1, min_steps=0, batch_size=48, optimization=Optimization(lr=1e-2, warmup_fraction=0.0))
    fit_and_test(model, LayerwiseLr(0.5), _data(), _data(16), None, 4, budget, TrainerSettings(), seed=0,
                 callbacks=[Read()])  # fmt: skip
    head, stem = rates["fc.weight"], rates["conv1.0.weight"]
    assert head == pytest.approx(1e-2)  # one step: cosine factor still 1
    assert stem == pytest.approx(1e-2 * 0.5**5)  # 6 coarse groups: stem, layer1-4, head
    assert rates["layer2.0.conv1.weight"] == pytest.approx(1e-2 * 0.5**3)


def test_l2sp_pulls_towards_the_source_weights_not_zero():
    from benchmark.strategies.l2sp import L2sp

    model = build_model("test_resnet", 4, Preprocessing(32))
    strategy = L2sp(alpha=1.0, beta=0.0)
    strategy.setup(model)
    assert float(strategy.regularizer(model)) == 0.0  # at the source weights: no penalty, however large they are
    with torch.no_grad():
        model.conv1[0].weight.add_(1.0)
    expected = 0.5 * model.conv1[0].weight.numel()
    assert float(strategy.regularizer(model)) == pytest.approx(expected)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    assert float(strategy.regularizer(model)) > 0  # zero weights are *not* the optimum of L2-SP
