"""Adaptive seeds: a group-sequential form of the verdict rule of ``benchmark.stats`` that stays valid when seeds are
added only to the cells whose verdict is still open.

**Why not just re-run the fixed rule after each round.** Looking at a t-test after 3, 4, ..., 10 seeds and stopping
at the first rejection inflates the error rate well above α (Armitage, McPherson & Rowe 1969): every look is another
chance for noise to cross the line. The fixed design's tests must be replaced by tests that know about the looks.

**The looks** are planned seed counts ``n_1 < ... < n_K`` (``min_seeds`` to ``max_seeds`` by ``step``, e.g. 3..10).
A cell's deltas are ordered by seed; at look ``k`` the statistics use its first ``n_k`` deltas, so the order never
depends on the values, and the seeds already observed are the whole state of the design: re-running a sweep resumes.

**One cell, one one-sided null** ``δ ≤ θ`` (``θ = +margin`` for "positive"; the other three nulls of
``benchmark.stats`` are the same test on ``−d`` or with ``θ = −margin``). At look ``k`` the paired t-statistic
``T_k = (mean_k − θ)/se_k`` (``n_k − 1`` degrees of freedom) is turned into the normal score of its own nominal
p-value, ``Z_k = Φ⁻¹(F_{t, n_k−1}(T_k))``: with 2 degrees of freedom a t of 4.3 is as rare as a z of 1.96, so
comparing raw t across looks would be meaningless. The test rejects at level ``u`` at the first look where
``Z_k ≥ C(u) · b_k``, with Wang & Tsiatis's (1987, Biometrics 43:193) boundary shape ``b_k = (n_k/n_K)^(Δ − 1/2)``:
``Δ = 0`` is O'Brien & Fleming's (1979) shape (hard to stop early, nearly the fixed design's power at the end),
``Δ = 1/2`` Pocock's (1977) constant nominal level. The default is ``Δ = 0``: measured on families of 8 cells with
looks 3..10 (α = 0.05, true effect 2 × margin), it keeps most of the fixed 10-seed design's power (0.47 vs 0.55 per
cell at sd = margin, 0.88 vs 0.92 at sd = 0.75 margin) and still stops clear cells early (7.4 seeds a cell on average
at sd = margin/2); Δ = 0.25 gave 0.41 and 0.83, Pocock 0.27 and 0.64, for barely fewer seeds.

**Small n, unknown variance — how the error rate is made exact.** The usual shortcut (normal-theory boundaries
converted to t quantiles, Jennison & Turnbull 2000, *Group Sequential Methods*, §11.3) is only approximate, and worst
at 2 degrees of freedom. Here it is not needed: every ``T_k`` is unchanged when the deltas are rescaled, so under
``δ = θ`` the joint law of ``(Z_1, ..., Z_K)`` does not depend on the unknown σ. The constant ``C(u)`` is therefore
the upper-``u`` quantile of one σ-free statistic, ``M = max_k Z_k / b_k``, whose null law is simulated once per
design (``n_null`` paths of standard normal deltas, a fixed seed, cached) and the **repeated p-value** of a cell is
``p̃ = (1 + #{M_null ≥ M_obs}) / (n_null + 1)`` (Monte Carlo p-value, Phipson & Smyth 2010), with ``M_obs`` the running
maximum over the looks seen so far. ``p̃ ≤ u`` exactly when the level-``u`` test has rejected at some look, for every
``u`` at once, so p̃ is a valid p-value under any stopping rule at or before ``n_K``. For ``δ < θ`` every ``T_k`` is
smaller (a common shift lowers every mean and leaves every se alone), so ``δ = θ`` is the worst case of the null.
With a single look the simulation is skipped: ``p̃`` is the t-test's p-value and the rule is ``benchmark.stats``.

Anytime-valid tests (e-values, mixture t-tests) were rejected: they pay for allowing unlimited looks, and with at most
10 seeds at a Holm level of α/(2·cells) their power is a fraction of a planned group-sequential test's.

**Four tests, four verdicts, as in ``benchmark.stats``.** ``p_direction = min(1, 2·min(p̃₊, p̃₋))`` (one-sided
sequential tests of ``δ ≤ +m`` and ``δ ≥ −m`` at α/2 each) and ``p_equivalence = min(1, 2·max(p̃(δ ≤ −m),
p̃(δ ≥ +m)))`` (sequential TOST; never rejects with ``m = 0``).

**The family.** Holm's step-down (Holm 1979) over the repeated p-values of every cell of the family, directional and
equivalence families separately, as in ``benchmark.stats``. A cell that has not reached ``min_seeds`` counts with
``p = 1``, so the family size is the planned one from the first round. Why this keeps the family-wise error ≤ α under
adaptive seeding: Holm is the closed test of Bonferroni intersection tests (Holm 1979; for group-sequential local
tests Maurer & Bretz 2013, Stat. Biopharm. Res. 5:311); p̃ only falls as looks are added and Holm is monotone in every
p-value, so any false rejection made on the observed prefixes would also be made by Holm on the p̃ of the full
``n_K``-seed paths, whose family-wise error is ≤ α because each p̃ is valid. Which cells got more seeds therefore
does not matter. The same monotonicity makes a decision permanent: a cell decided in one round stays decided.

**Rounds are replayed from the deltas.** Round ``r`` looks at every undecided cell's first ``n_r`` deltas, Holm-adjusts
over the family (decided cells keep the p̃ they were decided with) and decides the cells whose adjusted p is below α;
a decided verdict never changes. At ``n_K`` an undecided cell is ``inconclusive``; before, it is ``open`` and
``plan_next_round`` asks for the next look's seed count. The interval reported with a verdict is the repeated
confidence interval (Jennison & Turnbull 1989, JRSS B 51:305) at the level Holm tested the cell at: the intersection
over the looks of each look's boundary-width t-interval, so that positive ⇔ it lies above +m, negative ⇔ below −m,
equivalent ⇔ inside (−m, +m).

**Stopping for futility (non-binding).** A cell whose deltas hover around the margin with a spread wider than it may
never be decided; with ``futility = γ > 0`` it stops, ``inconclusive``, at the first look where its predictive chance
of any verdict at the last look falls below γ (``verdict_chance``: Spiegelhalter, Freedman & Blackburn 1986;
Jennison & Turnbull 2000, ch. 10). The chance is computed at level α/2 a side, the most lenient level Holm can test a
cell at, so Holm's correction never makes a cell look more hopeless than it is. The rule is non-binding in the sense
of group-sequential trials: it only ever stops looking, never rejects, and the efficacy boundaries are the ones
above, computed as if no cell ever stopped early, so every p̃ stays valid and the family-wise error stays ≤ α (a
stopped cell keeps the p̃ of its last look in the Holm family). It costs some power: the simulations of
``tests/test_sequential.py`` and docs/tutorials/adaptive-seeds.md give it next to the seeds it saves.

Longer than most modules (about 450 lines) because a third of it is this derivation: the design, its calibration and
its decisions are one argument and are read together.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from benchmark import config_defaults, metrics
from benchmark.stats import EQUIVALENT, INCONCLUSIVE, NEGATIVE, POSITIVE

OPEN = "open"
"""The verdict of a cell that needs more seeds: its tests have not decided and the design's maximum is not reached."""

SEQUENTIAL_VERDICTS = (POSITIVE, NEGATIVE, EQUIVALENT, INCONCLUSIVE, OPEN)
_CODES = {v: i for i, v in enumerate(SEQUENTIAL_VERDICTS)}
_CHUNK = 1 << 16  # null paths simulated at once: ~10 MB of float64 for 10 seeds


@dataclass(frozen=True)
class SequentialDesign:
    """The planned looks, level, margin and boundary shape of an adaptive-seed sweep.

    ``shape`` is Wang & Tsiatis's Δ (0 = O'Brien-Fleming, 0.5 = Pocock). ``n_null`` null paths give the repeated
    p-values a Monte Carlo standard error of ``√(u/n_null)`` at ``u`` (2.5% of u at u = 0.003, the first Holm step of a
    16-test family at α = 0.05, with the default 2^19); ``null_seed`` makes them reproducible.
    """

    min_seeds: int = int(config_defaults.SEEDS["min"])  # every default is conf/config.yaml's (seeds.*, verdict.*)
    max_seeds: int = int(config_defaults.SEEDS["max"])
    step: int = int(config_defaults.SEEDS["step"])
    alpha: float = config_defaults.ALPHA
    margin: float = config_defaults.MARGIN
    shape: float = float(config_defaults.SEEDS["shape"])
    futility: float = float(config_defaults.SEEDS["futility"])
    n_null: int = 1 << 19
    null_seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.min_seeds, int) and self.min_seeds >= 2):
            problems.append(f"min_seeds={self.min_seeds!r} (need an integer >= 2: a t-test needs 2 seeds)")
        if not (isinstance(self.max_seeds, int) and self.max_seeds >= self.min_seeds):
            problems.append(f"max_seeds={self.max_seeds!r} (need an integer >= min_seeds={self.min_seeds!r})")
        if not (isinstance(self.step, int) and self.step >= 1):
            problems.append(f"step={self.step!r} (need an integer >= 1)")
        if not 0 < self.alpha < 1:
            problems.append(f"alpha={self.alpha!r} (need 0 < alpha < 1)")
        if not self.margin >= 0:
            problems.append(f"margin={self.margin!r} (need margin >= 0, in metric units)")
        if not 0 <= self.shape <= 0.5:
            problems.append(f"shape={self.shape!r} (need 0 <= shape <= 0.5: 0 = O'Brien-Fleming, 0.5 = Pocock)")
        if not 0 <= self.futility < 1:
            problems.append(
                f"futility={self.futility!r} (need 0 <= futility < 1: 0 = off, 0.1 = stop a cell whose "
                "predictive probability of any verdict at the last look is below 10%)"
            )
        if not (isinstance(self.n_null, int) and self.n_null >= 1000):
            problems.append(f"n_null={self.n_null!r} (need an integer >= 1000 null paths)")
        if problems:
            raise ValueError("bad sequential design: " + "; ".join(problems))

    @property
    def looks(self) -> tuple[int, ...]:
        """Seed counts at which the tests are run: ``min_seeds``, ``+step``, ... and always ``max_seeds`` last."""
        looks = list(range(self.min_seeds, self.max_seeds + 1, self.step))
        if looks[-1] != self.max_seeds:
            looks.append(self.max_seeds)
        return tuple(looks)

    @property
    def bounds(self) -> np.ndarray:
        """Wang-Tsiatis boundary shape ``b_k = (n_k/n_K)^(Δ − 1/2)`` on the normal-score scale (1 at the last look)."""
        n = np.asarray(self.looks, dtype=float)
        return (n / n[-1]) ** (self.shape - 0.5)

    def null_max(self) -> np.ndarray:
        """Sorted simulated null values of ``M = max_k Z_k / b_k`` (cached per design; empty with one look)."""
        return _null_max(self.looks, self.shape, self.n_null, self.null_seed)

    def p_value(self, m: np.ndarray) -> np.ndarray:
        """Repeated p-value of running maxima ``m`` of ``Z_k / b_k`` (−inf = nothing seen yet: p = 1)."""
        m = np.asarray(m, dtype=float)
        if len(self.looks) == 1:
            return special.ndtr(-m)  # exactly the t-test's p-value: Z is its normal score
        null = self.null_max()
        at_least = len(null) - np.searchsorted(null, m, side="left")
        return (1.0 + at_least) / (len(null) + 1.0)

    def critical(self, u: float) -> float:
        """``C(u)``: the level-``u`` test rejects once ``Z_k / b_k`` exceeds it at some look (``p_value(M) ≤ u``)."""
        if u <= 0:
            return math.inf
        if len(self.looks) == 1:
            return float(-special.ndtri(min(u, 1.0)))
        null = self.null_max()
        q = math.floor(u * (len(null) + 1) + 1e-9) - 1  # p ≤ u ⇔ fewer than q + 1 null values ≥ M ⇔ M > null[-q-1]
        if q < 0:
            return math.inf
        return -math.inf if q >= len(null) else float(null[len(null) - 1 - q])


@functools.lru_cache(maxsize=8)
def _null_max(looks: tuple[int, ...], shape: float, n_null: int, seed: int) -> np.ndarray:
    """Simulate the σ-free null law of ``M`` (module docstring) from ``n_null`` paths of standard normal deltas."""
    if len(looks) == 1:
        return np.empty(0)
    n = np.asarray(looks, dtype=float)
    bounds = (n / n[-1]) ** (shape - 0.5)
    rng = np.random.default_rng(seed)
    out = np.empty(n_null)
    for start in range(0, n_null, _CHUNK):
        size = min(_CHUNK, n_null - start)
        x = rng.standard_normal((size, looks[-1]))
        mean, se = _prefix_moments(x, looks)
        out[start : start + size] = (_normal_score(mean / se, n - 1) / bounds).max(axis=1)
    out.sort()
    return out


def _prefix_moments(x: np.ndarray, looks: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the first ``n_k`` values of each row of ``x``, for each look (NaN past the row)."""
    idx = np.asarray(looks) - 1
    n = np.asarray(looks, dtype=float)
    s = np.cumsum(x, axis=-1)[..., idx]
    # centred sums of squares from a shifted cumulative sum: exact for equal deltas (zero variance stays zero)
    shift = x[..., :1]
    q = np.cumsum((x - shift) ** 2, axis=-1)[..., idx]
    sc = s - shift * n
    with np.errstate(invalid="ignore"):
        var = np.maximum(q - sc * sc / n, 0.0) / (n - 1)
    return s / n, np.sqrt(var / n)


def _normal_score(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``Φ⁻¹(F_t(t))`` computed from the upper tail so large t keeps its precision; ±inf for ±inf, −inf for NaN."""
    with np.errstate(invalid="ignore"):
        z = -special.ndtri(special.stdtr(df, -t))
    return np.where(np.isnan(z), -np.inf, z)


def _t_stat(mean: np.ndarray, se: np.ndarray, theta: float, side: int) -> np.ndarray:
    """``side·(mean − θ)/se`` with the zero-variance limit of ``benchmark.stats``: ±inf, or NaN when mean = θ."""
    diff = side * (mean - theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff > 0, np.inf, np.where(diff < 0, -np.inf, np.nan))
        )


def repeated_p(design: SequentialDesign, mean: np.ndarray, se: np.ndarray, seen: np.ndarray) -> dict[str, np.ndarray]:
    """Repeated p-values of the four one-sided tests after each look, for oriented deltas.

    ``mean``/``se`` have the looks on the last axis; ``seen`` marks the looks whose seeds exist (the others are carried
    forward). Returns ``positive`` (H0 δ ≤ +m), ``negative`` (H0 δ ≥ −m), ``direction``, ``equivalence``.
    """
    df = np.asarray(design.looks, dtype=float) - 1
    m = design.margin

    def one(theta: float, side: int) -> np.ndarray:
        z = _normal_score(_t_stat(mean, se, theta, side), df) / design.bounds
        return design.p_value(np.maximum.accumulate(np.where(seen, z, -np.inf), axis=-1))

    p_pos, p_neg = one(m, 1), one(-m, -1)
    out = {"positive": p_pos, "negative": p_neg, "direction": np.minimum(1.0, 2 * np.minimum(p_pos, p_neg))}
    if m > 0:
        out["equivalence"] = np.minimum(1.0, 2 * np.maximum(one(-m, 1), one(m, -1)))
    else:
        out["equivalence"] = np.ones_like(p_pos)
    return out


def verdict_chance(design: SequentialDesign, mean: np.ndarray, se: np.ndarray, n: int, u: float) -> np.ndarray:
    """Predictive probability that a cell seen at ``n`` seeds gets a verdict at the last look (the futility rule).

    With a flat prior on δ and the spread ``s`` taken as known, the last look's mean is
    ``mean + s·√((n_K − n)/(n_K·n))·T`` with ``T`` Student's t on ``n − 1`` degrees of freedom (Spiegelhalter,
    Freedman & Blackburn 1986, Controlled Clin. Trials 7:8, "predictive power"). The cell is positive at the last look
    when that mean exceeds ``m + t_K·s/√n_K``, ``t_K`` the last look's boundary at the one-sided level ``u``
    (negative mirrored; equivalent when it lies within ``±(m − t_K·s/√n_K)``); the three are disjoint and their
    probabilities add up. Earlier looks are ignored (their boundaries are stricter). Used only to stop looking
    (non-binding): it never makes a verdict, so it cannot raise an error rate, only lower the power.
    """
    n_last = design.max_seeds
    df = n_last - 1.0
    se_last = se * math.sqrt(n / n_last)
    spread = se * math.sqrt((n_last - n) / n_last)
    m = design.margin

    def below(x: np.ndarray) -> np.ndarray:  # P(last mean < x)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (x - mean) / np.where(spread > 0, spread, 1.0)
            return np.where(spread > 0, special.stdtr(n - 1, z), (x > mean).astype(float))

    t_last = float(special.stdtrit(df, special.ndtr(design.critical(u))))
    chance = (1.0 - below(m + t_last * se_last)) + below(-m - t_last * se_last)
    if m > 0:
        low, high = -m + t_last * se_last, m - t_last * se_last
        chance = chance + np.where(high > low, below(high) - below(low), 0.0)
    return np.where(np.isfinite(mean) & np.isfinite(se), chance, 1.0)


def holm_batched(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values along the last axis (the cells of a family); same as ``stats.holm``."""
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1)
    steps = p.shape[-1] - np.arange(p.shape[-1])
    adjusted = np.minimum(1.0, np.maximum.accumulate(ranked * steps, axis=-1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


@dataclass(frozen=True)
class Replay:
    """The rounds of a family replayed from its deltas; arrays have shape ``(..., cells)``.

    ``verdict``: codes into ``SEQUENTIAL_VERDICTS``; ``look``: index of the look that decided the cell (the last look
    for inconclusive, the last seen look for open); ``n_used``: seeds behind the verdict; ``p_direction``/
    ``p_equivalence`` and their Holm adjustments: the values the verdict was taken with.
    """

    verdict: np.ndarray
    look: np.ndarray
    n_used: np.ndarray
    p_direction: np.ndarray
    p_equivalence: np.ndarray
    p_direction_adjusted: np.ndarray
    p_equivalence_adjusted: np.ndarray


def replay(
    design: SequentialDesign,
    p: Mapping[str, np.ndarray],
    seen: np.ndarray,
    mean: np.ndarray | None = None,
    se: np.ndarray | None = None,
) -> Replay:
    """Replay the rounds (module docstring) on repeated p-values shaped ``(..., cells, looks)``; with
    ``design.futility`` the oriented ``mean``/``se`` at each look drive the futility stop."""
    shape = seen.shape[:-1]
    decided = np.zeros(shape, dtype=bool)
    verdict = np.full(shape, _CODES[OPEN])
    look = np.zeros(shape, dtype=int)
    p_dir = np.ones(shape)
    p_eq = np.ones(shape)
    adj_dir = np.ones(shape)
    adj_eq = np.ones(shape)
    positive_side = np.ones(shape, dtype=bool)
    for r in range(len(design.looks)):
        live = ~decided & seen[..., r]
        p_dir = np.where(live, p["direction"][..., r], p_dir)
        p_eq = np.where(live, p["equivalence"][..., r], p_eq)
        look = np.where(live, r, look)
        positive_side = np.where(live, p["positive"][..., r] <= p["negative"][..., r], positive_side)
        a_dir, a_eq = holm_batched(p_dir), holm_batched(p_eq)
        adj_dir = np.where(decided, adj_dir, a_dir)
        adj_eq = np.where(decided, adj_eq, a_eq)
        new_dir = ~decided & (a_dir < design.alpha)
        new_eq = ~decided & ~new_dir & (a_eq < design.alpha)
        verdict = np.where(new_dir, np.where(positive_side, _CODES[POSITIVE], _CODES[NEGATIVE]), verdict)
        verdict = np.where(new_eq, _CODES[EQUIVALENT], verdict)
        decided |= new_dir | new_eq
        if design.futility > 0 and mean is not None and se is not None and r < len(design.looks) - 1:
            # at α/2 a side, the most lenient level Holm can test any cell at: the chance is not understated by Holm
            chance = verdict_chance(design, mean[..., r], se[..., r], design.looks[r], design.alpha / 2)
            futile = live & ~decided & (chance < design.futility)
            verdict = np.where(futile, _CODES[INCONCLUSIVE], verdict)
            decided |= futile
    at_max = seen[..., -1]
    verdict = np.where(~decided & at_max, _CODES[INCONCLUSIVE], verdict)
    n_used = np.where(seen.any(axis=-1), np.asarray(design.looks)[look], 0)
    return Replay(verdict, look, n_used, p_dir, p_eq, adj_dir, adj_eq)


def simulate(design: SequentialDesign, deltas: np.ndarray) -> Replay:
    """Run the adaptive design on pre-drawn oriented deltas shaped ``(..., cells, max_seeds)``: the seeds a cell never
    got in the adaptive sweep are drawn but never looked at (each round reveals only undecided cells' next look)."""
    mean, se = _prefix_moments(deltas, design.looks)
    seen = np.ones(mean.shape, dtype=bool)
    return replay(design, repeated_p(design, mean, se, seen), seen, mean, se)


def repeated_interval(design: SequentialDesign, deltas: Sequence[float], n: int, level: float) -> tuple[float, float]:
    """Two-sided repeated confidence interval for δ at ``level`` from the looks up to ``n`` seeds of oriented deltas:
    the intersection over those looks of ``mean_k ± t_k·se_k``, ``t_k`` the t-quantile of the normal score
    ``C(level/2)·b_k``. It excludes θ exactly when the sequential one-sided test of θ rejects at ``level/2``."""
    c = design.critical(level / 2)
    d = np.asarray(deltas, dtype=float)
    low, high = -math.inf, math.inf
    for n_k, b_k in zip(design.looks, design.bounds, strict=True):
        if n_k > min(n, len(d)):
            break
        mean, se = float(d[:n_k].mean()), float(d[:n_k].std(ddof=1) / math.sqrt(n_k))
        half = float(special.stdtrit(n_k - 1, special.ndtr(c * b_k))) * se if math.isfinite(c) else math.inf
        if se == 0:
            half = 0.0
        low, high = max(low, mean - half), min(high, mean + half)
    return low, high


@dataclass(frozen=True)
class CellDecision:
    """One cell's state in an adaptive sweep. ``n_observed``: seeds in the store; ``n_used``: seeds the verdict rests
    on; ``n_wanted``: seeds the cell should have after the next round (= ``n_observed`` once decided); ``low``/``high``:
    the repeated confidence interval at the level Holm tested the cell at (oriented: > 0 means transfer is better)."""

    verdict: str
    n_observed: int
    n_used: int
    n_wanted: int
    p_direction: float
    p_direction_adjusted: float
    p_equivalence: float
    p_equivalence_adjusted: float
    low: float
    high: float


def _holm_level(alpha: float, p: float, p_adjusted: float) -> float:
    """The level at which Holm tested a cell, ``α · p / p_adjusted`` (``benchmark.stats.adjusted_interval``)."""
    return alpha if p_adjusted == 0 else alpha * p / p_adjusted


def _oriented(cells: Mapping[Hashable, Sequence[float]], metric: str) -> dict[Hashable, np.ndarray]:
    sign = metrics.sign(metric)
    out = {}
    for key, values in cells.items():
        d = np.asarray(values, dtype=float)
        if not np.all(np.isfinite(d)):
            raise ValueError(f"cell {key!r} has non-finite deltas {d.tolist()!r}; drop failed seeds before deciding")
        out[key] = sign * d
    return out


def decide(
    cells: Mapping[Hashable, Sequence[float]], design: SequentialDesign, metric: str = config_defaults.METRIC
) -> dict[Hashable, CellDecision]:
    """Verdicts of one family of cells from the deltas observed so far.

    ``cells`` maps each cell of the family (all of them, also those without seeds yet: they fix the family size) to its
    raw paired deltas ``metric(transfer) − metric(baseline)`` **ordered by seed**; ``metric`` orients them
    (``benchmark.metrics``), so "positive" means transfer is better also for a loss.
    """
    oriented = _oriented(cells, metric)
    keys = list(oriented)
    if not keys:
        return {}
    looks, width = design.looks, design.max_seeds
    padded = np.zeros((len(keys), width))
    counts = np.array([min(len(oriented[k]), width) for k in keys])
    for i, k in enumerate(keys):
        padded[i, : counts[i]] = oriented[k][:width]
    seen = counts[:, None] >= np.asarray(looks)[None, :]
    mean, se = _prefix_moments(padded, looks)
    result = replay(design, repeated_p(design, mean, se, seen), seen, mean, se)
    out = {}
    for i, k in enumerate(keys):
        verdict = SEQUENTIAL_VERDICTS[result.verdict[i]]
        n_obs = len(oriented[k])
        if verdict == OPEN:
            done = [n for n in looks if n <= n_obs]
            wanted = looks[len(done)] if len(done) < len(looks) else n_obs
        else:
            wanted = n_obs
        p_dir, a_dir = float(result.p_direction[i]), float(result.p_direction_adjusted[i])
        p_eq, a_eq = float(result.p_equivalence[i]), float(result.p_equivalence_adjusted[i])
        n_used = int(result.n_used[i])
        if n_used:
            dir_iv = repeated_interval(design, oriented[k], n_used, _holm_level(design.alpha, p_dir, a_dir))
            eq_iv = repeated_interval(design, oriented[k], n_used, _holm_level(design.alpha, p_eq, a_eq))
            # as in benchmark.stats: the equivalence interval for "equivalent", and for an undecided cell whose
            # directional interval lies inside the margins (the wider one that says why it is not equivalent)
            inside = -design.margin < dir_iv[0] and dir_iv[1] < design.margin
            low, high = eq_iv if verdict == EQUIVALENT or (verdict in (OPEN, INCONCLUSIVE) and inside) else dir_iv
        else:
            low, high = math.nan, math.nan
        out[k] = CellDecision(verdict, n_obs, n_used, int(wanted), p_dir, a_dir, p_eq, a_eq, low, high)
    return out


def plan_next_round(
    cells: Mapping[Hashable, Sequence[float]], design: SequentialDesign, metric: str = config_defaults.METRIC
) -> dict[Hashable, int]:
    """How many seeds each cell should have after the next round: the next look for open cells, the seeds it already
    has for decided ones. A sweep launches seeds ``range(n_wanted)`` that are missing; an empty difference everywhere
    means the design is finished."""
    return {k: d.n_wanted for k, d in decide(cells, design, metric).items()}
