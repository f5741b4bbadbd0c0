"""Hydra entry point: ``python -m benchmark.run [-m] source=... target=... strategy=... seed=...``.

The only module that reads a ``DictConfig``: it turns the composed config into typed objects (``JobSpec``) and
hands them to ``benchmark.job``. Run keys are hashed from the *unresolved* config, so machine paths that come
from interpolations (``${hydra:runtime.cwd}``, ``${oc.env:...}``) do not change a run's identity.
"""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from benchmark import sweep, tracking
from benchmark.data import Preprocessing
from benchmark.job import Context, JobSpec, execute, set_threads, write_record
from benchmark.module import Optimization
from benchmark.sources.models import (
    FileWeights,
    HubWeights,
    NoWeights,
    PretrainRecipe,
    PretrainWeights,
    SourceSpec,
    check_arch,
)
from benchmark.train import Budget, TrainerSettings
from benchmark.util import stable_hash

log = logging.getLogger("benchmark")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
KEY_VERSION = 1
"""Bumped when a change to the harness makes old runs incomparable: every run key changes with it."""


def _raw(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node


def _resolved(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def build_source(source_id: str, cfg: DictConfig, dataset_id: str | None) -> SourceSpec:
    prep = cfg.get("preprocessing") or {}
    preprocessing = Preprocessing(
        image_size=int(prep.get("image_size", 32)),
        in_chans=int(prep.get("in_chans", 3)),
        mean=tuple(float(x) for x in prep.get("mean", (0.5, 0.5, 0.5))),
        std=tuple(float(x) for x in prep.get("std", (0.5, 0.5, 0.5))),
    )
    problem = check_arch(cfg.arch)
    if problem:
        raise ValueError(f"source {source_id!r}: {problem}")
    w = cfg.get("weights") or {"kind": "none"}
    kind = w.get("kind", "none")
    if kind == "none":
        weights = NoWeights()
    elif kind == "hub":
        weights = HubWeights(tag=str(w.tag))
    elif kind == "file":
        path = Path(str(w.path)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"source {source_id!r}: weights file {str(path.resolve())!r} does not exist")
        weights = FileWeights(path=path)
    elif kind == "pretrain":
        if "dataset" not in w:
            raise ValueError(f"source {source_id!r}: weights.kind=pretrain needs weights.dataset (a target config)")
        dataset = instantiate(w.dataset)
        problems = dataset.problems()
        if problems:
            raise ValueError(f"source {source_id!r} pretraining dataset: " + "; ".join(problems))
        weights = PretrainWeights(
            dataset_id=dataset_id or "dataset",
            dataset=dataset,
            dataset_config=_raw(w.dataset),
            recipe=PretrainRecipe(**_resolved(w.get("recipe") or {})),
        )
    else:
        raise ValueError(f"source {source_id!r}: unknown weights.kind {kind!r}; choices: none, hub, file, pretrain")
    return SourceSpec(source_id, cfg.arch, preprocessing, weights, dict(_resolved(cfg.get("model_kwargs") or {})))


def run_identity(
    cfg: DictConfig, choices: dict[str, str], strategy_id: str, strategy_cfg: Any, pretrained: bool
) -> dict:
    """Everything that changes a result. A scratch run keeps only the source's architecture and preprocessing,
    so every source of the same architecture shares one baseline."""
    src = _raw(cfg.source)
    source = (
        {"id": choices["source"], **src}
        if pretrained
        else {k: src.get(k) for k in ("arch", "model_kwargs", "preprocessing")}
    )
    return {
        "version": KEY_VERSION,
        "source": source,
        "target": {"id": choices["target"], **_raw(cfg.target)},
        "strategy": {"id": strategy_id, **(_raw(strategy_cfg) or {})},
        "seed": cfg.seed,
        "label_budget": cfg.label_budget,
        "budget": _raw(cfg.budget),
        "selection": cfg.selection,
        "precision": cfg.trainer.precision,
    }


def build_job(cfg: DictConfig, choices: dict[str, str]) -> JobSpec:
    """Typed job (and its baseline job) from the composed config; raises before any training on bad input."""
    if cfg.seed is None:
        raise ValueError("seed must be an integer (0 is a valid seed)")
    label_budget = None if cfg.label_budget is None else int(cfg.label_budget)
    source_id, target_id, strategy_id = choices["source"], choices["target"], choices["strategy"]
    source = build_source(source_id, cfg.source, choices.get("target@source.weights.dataset"))
    target = instantiate(cfg.target)
    problems = target.problems()
    if problems:
        raise ValueError(f"target {target_id!r}: " + "; ".join(problems))
    strategy = instantiate(cfg.strategy)
    b = cfg.budget
    budget = Budget(
        epochs=int(b.epochs),
        min_steps=int(b.min_steps),
        batch_size=int(b.batch_size),
        optimization=Optimization(
            lr=float(b.lr),
            weight_decay=float(b.weight_decay),
            optimizer=str(b.optimizer),
            warmup_fraction=float(b.warmup_fraction),
        ),
    )
    t = cfg.trainer
    trainer = TrainerSettings(
        accelerator=str(t.accelerator),
        devices=int(t.devices),
        precision=str(t.precision),
        deterministic=t.deterministic,
        num_workers=int(t.num_workers),
    )
    resolved = {k: _resolved(cfg[k]) for k in cfg if k != "hydra"}
    params = tracking.flatten(resolved)
    common = dict(
        target_id=target_id,
        target=target,
        target_config=_raw(cfg.target),
        seed=int(cfg.seed),
        label_budget=label_budget,
        budget=budget,
        trainer=trainer,
        selection=str(cfg.selection),
    )
    scratch_cfg = OmegaConf.load(CONF_DIR / "strategy" / "scratch.yaml")
    baseline_key = stable_hash(run_identity(cfg, choices, "scratch", scratch_cfg, pretrained=False))
    key = stable_hash(run_identity(cfg, choices, strategy_id, cfg.strategy, pretrained=strategy.uses_pretrained))
    if strategy.role == "baseline":
        return JobSpec(
            source=source,
            strategy_id=strategy_id,
            strategy=strategy,
            run_key=key,
            baseline_key=None,
            params=params,
            config_yaml=OmegaConf.to_yaml(resolved),
            **common,
        )
    base_params = {k: v for k, v in params.items() if not k.startswith(("strategy/", "source/weights"))}
    base_params.update(tracking.flatten({"strategy": _resolved(scratch_cfg)}))
    baseline = JobSpec(
        source=replace(source, weights=NoWeights()),
        strategy_id="scratch",
        strategy=instantiate(scratch_cfg),
        run_key=baseline_key,
        baseline_key=None,
        params=base_params,
        **common,
    )
    return JobSpec(
        source=source,
        strategy_id=strategy_id,
        strategy=strategy,
        run_key=key,
        baseline_key=baseline_key,
        params=params,
        config_yaml=OmegaConf.to_yaml(resolved),
        baseline=baseline,
        **common,
    )


def run_job(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    root = Path(hc.runtime.cwd)
    choices = dict(hc.runtime.choices)
    set_threads(cfg.trainer.get("threads"))
    multirun = hc.mode == RunMode.MULTIRUN
    state = sweep.find_state(Path(hc.sweep.dir)) if multirun else None
    if multirun and state is None:
        log.warning("no sweep state in %s: this job runs without a parent run or sweep verdicts", hc.sweep.dir)
    job = build_job(cfg, choices)
    if state is not None:
        client = tracking.open_store(state.tracking_uri)
        exp_id, parent, sweep_id = state.experiment_id, state.parent_run_id, state.sweep_id
    else:
        uri = tracking.resolve_uri(cfg.tracking.uri, root)
        client = tracking.open_store(uri)
        exp_id = tracking.ensure_experiment(client, cfg.tracking.experiment, _artifact_root(cfg))
        parent = sweep_id = None
    ctx = Context(client, exp_id, Path(cfg.cache_dir).resolve(), parent, sweep_id, tracking.git_sha(root))
    record: dict[str, Any] = {
        "name": job.name,
        "run_key": job.run_key,
        "baseline_key": job.baseline_key,
        "role": job.strategy.role,
        "cell": list(job.cell),
    }
    try:
        outcome = execute(job, ctx)
        record.update(
            status="ok",
            run_id=outcome.run_id,
            reused=outcome.reused,
            baseline_run_id=outcome.baseline_run_id,
            baseline_reused=outcome.baseline_reused,
        )
    except BaseException as exc:
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:1000])
        raise
    finally:
        if state is not None:
            write_record(sweep.record_path(state, int(hc.job.num)), record)
    acc = outcome.metrics.get("test/acc")
    delta = outcome.deltas.get("delta/test/acc")
    msg = f"{job.name}: test/acc={acc:.4f}" if acc is not None else job.name
    if delta is not None:
        msg += f" delta/test/acc={delta:+.4f} (baseline run {outcome.baseline_run_id})"
    print(("[reused] " if outcome.reused else "") + msg, flush=True)
    return acc


def _artifact_root(cfg: DictConfig) -> Path | None:
    root = cfg.tracking.get("artifact_root")
    return Path(root) if root else None


class SweepCallback(Callback):
    """Creates the parent run before the first job and finalises the sweep after the last one."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # so ${hydra:...} interpolations resolve here too
        root = Path(config.hydra.runtime.cwd)
        overrides = list(config.hydra.overrides.task)
        sweep.start(
            tracking.resolve_uri(config.tracking.uri, root),
            str(config.tracking.experiment),
            _artifact_root(config),
            Path(config.hydra.sweep.dir),
            overrides,
            tracking.git_sha(root),
            str(config.verdict.metric),
            float(config.verdict.alpha),
            float(config.verdict.margin),
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.finalize_active()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: runs in flight end KILLED, the sweep is finalised


def main() -> None:
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        _hydra_main()
    finally:
        sweep.finalize_active()  # released Hydra skips on_multirun_end when a job failed


if __name__ == "__main__":
    sys.exit(main())
