"""Transferability and domain-similarity scores of a (source, target) pair, from the source model's frozen features.

Cached under ``cache_dir/scores/``: transferability once per pair and labelled subset, similarity once per pair;
every strategy of the pair reuses them, and the source model's features are extracted once per pair. The source
model keeps its *own* classifier here (source classes), because LEEP and NCE read its predictions on the target
images; its backbone features are the ones the linear probe trains on.

* transferability (``transfer/*``), on the labelled examples the runs of the pair get (the label budget's subset of
  the training split, drawn for the run's seed; all of it with ``label_budget=null``): LogME, LEEP, NCE, H-score.
  A score that read labels the runs never see would credit it with information a practitioner does not have;
* domain similarity (``similarity/*``), between source and target training images in the source's feature space
  (at most ``max_samples`` of each, seeded; no labels, so the whole training split): RBF MMD², Fréchet distance,
  proxy A-distance. They need source images, so they exist for sources the harness pretrains on a dataset; hub and
  file sources get transferability only.

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

from benchmark import identity, similarity, transferability
from benchmark.features import cached_split_features, extract
from benchmark.metrics import SCORES
from benchmark.models import build_model, classifier_prefixes, load_verified
from benchmark.spec import Context, JobSpec
from benchmark.splits import load_splits
from benchmark.util import atomic_path, stable_hash

log = logging.getLogger(__name__)


def _source_model(job: JobSpec, weights_file: Path | None):
    """The source architecture with its own head, fully loaded (head included)."""
    if weights_file is None:
        raise ValueError(f"source {job.source.id!r} has no weights to score")
    state = job.source.weights.state_dict(weights_file)
    probe = build_model(job.source.arch, 2, job.source.preprocessing, **job.source.model_kwargs)
    head_w = [v for k, v in state.items() if k.startswith(classifier_prefixes(probe)) and k.endswith("weight")]
    n_source = int(head_w[0].shape[0]) if head_w else 0
    if n_source < 2:
        raise ValueError(f"source {job.source.id!r}: checkpoint has no classifier to read source predictions from")
    model = build_model(job.source.arch, n_source, job.source.preprocessing, **job.source.model_kwargs)
    load_verified(model, state, f"source {job.source.id!r}")
    return model.eval()


def score_names(job: JobSpec) -> tuple[str, ...]:
    """The metrics ``pair_scores`` gives the job's pair: transferability always, similarity when its source has images
    of its own (a dataset it was pretrained on), and ``time/scores_s``."""
    kinds = ("transfer/", "similarity/") if job.source.weights.labelled_data is not None else ("transfer/",)
    return (*(name for name in SCORES if name.startswith(kinds)), "time/scores_s")


def pair_scores(
    job: JobSpec, ctx: Context, weights_file: Path | None, subset: np.ndarray | None = None, max_samples: int = 1000
) -> dict[str, float]:
    """All scores of the job's (source, target) pair: transferability on the training examples ``subset`` (indices
    into the training split, the labelled examples of the runs; None: all of them), similarity on the whole split.
    Cached by content (source weights, target, preprocessing, and the subset for transferability);
    ``time/scores_s`` is what computing them cost."""
    splits = load_splits(job.target_id, job.target, job.target_config)
    subset = np.arange(len(splits.train)) if subset is None else np.asarray(subset, dtype=np.int64)
    fkey = identity.feature_key(job.source, job.source.weights.content_id(weights_file), job.target_id,
                                job.target_config)  # fmt: skip
    cache = Path(ctx.cache_dir) / "scores"
    model, feats = None, None

    def features():
        nonlocal model, feats
        if feats is None:
            prep = job.source.preprocessing
            model = _source_model(job, weights_file)
            # the whole split's features, once per pair (shared with the frozen-backbone runs): subsets index them
            feats = cached_split_features(fkey, ctx.cache_dir, model, prep.apply(splits.train), prep.apply(splits.val),
                                          prep.apply(splits.test), with_logits=True)  # fmt: skip
        return model, feats

    def transfer_scores() -> dict[str, float]:
        _, split = features()
        f = split.train[torch.from_numpy(subset)].numpy().astype(np.float64)
        y = splits.train.labels[subset]
        probs = torch.softmax(split.logits_train[torch.from_numpy(subset)], dim=1).numpy().astype(np.float64)
        return {
            "transfer/logme": transferability.logme(f, y),
            "transfer/leep": transferability.leep(probs, y),
            "transfer/nce": transferability.nce(probs.argmax(1), y),
            "transfer/h_score": transferability.h_score(f, y),
        }

    def similarity_scores() -> dict[str, float]:
        source_model, split = features()
        labelled = job.source.weights.labelled_data
        src = load_splits(labelled.dataset_id, labelled.dataset, labelled.config).train
        f = split.train.numpy().astype(np.float64)  # unlabelled images: the whole training split
        rng = np.random.default_rng(0)
        pick_s = np.sort(rng.choice(len(src), size=min(max_samples, len(src)), replace=False))
        pick_t = np.sort(rng.choice(len(f), size=min(max_samples, len(f)), replace=False))
        fs, _ = extract(source_model, job.source.preprocessing.apply(src.subset(pick_s)))
        xs, xt = fs.numpy().astype(np.float64), f[pick_t]
        return {
            "similarity/mmd": similarity.mmd(xs, xt),
            "similarity/frechet": similarity.frechet_distance(xs, xt),
            "similarity/proxy_a_distance": similarity.proxy_a_distance(xs, xt, seed=0),
        }

    labelled = stable_hash(subset.tolist(), length=16)
    parts = [(stable_hash({"features": fkey, "subset": labelled, "v": 2}), transfer_scores)]
    if job.source.weights.labelled_data is not None:  # the source's own images are needed
        parts.append((stable_hash({"features": fkey, "max_samples": max_samples, "v": 2}), similarity_scores))
    scores: dict[str, float] = {"time/scores_s": 0.0}
    for key, compute in parts:
        path = cache / f"{key}.json"
        if not path.is_file():
            t0 = time.perf_counter()
            part = {k: float(v) for k, v in compute().items()}
            part["time/scores_s"] = time.perf_counter() - t0
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(part, indent=1))
        part = json.loads(path.read_text())
        scores["time/scores_s"] += part.pop("time/scores_s", 0.0)
        scores.update(part)
    log.info("scores of %s -> %s (%d labelled examples)", job.source.id, job.target_id, len(subset))
    return scores
