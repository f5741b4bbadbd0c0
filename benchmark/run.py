"""Hydra entry point: ``python -m benchmark.run [-m] source=... target=... strategy=... seed=...``.

The only module that reads a ``DictConfig``: it turns the composed config into typed objects (``JobSpec``) and
hands them to ``benchmark.job``. Run keys are hashed from the *unresolved* config, so machine paths that come
from interpolations (``${hydra:runtime.cwd}``, ``${oc.env:...}``) do not change a run's identity.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from benchmark import identity, provenance, sweep, tracking
from benchmark.data import Preprocessing
from benchmark.job import Context, JobSpec, check_rerun, data_problems, execute, set_threads, write_record
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

log = logging.getLogger("benchmark")

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


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
    cfg: DictConfig,
    choices: dict[str, str],
    strategy_id: str,
    strategy_cfg: Any,
    pretrained: bool,
    trainer: TrainerSettings,
    digest: bool = True,
) -> dict:
    """Everything that changes a result (``benchmark.identity`` hashes it into the run key, cell key and variant).

    A run that ignores the source's weights keeps only its architecture and preprocessing, so every source of the
    same architecture shares one baseline. File weights enter by content (sha256), not by path; ``digest=False``
    leaves the path as configured (the defaults of ``source=local_file`` have no file to hash).
    """
    src = _raw(cfg.source)
    if pretrained:
        source = {"id": choices["source"], **src}
        weights = src.get("weights") or {}
        if digest and weights.get("kind") == "file":
            source["weights"] = {
                **{k: v for k, v in weights.items() if k != "path"},
                "sha256": identity.file_digest(Path(str(cfg.source.weights.path))),
            }
    else:
        source = {k: src.get(k) for k in ("arch", "model_kwargs", "preprocessing")}
    return {
        "version": identity.KEY_VERSION,
        "source": source,
        "target": {"id": choices["target"], **_raw(cfg.target)},
        "strategy": {"id": strategy_id, **(_raw(strategy_cfg) or {})},
        "seed": cfg.seed,
        "label_budget": cfg.label_budget,
        "budget": _raw(cfg.budget),
        "selection": cfg.selection,
        "trainer": {name: getattr(trainer, name) for name in identity.NUMERICS},
    }


_DEFAULTS: dict[tuple[str, str, str], DictConfig] = {}


def default_config(source_id: str, target_id: str, strategy_id: str) -> DictConfig:
    """The primary config composed with this source, target and strategy and nothing else overridden: what a
    cell's ``variant`` is measured against (memoised; composing takes tens of milliseconds)."""
    key = (source_id, target_id, strategy_id)
    if key not in _DEFAULTS:
        _DEFAULTS[key] = _compose([f"source={source_id}", f"target={target_id}", f"strategy={strategy_id}"], False)
    return _DEFAULTS[key]


def job_keys(
    cfg: DictConfig, choices: dict[str, str], strategy_id: str, strategy_cfg: Any, pretrained: bool,
    trainer: TrainerSettings,
) -> identity.Keys:  # fmt: skip
    """Run key, cell key and variant of one run of the job (itself, its baseline or its reference)."""
    own = run_identity(cfg, choices, strategy_id, strategy_cfg, pretrained, trainer)
    base = default_config(choices["source"], choices["target"], strategy_id)
    defaults = run_identity(base, choices, strategy_id, base.strategy, pretrained, build_trainer(base.trainer), False)
    name = Path(str(cfg.source.weights.path)).name if "sha256" in (own["source"].get("weights") or {}) else "file"
    return identity.keys(own, defaults, name)


def build_trainer(t: DictConfig) -> TrainerSettings:
    """Typed trainer settings; keys a trainer YAML leaves out take ``TrainerSettings``' defaults."""
    return TrainerSettings(
        accelerator=str(t.accelerator),
        devices=int(t.devices),
        precision=str(t.precision),
        deterministic=t.deterministic,
        num_workers=int(t.num_workers),
        feature_cache=bool(t.get("feature_cache", True)),
        checkpoint_every_s=float(t.get("checkpoint_every_s", 60.0)),
        channels_last=bool(t.get("channels_last", False)),
        compile=bool(t.get("compile", False)),
    )


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
    trainer = build_trainer(cfg.trainer)
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
        scores=bool(cfg.get("scores", True)),
    )
    keys = job_keys(cfg, choices, strategy_id, cfg.strategy, strategy.uses_pretrained, trainer)
    job = JobSpec(
        source=source,
        strategy_id=strategy_id,
        strategy=strategy,
        run_key=keys.run_key,
        cell_key=keys.cell_key,
        variant=keys.variant,
        baseline_key=None,
        params=params,
        config_yaml=OmegaConf.to_yaml(resolved),
        **common,
    )
    if strategy.role == "baseline":
        return job
    base_id = strategy.baseline
    base_cfg = _strategy_config(base_id, f"the baseline of strategy {strategy_id!r}")
    base_keys = job_keys(cfg, choices, base_id, base_cfg, False, trainer)
    base_strategy = instantiate(base_cfg)
    if base_strategy.role != "baseline" or base_strategy.uses_pretrained:
        raise ValueError(f"strategy {strategy_id!r} names {base_id!r} as its baseline, which is not a baseline")
    job.baseline = JobSpec(
        source=replace(source, weights=NoWeights()),
        strategy_id=base_id,
        strategy=base_strategy,
        run_key=base_keys.run_key,
        cell_key=base_keys.cell_key,
        variant=base_keys.variant,
        baseline_key=None,
        params=_with_strategy(params, base_cfg, drop=("strategy/", "source/weights")),
        **common,
    )
    job.baseline_key = base_keys.run_key
    if strategy.reference:
        # the reference (e.g. source_only for domain adaptation) is a transfer job of its own, with the same baseline
        ref_id = strategy.reference
        ref_cfg = _strategy_config(ref_id, f"the reference of strategy {strategy_id!r}")
        ref_strategy = instantiate(ref_cfg)
        ref_keys = job_keys(cfg, choices, ref_id, ref_cfg, ref_strategy.uses_pretrained, trainer)
        job.reference = replace(job, strategy_id=ref_id, strategy=ref_strategy, run_key=ref_keys.run_key,
                                cell_key=ref_keys.cell_key, variant=ref_keys.variant,
                                params=_with_strategy(params, ref_cfg),
                                config_yaml="", reference=None)  # fmt: skip
    return job


def _with_strategy(params: dict[str, str], strategy_cfg: DictConfig, drop: tuple[str, ...] = ("strategy/",)):
    """The job's MLflow params with another strategy's settings (and without the ``drop`` prefixes)."""
    out = {k: v for k, v in params.items() if not k.startswith(drop)}
    out.update(tracking.flatten({"strategy": _resolved(strategy_cfg)}))
    return out


def _strategy_config(strategy_id: str, role: str) -> DictConfig:
    path = CONF_DIR / "strategy" / f"{strategy_id}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"{role} is strategy {strategy_id!r}, which does not exist; strategies: {known}")
    return OmegaConf.load(path)


def _compose(overrides: list[str], return_hydra_config: bool = True) -> DictConfig:
    """The primary config with ``overrides``, inside a running Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides, return_hydra_config=return_hydra_config)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=return_hydra_config)


def compose_job(overrides: list[str]) -> JobSpec:
    """The typed job that ``python -m benchmark.run <overrides>`` would run, composed outside a Hydra app (for
    ``benchmark.rank``, ``benchmark.bench`` and notebooks)."""
    cfg = _compose(overrides)
    HydraConfig.instance().set_config(cfg)
    return build_job(cfg, dict(cfg.hydra.runtime.choices))


def job_threads(configured: int | None, launcher: DictConfig) -> int:
    """Torch threads for one job: the configured number, else the cores shared among parallel launcher jobs
    (2 processes x 2 threads on 2 cores ran at half the speed of 2 x 1: never oversubscribe)."""
    if configured:
        return int(configured)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if n_jobs is None:  # one job at a time (basic launcher, or one cluster task per job)
        return cores
    parallel = cores if int(n_jobs) < 0 else min(int(n_jobs), cores)
    return max(1, cores // max(1, parallel))


def run_job(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    root = Path(hc.runtime.cwd)
    choices = dict(hc.runtime.choices)
    set_threads(job_threads(cfg.trainer.get("threads"), hc.launcher))
    multirun = hc.mode == RunMode.MULTIRUN
    state = sweep.find_state(Path(hc.sweep.dir)) if multirun else None
    if multirun and state is None:
        log.warning("no sweep state in %s: this job runs without a parent run or sweep verdicts", hc.sweep.dir)
    record: dict[str, Any] = {"name": " ".join(hc.overrides.task), "overrides": list(hc.overrides.task)}
    try:
        rerun = check_rerun(cfg.get("rerun", "none"))
        job = build_job(cfg, choices)
        record.update(name=job.name, run_key=job.run_key, baseline_key=job.baseline_key, role=job.strategy.role,
                      cell=list(job.cell))  # fmt: skip
        if state is not None:
            client = tracking.open_store(state.tracking_uri)
            exp_id, parent, sweep_id = state.experiment_id, state.parent_run_id, state.sweep_id
        else:
            client = tracking.open_store(tracking.resolve_uri(cfg.tracking.uri, root))
            exp_id = tracking.ensure_experiment(client, cfg.tracking.experiment, _artifact_root(cfg))
            tracking.reap_stale(client, exp_id, float(cfg.tracking.stale_after_s))
            parent = sweep_id = None
        ctx = Context(client, exp_id, Path(cfg.cache_dir).resolve(), parent, sweep_id, rerun=rerun)
        outcome = execute(job, ctx)
        record.update(status="ok", run_id=outcome.run_id, reused=outcome.reused,
                      baseline_run_id=outcome.baseline_run_id, baseline_reused=outcome.baseline_reused,
                      reference_run_id=outcome.reference_run_id)  # fmt: skip
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


# ----------------------------------------------------------------------------------------------------------------
# Preflight: every job of a sweep composed and validated before anything trains


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job the basic sweeper would launch (sweeper params, then the command line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + list(config.hydra.overrides.task))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_data(target_id: str, target: Any, target_config: dict, budget: int | None) -> list[str]:
    """Load the target (corrupt files, unreadable datasets surface here, before any job) and check the label
    budget against its smallest training class. Loaded data stay cached for the jobs of this process."""
    from benchmark.job import load_splits

    if target.problems():
        return []  # reported by build_job already
    splits = load_splits(target_id, target, target_config)
    if budget is None:
        return []
    counts = np.bincount(splits.train.labels, minlength=splits.num_classes)
    if budget <= counts.min():
        return []
    small = [splits.classes[i] for i in np.flatnonzero(counts < budget)][:5]
    return [
        f"label_budget={budget} per class exceeds the training examples of target {target_id!r} (smallest class "
        f"has {counts.min()}; too small: {small}); choose label_budget <= {counts.min()} or null (all)"
    ]


def check_hub(source_id: str, weights: Any, strategy: Any) -> list[str]:
    """Hub weights must be in the local cache when downloads are off."""
    if not (weights and weights.get("kind") == "hub" and strategy.uses_pretrained and _hf_offline()):
        return []
    if hub_cached(str(weights.get("tag"))):
        return []
    return [
        f"source {source_id!r}: hub weights {weights.get('tag')!r} are not in the local Hugging Face cache and "
        "HF_HUB_OFFLINE=1 forbids downloading them; run once online (unset HF_HUB_OFFLINE) or use "
        "weights.kind=file with a local checkpoint"
    ]


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_cached(tag: str) -> bool:
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(tag)
    if cfg is None or not cfg.hf_hub_id:
        return False
    return any(
        isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str) for f in ("model.safetensors", "pytorch_model.bin")
    )


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()).split(" Config search path:")[0]  # Hydra appends its search path
    return f"{type(exc).__name__}: {text}"


def _rerun_problems(cfg: DictConfig) -> list[str]:
    check_rerun(cfg.get("rerun", "none"))  # raises, naming the bad value and the choices
    return []


def _job_problems(cfg: DictConfig, choices: dict[str, str]) -> list[str]:
    """Independent checks of one composed job, so that one bad value does not hide another."""
    checks = [
        lambda: _rerun_problems(cfg),
        lambda: data_problems(build_job(cfg, choices)),
        lambda: check_data(
            choices["target"], instantiate(cfg.target), _raw(cfg.target),
            None if cfg.label_budget is None else int(cfg.label_budget),
        ),
        lambda: check_hub(choices["source"], cfg.source.get("weights"), instantiate(cfg.strategy)),
    ]  # fmt: skip
    problems: list[str] = []
    for check in checks:
        try:
            problems += check()
        except Exception as exc:  # every kind of bad input, reported together
            problems.append(_describe(exc))
    return problems


def preflight(config: DictConfig) -> list[str]:
    """Compose and validate every job of the sweep; return every problem, each with the jobs it affects.

    Each job runs independent checks (the typed job, the label budget against the data, hub weights against the
    cache), so one bad value does not hide another.
    """
    from hydra import compose

    found: dict[str, list[str]] = {}
    for overrides in sweep_overrides(config):
        label = " ".join(o for o in overrides if not o.startswith(("hydra", "tracking.", "cache_dir")))
        problems: list[str] = []
        try:
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            choices = dict(cfg.hydra.runtime.choices)
        except Exception as exc:  # unknown option or malformed override: nothing else can be checked
            problems.append(_describe(exc))
        else:
            problems += _job_problems(cfg, choices)
        for p in problems:
            found.setdefault(p, []).append(label)
    HydraConfig.instance().set_config(config)
    lines = []
    for problem, labels in found.items():
        where = labels[0] + (f" (+{len(labels) - 1} more jobs)" if len(labels) > 1 else "")
        lines.append(f"{problem}\n      in: {where}")
    return lines


def _artifact_root(cfg: DictConfig) -> Path | None:
    root = cfg.tracking.get("artifact_root")
    return Path(root) if root else None


class SweepCallback(Callback):
    """Creates the parent run before the first job and finalises the sweep after the last one."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # so ${hydra:...} interpolations resolve here too
        if config.get("preflight", True):
            t0 = time.perf_counter()
            problems = preflight(config)
            if problems:
                print(f"\nPreflight: {len(problems)} problem(s); nothing was trained.", file=sys.stderr)
                for p in problems:
                    print(f"  - {p}", file=sys.stderr)
                # SystemExit, not an Exception: Hydra turns callback exceptions into warnings and goes on
                raise SystemExit(2)
            log.info("preflight: %d jobs valid in %.1f s", len(sweep_overrides(config)), time.perf_counter() - t0)
        root = Path(config.hydra.runtime.cwd)
        overrides = list(config.hydra.overrides.task)
        sweep.start(
            tracking.resolve_uri(config.tracking.uri, root),
            str(config.tracking.experiment),
            _artifact_root(config),
            Path(config.hydra.sweep.dir),
            overrides,
            provenance.git_sha(),
            str(config.verdict.metric),
            float(config.verdict.alpha),
            float(config.verdict.margin),
        )
        client = tracking.open_store(tracking.resolve_uri(config.tracking.uri, root))
        exp = client.get_experiment_by_name(str(config.tracking.experiment))
        tracking.reap_stale(client, exp.experiment_id, float(config.tracking.stale_after_s))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep.finalize_active()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def _interrupted(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # runs in flight end KILLED, the sweep is finalised KILLED, exit 130/143


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupted)
    # Ctrl-C too, not as KeyboardInterrupt: Lightning catches that inside fit and calls sys.exit(1), which reads as
    # a failed job (exit 1, parent FAILED) instead of an interrupted sweep
    signal.signal(signal.SIGINT, _interrupted)
    killed = False
    try:
        _hydra_main()
    except KeyboardInterrupt:
        killed = True
        raise
    except SystemExit as exc:
        killed = exc.code not in (None, 0, 1, 2)  # 1: a job failed (Hydra), 2: preflight; others: a signal
        raise
    finally:
        sweep.finalize_active(killed)  # released Hydra skips on_multirun_end when a job failed


if __name__ == "__main__":
    sys.exit(main())
