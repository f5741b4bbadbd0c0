"""Composition: the only reader of Hydra config. It turns a composed config into typed objects (``JobSpec``), with
the keys that identify each run.

A job's baseline and reference are composed through Hydra itself (``strategy=<id>`` on the primary config), so
their defaults lists and interpolations apply as for any strategy given on the command line. Run keys are hashed
from the *unresolved* config, so machine paths that come from interpolations (``${hydra:runtime.cwd}``,
``${oc.env:...}``) do not change a run's identity. Defaults of the typed objects live in their dataclasses only.

About 370 lines, over the ~350 the layout aims for: typed objects, run identity and the job assembly all read the
same config nodes, and keeping them together is what makes this the only module that reads Hydra config.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, fields, replace
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from benchmark import data_config, identity, sources, tracking
from benchmark.augment import Augment
from benchmark.config_path import CONF_DIR, CONFIG_NAME
from benchmark.data import VALIDATION, Preprocessing
from benchmark.lineage import Lineage
from benchmark.models import check_arch
from benchmark.module import Optimization
from benchmark.probe_solver import solved_probe
from benchmark.search_space import Tuning, build_tuning
from benchmark.sources.weights import NoWeights, SourceWeights
from benchmark.spec import JobSpec, SourceSpec
from benchmark.strategies.evaluation import EvaluationProtocol
from benchmark.strategies.meta import StrategyMeta
from benchmark.train import Budget, TrainerSettings

NO_WEIGHTS = {"_target_": "benchmark.sources.weights.NoWeights"}
"""The weights of a source YAML that names none: random initialisation."""


def raw(node: Any) -> Any:
    """A config node as plain containers, interpolations left unresolved (what run keys are hashed from)."""
    return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node


def resolved(node: Any) -> Any:
    """A config node as plain containers, interpolations resolved (what objects are built from)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def config(overrides: list[str], return_hydra_config: bool = True) -> DictConfig:
    """The primary config with ``overrides``, inside a running Hydra app or outside one."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=return_hydra_config)


def options(group: str) -> list[str]:
    """The options of a config group (``strategy``, ``source``...), from ``conf/<group>/*.yaml``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


# ----------------------------------------------------------------------------------------------------------------
# Typed objects


def _typed(cls: type, node: Any, where: str) -> Any:
    """``cls(**node)`` for a dataclass; an unknown key is a ValueError naming it and the valid keys."""
    values = dict(resolved(node) or {})
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {known}")
    for f in fields(cls):  # YAML writes 1 for 1.0: numbers take the type of the field's default
        default, value = f.default, values.get(f.name)
        if type(default) in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
            values[f.name] = type(default)(value)
    return cls(**values)


def weights_kinds() -> dict[str, str]:
    """Every weights kind in ``benchmark.sources``: its ``kind`` name and the ``_target_`` that names it."""
    for module in pkgutil.iter_modules(sources.__path__):
        importlib.import_module(f"{sources.__name__}.{module.name}")
    found, todo = {}, [SourceWeights]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.kind:
            found[cls.kind] = f"{cls.__module__}.{cls.__qualname__}"
    return dict(sorted(found.items()))


def build_weights(source_id: str, node: Any, dataset_id: str | None) -> SourceWeights:
    """The source's weights kind, instantiated from its ``_target_`` (``NO_WEIGHTS`` when the YAML names none)."""
    node = node if node is not None else OmegaConf.create(NO_WEIGHTS)
    target = node.get("_target_")
    kinds = weights_kinds()
    if target not in kinds.values():
        valid = ", ".join(f"{k} ({t})" for k, t in kinds.items())
        raise ValueError(f"source {source_id!r}: weights._target_={target!r} is not a weights kind; kinds: {valid}")
    return instantiate(node, _recursive_=False, source_id=source_id, dataset_id=dataset_id)


def source_inputs(source_id: str, cfg: DictConfig) -> tuple[str, Preprocessing, str | None]:
    """The source's architecture, its preprocessing and the timm name whose data config the weights expect.

    ``arch: null`` means the hub tag's architecture (``convnext_tiny.fb_in1k`` -> ``convnext_tiny``); weights
    without a tag (file, pretrain, none) must name one. Preprocessing values that are null, or left out by a hub or
    file source, come from the model's data config (``benchmark.data_config.resolve``).
    """
    w = resolved(cfg.get("weights")) or dict(NO_WEIGHTS)
    target = w.pop("_target_", None)
    kinds = weights_kinds()
    if target not in kinds.values():
        valid = ", ".join(f"{k} ({t})" for k, t in kinds.items())
        raise ValueError(f"source {source_id!r}: weights._target_={target!r} is not a weights kind; kinds: {valid}")
    kind = get_class(target)
    arch = cfg.get("arch")
    tag = kind.model_tag(w, arch)
    if arch is None:
        if tag is None:
            raise ValueError(
                f"source {source_id!r} names no architecture (source.arch is null) and its {kind.kind} weights do "
                "not say which timm model they fit; give source.arch=<timm name>, e.g. source.arch=resnet50 "
                "(the architecture the checkpoint was saved from)"
            )
        arch = tag.split(".", 1)[0]
    problem = check_arch(arch)
    if problem:
        raise ValueError(f"source {source_id!r}: {problem}")
    where = f"source {source_id!r} preprocessing"
    return arch, data_config.resolve(resolved(cfg.get("preprocessing")), arch, tag, where), tag


def build_source(source_id: str, cfg: DictConfig, dataset_id: str | None) -> SourceSpec:
    arch, preprocessing, _ = source_inputs(source_id, cfg)
    weights = build_weights(source_id, cfg.get("weights"), dataset_id)
    return SourceSpec(source_id, arch, preprocessing, weights, dict(resolved(cfg.get("model_kwargs") or {})))


def preprocessing_warnings(source_id: str, cfg: DictConfig) -> list[str]:
    """Preflight warnings (not problems): explicit preprocessing values of a hub or file source that differ from
    the model's own data config (the weights were trained on other inputs; results are valid but likely worse)."""
    _, prep, tag = source_inputs(source_id, cfg)
    found = data_config.differences(prep, tag)
    if not found:
        return []
    return [
        f"source {source_id!r}: preprocessing differs from the data config of {tag!r}: {', '.join(found)}; "
        "null these keys (or drop the overrides) to use the model's values"
    ]


def build_augment(choice: str | None, node: Any) -> Augment:
    """The training augmentation: the ``augment`` group's option (its YAML stem is the policy) and its settings."""
    values = dict(resolved(node) or {})
    return _typed(Augment, {**values, "policy": choice or "none"}, f"augment={choice}")


def build_trainer(t: DictConfig) -> TrainerSettings:
    """Typed trainer settings; keys a trainer YAML leaves out take ``TrainerSettings``' defaults. ``threads`` is
    the process's business (``benchmark.threads.job_threads``), not a training setting."""
    values = {k: v for k, v in (resolved(t) or {}).items() if k != "threads"}
    return _typed(TrainerSettings, values, "trainer")


def build_lineage(t: DictConfig) -> Lineage:
    """What runs record beyond tags, params and metrics (``tracking.log_models``, ``register_models``,
    ``system_metrics``...); the other ``tracking`` keys say where the store is."""
    return _typed(Lineage, {f.name: resolved(t[f.name]) for f in fields(Lineage) if f.name in t}, "tracking")


def build_budget(b: DictConfig) -> Budget:
    """The training budget: its own keys plus the optimisation's (``budget.lr``, ``budget.optimizer``...)."""
    values = dict(resolved(b) or {})
    opt_keys = {f.name for f in fields(Optimization)}
    optimization = _typed(Optimization, {k: v for k, v in values.items() if k in opt_keys}, "budget")
    rest = {k: v for k, v in values.items() if k not in opt_keys}
    return replace(_typed(Budget, rest, "budget"), optimization=optimization)


_STRATEGIES: dict[str, DictConfig] = {}


def strategy_config(strategy_id: str, role: str) -> DictConfig:
    """The config of strategy ``strategy_id`` as Hydra composes it for ``strategy=<id>`` (memoised); ``role`` says
    in messages why it is needed (``the baseline of strategy 'finetune'``)."""
    if strategy_id not in _STRATEGIES:
        known = options("strategy")
        if strategy_id not in known:
            raise ValueError(f"{role} is strategy {strategy_id!r}, which does not exist; strategies: {known}")
        _STRATEGIES[strategy_id] = config([f"strategy={strategy_id}"], False).strategy
    return _STRATEGIES[strategy_id]


def build_strategy(strategy_id: str, node: DictConfig) -> tuple[Any, StrategyMeta]:
    """The strategy object (its ``_target_`` with its settings) and its metadata (its ``meta:`` block)."""
    meta = StrategyMeta.from_config(strategy_id, resolved(node.get("meta")))
    return instantiate(OmegaConf.create(strategy_settings(node))), meta


NOT_SETTINGS = ("meta", "search")
"""Blocks of a strategy's YAML that describe it rather than configure it: ``meta`` (how it is compared) and
``search`` (what a tuning study may vary, ``benchmark.search_space``)."""


def strategy_settings(node: DictConfig) -> dict[str, Any]:
    """The strategy's constructor config (``_target_`` and its arguments), resolved."""
    return {k: v for k, v in resolved(node).items() if k not in NOT_SETTINGS}


def build_tuning_for(cfg: DictConfig, strategy_id: str, node: DictConfig) -> Tuning:
    """The ``tuning:`` settings with the shared space and ``strategy_id``'s own ``search:`` block."""
    budget_keys = [f.name for f in (*fields(Budget), *fields(Optimization)) if type(f.default) in (int, float)]
    own = [k for k in strategy_settings(node) if k != "_target_"]
    tuning = build_tuning(resolved(cfg.get("tuning")), resolved(node.get("search")), strategy_id, budget_keys, own)
    if tuning.active and cfg.seed in tuning.trial_seeds:
        raise ValueError(
            f"seed={cfg.seed} is one of the trial seeds {tuning.trial_seeds.start}..{tuning.trial_seeds.stop - 1} "
            "(tuning.trial_seed + i): trials are never seeds of a cell; choose other seeds or tuning.trial_seed"
        )
    return tuning


# ----------------------------------------------------------------------------------------------------------------
# Identity


def run_identity(cfg: DictConfig, choices: dict[str, str], strategy_id: str, strategy_cfg: Any, pretrained: bool,
                 trainer: TrainerSettings, digest: bool = True) -> dict:  # fmt: skip
    """Everything that changes a result (``benchmark.identity`` hashes it into the run key, cell key and variant).

    A run that ignores the source's weights keeps only its architecture and preprocessing, so every source of the
    same architecture shares one baseline. The weights kind says what of its YAML enters (file weights by content,
    not by path); ``digest=False`` leaves a path as configured (the defaults of ``source=local_file`` have no file).
    Classes (``_target_``) are left out: strategies and weights are identified by id, kind and settings.
    """
    src = raw(cfg.source)
    if pretrained:
        w = dict(src.get("weights") or NO_WEIGHTS)
        kind = get_class(w.pop("_target_"))
        source = {"id": choices["source"], **src, "weights": kind.key_identity(w, digest)}
    else:
        source = _architecture_identity(choices["source"], cfg.source, src)
    augment = {}
    if choices.get("augment", "none") != "none":  # none leaves every run key as it was before augmentation existed
        augment = {"augment": {"id": choices["augment"], **(raw(cfg.get("augment")) or {})}}
    validation = {}
    if cfg.get("validation", "full") != "full":  # full leaves every run key as it was before the setting existed
        validation = {"validation": cfg.validation}
    return {
        "version": identity.KEY_VERSION,
        "source": source,
        "target": {"id": choices["target"], **raw(cfg.target)},
        "strategy": identity.strategy(
            {
                "id": strategy_id,
                **{k: v for k, v in (raw(strategy_cfg) or {}).items() if k not in ("_target_", "search")},
            }
        ),
        "seed": cfg.seed,
        "label_budget": cfg.label_budget,
        "budget": identity.budget(raw(cfg.budget)),
        "selection": cfg.selection,
        "trainer": identity.numerics(trainer),
        **augment,
        **validation,
        **tuning_identity(cfg, strategy_cfg),
    }


def tuning_identity(cfg: DictConfig, strategy_cfg: Any) -> dict:
    """The tuning settings and the space a run's study searched, only when ``tuning.trials > 0`` (0 leaves every
    run key as it was before tuning existed). ``select`` enters only where it changes what scores a trial (domain
    adaptation), so every transfer cell that shares a baseline shares its study."""
    node = raw(cfg.get("tuning")) or {}
    if not node.get("trials"):
        return {}
    settings = {k: v for k, v in node.items() if k != "select"}
    target = (raw(strategy_cfg) or {}).get("_target_")
    if target and getattr(get_class(target), "data", "labelled") == "adaptation":
        settings["select"] = node.get("select", "auto")
    return {"tuning": {**settings, "search": (raw(strategy_cfg) or {}).get("search")}}


def _architecture_identity(source_id: str, cfg: DictConfig, src: dict) -> dict:
    """What a run that ignores the source's weights is identified by: architecture, model arguments,
    preprocessing. Values the YAML leaves to the model (``arch: null``, null or, for hub and file weights, absent
    preprocessing) enter as resolved, so two hub tags of different architectures or data configs never share a
    baseline; a source that names everything (the bundled ones) enters exactly as written."""
    out = {k: src.get(k) for k in ("arch", "model_kwargs", "preprocessing")}
    prep = out["preprocessing"] or {}
    try:
        w = resolved(cfg.get("weights")) or NO_WEIGHTS
        has_model_config = get_class(w["_target_"]).model_tag(w, "?") is not None
        if out["arch"] is not None and not has_model_config and None not in prep.values():
            return out
        arch, resolved_prep, _ = source_inputs(source_id, cfg)
    except Exception:  # a default config without its mandatory values (source=hub has no tag): left as written
        return out
    full = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(resolved_prep).items()}
    return {**out, "arch": arch, "preprocessing": full}


_DEFAULTS: dict[tuple[str, str, str], DictConfig] = {}


def default_config(source_id: str, target_id: str, strategy_id: str) -> DictConfig:
    """The primary config composed with this source, target and strategy and nothing else overridden: what a
    cell's ``variant`` is measured against (memoised; composing takes tens of milliseconds)."""
    key = (source_id, target_id, strategy_id)
    if key not in _DEFAULTS:
        _DEFAULTS[key] = config([f"source={source_id}", f"target={target_id}", f"strategy={strategy_id}"], True)
    return _DEFAULTS[key]


def job_keys(cfg: DictConfig, choices: dict[str, str], strategy_id: str, strategy_cfg: Any, pretrained: bool,
             trainer: TrainerSettings) -> identity.Keys:  # fmt: skip
    """Run key, cell key and variant of one run of the job (itself, its baseline or its reference)."""
    own = run_identity(cfg, choices, strategy_id, strategy_cfg, pretrained, trainer)
    base = default_config(choices["source"], choices["target"], strategy_id)
    base_choices = {**choices, "augment": base.hydra.runtime.choices.get("augment")}  # the default policy
    defaults = run_identity(base, base_choices, strategy_id, base.strategy, pretrained, build_trainer(base.trainer),
                            False)  # fmt: skip
    # the converged rule's defaults, for a variant that shows only the rule's settings a run changed
    base_budget = raw(base.budget)
    rule = {k: base_budget[k] for k in identity.CONVERGED_ONLY if k in own["budget"] and k in base_budget}
    defaults["budget"] = {**defaults["budget"], **rule}
    w = raw(cfg.source.get("weights")) or NO_WEIGHTS
    name = get_class(w["_target_"]).variant_name(w)
    return identity.keys(own, defaults, name)


# ----------------------------------------------------------------------------------------------------------------
# Jobs


def build_job(cfg: DictConfig, choices: dict[str, str]) -> JobSpec:
    """Typed job (with its baseline and reference jobs) from the composed config; raises before any training on
    bad input."""
    if cfg.seed is None:
        raise ValueError("seed must be an integer (0 is a valid seed)")
    label_budget = None if cfg.label_budget is None else int(cfg.label_budget)
    validation = str(cfg.get("validation", "full"))
    if validation not in VALIDATION:
        raise ValueError(f"validation={validation!r} is not a valid choice; choose one of: {', '.join(VALIDATION)}")
    source_id, target_id, strategy_id = choices["source"], choices["target"], choices["strategy"]
    source = build_source(source_id, cfg.source, choices.get("target@source.weights.dataset"))
    target = instantiate(cfg.target)
    problems = target.problems()
    if problems:
        raise ValueError(f"target {target_id!r}: " + "; ".join(problems))
    strategy, meta = build_strategy(strategy_id, cfg.strategy)
    augment = build_augment(choices.get("augment"), cfg.get("augment"))
    if augment.active and isinstance(strategy, EvaluationProtocol):
        raise ValueError(
            f"augment={augment.policy} has no effect on strategy {strategy_id!r}: it evaluates frozen features and "
            "trains nothing that could see augmented views; use augment=none"
        )
    trainer = build_trainer(cfg.trainer)
    everything = {k: resolved(cfg[k]) for k in cfg if k != "hydra"}
    params = tracking.flatten(everything)
    common = dict(
        target_id=target_id,
        target=target,
        target_config=raw(cfg.target),
        seed=int(cfg.seed),
        label_budget=label_budget,
        budget=build_budget(cfg.budget),
        trainer=trainer,
        selection=str(cfg.selection),
        scores=bool(cfg.get("scores", True)),
        augment=augment,
        validation=validation,
    )
    keys = job_keys(cfg, choices, strategy_id, cfg.strategy, meta.uses_source_weights, trainer)
    tuning = build_tuning_for(cfg, strategy_id, cfg.strategy)
    if augment.active and solved_probe(strategy) is not None and strategy.frozen_backbone:
        raise ValueError(f"augment={augment.policy} with strategy {strategy_id!r}: its solved probe fits one view of "
                         "each image; use augment=none, or strategy.probe.head=sgd to train the head on augmented "
                         "views")  # fmt: skip
    if tuning.active and isinstance(strategy, EvaluationProtocol):
        raise ValueError(f"tuning.trials={tuning.trials}: strategy {strategy_id!r} evaluates frozen features and "
                         "trains nothing a study could tune; use tuning.trials=0")  # fmt: skip
    job = JobSpec(source=source, strategy_id=strategy_id, strategy=strategy, meta=meta, run_key=keys.run_key,
                  cell_key=keys.cell_key, variant=keys.variant, baseline_key=None, params=params,
                  config_yaml=OmegaConf.to_yaml(everything), tuning=tuning,
                  strategy_settings=strategy_settings(cfg.strategy), **common)  # fmt: skip
    if meta.is_baseline:
        return job
    base_id = meta.baseline
    base_cfg = strategy_config(base_id, f"the baseline of strategy {strategy_id!r}")
    base_strategy, base_meta = build_strategy(base_id, base_cfg)
    if not base_meta.is_baseline or base_meta.uses_source_weights:
        raise ValueError(
            f"strategy {strategy_id!r} names {base_id!r} as its baseline, which is not a baseline (a baseline has "
            "meta.role: baseline and meta.uses_source_weights: false)"
        )
    base_keys = job_keys(cfg, choices, base_id, base_cfg, False, trainer)
    job.baseline = JobSpec(source=replace(source, weights=NoWeights(source_id=source_id)), strategy_id=base_id,
                           strategy=base_strategy, meta=base_meta, run_key=base_keys.run_key,
                           cell_key=base_keys.cell_key, variant=base_keys.variant, baseline_key=None,
                           params=_with_strategy(params, base_cfg, drop=("strategy/", "source/weights")),
                           tuning=build_tuning_for(cfg, base_id, base_cfg),
                           strategy_settings=strategy_settings(base_cfg), **common)  # fmt: skip
    job.baseline_key = base_keys.run_key
    if meta.reference:
        # the reference (e.g. source_only for domain adaptation) is a transfer job of its own, with the same baseline
        ref_id = meta.reference
        ref_cfg = strategy_config(ref_id, f"the reference of strategy {strategy_id!r}")
        ref_strategy, ref_meta = build_strategy(ref_id, ref_cfg)
        ref_keys = job_keys(cfg, choices, ref_id, ref_cfg, ref_meta.uses_source_weights, trainer)
        job.reference = replace(job, strategy_id=ref_id, strategy=ref_strategy, meta=ref_meta,
                                run_key=ref_keys.run_key, cell_key=ref_keys.cell_key, variant=ref_keys.variant,
                                params=_with_strategy(params, ref_cfg), config_yaml="", reference=None,
                                tuning=build_tuning_for(cfg, ref_id, ref_cfg),
                                strategy_settings=strategy_settings(ref_cfg))  # fmt: skip
    return job


def _with_strategy(params: dict[str, str], strategy_cfg: DictConfig, drop: tuple[str, ...] = ("strategy/",)):
    """The job's MLflow params with another strategy's settings (and without the ``drop`` prefixes)."""
    out = {k: v for k, v in params.items() if not k.startswith(drop)}
    out.update(tracking.flatten({"strategy": resolved(strategy_cfg)}))
    return out


def compose_job(overrides: list[str]) -> JobSpec:
    """The typed job that ``python -m benchmark.run <overrides>`` would run, composed outside a Hydra app (for
    ``benchmark.rank``, ``benchmark.bench``, tests and notebooks)."""
    cfg = config(overrides)
    HydraConfig.instance().set_config(cfg)
    return build_job(cfg, dict(cfg.hydra.runtime.choices))
