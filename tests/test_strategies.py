"""Contract tests over conf/strategy: every strategy, run through the path production runs, trains exactly what it
declares and nothing else.

Each strategy is composed by real Hydra (``compose_job``) and run by ``benchmark.job.train_run``, the function a
sweep job calls: its data kind (the labelled subset; source batches with unlabelled target batches for adaptation;
nothing for evaluation-only strategies), its extra modules (a discriminator), its own pretraining stage (SimCLR), the
feature cache of frozen backbones, the resumable checkpoint and MLflow. A read-only ``RunWatch`` records the model at
each stage and, inside the Lightning fit, what each epoch declares trainable (``requires_grad`` after the strategy's
epoch hook) and what actually moved. A new ``conf/strategy/<id>.yaml`` is picked up without editing this file.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONF, options
from omegaconf import OmegaConf
from timm.models import group_parameters
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import TensorDataset

from benchmark import strategies, tracking
from benchmark.callbacks import RunWatch
from benchmark.compose import build_strategy, compose_job, strategy_config
from benchmark.data import Preprocessing, label_subset
from benchmark.job import train_run
from benchmark.lifecycle import checkpoint_path
from benchmark.models import build_model, classifier_prefixes
from benchmark.module import Optimization
from benchmark.probe_solver import solved_probe
from benchmark.recipe import adapts
from benchmark.spec import Context
from benchmark.splits import load_splits
from benchmark.strategies.base import TransferStrategy
from benchmark.strategies.evaluation import EvaluationProtocol
from benchmark.train import Budget, TrainerSettings, fit_and_test

ARCHS = ["test_resnet", "test_vit"]
TINY = [
    "source=synth_digits",  # pretrained by the harness (once per architecture and module): adaptation needs its data
    "source.weights.recipe.epochs=1",
    "source.weights.dataset.n_per_class=40",
    "target=synth_digits",  # other glyphs than the source's, same classes (adaptation needs them)
    "target.n_per_class=16",
    "target.seed=7",
    "label_budget=5",
    "budget.epochs=2",  # two epochs: LP-FT probes in the first and fine-tunes in the second
    "budget.min_steps=0",
    "budget.batch_size=32",
    "trainer.checkpoint_every_s=0.0",  # a resumable checkpoint after every epoch but the last: audited below
]
CHEAP_PRETRAINING = {"epochs": 2, "batch_size": 32}
"""Settings of a strategy's own pretraining stage, applied when its YAML has the key (SimCLR: 2 epochs)."""

WHAT_TRAINS = {
    **dict.fromkeys(["scratch", "aa_scratch", "finetune", "l2sp", "layerwise_lr", "ssl_finetune"], "all"),
    **dict.fromkeys(["source_only", "dann", "coral", "mmd"], "all"),
    **dict.fromkeys(["linear_probe", "ssl_probe", "linear_probe_random"], "head"),
    **dict.fromkeys(["cluster", "cluster_random", "anomaly", "anomaly_random"], "nothing"),
}
"""README's "what trains" column, for the strategies it names; every strategy gets the generic checks whether it
is listed here or not."""
OWN_PRETRAINING = {"ssl_probe", "ssl_finetune"}
"""Strategies the README says pretrain their backbone themselves (SimCLR) before the labelled stage."""


def _camel(stem: str) -> str:
    return "".join(part.capitalize() for part in stem.split("_"))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (running statistics and their counters too), cloned."""
    return {n: t.detach().clone() for n, t in [*module.named_parameters(), *module.named_buffers()]}


def _moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, t in before.items() if not torch.equal(t, after[n])}


class Audit(RunWatch):
    """Records the model at each stage of the run and, for every epoch of its fit, what was declared trainable
    (``requires_grad`` at the epoch's first batch, after the strategy's hook), what the optimizer holds, what moved,
    which frozen BatchNorm statistics drifted and what the first batch looked like. Parameters are named as in the
    whole model even when only its head trains (cached features); extra modules keep their ``extra.`` names."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        self.model: torch.nn.Module | None = None
        self.stages: dict[str, tuple[dict[str, torch.Tensor], dict[str, float]]] = {}
        self.epochs: list[dict] = []
        self.extra: set[str] = set()
        self.checkpointed: dict | None = None

    def on_stage(self, stage, model, metrics):
        self.model = model
        self.stages[stage] = (_state(model), metrics)

    def _params(self, pl_module) -> dict[str, torch.nn.Parameter]:
        whole = {id(p): n for n, p in self.model.named_parameters()}
        return {whole.get(id(p), n): p for n, p in pl_module.named_parameters()}

    def on_fit_start(self, trainer, pl_module):
        self.extra = set(pl_module.extra.keys())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx:
            return
        params = self._params(pl_module)
        optimized = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
        frozen_bn = [
            n
            for n, m in pl_module.named_modules()
            if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters(recurse=False))
        ]
        self._epoch = {
            "declared": {n for n, p in params.items() if p.requires_grad},
            "optimized": {n for n, p in params.items() if id(p) in optimized},
            "batch": _describe(batch),
        }
        self._params_before = {n: p.detach().clone() for n, p in params.items()}
        self._bn_before = {
            f"{n}.{b}": t.clone() for n in frozen_bn for b, t in pl_module.get_submodule(n).named_buffers()
        }

    def on_train_epoch_end(self, trainer, pl_module):
        params = self._params(pl_module)
        buffers = dict(pl_module.named_buffers())
        self._epoch["changed"] = {n for n, t in self._params_before.items() if not torch.equal(t, params[n].detach())}
        self._epoch["drifted"] = {n for n, t in self._bn_before.items() if not torch.equal(t, buffers[n])}
        self._epoch["batches"] = trainer.num_training_batches
        self.epochs.append(self._epoch)
        if self.checkpointed is None and self.checkpoint.is_file():  # EpochCheckpoint ran before this callback
            saved = torch.load(self.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
            now = pl_module.state_dict()
            self.checkpointed = {k: k in saved and torch.equal(saved[k], v) for k, v in now.items()}


def _describe(batch) -> dict:
    if isinstance(batch, dict):
        (xs, ys), (xt, yt) = batch["source"], batch["target"]
        distinct = not torch.equal(xs[: len(xt)], xt[: len(xs)])  # two real batches, not one batch twice
        return {"kind": "adaptation", "keys": sorted(batch), "source_labelled": bool((ys >= 0).all()),
                "target_unlabelled": bool((yt == -1).all()), "distinct": distinct}  # fmt: skip
    _, y = batch
    return {"kind": "labelled", "labelled": bool((y >= 0).all()), "rows": len(y)}


# one worker runs this module and builds its module-scoped fixtures below once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_strategies")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one torch thread per process is several times faster than two
    fighting the other processes (measured 0.15 s against 0.9-4 s for a step of test_resnet under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """Shared by the module's runs: each architecture's source is pretrained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def ctx(store, cache_dir) -> Context:
    client = tracking.open_store(store)
    return Context(client, tracking.ensure_experiment(client, "contracts"), cache_dir)


def _job(strategy_id: str, arch: str):
    yaml = OmegaConf.load(CONF / "strategy" / f"{strategy_id}.yaml")
    cheap = [f"strategy.{k}={v}" for k, v in CHEAP_PRETRAINING.items() if k in yaml]
    return compose_job([*TINY, f"source.arch={arch}", f"strategy={strategy_id}", *cheap])


@pytest.mark.parametrize("strategy_id", options("strategy"))
def test_strategy_yaml_names_its_method_and_its_comparison(strategy_id):
    """A strategy with a module of its own names its class after its id; a YAML-only strategy (a baseline such as
    ``cluster_random``, the A/A control) reuses another's method and differs only in its ``meta`` block."""
    node = strategy_config(strategy_id, "test")
    strategy, meta = build_strategy(strategy_id, node)
    assert isinstance(strategy, TransferStrategy | EvaluationProtocol)
    if (Path(strategies.__file__).parent / f"{strategy_id}.py").is_file():
        assert node._target_ == f"benchmark.strategies.{strategy_id}.{_camel(strategy_id)}"
    if isinstance(strategy, TransferStrategy):
        assert strategy.data in ("labelled", "adaptation")
    if meta.is_baseline:
        assert not meta.uses_source_weights, f"baseline {strategy_id} must not read the source's weights"
    else:
        _, base = build_strategy(meta.baseline, strategy_config(meta.baseline, "its baseline"))
        assert base.is_baseline and not base.uses_source_weights


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("strategy_id", options("strategy"))
def test_strategy_trains_exactly_what_it_declares_on_its_production_path(strategy_id, arch, ctx):
    job = _job(strategy_id, arch)
    strategy = job.strategy
    audit = Audit(checkpoint_path(job, ctx))
    outcome = train_run(job, ctx, watch=audit)
    run = ctx.client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert list(audit.stages) == ["initial", "pretrained", "end"]
    (initial, _), (pretrained, pre), (end, _) = audit.stages.values()
    model = audit.model
    head = {n for n, _ in model.named_parameters() if n.startswith(classifier_prefixes(model))}
    backbone = {n for n, _ in model.named_parameters()} - head
    assert (m["weights/loaded_tensors"] > 0) == job.meta.uses_source_weights

    # the strategy's own pretraining stage: runs, logs its loss, moves the backbone away from the initialisation
    if strategy_id in OWN_PRETRAINING:
        assert strategy.pretrain_identity() is not None, f"{strategy_id} must pretrain its backbone itself"
    if WHAT_TRAINS.get(strategy_id) == "nothing":
        assert isinstance(strategy, EvaluationProtocol), f"{strategy_id} is evaluation-only: an EvaluationProtocol"
    if isinstance(strategy, EvaluationProtocol) or strategy.pretrain_identity() is None:
        assert not pre and not _moved(initial, pretrained), f"{strategy_id} changed weights before its fit"
    else:
        assert any("loss" in k and math.isfinite(v) for k, v in pre.items()), f"no pretraining loss: {pre}"
        assert all(m[k] == v for k, v in pre.items()), "the pretraining stage's metrics must reach MLflow"
        unmoved = backbone - _moved(initial, pretrained)
        assert not unmoved, f"{strategy_id}: pretraining left backbone tensors at their init: {sorted(unmoved)[:5]}"

    metric = job.meta.metric or "test/acc"
    assert metric in m and math.isfinite(m[metric]), f"{strategy_id} did not produce its metric {metric}"

    if isinstance(
        strategy, EvaluationProtocol
    ):  # evaluation only: no fit, no weight or statistic moves, the metric is produced
        assert not audit.epochs and "train/loss" not in m, f"{strategy_id} is evaluation-only but trained"
        moved = _moved(pretrained, end)
        assert not moved, f"{strategy_id} is evaluation-only but changed {sorted(moved)[:5]}"
        return

    if solved_probe(strategy) is not None and strategy.frozen_backbone:  # solved: the head, and nothing else, moves
        assert not audit.epochs and m["train/total_steps"] == 0 and m["probe/converged"] == 1.0
        assert WHAT_TRAINS.get(strategy_id) == "head" and _moved(pretrained, end) == head, sorted(
            _moved(pretrained, end)
        )
        return

    splits = load_splits(job.target_id, job.target, job.target_config)
    epochs, _ = job.budget.plan(int(m["data/train_examples"]))
    assert len(audit.epochs) == epochs
    if strategy.data == "adaptation":  # every target training image, unlabelled, next to a labelled source batch
        assert m["data/train_examples"] == len(splits.train)
        expected_batch = {"kind": "adaptation", "keys": ["source", "target"], "source_labelled": True,
                          "target_unlabelled": True, "distinct": True}  # fmt: skip
    else:
        subset = label_subset(splits.train.labels, job.label_budget, job.seed, job.target_id)
        assert m["data/train_examples"] == len(subset) == job.label_budget * splits.num_classes
        expected_batch = {"kind": "labelled", "labelled": True, "rows": job.budget.batch_size}
    steps = math.ceil(m["data/train_examples"] / job.budget.batch_size)
    declared_ever: set[str] = set()
    for epoch, e in enumerate(audit.epochs):
        where = f"{strategy_id}/{arch} epoch {epoch}"
        assert e["batch"] == expected_batch, f"{where}: {e['batch']}"
        assert e["batches"] == steps, f"{where}: {e['batches']} batches, one pass over the data is {steps}"
        assert e["declared"], f"{where}: trains nothing"
        assert e["changed"] == e["declared"], (
            f"{where}: changed-but-frozen {sorted(e['changed'] - e['declared'])[:5]}, "
            f"trainable-but-unchanged {sorted(e['declared'] - e['changed'])[:5]}"
        )
        assert e["declared"] <= e["optimized"], f"{where}: not optimised {sorted(e['declared'] - e['optimized'])[:5]}"
        assert not e["drifted"], f"{where}: frozen BatchNorm statistics moved: {sorted(e['drifted'])[:5]}"
        assert head <= e["declared"], f"{where}: the new classifier must always train"
        declared_ever |= e["declared"]

    # extra modules (a discriminator): registered, optimised, moved in every epoch, in the resumable checkpoint
    declared_extra = set(strategy.extra_modules(model, splits.num_classes))
    assert audit.extra == declared_extra, f"registered {audit.extra}, declared {declared_extra}"
    extra_params = {n for e in audit.epochs for n in e["optimized"] if n.startswith("extra.")}
    assert {n.split(".")[1] for n in extra_params} == declared_extra
    for e in audit.epochs:
        assert extra_params <= e["changed"], "every extra module must be optimised in every epoch"
    assert audit.checkpointed and all(audit.checkpointed.values()), (
        f"not in the resumable checkpoint: {[k for k, ok in (audit.checkpointed or {}).items() if not ok][:5]}"
    )
    assert not extra_params or any(k.startswith("extra.") for k in audit.checkpointed)

    # over the whole run: what was never declared did not move, frozen BatchNorm statistics included
    frozen = {n for n, _ in model.named_parameters()} - declared_ever
    assert not frozen & _moved(pretrained, end), f"frozen parameters moved: {sorted(frozen & _moved(pretrained, end))}"
    frozen_bn = [
        n
        for n, mod in model.named_modules()
        if isinstance(mod, _BatchNorm) and {f"{n}.{p}" for p, _ in mod.named_parameters(recurse=False)} <= frozen
    ]
    drifted = {b for b in _moved(pretrained, end) if b.rsplit(".", 1)[0] in frozen_bn}
    assert not drifted, f"frozen BatchNorm statistics moved over the run: {sorted(drifted)[:5]}"

    # README's promises of what trains
    everything = {n for n, _ in model.named_parameters()}
    if WHAT_TRAINS.get(strategy_id) == "all":
        assert all(e["declared"] - extra_params == everything for e in audit.epochs)
    if WHAT_TRAINS.get(strategy_id) == "head":
        assert all(e["declared"] == head for e in audit.epochs)
    if strategy_id == "lp_ft":  # the solved head first (no probing epoch), then every parameter fine-tunes
        # (on raw features, as LP-FT solves it, a random ViT's probe may stop at its iteration cap: logged, not hidden)
        assert solved_probe(strategy) is not None and m["probe/converged"] in (0.0, 1.0) and "probe/C" in m
        assert all(e["declared"] == everything for e in audit.epochs)
    if hasattr(strategy, "frozen_stages"):
        _check_first_groups_frozen(model, strategy.frozen_stages, frozen)


def _check_first_groups_frozen(model: torch.nn.Module, k: int, frozen: set[str]) -> None:
    """``frozen_stages=k`` freezes timm's first ``k`` coarse groups in depth order, the stem first."""
    groups = group_parameters(model, model.group_matcher(coarse=True))
    order = sorted(groups)  # timm numbers groups by depth: stem/patch embedding 0, then stages or blocks, head last
    assert 0 < k < len(order)
    assert frozen == {n for g in order[:k] for n in groups[g]}, (
        f"frozen {sorted(frozen)[:4]}..., timm's first {k} groups start {[groups[g][0] for g in order[:k]]}"
    )
    stem = model.pretrained_cfg["first_conv"]  # timm's own name of the stem, independent of the group order
    assert {f"{stem}.weight"} <= frozen, f"the stem {stem} must be frozen first"


def _data(n: int = 48, classes: int = 4) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % classes)


ADAPTATION = [s for s in options("strategy") if adapts(build_strategy(s, strategy_config(s, "test"))[0])]


@pytest.mark.parametrize("strategy_id", ADAPTATION)
def test_adaptation_refuses_batches_without_target_images(strategy_id):
    """No silent "one batch as both domains" path: without the source's data an adaptation fit stops and says why."""
    strategy, _ = build_strategy(strategy_id, strategy_config(strategy_id, "test"))
    model = build_model("test_resnet", 4, Preprocessing(32))
    budget = Budget(epochs=1, min_steps=0, batch_size=16, optimization=Optimization(lr=1e-2, warmup_fraction=0.0))
    with pytest.raises(TypeError, match=r"'source': \(x, y\), 'target'.*source_train="):
        fit_and_test(model, strategy, _data(), _data(16), None, 4, budget, TrainerSettings(), seed=0)


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
        model,
        LpFt(0.5, 0.1, {"head": "sgd"}),
        _data(),
        _data(16),
        None,
        4,
        budget,
        TrainerSettings(),
        seed=0,
        callbacks=[probe],
    )
    first, second = probe.lrs[0], probe.lrs[1]
    assert first == pytest.approx(1e-2)
    assert second < 0.1 * first * 1.01  # fine-tuning phase: 0.1 x base rate x cosine factor
    # the probe phase above is the gradient-descent head's (probe.head=sgd); a solved head fine-tunes from step 0
    # with every group at the fine-tuning rate
    probe = LrProbe()
    fit_and_test(model, LpFt(0.5, 0.1, {"head": "solved"}), _data(), _data(16), None, 4, budget, TrainerSettings(),
                 seed=0, callbacks=[probe])  # fmt: skip
    assert probe.lrs[0] == pytest.approx(1e-3)


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
