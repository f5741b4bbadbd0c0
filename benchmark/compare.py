"""Comparisons of a finished run: deltas against its matched baseline (and reference), the pairing note shown on its
MLflow page, a provenance check of the pair, and the pair's transferability and similarity scores.

A delta is transfer − baseline on the same seed, raw (not oriented; ``benchmark.metrics`` says which direction is
better), for every metric the schema marks ``delta``.
"""

from __future__ import annotations

import logging

import numpy as np
from mlflow.tracking import MlflowClient

from benchmark import provenance, tracking
from benchmark.data import label_subset
from benchmark.metrics import DELTA_METRICS
from benchmark.recipe import source_weights_file
from benchmark.scoring import pair_scores, score_names
from benchmark.spec import Context, JobSpec
from benchmark.splits import load_splits

log = logging.getLogger(__name__)


def log_deltas(client: MlflowClient, run_id: str, baseline_run_id: str, prefix: str = "baseline") -> dict[str, float]:
    """Log ``delta/<metric>`` = transfer − baseline on the transfer run, and link the baseline.

    With ``prefix="reference"`` the comparison run is the strategy's reference (``source_only``): the metrics are
    ``reference_delta/<metric>`` and ``reference/<metric>``, the link the ``reference_run_id`` tag.
    Idempotent: a reused pair whose deltas are already recorded against the same run is not logged again.
    """
    run = client.get_run(run_id)
    base = client.get_run(baseline_run_id)
    values = delta_values(run, base, prefix)
    if not deltas_recorded(run, base, values, prefix):
        tracking.log_metrics(client, run_id, values)
        tags = {f"{prefix}_run_id": baseline_run_id}
        if prefix == "baseline":
            tags[tracking.NOTE_TAG] = pairing_note(run, base, values)
        tracking.set_tags(client, run_id, tags)
    return only_deltas(values, prefix)


def delta_values(run, base, prefix: str = "baseline") -> dict[str, float]:
    """What ``log_deltas`` logs on ``run`` against ``base`` (MLflow runs): ``<delta>/<metric>`` and
    ``<prefix>/<metric>`` for every delta metric both runs have."""
    delta = _delta_prefix(prefix)
    values = {}
    for m in DELTA_METRICS:
        if m in run.data.metrics and m in base.data.metrics:
            values[f"{delta}/{m}"] = run.data.metrics[m] - base.data.metrics[m]
            values[f"{prefix}/{m}"] = base.data.metrics[m]
    return values


def deltas_recorded(run, base, values: dict[str, float], prefix: str = "baseline") -> bool:
    """Whether ``run`` already links ``base`` and holds exactly ``values`` (``delta_values``): nothing to log."""
    linked = run.data.tags.get(f"{prefix}_run_id") == base.info.run_id
    return linked and all(run.data.metrics.get(k) == v for k, v in values.items())


def only_deltas(values: dict[str, float], prefix: str = "baseline") -> dict[str, float]:
    """The ``<delta>/<metric>`` entries of ``delta_values`` (what a job reports), without the comparison's own."""
    return {k: v for k, v in values.items() if k.startswith(f"{_delta_prefix(prefix)}/")}


def _delta_prefix(prefix: str) -> str:
    return "delta" if prefix == "baseline" else f"{prefix}_delta"


def flag_provenance(client: MlflowClient, run_id: str, baseline_run_id: str) -> list[str]:
    """Tag the transfer run with ``provenance_mismatch`` when it and its baseline ran different code or library
    versions (``benchmark.provenance.provenance_mismatch``; lines joined by ``"; "``); clear a stale tag otherwise."""
    tags = client.get_run(run_id).data.tags
    mismatch = provenance.provenance_mismatch(tags, client.get_run(baseline_run_id).data.tags)
    if mismatch:
        log.warning("run %s and its baseline %s ran different code: %s", run_id, baseline_run_id, "; ".join(mismatch))
        tracking.set_tags(client, run_id, {"provenance_mismatch": "; ".join(mismatch)})
    elif "provenance_mismatch" in tags:
        client.delete_tag(run_id, "provenance_mismatch")
    return mismatch


def provenance_clean(run, base) -> bool:
    """Whether ``flag_provenance`` has nothing to write or warn about for these two runs (MLflow runs): both ran the
    same code and ``run`` carries no stale ``provenance_mismatch`` tag."""
    tags = run.data.tags
    return not provenance.provenance_mismatch(tags, base.data.tags) and "provenance_mismatch" not in tags


def pairing_note(run, base, values: dict[str, float], verdict: str | None = None) -> str:
    """The transfer run's description (Markdown on its MLflow page): its pairing, its deltas, its cell's verdict."""
    t = run.data.tags
    link = f"#/experiments/{base.info.experiment_id}/runs/{base.info.run_id}"
    lines = [
        f"**{t.get('strategy')}** from source **{t.get('source')}** to **{t.get('target')}**, "
        f"{t.get('label_budget')} labels/class, seed {t.get('seed')}.",
        "",
        f"Paired with the {_baseline_words(base)} [{base.info.run_name}]({link}) (`baseline_key` "
        f"`{t.get('baseline_key')}`): same split, label subset, seed, preprocessing and training budget.",
        "",
        "| metric | transfer | scratch | delta |",
        "|---|---|---|---|",
    ]
    for m in DELTA_METRICS:
        if f"delta/{m}" in values:
            lines.append(
                f"| {m} | {run.data.metrics.get(m, float('nan')):.4f} | {values[f'baseline/{m}']:.4f} | "
                f"{values[f'delta/{m}']:+.4f} |"
            )
    if verdict:
        lines += ["", f"Cell verdict (over seeds, see the sweep's parent run): **{verdict}**"]
    return "\n".join(lines)


def _baseline_words(base) -> str:
    strategy = base.data.tags.get("strategy", "scratch")
    return "from-scratch baseline" if strategy == "scratch" else f"baseline `{strategy}` (random initialisation)"


def log_scores(job: JobSpec, ctx: Context, run_id: str) -> dict[str, float]:
    """The pair's transferability and similarity scores as metrics of the transfer run; transferability on the
    labelled examples this run trains on (its label subset), computed once per pair and subset."""
    try:
        scores = pair_scores(job, ctx, source_weights_file(job, ctx), labelled_examples(job))
    except Exception as exc:  # a score that cannot be computed must not fail a finished training run
        log.warning("no transferability scores for %s -> %s: %s", job.source.id, job.target_id, exc)
        return {}
    have = ctx.client.get_run(run_id).data.metrics
    missing = {k: v for k, v in scores.items() if have.get(k) != v}
    if missing:
        tracking.log_metrics(ctx.client, run_id, missing)
    return scores


def scores_recorded(job: JobSpec, run) -> bool:
    """Whether ``run`` (an MLflow run) holds every score ``log_scores`` gives the job's pair: logged when the run was
    first compared, from the cache they are still read from."""
    return all(name in run.data.metrics for name in score_names(job))


def labelled_examples(job: JobSpec) -> np.ndarray:
    """Indices of the training examples whose labels the job's runs get (its label budget's subset for its seed)."""
    splits = load_splits(job.target_id, job.target, job.target_config)
    return label_subset(splits.train.labels, job.label_budget, job.seed, job.target_id)
