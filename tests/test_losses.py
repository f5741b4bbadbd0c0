"""Transfer losses and feature probes checked against naive computations, invariances, orderings and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

from benchmark.losses import (
    DomainDiscriminator,
    coral_loss,
    dann_lambda,
    dann_loss,
    grad_reverse,
    mk_mmd_loss,
    nt_xent_loss,
    simclr_augment,
)
from benchmark.probes import cluster_scores, knn_anomaly_auroc


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------- #
# DANN


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_grad_reverse_is_identity_forward_and_negates_gradient(lam: float) -> None:
    x = _randn(4, 3).requires_grad_(True)
    y = grad_reverse(x, lam)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, -lam))


def test_grad_reverse_rejects_bad_lambda() -> None:
    with pytest.raises(ValueError, match=r"lambda_ must be >= 0.*-1\.0"):
        grad_reverse(torch.ones(2), -1.0)
    with pytest.raises(ValueError, match=r"lambda_ must be a finite number.*nan"):
        grad_reverse(torch.ones(2), float("nan"))


def test_dann_lambda_schedule() -> None:
    assert dann_lambda(0.0) == 0.0
    ps = np.linspace(0.0, 1.0, 101)
    values = [dann_lambda(float(p)) for p in ps]
    assert all(b > a for a, b in itertools.pairwise(values))
    assert 0.9999 < dann_lambda(1.0) < 1.0
    for p in (0.1, 0.5, 0.9):  # the paper's formula
        assert dann_lambda(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0, rel=1e-12)
    assert dann_lambda(0.5, gamma=1.0) < dann_lambda(0.5)
    with pytest.raises(ValueError, match=r"progress must lie in \[0, 1\], got 1\.5"):
        dann_lambda(1.5)
    with pytest.raises(ValueError, match=r"gamma must be > 0, got 0"):
        dann_lambda(0.5, gamma=0)


def test_dann_loss_reverses_feature_gradients_only() -> None:
    torch.manual_seed(0)
    disc = DomainDiscriminator(8, hidden=16)
    src, tgt = _randn(6, 8, seed=1), _randn(5, 8, seed=2) + 1.0
    lam = 0.7

    def grads(reversed_: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        disc.zero_grad()
        s, t = src.clone().requires_grad_(True), tgt.clone().requires_grad_(True)
        if reversed_:
            loss = dann_loss(disc, s, t, lam)
        else:
            logits = disc(torch.cat([s, t]))
            labels = torch.cat([torch.ones(6), torch.zeros(5)])
            loss = F.binary_cross_entropy_with_logits(logits, labels)
        loss.backward()
        return loss.detach(), s.grad, t.grad, [p.grad.clone() for p in disc.parameters()]

    loss_r, gs_r, gt_r, gp_r = grads(True)
    loss_p, gs_p, gt_p, gp_p = grads(False)
    torch.testing.assert_close(loss_r, loss_p)
    torch.testing.assert_close(gs_r, -lam * gs_p)
    torch.testing.assert_close(gt_r, -lam * gt_p)
    assert gs_p.abs().sum() > 0
    for a, b in zip(gp_r, gp_p, strict=True):
        torch.testing.assert_close(a, b)


def test_domain_discriminator_shapes_and_errors() -> None:
    disc = DomainDiscriminator(32, dropout=0.1)
    assert disc(_randn(7, 32)).shape == (7,)
    with pytest.raises(ValueError, match=r"hidden must be a positive int, got 0"):
        DomainDiscriminator(32, hidden=0)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1\.0"):
        DomainDiscriminator(32, dropout=1.0)
    with pytest.raises(ValueError, match=r"one logit per row \(4\).*\(4, 2\)"):
        dann_loss(torch.nn.Linear(3, 2), _randn(2, 3), _randn(2, 3))
    with pytest.raises(ValueError, match=r"same feature dimension.*\(2, 3\).*\(2, 4\)"):
        dann_loss(DomainDiscriminator(3), _randn(2, 3), _randn(2, 4))


# ---------------------------------------------------------------------------------------------------------------- #
# CORAL


def _coral_numpy(s: np.ndarray, t: np.ndarray) -> float:
    d = s.shape[1]
    return float(np.sum((np.cov(s, rowvar=False) - np.cov(t, rowvar=False)) ** 2) / (4 * d * d))


def test_coral_zero_for_identical_and_shifted_batches() -> None:
    x = _randn(32, 16, dtype=torch.float64)
    assert coral_loss(x, x).item() == 0.0
    assert coral_loss(x, x + 3.0).item() < 1e-20


def test_coral_positive_for_scaled_and_rotated_batches_and_matches_numpy() -> None:
    x = _randn(40, 6, seed=3, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    q, _ = torch.linalg.qr(_randn(6, 6, seed=4, dtype=torch.float64))
    y = _randn(30, 6, seed=5, dtype=torch.float64)
    assert coral_loss(x, 2.0 * x).item() > 0.1
    assert coral_loss(x, x @ q).item() > 0.01
    for a, b in ((x, 2.0 * x), (x, x @ q), (x, y)):
        assert coral_loss(a, b).item() == pytest.approx(_coral_numpy(a.numpy(), b.numpy()), rel=1e-10)


def test_coral_backprop_and_errors() -> None:
    s, t = _randn(8, 4).requires_grad_(True), _randn(9, 4, seed=1).requires_grad_(True)
    coral_loss(s, t).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0 and t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"coral_loss: the second input needs at least 2 row\(s\).*\(1, 4\)"):
        coral_loss(_randn(8, 4), _randn(1, 4))
    with pytest.raises(ValueError, match=r"2-D float.*\(8,\)"):
        coral_loss(_randn(8), _randn(8))


# ---------------------------------------------------------------------------------------------------------------- #
# MK-MMD


def _mk_mmd_naive(x: np.ndarray, y: np.ndarray, mults: tuple[float, ...]) -> float:
    z = np.concatenate([x, y])
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    base = d2.sum() / (len(z) * (len(z) - 1))
    k = np.mean([np.exp(-d2 / (base * m)) for m in mults], axis=0)
    n = len(x)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())


@pytest.mark.parametrize("estimator", ["biased", "linear"])
def test_mk_mmd_zero_for_identical_batches(estimator: str) -> None:
    x = _randn(64, 128)
    assert abs(mk_mmd_loss(x, x, estimator=estimator).item()) < 1e-6
    assert mk_mmd_loss(torch.ones(4, 3), torch.ones(4, 3), estimator=estimator).item() == 0.0


@pytest.mark.parametrize("estimator", ["biased", "linear"])
def test_mk_mmd_grows_with_mean_shift(estimator: str) -> None:
    x, y = _randn(128, 32, seed=1), _randn(128, 32, seed=2)
    values = [mk_mmd_loss(x, y + shift, estimator=estimator).item() for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values[1] > 0.01
    assert all(b > a for a, b in itertools.pairwise(values))


def test_mk_mmd_matches_naive_and_backprops() -> None:
    x, y = _randn(10, 5, seed=1, dtype=torch.float64), _randn(7, 5, seed=2, dtype=torch.float64) + 0.5
    mults = (0.5, 1.0, 3.0)
    expected = _mk_mmd_naive(x.numpy(), y.numpy(), mults)
    assert mk_mmd_loss(x, y, kernel_mults=mults).item() == pytest.approx(expected, rel=1e-10)
    for estimator in ("biased", "linear"):
        s, t = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        mk_mmd_loss(s, t, estimator=estimator).backward()
        assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0 and t.grad.abs().sum() > 0


def test_mk_mmd_errors() -> None:
    x = _randn(4, 3)
    with pytest.raises(ValueError, match=r"unknown estimator 'quadratic'.*biased"):
        mk_mmd_loss(x, x, estimator="quadratic")
    with pytest.raises(ValueError, match=r"kernel_mults must be non-empty, positive and finite, got \(1.0, -2.0\)"):
        mk_mmd_loss(x, x, kernel_mults=(1.0, -2.0))
    with pytest.raises(ValueError, match=r"same feature dimension"):
        mk_mmd_loss(x, _randn(4, 2))


# ---------------------------------------------------------------------------------------------------------------- #
# NT-Xent


def _nt_xent_naive(z1: np.ndarray, z2: np.ndarray, t: float) -> float:
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / denom)
    return total / n2


def test_nt_xent_matches_naive_loop() -> None:
    z1, z2 = _randn(3, 4, seed=1, dtype=torch.float64), _randn(3, 4, seed=2, dtype=torch.float64)
    for t in (0.1, 0.5, 1.0):
        assert nt_xent_loss(z1, z2, t).item() == pytest.approx(_nt_xent_naive(z1.numpy(), z2.numpy(), t), rel=1e-10)


def test_nt_xent_prefers_matching_pairs_and_has_finite_gradients() -> None:
    z = _randn(16, 8)
    assert nt_xent_loss(z, z).item() < nt_xent_loss(z, _randn(16, 8, seed=1)).item()
    z1, z2 = _randn(16, 8, seed=2).requires_grad_(True), _randn(16, 8, seed=3).requires_grad_(True)
    nt_xent_loss(z1, z2, 0.1).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all() and z1.grad.abs().sum() > 0
    assert nt_xent_loss(_randn(1, 4), _randn(1, 4, seed=1)).item() == 0.0  # no negatives


def test_nt_xent_errors() -> None:
    with pytest.raises(ValueError, match=r"temperature must be > 0, got 0"):
        nt_xent_loss(_randn(2, 3), _randn(2, 3), 0)
    with pytest.raises(ValueError, match=r"same number of pairs"):
        nt_xent_loss(_randn(2, 3), _randn(3, 3))


# ---------------------------------------------------------------------------------------------------------------- #
# augmentation


def test_simclr_augment_shape_determinism_and_variety() -> None:
    x = _randn(16, 3, 32, 32)
    a = simclr_augment(x, torch.Generator().manual_seed(0))
    b = simclr_augment(x, torch.Generator().manual_seed(0))
    c = simclr_augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, x, atol=0.1)
    assert torch.isfinite(a).all()
    assert simclr_augment(x.double(), torch.Generator().manual_seed(0)).dtype == torch.float64


def test_simclr_augment_without_randomness_is_identity_and_flip_mirrors() -> None:
    x = _randn(4, 1, 8, 8)
    plain = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "brightness": 0.0, "contrast": 0.0, "noise_std": 0.0}
    torch.testing.assert_close(simclr_augment(x, torch.Generator().manual_seed(0), **plain), x)
    flipped = simclr_augment(x, torch.Generator().manual_seed(0), hflip=True, **plain)
    for img, out in zip(x, flipped, strict=True):  # each image is either unchanged or mirrored, and both occur
        assert torch.allclose(out, img) or torch.allclose(out, img.flip(-1))
    assert any(not torch.allclose(out, img) for img, out in zip(x, flipped, strict=True))


def test_simclr_augment_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(3, 8, 8\)"):
        simclr_augment(_randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"scale must satisfy.*\(0.0, 1.0\)"):
        simclr_augment(_randn(2, 1, 8, 8), scale=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"noise_std must be >= 0, got -0.1"):
        simclr_augment(_randn(2, 1, 8, 8), noise_std=-0.1)


# ---------------------------------------------------------------------------------------------------------------- #
# clustering and anomaly probes


def _blobs(n_per: int, centres: np.ndarray, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + spread * rng.normal(size=(n_per, centres.shape[1])) for c in centres])
    return x, np.repeat(np.arange(len(centres)), n_per)


def test_cluster_scores_agree_with_sklearn_on_the_same_assignment() -> None:
    x, y = _blobs(40, np.random.default_rng(0).normal(size=(4, 6)), 0.8, seed=1)
    scores = cluster_scores(x, y, seed=3)
    assignment = KMeans(n_clusters=4, n_init=10, random_state=3).fit_predict(StandardScaler().fit_transform(x))
    assert scores == {
        "nmi": pytest.approx(normalized_mutual_info_score(y, assignment), abs=1e-12),
        "ari": pytest.approx(adjusted_rand_score(y, assignment), abs=1e-12),
    }
    assert cluster_scores(x, y, seed=3) == scores


def test_cluster_scores_extremes() -> None:
    x, y = _blobs(30, 20.0 * np.eye(3, 8), 1.0, seed=0)
    sep = cluster_scores(x, y)
    assert sep["nmi"] > 0.99 and sep["ari"] > 0.99
    assert cluster_scores(x, y, l2_normalize=True)["ari"] > 0.99
    noise = cluster_scores(np.random.default_rng(1).normal(size=(200, 8)), np.random.default_rng(2).integers(0, 3, 200))
    assert noise["nmi"] < 0.05 and abs(noise["ari"]) < 0.05


def test_cluster_scores_errors() -> None:
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"labels must be 1-D.*\(5\).*\(4,\)"):
        cluster_scores(x, np.zeros(4))
    with pytest.raises(ValueError, match=r"n_clusters must be an int in \[2, n_samples = 5\], got 1 \(the number"):
        cluster_scores(x, np.zeros(5))
    with pytest.raises(ValueError, match=r"features contains 1 non-finite"):
        cluster_scores(np.array([[0.0, np.nan], [1.0, 1.0]]), np.array([0, 1]))


def test_knn_auroc_separated_and_identical_distributions() -> None:
    rng = np.random.default_rng(0)
    d = 16
    normal_centre, anomaly_centre = 5.0 * np.eye(d)[0], 5.0 * np.eye(d)[1]
    train = normal_centre + rng.normal(size=(200, d))
    test = np.concatenate([normal_centre + rng.normal(size=(100, d)), anomaly_centre + rng.normal(size=(100, d))])
    is_anomaly = np.repeat([False, True], 100)
    assert knn_anomaly_auroc(train, test, is_anomaly) > 0.99
    assert knn_anomaly_auroc(train, test, is_anomaly.astype(int), k=1, normalize=False) > 0.99
    same = normal_centre + rng.normal(size=(400, d))
    chance = knn_anomaly_auroc(train, same, np.repeat([False, True], 200))
    assert abs(chance - 0.5) < 0.1


def test_knn_auroc_errors() -> None:
    train, test = np.zeros((10, 3)), np.ones((4, 3))
    with pytest.raises(ValueError, match=r"both normal and anomalous.*all normal \(4 rows\)"):
        knn_anomaly_auroc(train, test, np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match=r"all anomalous"):
        knn_anomaly_auroc(train, test, np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, len\(train_normal\) = 10\], got 11"):
        knn_anomaly_auroc(train, test, np.array([0, 1, 0, 1]), k=11)
    with pytest.raises(ValueError, match=r"boolean or 0/1"):
        knn_anomaly_auroc(train, test, np.array([0, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"same feature dimension"):
        knn_anomaly_auroc(train, np.ones((4, 2)), np.array([0, 1, 0, 1]))
