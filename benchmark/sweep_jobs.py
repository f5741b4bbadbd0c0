"""The jobs of the sweep this process launches, composed and built once, inside the running Hydra app.

Preflight composes and builds every job of a sweep before anything trains; the sweeper needs the same typed jobs
again for their run keys (``benchmark.reuse``). ``sweep_job`` keeps them, so each job is built once per sweep.

Composing is most of what preflight costs (0.12-0.17 s a job on a 2-core machine). Hydra composes a job in two
steps: the defaults list and the merge of its configs, from the config-group overrides only (``source=``,
``strategy=``, ``hydra/launcher=``...), then every other override applied to the result as a value (``seed=3``,
``budget.lr=0.1``, ``+key=...``, ``~key``). The jobs of a sweep mostly differ in values, so ``job_config`` does the
first step once per set of group overrides and copies it, and the second step is Hydra's own
(``ConfigLoaderImpl._apply_overrides_to_config``, private: pyproject pins hydra-core below 1.4). The result is the
config ``compose`` gives, hydra node included (``tests/test_sweep_jobs.py`` compares them).

The launcher composes each job once more before it runs (Hydra's ``load_sweep_config``: the sweep's hydra overrides
and the job's, in ``RunMode.RUN``, as ``compose`` does). ``SharedCompositions`` is the config loader the sweeper
gives its launcher: it answers that call through ``job_config`` too, in the launcher's process or in a joblib
worker (each keeps its own compositions), and hands every other call to Hydra's loader.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from benchmark import config_defaults
from benchmark.compose import build_job, config
from benchmark.config_path import CONFIG_NAME
from benchmark.spec import JobSpec

_BASES: dict[tuple[str, ...], DictConfig] = {}
_JOBS: dict[tuple[str, ...], JobSpec] = {}
_RERUN: dict[tuple[str, ...], str] = {}  # each job's composed ``rerun`` (a swept group may set it, not only overrides)


def job_config(overrides: Sequence[str]) -> DictConfig:
    """``compose`` of the primary config with ``overrides`` (hydra node included), sharing the composition of the
    group overrides with every job that makes the same choices (module docstring)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    if not GlobalHydra.instance().is_initialized() or any(o.is_sweep_override() for o in parsed):
        return config(list(overrides))  # outside an app, or what compose itself rejects: Hydra's composition as is
    repo = GlobalHydra.instance().config_loader().repository
    shapes = [_shapes_the_defaults(o, repo) for o in parsed]
    key = tuple(o.input_line for o, s in zip(parsed, shapes, strict=True) if s)
    if key not in _BASES:
        base = config(list(key))
        if OmegaConf.select(base, "hydra.searchpath"):  # another search path may hold other groups: compose it all
            return config(list(overrides))
        _BASES[key] = base
    cfg = copy.deepcopy(_BASES[key])
    try:
        ConfigLoaderImpl._apply_overrides_to_config([o for o, s in zip(parsed, shapes, strict=True) if not s], cfg)
    except OmegaConfBaseException as exc:  # as Hydra's own load_configuration reports it
        raise ConfigCompositionException().with_traceback(exc.__traceback__) from exc
    app = [o for o in parsed if not o.is_hydra_override()]
    dirname = cfg.hydra.job.config.override_dirname
    with open_dict(cfg.hydra):
        cfg.hydra.overrides.task = [o.input_line for o in app]
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app, exclude_keys=dirname.exclude_keys, item_sep=dirname.item_sep, kv_sep=dirname.kv_sep
        )
    return cfg


class SharedCompositions:
    """Hydra's config loader, with ``load_sweep_config`` through ``job_config`` (module docstring); picklable, so a
    joblib launcher's workers get it with the launcher's Hydra context."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """Hydra's ``ConfigLoaderImpl.load_sweep_config``: the job's config, its values resolved as the sweep's."""
        if master_config.hydra.job.config_name != CONFIG_NAME:  # job_config composes the harness's primary config
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        overrides = [*OmegaConf.to_container(master_config.hydra.overrides.hydra), *sweep_overrides]
        cfg = job_config(overrides)
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def __getattr__(self, name: str):
        if name == "loader":  # not set yet (while unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.loader, name)


def _shapes_the_defaults(override: Override, repo) -> bool:
    """Whether Hydra reads ``override`` while building the defaults list: a hydra override or a config-group choice
    (a dict value sets a key, as in Hydra's own ``Overrides``); any other override is applied afterwards."""
    if override.is_hydra_override() or override.get_key_element() == "hydra.searchpath":
        return True
    return not isinstance(override.value(), dict) and repo.group_exists(override.key_or_group)


def sweep_job(overrides: Sequence[str], cfg: DictConfig | None = None) -> JobSpec:
    """The typed job of one override list of the sweep, built once: preflight builds every job from its composed
    ``cfg``, and the sweeper asks again for the jobs it may skip. Without ``cfg`` it is composed here
    (``job_config``), and the app's Hydra config is left as it was."""
    key = tuple(overrides)
    if key not in _JOBS:
        if cfg is None:
            app = HydraConfig.instance().cfg
            cfg = job_config(overrides)
            HydraConfig.instance().set_config(cfg)  # ${hydra:...} of this job's config resolve against it
            try:
                job = build_job(cfg, dict(cfg.hydra.runtime.choices))
            finally:
                if app is not None:
                    HydraConfig.instance().set_config(app)
        else:
            job = build_job(cfg, dict(cfg.hydra.runtime.choices))
        _JOBS[key] = job
        _RERUN[key] = str(cfg.get("rerun", config_defaults.RERUN))
    return _JOBS[key]


def take(overrides: Sequence[str]) -> JobSpec | None:
    """The typed job this process built for ``overrides`` (preflight's, on a launcher that runs the jobs in the
    sweep's own process), handed to the job that runs it and forgotten here: what its strategy holds while it trains
    (L2-SP's anchor weights) goes with the job. None where none was built, as in a joblib worker."""
    return _JOBS.pop(tuple(overrides), None)


def sweep_rerun(overrides: Sequence[str]) -> str:
    """The ``rerun`` policy of the job's composed config, as the launched job would read it (``benchmark.run``)."""
    sweep_job(overrides)
    return _RERUN[tuple(overrides)]


def forget() -> None:
    """Empty both memos when a sweep starts: configs and files a job's key hashes (weights) may have changed."""
    _BASES.clear()
    _JOBS.clear()
    _RERUN.clear()
