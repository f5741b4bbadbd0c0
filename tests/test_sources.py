"""Verified weight loading: a prefixed or foreign checkpoint raises; hub weights come from a local cache."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from benchmark.data import Preprocessing
from benchmark.models import build_model, check_arch, read_state_dict
from benchmark.sources.file import FileWeights
from benchmark.sources.hub import HubWeights

PREP = Preprocessing(32)


def load_source_weights(model, weights) -> int:
    """What a run does with its source's weights: the kind's local file, loaded through the kind."""
    return weights.load(model, weights.local_file(None, None, None))


def _source_state(num_classes: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {k: v.clone() for k, v in timm.create_model("test_resnet", num_classes=num_classes).state_dict().items()}


def test_file_weights_load_everything_but_the_head(tmp_path):
    state = _source_state()
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    model = build_model("test_resnet", 3, PREP)
    loaded = load_source_weights(model, FileWeights(path))
    own = model.state_dict()
    assert loaded == len(state) - 2  # fc.weight and fc.bias have another shape
    assert torch.equal(own["conv1.0.weight"], state["conv1.0.weight"])
    assert own["fc.weight"].shape == (3, state["fc.weight"].shape[1])


def test_pth_file_with_nested_state_dict(tmp_path):
    state = _source_state()
    path = tmp_path / "w.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    model = build_model("test_resnet", 7, PREP)
    assert load_source_weights(model, FileWeights(path)) == len(state)


def test_prefixed_checkpoint_raises(tmp_path):
    state = {f"module.{k}": v for k, v in _source_state().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"missing.*unexpected.*module\."):
        load_source_weights(build_model("test_resnet", 3, PREP), FileWeights(path))


def test_wrong_architecture_raises(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=3).state_dict(), str(path))
    with pytest.raises(ValueError, match="do not fit ResNet"):
        load_source_weights(build_model("test_resnet", 3, PREP), FileWeights(path))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _source_state(), "obj": object()}, path)
    with pytest.raises(Exception, match=r"(?i)weights_only|unsupported|global"):
        read_state_dict(path)


def test_unknown_architecture_suggests_close_names():
    assert "test_resnet" in check_arch("test_resnett")
    with pytest.raises(ValueError, match=r"did you mean.*resnet18"):
        build_model("resnet_18", 3, PREP)


def _write_hub_cache(cache, repo: str, state) -> None:
    base = cache / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    save_file(state, str(snap / "model.safetensors"))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0" * 40)


def test_hub_weights_from_a_local_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    state = _source_state(1000)
    _write_hub_cache(tmp_path / "hub", "timm/test_resnet.r160_in1k", state)
    model = build_model("test_resnet", 5, PREP)
    loaded = load_source_weights(model, HubWeights("test_resnet.r160_in1k"))
    assert loaded == len(state) - 2
    assert torch.equal(model.state_dict()["layer4.0.conv1.weight"], state["layer4.0.conv1.weight"])


def test_hub_weights_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"test_resnet.r160_in1k.*not in the local Hugging Face cache"):
        load_source_weights(build_model("test_resnet", 5, PREP), HubWeights("test_resnet.r160_in1k"))


def test_key_map_renames_a_foreign_checkpoint_before_the_verified_load(tmp_path):
    """A DataParallel checkpoint (``module.`` prefix) loads nothing as is, and everything but the head once mapped."""
    state = _source_state()
    path = tmp_path / "dp.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError, match=r"missing .*unexpected"):
        FileWeights(path).load(build_model("test_resnet", 3, PREP), path)
    model = build_model("test_resnet", 3, PREP)
    loaded = FileWeights(path, key_map={r"^module\.": ""}).load(model, path)
    body = [k for k in state if not k.startswith("fc.")]
    assert loaded == len(body)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in body)
    with pytest.raises(ValueError, match=r"key_map rule '\^nothing\\\\.' -> '' matches no key"):
        FileWeights(path, key_map={r"^nothing\.": ""}).state_dict(path)


def test_remap_by_order_names_tensors_by_position_and_refuses_other_shapes(tmp_path):
    state = _source_state()
    path = tmp_path / "foreign.pth"  # a torch file keeps its tensors' order; safetensors does not (refused below)
    torch.save({f"t{i:03d}": v for i, v in enumerate(state.values())}, path)
    model = build_model("test_resnet", 3, PREP)  # another head size: the classifier may differ, nothing else
    loaded = FileWeights(path, remap="by_order").load(model, path)
    body = [k for k in state if not k.startswith("fc.")]
    assert loaded == len(body) and all(torch.equal(model.state_dict()[k], state[k]) for k in body)

    swapped = dict(state)
    keys = list(swapped)
    swapped = {k: swapped[keys[1] if k == keys[0] else keys[0] if k == keys[1] else k] for k in keys}
    torch.save({f"t{i:03d}": v for i, v in enumerate(swapped.values())}, path)
    with pytest.raises(ValueError, match=r"(?s)by_order refused.*checkpoint\[0\] t000 \(16,\) vs model\[0\] conv1"):
        FileWeights(path, remap="by_order").load(build_model("test_resnet", 3, PREP), path)
    safe = tmp_path / "foreign.safetensors"
    save_file({f"t{i:03d}": v.contiguous() for i, v in enumerate(state.values())}, str(safe))
    with pytest.raises(ValueError, match=r"by_order needs the checkpoint's own tensor order"):
        FileWeights(safe, remap="by_order").load(build_model("test_resnet", 3, PREP), safe)
    with pytest.raises(ValueError, match=r"weights.remap='by_name'; choose null or one of \('by_order',\)"):
        FileWeights(path, remap="by_name")
