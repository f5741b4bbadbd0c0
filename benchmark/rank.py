"""Rank candidate sources for one target without fine-tuning: ``python -m benchmark.rank --target digits``.

For each source, the source model's frozen features on the target give transferability scores (LogME, LEEP, NCE,
H-score; on the labelled examples that ``label_budget``/``seed`` overrides give, all training labels by default)
and, for sources with a pretraining dataset, domain-similarity scores (MMD, Fréchet distance, proxy A-distance); see
``benchmark.scoring``. Two baseline columns stand next to them (``benchmark.ranking``): the backbone's parameter
count and its reported ImageNet top-1 where known. When the store holds transfer runs of these sources on the target
(a sweep), each predictor is compared with the realised mean deltas: Kendall's tau, weighted tau and the
leave-one-model-out range. Features and scores are cached per pair and shared with sweeps. The tables are printed,
and logged as an MLflow run (``role=rank``) with ``ranking.md``/``ranking.csv``/``correlations.csv`` artifacts.

An override ``PATTERN:key=value`` applies to the sources whose id matches the glob ``PATTERN`` only, e.g.
``efficientnet_lite*:source.preprocessing.image_size=64`` scores the zoo at 64 px and leaves the 32-px sources as
they are (their pretraining depends on their preprocessing).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import time
from pathlib import Path

import pandas as pd

from benchmark import tracking
from benchmark.compare import labelled_examples
from benchmark.compose import compose_job, options
from benchmark.metrics import SCORES, sign
from benchmark.ranking import baseline_columns, rank_correlations, realised_deltas
from benchmark.recipe import source_weights_file
from benchmark.report.load import load_runs
from benchmark.report.tables import frame_markdown
from benchmark.scoring import pair_scores
from benchmark.spec import Context


def rank_sources(target: str, sources: list[str], overrides: list[str], ctx: Context) -> tuple[pd.DataFrame, list[str]]:
    """Scores of every source on ``target``; returns the table (one row per source) and the skipped sources (a source
    whose weights cannot be read, e.g. hub weights missing from the offline cache, is listed with the reason)."""
    rows, skipped = [], []
    for source in sources:
        try:
            job = compose_job([f"source={source}", f"target={target}", "strategy=linear_probe",
                               *source_overrides(source, overrides)])  # fmt: skip
            t0 = time.perf_counter()
            scores = pair_scores(job, ctx, source_weights_file(job, ctx), labelled_examples(job))
            rows.append({"source": source, "arch": job.source.arch, **scores, **baseline_columns(job),
                         "seconds": time.perf_counter() - t0})  # fmt: skip
        except Exception as exc:  # a source that cannot be scored is listed, not fatal
            skipped.append(f"{source}: {' '.join(str(exc).split())[:300]}")
    return pd.DataFrame(rows), skipped


def source_overrides(source: str, overrides: list[str]) -> list[str]:
    """The overrides for ``source``: plain ones, and ``PATTERN:key=value`` ones whose glob matches its id (a
    Hydra key holds no ``:``, so a ``:`` before the first ``=`` marks a pattern)."""
    out = []
    for item in overrides:
        head, eq, _ = item.partition("=")
        if eq and ":" in head:
            pattern, _, rest = item.partition(":")
            if fnmatch.fnmatchcase(source, pattern):
                out.append(rest)
        else:
            out.append(item)
    return out


def parser() -> argparse.ArgumentParser:
    """The command line (``docs/reference/commands.md`` prints its help)."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.rank", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="a conf/target option, e.g. digits")
    parser.add_argument("--sources", default=None, help="comma-separated conf/source options (default: all)")
    parser.add_argument("--by", default="transfer/logme", choices=sorted(SCORES), help="score to rank by")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="rank")
    parser.add_argument("--cache-dir", default=None, help="default: .cache in the current directory")
    parser.add_argument("--deltas-experiment", default=None, help="MLflow experiment to read realised deltas from "
                        "(default: every experiment of the store)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. target.root=/data/x")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    sources = args.sources.split(",") if args.sources else options("source")
    uri = tracking.resolve_uri(args.tracking_uri, Path.cwd())
    client = tracking.open_store(uri)
    exp_id = tracking.ensure_experiment(client, args.experiment, Path.cwd() / "mlartifacts")
    ctx = Context(client, exp_id, Path(args.cache_dir or Path.cwd() / ".cache").resolve())
    table, skipped = rank_sources(args.target, sources, args.overrides, ctx)
    if table.empty:
        print("no source could be scored:\n  " + "\n  ".join(skipped))
        return 1
    table = table.sort_values(args.by, ascending=sign(args.by) < 0).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    seconds = time.perf_counter() - t0
    text = frame_markdown(table.drop(columns=["time/scores_s"], errors="ignore"))
    print(f"Sources ranked for target {args.target!r} by {args.by} (no fine-tuning; {seconds:.1f} s):\n\n{text}")
    if skipped:
        print("\nNot scored:\n  " + "\n  ".join(skipped))
    deltas = realised_deltas(load_runs(args.deltas_experiment, client=client), args.target)
    corr = rank_correlations(table, deltas)
    if not corr.empty:
        names = {e.experiment_id: e.name for e in client.search_experiments()}
        corr.insert(0, "experiment", corr.pop("experiment_id").map(names))
        print(f"\nPredictors vs realised mean delta/test/acc on {args.target!r} (tau > 0: ranked right; "
              f"loo: tau's range leaving one source out):\n\n{frame_markdown(corr, floatfmt='{:.2f}')}")  # fmt: skip
        text += "\n\n" + frame_markdown(corr, floatfmt="{:.2f}")
    run_id = tracking.create_run(client, exp_id, f"rank__{args.target}",
                                 {"role": "rank", "target": args.target, "rank_by": args.by})  # fmt: skip
    client.log_text(run_id, text + ("\n\nNot scored:\n" + "\n".join(skipped) if skipped else ""), "ranking.md")
    client.log_text(run_id, table.to_csv(index=False), "ranking.csv")
    if not corr.empty:
        client.log_text(run_id, corr.to_csv(index=False), "correlations.csv")
    metrics = {f"{r['source']}/{k}": r[k] for _, r in table.iterrows() for k in SCORES if k in r and pd.notna(r[k])}
    tracking.log_metrics(client, run_id, {**metrics, "time/rank_s": seconds})
    tracking.set_tags(client, run_id, {tracking.NOTE_TAG: f"Sources for `{args.target}` by `{args.by}`\n\n{text}"})
    tracking.end_run(client, run_id)
    print(f"\nlogged as MLflow run {run_id} in experiment {args.experiment!r} ({uri})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
