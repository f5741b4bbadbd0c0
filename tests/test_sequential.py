"""Adaptive seeds: the group-sequential rule keeps its error rates under optional stopping (seeded Monte Carlo of
80,000 cells), reaches its stated power, reduces to ``benchmark.stats`` with one look, and its verdicts are permanent,
oriented and agree with their intervals."""

import math

import numpy as np
import pytest
from scipy import special, stats

from benchmark.sequential import (
    OPEN,
    SEQUENTIAL_VERDICTS,
    SequentialDesign,
    decide,
    holm_batched,
    plan_next_round,
    replay,
    simulate,
)
from benchmark.stats import EQUIVALENT, INCONCLUSIVE, NEGATIVE, POSITIVE, adjust, holm, paired_summary

FAMILIES, CELLS, ALPHA = 10_000, 8, 0.05  # 80,000 cells in families of 8, every cell's seeds drawn up to the maximum
CODE = {v: i for i, v in enumerate(SEQUENTIAL_VERDICTS)}
FUTILITY = 0.2  # the default futility stop, conf/config.yaml seeds.futility (test_the_config_default_is_simulated)


def rate(hits: np.ndarray, what: str) -> tuple[float, float, float]:
    """The share of ``hits`` with its exact (Clopper-Pearson) 99% interval, printed for the record."""
    k, n = int(hits.sum()), hits.size
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.99, method="exact")
    print(f"{what}: {k / n:.4f} (99% CI {ci.low:.4f}-{ci.high:.4f}, n={n})")
    return k / n, ci.low, ci.high


def draw(delta: float, sd: float, seed: int) -> np.ndarray:
    """Oriented deltas of ``FAMILIES`` families of ``CELLS`` cells, ``max_seeds`` = 10 seeds each."""
    return delta + sd * np.random.default_rng(seed).standard_normal((FAMILIES, CELLS, 10))


def naive(design: SequentialDesign, x: np.ndarray):
    """The rule this module replaces: the fixed t-tests of ``benchmark.stats`` re-run after every round."""
    looks = np.asarray(design.looks)
    parts = [x[..., :n] for n in looks]
    mean = np.stack([p.mean(-1) for p in parts], -1)
    se = np.stack([p.std(-1, ddof=1) / math.sqrt(p.shape[-1]) for p in parts], -1)
    df, m = looks - 1.0, design.margin
    p_pos, p_neg = special.stdtr(df, -(mean - m) / se), special.stdtr(df, (mean + m) / se)
    p = {"positive": p_pos, "negative": p_neg, "direction": np.minimum(1, 2 * np.minimum(p_pos, p_neg))}
    p["equivalence"] = np.ones_like(p_pos)
    return replay(design, p, np.ones(mean.shape, dtype=bool))


def test_no_effect_keeps_the_family_wise_error_at_alpha_and_naive_looks_do_not():
    # margin 0, δ = 0: both one-sided nulls sit on their boundary, the least favourable case for "positive or negative"
    design = SequentialDesign(alpha=ALPHA, margin=0.0, futility=0.0)
    x = draw(0.0, 1.0, seed=11)
    seq = simulate(design, x)
    false = np.isin(seq.verdict, [CODE[POSITIVE], CODE[NEGATIVE]]).any(-1)
    fwer, low, _ = rate(false, "FWER, adaptive seeds 3..10, δ = 0, margin 0, families of 8")
    assert low <= ALPHA and fwer <= ALPHA + 0.003  # at most Monte Carlo noise above α (its 99% CI covers α or less)
    assert fwer > 0.6 * ALPHA, "calibrated, not merely conservative: Holm's family-wise error sits close to α"
    print(f"mean seeds per cell: {seq.n_used.mean():.2f} of 10")
    # the test can fail: stopping at the first fixed-rule rejection inflates the error far above α
    _, naive_low, _ = rate(np.isin(naive(design, x).verdict, [0, 1]).any(-1), "FWER, fixed rule re-run every round")
    assert naive_low > ALPHA


def test_delta_on_the_margin_keeps_positive_and_equivalent_errors_at_alpha():
    # δ = +margin: "positive" (δ > m) and "equivalent" (|δ| < m) are both false, each null at its boundary
    design = SequentialDesign(alpha=ALPHA, margin=1.0, futility=0.0)
    seq = simulate(design, draw(1.0, 1.0, seed=12))
    for code, name in ((CODE[POSITIVE], "positive"), (CODE[EQUIVALENT], "equivalent")):
        fwer, low, _ = rate((seq.verdict == code).any(-1), f"FWER of false '{name}', δ = +margin")
        assert low <= ALPHA and fwer <= ALPHA + 0.003
    assert not (seq.verdict == CODE[NEGATIVE]).any()


@pytest.mark.parametrize(
    ("sd", "futility", "stated_power", "max_mean_seeds"),
    # sd in units of the margin; the figures of the README section, without and with the default futility stop
    [(1.0, 0.0, 0.45, 9.7), (0.5, 0.0, 0.99, 7.7), (1.0, 0.2, 0.45, 8.5), (0.5, 0.2, 0.99, 7.7)],
)
def test_an_effect_of_twice_the_margin_reaches_the_stated_power(sd, futility, stated_power, max_mean_seeds):
    design = SequentialDesign(alpha=ALPHA, margin=1.0, futility=futility)
    fixed = SequentialDesign(min_seeds=10, max_seeds=10, alpha=ALPHA, margin=1.0, futility=0.0)
    x = draw(2.0, sd, seed=13)
    seq, fix = simulate(design, x), simulate(fixed, x)
    power, low, _ = rate(seq.verdict == CODE[POSITIVE], f"power, adaptive, δ = 2m, sd = {sd}m")
    fixed_power, _, _ = rate(fix.verdict == CODE[POSITIVE], f"power, fixed 10 seeds, δ = 2m, sd = {sd}m")
    print(f"mean seeds per cell: adaptive {seq.n_used.mean():.2f}, fixed 10")
    assert low >= stated_power
    assert power <= fixed_power + 0.005, "early looks cost power: the adaptive design cannot beat the fixed one"
    assert seq.n_used.mean() <= max_mean_seeds
    assert not (seq.verdict == CODE[NEGATIVE]).any()


def test_futility_stops_cells_that_cannot_be_decided_and_keeps_the_error_rate():
    # δ = 0 with sd = margin: a verdict is rare at 10 seeds (equivalence needs a tight interval inside ±m)
    plain, futile = SequentialDesign(margin=1.0, futility=0.0), SequentialDesign(margin=1.0, futility=FUTILITY)
    x = draw(0.0, 1.0, seed=14)
    a, b = simulate(plain, x), simulate(futile, x)
    print(f"δ = 0, sd = m: seeds per cell {a.n_used.mean():.2f} without futility, {b.n_used.mean():.2f} with")
    decided = [np.isin(r.verdict, [CODE[POSITIVE], CODE[NEGATIVE], CODE[EQUIVALENT]]).mean() for r in (a, b)]
    print(f"decided (equivalent) cells: {decided[0]:.4f} without, {decided[1]:.4f} with")
    assert a.n_used.mean() > 9.8 and b.n_used.mean() < 6.5, "hopeless cells stop early"
    assert decided[1] >= decided[0] - 0.02, "at the cost of few verdicts"
    assert not (b.verdict == CODE[OPEN]).any()
    stopped = (b.verdict == CODE[INCONCLUSIVE]) & (b.n_used < 10)
    assert stopped.any()
    # non-binding: stopping to look can only remove rejections, so the family-wise error stays at most α
    null = simulate(SequentialDesign(alpha=ALPHA, margin=0.0, futility=FUTILITY), draw(0.0, 1.0, seed=11))
    fwer, low, _ = rate(np.isin(null.verdict, [CODE[POSITIVE], CODE[NEGATIVE]]).any(-1), "FWER with futility, δ = 0")
    assert low <= ALPHA and fwer <= ALPHA + 0.003


def test_futility_costs_little_power_at_twice_the_margin():
    x = draw(2.0, 1.0, seed=13)
    plain = simulate(SequentialDesign(alpha=ALPHA, margin=1.0, futility=0.0), x)
    futile = simulate(SequentialDesign(alpha=ALPHA, margin=1.0, futility=FUTILITY), x)
    power, low, _ = rate(futile.verdict == CODE[POSITIVE], "power with futility, δ = 2m, sd = m")
    plain_power = (plain.verdict == CODE[POSITIVE]).mean()
    print(f"seeds per cell {futile.n_used.mean():.2f} with futility, {plain.n_used.mean():.2f} without")
    assert low >= 0.45 and power >= plain_power - 0.01
    assert futile.n_used.mean() <= 8.5 < 9.5 <= plain.n_used.mean()


def test_the_config_default_is_simulated():
    """The design's defaults are conf/config.yaml's (seeds.*, verdict.*), and its futility is the one simulated here;
    the tests above state futility=0.0 where they measure the rule without it."""
    from omegaconf import OmegaConf

    from benchmark.config_path import CONF_DIR

    conf = OmegaConf.load(CONF_DIR / "config.yaml")
    assert conf.seeds.futility == FUTILITY == SequentialDesign().futility
    d = SequentialDesign()
    assert (d.min_seeds, d.max_seeds, d.step, d.shape) == (
        conf.seeds.min,
        conf.seeds.max,
        conf.seeds.step,
        conf.seeds.shape,
    )
    assert (d.alpha, d.margin) == (conf.verdict.alpha, conf.verdict.margin)


def test_a_futile_cell_asks_for_no_more_seeds():
    design = SequentialDesign(margin=0.01, futility=FUTILITY)
    cells = {"noise": [0.03, -0.04, 0.0, 0.05, -0.03], "clear": [0.05, 0.051, 0.049, 0.05, 0.052]}
    d = decide(cells, design)
    assert d["noise"].verdict == INCONCLUSIVE and d["noise"].n_wanted == d["noise"].n_observed == 5
    assert plan_next_round(cells, design)["noise"] == 5
    assert decide(cells, SequentialDesign(margin=0.01, futility=0.0))["noise"].verdict == OPEN
    with pytest.raises(ValueError, match=r"futility=1.5 \(need 0 <= futility < 1"):
        SequentialDesign(futility=1.5)


def test_one_look_is_the_fixed_rule_of_stats():
    rng = np.random.default_rng(3)
    design = SequentialDesign(min_seeds=6, max_seeds=6, margin=0.01, futility=0.0)
    for _ in range(30):
        cells = {f"c{i}": rng.normal(rng.choice([-0.03, 0.0, 0.03]), 0.01, 6) for i in range(5)}
        ours = decide(cells, design)
        theirs = adjust([paired_summary(d, ALPHA, 0.01, n_boot=10) for d in cells.values()])
        for (key, mine), s in zip(ours.items(), theirs, strict=True):
            assert mine.verdict == s.verdict, key
            assert mine.p_direction == pytest.approx(s.p_direction)
            assert mine.p_equivalence_adjusted == pytest.approx(s.p_equivalence_adjusted)
            assert (mine.low, mine.high) == pytest.approx((s.adj_low, s.adj_high))


def test_holm_batched_is_holm():
    p = np.random.default_rng(4).uniform(0, 0.1, (50, 7))
    assert holm_batched(p) == pytest.approx(np.array([holm(row) for row in p]))


def sweep(truth: dict[str, float], design: SequentialDesign, seed: int, metric: str = "test/acc"):
    """Run an adaptive sweep round by round through ``plan_next_round``; yields the decisions after each round."""
    rng = np.random.default_rng(seed)
    pool = {k: delta + 0.01 * rng.standard_normal(design.max_seeds) for k, delta in truth.items()}
    observed: dict[str, list[float]] = {k: [] for k in truth}
    while True:
        wanted = plan_next_round(observed, design, metric)
        if all(wanted[k] == len(observed[k]) for k in truth):
            return
        for k, n in wanted.items():
            observed[k] = list(pool[k][:n])
        yield decide(observed, design, metric)


def test_a_decided_cell_stays_decided():
    design = SequentialDesign(margin=0.01, futility=0.0)
    truth = {"clear": 0.05, "zero": 0.0, "edge": 0.02, "bad": -0.03, "noise": 0.01}
    changes = 0
    for seed in range(10):
        first: dict[str, tuple[str, int]] = {}
        for decisions in sweep(truth, design, seed):
            for k, d in decisions.items():
                if d.verdict not in (OPEN, INCONCLUSIVE):
                    assert first.setdefault(k, (d.verdict, d.n_used)) == (d.verdict, d.n_used)
                    assert d.n_wanted == d.n_observed  # no more seeds for it
                    changes += 1
    assert changes > 0
    # seeds that arrive later (another sweep, a fixed design) cannot reopen or flip a decision
    clear = [0.05, 0.051, 0.049, 0.05, 0.052]
    early = decide({"a": clear, "b": [0.0, 0.03, -0.02]}, design)
    assert early["a"].verdict == POSITIVE and early["b"].verdict == OPEN and early["b"].n_wanted == 4
    later = decide({"a": [*clear, -0.2, -0.3], "b": [0.0, 0.03, -0.02, 0.01]}, design)
    assert later["a"].verdict == POSITIVE and later["a"].n_used == early["a"].n_used and later["a"].n_observed == 7


def test_equivalent_only_when_the_whole_interval_lies_inside_the_margin():
    design = SequentialDesign(margin=0.01, futility=0.0)
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(40):
        cells = {i: rng.normal(rng.choice([-0.02, 0.0, 0.005, 0.02]), 0.008, rng.integers(3, 11)) for i in range(6)}
        for d in decide(cells, design).values():
            inside = d.low > -0.01 and d.high < 0.01
            seen.add(d.verdict)
            if d.verdict == EQUIVALENT:
                assert inside
            elif d.verdict == POSITIVE:
                assert d.low > 0.01
            elif d.verdict == NEGATIVE:
                assert d.high < -0.01
            else:  # the interval printed for an undecided cell says why it is not equivalent
                assert not inside and d.p_equivalence_adjusted >= design.alpha
    assert {EQUIVALENT, POSITIVE, NEGATIVE, OPEN} <= seen
    # tight deltas within the margin: equivalent; the same mean with a wide spread: still open
    assert decide({"x": [0.001, -0.001, 0.0, 0.001]}, design)["x"].verdict == EQUIVALENT
    assert decide({"x": [0.009, -0.009, 0.0, 0.001]}, design)["x"].verdict == OPEN


def test_direction_follows_the_metric():
    design = SequentialDesign(margin=0.01, futility=0.0)
    lower_loss = [-0.10, -0.12, -0.11, -0.105, -0.115]  # transfer − baseline of a loss: transfer is better
    assert decide({"c": lower_loss}, design, "test/loss")["c"].verdict == POSITIVE
    assert decide({"c": lower_loss}, design, "test/acc")["c"].verdict == NEGATIVE
    loss = decide({"c": lower_loss}, design, "test/loss")["c"]
    assert loss.low > 0.01, "the interval is oriented too: > 0 means transfer is better"
    with pytest.raises(ValueError, match="test/los"):
        decide({"c": lower_loss}, design, "test/los")


def test_plan_asks_for_the_next_look_and_counts_cells_without_seeds():
    design = SequentialDesign(min_seeds=3, max_seeds=9, step=2, margin=0.01, futility=0.0)
    assert design.looks == (3, 5, 7, 9)
    cells = {
        "new": [],
        "open": [0.0, 0.03, -0.02, 0.01],
        "done": [0.05, 0.051, 0.049, 0.05, 0.052],
        "full": [0.0, 0.05] * 4 + [0],
    }
    plan = plan_next_round(cells, design)
    assert plan == {"new": 3, "open": 5, "done": 5, "full": 9}
    assert decide(cells, design)["full"].verdict == INCONCLUSIVE
    # a cell without seeds still belongs to the family: its p = 1 counts in Holm's family size
    first = cells["done"][:3]
    lone = decide({"done": first}, design)["done"]
    assert lone.verdict == POSITIVE and lone.n_used == 3
    crowd = decide({"done": first, "x": [], "y": [], "z": []}, design)["done"]
    assert crowd.verdict == OPEN and crowd.p_direction_adjusted == pytest.approx(4 * lone.p_direction)


def test_the_critical_value_and_the_p_value_agree():
    design = SequentialDesign()
    for u in (0.001, 0.003125, 0.025, 0.2):
        c = design.critical(u)
        assert design.p_value(np.nextafter(c, np.inf)) <= u < design.p_value(c - 1e-9) + 1e-12
    one = SequentialDesign(min_seeds=4, max_seeds=4)
    assert one.p_value(one.critical(0.025)) == pytest.approx(0.025)


def test_bad_designs_name_the_value_and_the_rule():
    with pytest.raises(ValueError, match=r"min_seeds=1 \(need an integer >= 2"):
        SequentialDesign(min_seeds=1)
    with pytest.raises(ValueError, match=r"max_seeds=2 .*shape=0.7"):
        SequentialDesign(max_seeds=2, shape=0.7)
    with pytest.raises(ValueError, match="non-finite"):
        decide({"c": [0.1, math.nan, 0.2]}, SequentialDesign())


def test_the_report_says_which_cells_stopped_for_futility():
    import pandas as pd

    from benchmark.report.cells import sequential_verdicts
    from benchmark.report.summary import summary_markdown

    rows = [
        {"metric": "test/acc", "n": 5, "failed": 0, "diverged": 0, "deltas": [0.03, -0.04, 0.0, 0.05, -0.03]},
        {"metric": "test/acc", "n": 5, "failed": 0, "diverged": 0, "deltas": [0.05, 0.051, 0.049, 0.05, 0.052]},
    ]
    sequential_verdicts(rows, {"margin": 0.01, "futility": FUTILITY})
    assert [(r["verdict"], r["futile"], r["seeds_used"]) for r in rows] == [
        (INCONCLUSIVE, True, 3),  # the replay stopped it at the first look; later seeds do not reopen it
        (POSITIVE, False, rows[1]["seeds_used"]),
    ]
    text = summary_markdown("t", "|table|", pd.DataFrame(), "test/acc", 0.05, 0.01, cells=pd.DataFrame(rows))
    assert "1 cell was stopped for futility" in text
    sequential_verdicts(rows, {"margin": 0.01})  # a sweep recorded before the futility stop existed: none
    assert rows[0]["verdict"] == INCONCLUSIVE and not rows[0]["futile"] and rows[0]["seeds_used"] == 5
