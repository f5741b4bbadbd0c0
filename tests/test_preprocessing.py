"""Preprocessing from the model: hub and file sources take timm's data config, explicit values override it (with a
preflight warning), any timm tag is a source (``source=hub source.tag=...``) offline from a local Hugging Face
cache, a file source must name its architecture, and the bundled sources' content keys do not move."""

from __future__ import annotations

import pytest
import timm
from conftest import compose
from hydra.core.hydra_config import HydraConfig
from safetensors.torch import save_file

from benchmark import identity
from benchmark.compose import build_job
from benchmark.data_config import model_data_config
from benchmark.models import build_model
from benchmark.preflight import job_problems, job_warnings

PRETRAIN_KEYS = {
    "synth_digits": "c0e48d9b6876",
    "shapes": "c828a0175494",
    "synth_digits_wild": "df40814809b1",
    "digits": "43b447de2146",
    "synth_letters": "4f92f6557377",
}
"""``identity.pretrain_key`` of the bundled sources: it seeds their pretraining, so the quickstart's numbers depend
on it staying exactly this."""


def _cfg(overrides: list[str]):
    cfg = compose(overrides)
    HydraConfig.instance().set_config(cfg)
    return cfg, dict(cfg.hydra.runtime.choices)


def _job(overrides: list[str]):
    return build_job(*_cfg(overrides))


@pytest.mark.parametrize("source", sorted(PRETRAIN_KEYS))
def test_bundled_sources_keep_their_pretrain_keys_and_preprocessing(source):
    job = _job([f"source={source}"])
    assert identity.pretrain_key(job.source) == PRETRAIN_KEYS[source]
    prep = job.source.preprocessing
    assert (prep.image_size, prep.mean, prep.interpolation) == (32, (0.5, 0.5, 0.5), "bilinear")
    assert "interpolation" not in identity.architecture(job.source)["preprocessing"]


def test_any_timm_tag_is_a_source_with_its_own_preprocessing():
    job = _job(["source=hub", "source.tag=convnext_tiny.fb_in1k"])
    assert job.source.arch == "convnext_tiny" and job.source.weights.tag == "convnext_tiny.fb_in1k"
    prep = job.source.preprocessing
    assert (prep.image_size, prep.in_chans, prep.interpolation) == (224, 3, "bicubic")
    assert prep.mean == pytest.approx((0.485, 0.456, 0.406)) and prep.std == pytest.approx((0.229, 0.224, 0.225))
    assert job.variant == "source.tag=convnext_tiny.fb_in1k"
    # the same values as timm's own resolve_model_data_config on the built model
    data = timm.data.resolve_model_data_config(timm.create_model("test_resnet", pretrained=False))
    assert model_data_config("test_resnet").image_size == data["input_size"][1]
    # two tags of different architectures never share a baseline; a named hub source equals the tag form
    other = _job(["source=hub", "source.tag=test_resnet.r160_in1k"])
    assert other.source.arch == "test_resnet" and other.source.preprocessing.image_size == 160
    assert other.baseline_key != job.baseline_key
    # the named source feeds it 32-px images (a fast test source): the tag form at 32 px is the same baseline
    small = _job(["source=hub", "source.tag=test_resnet.r160_in1k", "source.preprocessing.image_size=32"])
    assert _job(["source=test_resnet_in1k"]).baseline_key == small.baseline_key


def test_explicit_values_override_the_model_and_preflight_warns():
    cfg, choices = _cfg(["source=hub", "source.tag=test_resnet.r160_in1k", "source.preprocessing.image_size=32"])
    job = build_job(cfg, choices)
    prep = job.source.preprocessing
    assert (prep.image_size, prep.mean, prep.interpolation) == (32, (0.5, 0.5, 0.5), "bilinear")  # rest: model's
    assert job_problems(cfg, choices) == [] or all("Hugging Face cache" in p for p in job_problems(cfg, choices))
    (warning,) = job_warnings(cfg, choices)
    assert "image_size=32 (the model's: 160)" in warning and "test_resnet.r160_in1k" in warning
    assert job_warnings(*_cfg(["source=hub", "source.tag=test_resnet.r160_in1k"])) == []
    assert job_warnings(*_cfg(["source=synth_digits"])) == []  # harness-pretrained: no model config to follow
    # a changed input size is a different baseline too
    assert job.baseline_key != _job(["source=hub", "source.tag=test_resnet.r160_in1k"]).baseline_key


def test_a_file_source_without_an_architecture_is_a_preflight_problem(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(path))
    cfg, choices = _cfg(["source=local_file", f"source.weights.path={path}"])
    problems = job_problems(cfg, choices)
    assert any("names no architecture" in p and "source.arch=<timm name>" in p for p in problems), problems
    job = _job(["source=local_file", f"source.weights.path={path}", "source.arch=test_resnet"])
    assert job.source.preprocessing.image_size == 160  # the architecture's default pretrained config


def test_unknown_preprocessing_values_are_named():
    with pytest.raises(ValueError, match=r"interpolation='lanczos'.*bilinear, bicubic, nearest"):
        _job(["source=hub", "source.tag=test_resnet.r160_in1k", "source.preprocessing.interpolation=lanczos"])


def test_hub_tag_loads_offline_from_a_local_cache(tmp_path, monkeypatch):
    """A real safetensors file in the exact layout huggingface_hub reads, offline: the tag's weights load."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    state = {k: v.contiguous() for k, v in timm.create_model("test_resnet", num_classes=1000).state_dict().items()}
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)

    cfg, choices = _cfg(["source=hub", "source.tag=test_resnet.r160_in1k"])
    assert job_problems(cfg, choices) == []  # cached: preflight finds nothing missing
    job = build_job(cfg, choices)
    model = build_model(job.source.arch, 10, job.source.preprocessing)
    loaded = job.source.weights.load(model, job.source.weights.local_file(job.source, None, None))
    assert loaded == len(state) - 2  # everything but the 1000-class head
