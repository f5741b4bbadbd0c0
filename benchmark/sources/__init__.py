"""Sources: a timm architecture plus the weights it starts from (none, hub, file, or pretrained by the harness)."""

from benchmark.sources.models import (
    FileWeights,
    HubWeights,
    NoWeights,
    PretrainWeights,
    SourceSpec,
    SourceWeights,
    build_model,
    check_arch,
    classifier_prefixes,
    load_verified,
)

__all__ = [
    "FileWeights",
    "HubWeights",
    "NoWeights",
    "PretrainWeights",
    "SourceSpec",
    "SourceWeights",
    "build_model",
    "check_arch",
    "classifier_prefixes",
    "load_verified",
]
