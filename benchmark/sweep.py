"""Sweep bookkeeping: the parent run, job records, and the end-of-sweep verdicts (one cell run per cell).

The launching process creates the store, the experiment and the parent run once (several processes migrating a
fresh SQLite store at once corrupt it), then writes ``transfer_bench_sweep.json`` in Hydra's sweep directory; every
job reads it and writes one record under ``transfer_bench_jobs/``. ``finalize`` runs at the end of the sweep, from
Hydra's ``on_multirun_end`` and, because released Hydra skips that hook when a job failed, again from the entry
point's ``finally``; it is idempotent.

Verdicts are new records, never edits of shared ones: transfer and baseline runs are reused by later sweeps, and a
verdict depends on the sweep's Holm family, so each cell of each sweep gets a run of its own (``role=cell``, a child
of the sweep's parent run) holding its statistics as metrics, its verdict as a tag and the ids of its runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark import config_defaults, metrics, tracking
from benchmark.util import atomic_path

log = logging.getLogger(__name__)

STATE_FILE = "transfer_bench_sweep.json"
JOBS_DIR = "transfer_bench_jobs"
STATE_ENV = "TRANSFER_BENCH_SWEEP_STATE"

ACTIVE: SweepState | None = None
"""The sweep started by this process (kept here, not in ``benchmark.run``: ``python -m benchmark.run`` runs that
module as ``__main__`` while Hydra imports the callback from ``benchmark.run``, two module objects)."""


@dataclass
class SweepState:
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    sweep_id: str
    sweep_dir: str
    metric: str  # the sweep's verdict rule (verdict.*), always the composed config's
    alpha: float
    margin: float
    at_cap: bool  # verdict.at_cap: budget-limited cells keep the statistics' verdict
    finalized: bool = False
    design: dict | None = None  # adaptive seeds: the ``benchmark.sequential.SequentialDesign`` the verdicts follow
    jobs: int = 0  # the sweep's job count (``benchmark.preflight.sweep_overrides``); 0 when unknown (adaptive)
    started: float = 0.0  # time.time() when the parent run was created

    @property
    def path(self) -> Path:
        return Path(self.sweep_dir) / STATE_FILE

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> SweepState:
        return cls(**json.loads(Path(path).read_text()))


def start(
    tracking_uri: str,
    experiment: str,
    artifact_root: Path | None,
    sweep_dir: Path,
    overrides: list[str],
    git_sha: str,
    metric: str,
    alpha: float,
    margin: float,
    design: dict | None = None,
    jobs: int | None = 0,
    at_cap: bool = config_defaults.AT_CAP,
) -> SweepState:
    """Create the store (once), the experiment and a RUNNING parent run; write the state file for the jobs.

    ``metric`` must have a declared direction (``benchmark.metrics``): a typo fails here, before any training, not when
    the sweep's verdicts are computed. ``jobs`` is the sweep's job count, for the jobs' progress lines.
    """
    if not metrics.get(metric).delta:  # e.g. val/selected_acc: a direction, but no transfer - baseline pair
        valid = ", ".join(metrics.DELTA_METRICS)
        raise ValueError(f"verdict.metric={metric!r} has no paired delta; choose one of: {valid}")
    client = tracking.open_store(tracking_uri)
    exp_id = tracking.ensure_experiment(client, experiment, artifact_root)
    sweep_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    tags = {"role": "sweep", "sweep_id": sweep_id, "git_sha": git_sha, "sweep_overrides": " ".join(overrides)}
    parent = tracking.create_run(client, exp_id, f"sweep__{experiment}__{sweep_id}", tags)
    state = SweepState(tracking_uri, experiment, exp_id, parent, sweep_id, str(Path(sweep_dir).resolve()), metric,
                       alpha, margin, at_cap, design=design, jobs=int(jobs or 0), started=time.time())  # fmt: skip
    state.save()
    os.environ[STATE_ENV] = str(state.path)
    global ACTIVE
    ACTIVE = state
    log.info("sweep %s: parent run %s in experiment %r (%s)", sweep_id, parent, experiment, tracking_uri)
    return state


def finalize_active(killed: bool = False) -> None:
    """Finalise the sweep this process started, once. An error here is logged, not raised over the sweep's own,
    and ends the parent run FAILED with its traceback: never left RUNNING (the jobs' runs are recorded, the report
    is not)."""
    global ACTIVE
    if ACTIVE is None:
        return
    state, ACTIVE = ACTIVE, None
    try:
        finalize(state, killed=killed)
    except Exception as exc:
        log.exception("could not finalise sweep %s", state.sweep_id)
        try:
            tracking.record_failure(tracking.open_store(state.tracking_uri), state.parent_run_id, exc)
        except Exception:
            log.exception("could not mark the parent run %s FAILED", state.parent_run_id)


def find_state(sweep_dir: Path | None) -> SweepState | None:
    """The state of the sweep this job belongs to, from its sweep directory or the environment."""
    candidates = [Path(sweep_dir) / STATE_FILE] if sweep_dir else []
    if os.environ.get(STATE_ENV):
        candidates.append(Path(os.environ[STATE_ENV]))
    for path in candidates:
        if path.is_file():
            return SweepState.load(path)
    return None


def record_path(state: SweepState, job_num: int) -> Path:
    return Path(state.sweep_dir) / JOBS_DIR / f"{job_num:05d}.json"


def read_record(state: SweepState, job_num: int) -> dict | None:
    """The record job ``job_num`` wrote (``write_record``), or None when it wrote none."""
    path = record_path(state, job_num)
    return json.loads(path.read_text()) if path.is_file() else None


def progress(state: SweepState, job_num: int, now: float | None = None) -> str:
    """``[k/N] 1:02 elapsed, ETA 3:10`` for job ``job_num`` (0-based) after its record was written.

    The ETA is the sweep's wall-clock time per finished job (records written so far, failed ones included) times
    the jobs left: with one job at a time that is the mean seconds per job, and with parallel launcher workers it
    counts their overlap. Reused jobs finish in a second, so a sweep that starts with reused jobs predicts short.
    """
    now = time.time() if now is None else now
    done = len(list((Path(state.sweep_dir) / JOBS_DIR).glob("*.json")))
    total = state.jobs or "?"
    line = f"[{job_num + 1}/{total}]"
    if not state.started:
        return line
    elapsed = max(0.0, now - state.started)
    line += f" {_clock(elapsed)} elapsed"
    if state.jobs and done:
        left = max(0, state.jobs - done)
        line += f", ETA {_clock(elapsed / done * left)}"
    return line


def _clock(seconds: float) -> str:
    """``62`` -> ``1:02``, ``3723`` -> ``1:02:03``."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


CELL_METRICS = {
    "delta": "delta", "ci_low": "adj_low", "ci_high": "adj_high", "ci_unadjusted_low": "ci_low",
    "ci_unadjusted_high": "ci_high", "p": "p", "p_holm": "p_holm", "p_equivalence_holm": "p_equivalence_holm",
    "n": "n", "unpaired": "unpaired", "failed": "failed", "diverged": "diverged", "transfer_mean": "transfer_mean",
    "baseline_mean": "scratch_mean", "transfer_steps": "transfer_steps", "baseline_steps": "scratch_steps",
    "budget_limited": "budget_limited",
}  # fmt: skip
"""Metric of a cell run -> column of ``benchmark.report.summarize`` (``ci_*``: the interval the verdict used)."""


def job_fields(job) -> dict:
    """What a job record says of the composed job (a ``benchmark.spec.JobSpec``): its name, keys, role and cell."""
    return {"name": job.name, "run_key": job.run_key, "baseline_key": job.baseline_key, "role": job.meta.role,
            "cell": list(job.cell)}  # fmt: skip


def outcome_fields(outcome) -> dict:
    """What a job record says of a finished job (a ``benchmark.spec.JobOutcome``): the runs it trained or reused."""
    return {"status": "ok", "run_id": outcome.run_id, "reused": outcome.reused,
            "baseline_run_id": outcome.baseline_run_id, "baseline_reused": outcome.baseline_reused,
            "reference_run_id": outcome.reference_run_id}  # fmt: skip


def result_line(job, outcome) -> str:
    """A finished job's line after its ``progress``: ``[reused] <name>: test/acc=... delta/test/acc=...``."""
    acc = outcome.metrics.get("test/acc")
    delta = outcome.deltas.get("delta/test/acc")
    msg = f"{job.name}: test/acc={acc:.4f}" if acc is not None else job.name
    if delta is not None:
        msg += f" delta/test/acc={delta:+.4f} (baseline run {outcome.baseline_run_id})"
    return ("[reused] " if outcome.reused else "") + msg


def write_record(path: Path, record: dict) -> None:
    """Atomically write a job record (``record_path``) for the sweep's finaliser."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))


def record_cells(
    client, experiment_id: str, parent_run_id: str, sweep_id: str, cells, comparison: str, family: str
) -> list[str]:
    """One FINISHED ``role=cell`` run per cell under the sweep's parent run; returns their ids.

    ``comparison`` is ``baseline`` or ``reference``; ``family`` names the Holm family the verdict was corrected in.
    The cell's runs are linked by id (``run_ids`` tag and ``cell.json`` artifact), failed or diverged ones included.
    """
    ids = []
    for _, c in cells.iterrows():
        variant = f"__{c.variant}" if c.variant else ""
        name = f"cell__{c.source}__{c.target}__{c.strategy}{variant}__n{c.label_budget}"
        if comparison != "baseline":
            name += f"__vs_{comparison}"
        tags = {
            "role": "cell", "sweep_id": sweep_id, "source": c.source, "target": c.target, "strategy": c.strategy,
            "label_budget": c.label_budget, "variant": c.variant, "cell_key": c.cell, "metric": c.metric,
            "comparison": comparison, "verdict": c.verdict, "incomplete": str(bool(c.incomplete)).lower(),
            "holm_family": family, "run_ids": ",".join(c.run_ids)[:5000],
        }  # fmt: skip
        if c.get("tuned", False):  # a study chose the values (docs/tutorials/tuning.md); an oracle is named
            tags.update({"tuned": "true", **({"selection_oracle": "true"} if c.get("selection_oracle") else {})})
        run_id = tracking.create_run(client, experiment_id, name, tags, parent_run_id)
        values = {k: float(c[col]) for k, col in CELL_METRICS.items() if not math.isnan(float(c[col]))}
        tracking.log_metrics(client, run_id, values)
        client.log_dict(run_id, {"run_ids": c.run_ids, "failed_run_ids": c.lost_run_ids, "seeds": c.seeds}, "cell.json")
        ci = "—" if math.isnan(c.adj_low) else f"[{c.adj_low:+.4f}, {c.adj_high:+.4f}]"
        note = (
            f"Cell of sweep {sweep_id}: **{c.strategy}** from **{c.source}** to **{c.target}**"
            f"{f' ({c.variant})' if c.variant else ''}, {c.label_budget} labels/class, against its {comparison}, "
            f"on `{c.metric}`.\n\nVerdict **{c.verdict}**{' (incomplete)' if c.incomplete else ''} over {c.n} "
            f"paired seeds ({c.failed} failed, {c.diverged} diverged): delta {c.delta:+.4f} (positive = transfer "
            f"better), interval {ci}. {family}."
        )
        tracking.set_tags(client, run_id, {tracking.NOTE_TAG: note})
        tracking.end_run(client, run_id)
        ids.append(run_id)
    return ids


def _failed_runs(client, experiment_id: str, records: list[dict]) -> list:
    """The FAILED/KILLED runs of failed job records (found by run key), so that their cells count them."""
    out = []
    for r in records:
        if r.get("run_key"):
            found = tracking.find_runs(client, experiment_id, "run_key", r["run_key"], ("FAILED", "KILLED"))
            out += found[:1]
    return out


def finalize(state: SweepState, echo: bool = True, killed: bool = False) -> str | None:
    """Report on the sweep's runs (trained or reused); write a cell run per cell, describe and close the parent run.

    Returns the verdict table (None when already finalised). The parent ends KILLED when the sweep was
    interrupted (Ctrl-C, SIGTERM), FAILED when any job failed, FINISHED otherwise.
    """
    from benchmark.report import build_report, family_note, runs_frame  # SciPy, pandas: paid when a sweep ends

    fresh = SweepState.load(state.path) if state.path.is_file() else state
    if fresh.finalized:
        return None
    client = tracking.open_store(fresh.tracking_uri)
    records = [json.loads(p.read_text()) for p in sorted((Path(fresh.sweep_dir) / JOBS_DIR).glob("*.json"))]
    failed = [r for r in records if r.get("status") != "ok"]
    ok = [r for r in records if r.get("status") == "ok"]
    ids = sorted({r[k] for r in ok for k in ("run_id", "baseline_run_id", "reference_run_id") if r.get(k)})
    runs = runs_frame([client.get_run(i) for i in ids] + _failed_runs(client, fresh.experiment_id, failed))
    run = fresh.parent_run_id
    n_reused = sum(1 for r in ok if r.get("reused"))
    counts = (
        f"{len(records)} jobs: {len(ok) - n_reused} trained, {n_reused} reused from earlier runs, {len(failed)} failed."
    )
    with tempfile.TemporaryDirectory() as tmp:
        report = build_report(runs, Path(tmp), client, fresh.metric, fresh.alpha, fresh.margin,
                              title=f"Sweep {fresh.sweep_id} ({fresh.experiment})", design=fresh.design,
                              at_cap=fresh.at_cap)  # fmt: skip
        client.log_artifacts(run, tmp, "report")
    for cells, comparison, what in ((report.cells, "baseline", "transfer versus baseline"),
                                    (report.reference_cells, "reference", "adaptation versus reference")):  # fmt: skip
        if not cells.empty:
            record_cells(client, fresh.experiment_id, run, fresh.sweep_id, cells, comparison, family_note(cells, what))
    failed_txt = ""
    if failed:
        failed_txt = "\n**Failed jobs**\n\n" + "\n".join(f"- `{r.get('name')}`: {r.get('error', '')}" for r in failed)
    description = f"{report.markdown}\n{counts}\n{failed_txt}"
    client.log_dict(run, {"jobs": records}, "runs.json")
    metrics = {
        "sweep/jobs": len(records), "sweep/trained": len(ok) - n_reused, "sweep/reused": n_reused,
        "sweep/failed": len(failed), "sweep/cells": len(report.cells), **report.headline,
    }  # fmt: skip
    tracking.log_metrics(client, run, metrics)
    tags = {tracking.NOTE_TAG: description}
    if failed:
        tags["failed_cells"] = ", ".join(str(r.get("name")) for r in failed)[:5000]
    tracking.set_tags(client, run, tags)
    tracking.end_run(client, run, "KILLED" if killed else "FAILED" if failed else "FINISHED")
    fresh.finalized = True
    fresh.save()
    if echo:
        print(f"\n{description}", flush=True)
    return description
