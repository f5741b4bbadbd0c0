"""Transferability and domain-similarity scores of a (source, target) pair, from the source model's frozen features.

Computed once per pair and cached (``cache_dir/scores/<key>.json``): every strategy, seed and label budget of the pair
reuses them. The source model keeps its *own* classifier here (source classes), because LEEP and NCE read its
predictions on the target images; its backbone features are the ones the linear probe trains on.

* transferability (``transfer/*``), on the target's full training split and its labels: LogME, LEEP, NCE, H-score;
* domain similarity (``similarity/*``), between source and target training images in the source's feature space
  (at most ``max_samples`` of each, seeded): RBF MMD², Fréchet distance, proxy A-distance. They need source images,
  so they exist for sources the harness pretrains on a dataset; hub and file sources get transferability only.

Higher transferability and lower distance are expected to mean better transfer (the directions live in
``benchmark.metrics``); ``benchmark.report`` measures how
well each score predicted the realised deltas (Kendall's tau) instead of assuming it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from benchmark import similarity, transferability
from benchmark.features import extract
from benchmark.sources.models import (
    FileWeights,
    HubWeights,
    PretrainWeights,
    build_model,
    classifier_prefixes,
    hub_checkpoint,
    load_verified,
    read_state_dict,
)
from benchmark.util import stable_hash

log = logging.getLogger(__name__)


def _source_model(job, weights_file: Path | None):
    """The source architecture with its own head, fully loaded (head included)."""
    weights = job.source.weights
    if isinstance(weights, HubWeights):
        state = read_state_dict(hub_checkpoint(weights.tag))
    elif isinstance(weights, PretrainWeights | FileWeights):
        state = read_state_dict(Path(weights_file))
    else:
        raise ValueError(f"source {job.source.id!r} has no weights to score")
    probe = build_model(job.source.arch, 2, job.source.preprocessing, **job.source.model_kwargs)
    head_w = [v for k, v in state.items() if k.startswith(classifier_prefixes(probe)) and k.endswith("weight")]
    n_source = int(head_w[0].shape[0]) if head_w else 0
    if n_source < 2:
        raise ValueError(f"source {job.source.id!r}: checkpoint has no classifier to read source predictions from")
    model = build_model(job.source.arch, n_source, job.source.preprocessing, **job.source.model_kwargs)
    load_verified(model, state, f"source {job.source.id!r}")
    return model.eval()


def pair_scores(job, ctx, weights_file: Path | None, max_samples: int = 1000) -> dict[str, float]:
    """All scores of the job's (source, target) pair; cached by content (source weights, target, preprocessing)."""
    from benchmark.job import feature_key, load_splits

    key = stable_hash({"features": feature_key(job, weights_file), "max_samples": max_samples, "v": 1})
    path = Path(ctx.cache_dir) / "scores" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    prep = job.source.preprocessing
    splits = load_splits(job.target_id, job.target, job.target_config)
    model = _source_model(job, weights_file)
    feats, logits = extract(model, prep.apply(splits.train), head=model.get_classifier())
    f = feats.numpy().astype(np.float64)
    y = splits.train.labels
    probs = torch.softmax(logits, dim=1).numpy().astype(np.float64)
    scores = {
        "transfer/logme": transferability.logme(f, y),
        "transfer/leep": transferability.leep(probs, y),
        "transfer/nce": transferability.nce(probs.argmax(1), y),
        "transfer/h_score": transferability.h_score(f, y),
    }
    weights = job.source.weights
    if isinstance(weights, PretrainWeights):
        src = load_splits(weights.dataset_id, weights.dataset, weights.dataset_config).train
        rng = np.random.default_rng(0)
        pick_s = np.sort(rng.choice(len(src), size=min(max_samples, len(src)), replace=False))
        pick_t = np.sort(rng.choice(len(f), size=min(max_samples, len(f)), replace=False))
        fs, _ = extract(model, prep.apply(src.subset(pick_s)))
        xs, xt = fs.numpy().astype(np.float64), f[pick_t]
        scores.update(
            {
                "similarity/mmd": similarity.mmd(xs, xt),
                "similarity/frechet": similarity.frechet_distance(xs, xt),
                "similarity/proxy_a_distance": similarity.proxy_a_distance(xs, xt, seed=0),
            }
        )
    scores = {k: float(v) for k, v in scores.items()}
    scores["time/scores_s"] = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores, indent=1))
    log.info("scores of %s -> %s in %.2f s", job.source.id, job.target_id, scores["time/scores_s"])
    return scores
