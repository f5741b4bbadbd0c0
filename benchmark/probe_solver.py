"""Solved linear probes: multinomial logistic regression on frozen features, fit to convergence by L-BFGS, its L2
strength chosen on validation examples.

The field solves probes rather than sampling them with a few optimiser steps: CLIP (Radford et al. 2021, appendix
A.3), Kornblith et al. (CVPR 2019) and LP-FT (Kumar et al., ICLR 2022) fit L-BFGS logistic regression with the L2
strength swept on a validation split. A head trained by 30-60 AdamW steps from a random start measures how far those
steps got, not what the features can do.

For one strength ``C`` the probe minimises scikit-learn's objective (``LogisticRegression(C=C)``, multinomial, the
intercept not penalised)::

    J(W, b) = mean_i CE(W x_i + b, y_i) + ||W||^2 / (2 C n)

on the features standardised with the training examples' mean and standard deviation per dimension (a constant
dimension is only centred), so that one grid of ``C`` means the same on pooled CNN features, randomly initialised
features of scale 1e-2 and pixels, and L-BFGS is well conditioned on all of them; the solution is folded back into
a linear head on the raw features (``W / s``, ``b - W m / s``). Without standardisation (LP-FT) the features are
still centred: ``W (x - m) + b`` is the same head as ``W x + (b - W m)`` and the penalty does not see ``b``, so the
minimum is the raw features' own, reached in far fewer iterations (test_vit's features, 50 examples: the strengths
from C = 1 stopped at ``max_iter`` uncentred and converge in 150-1000 iterations centred). ``J`` is strictly convex
in ``W`` (and convex in ``b``): L-BFGS with a strong-Wolfe line search, in float64, reaches its minimum to the
gradient tolerance (1e-6 on the largest entry of the mean-loss gradient, 100 times stricter than scikit-learn's
default), and ``tests/test_probe_solver.py`` checks the solution against scikit-learn's on the same features
(accuracy within 0.005, objective within 1e-4 relative or 2e-5 absolute). Strengths are fit from the strongest
(smallest ``C``) to the weakest, each warm-started from the previous solution (the regularisation path), on the
training examples only, until ``patience`` strengths in a row fail to beat the best so far on validation; the chosen
strength is the one with the highest validation accuracy, ties broken by the lower validation cross-entropy. The
chosen solution is already the fit on the training examples (no refit on train + validation: the pair's baseline
trains on the training examples alone, and so does the probe).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

STRENGTHS = tuple(10.0**k for k in range(-3, 7))
"""The default grid of ``C`` (inverse L2 strength): 1e-3 .. 1e6, one per decade (CLIP sweeps 1e-6 .. 1e6 of its λ;
on pooled CNN features the optimum lies well inside this range, and the report shows a choice at its edge)."""


@dataclass(frozen=True)
class ProbeSolver:
    """How a probe is fit: ``head`` = ``solved`` (this module) or ``sgd`` (a head trained by the run's optimiser
    and budget, as every probe was before; kept for comparison, with its own run key). ``strengths`` is the grid of
    ``C``; ``max_iter`` the L-BFGS iterations allowed per strength; ``tol`` the largest gradient entry at which a
    fit counts as converged; ``patience`` how many strengths past the best so far (by validation accuracy, then
    loss) are fit before the path stops (on separable features the weakest strengths cost most iterations and
    validation loss only rises there); ``standardize`` whether the features are standardised first (the default:
    one grid of ``C`` fits every feature scale) or solved as they are (LP-FT: a head folded back from standardised
    features carries weights of 1/std, up to 1e3 on low-variance dimensions, which fine-tuning with BatchNorm in
    training mode turns into exploding logits)."""

    head: str = "solved"
    strengths: tuple[float, ...] = STRENGTHS
    max_iter: int = 5000
    tol: float = 1e-6
    patience: int = 2  # strengths past the best (by validation) fit before the path stops; the weak end costs most
    standardize: bool = True  # solve on standardised features (folded back into the head); false: the raw features

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"probe head={self.head!r}; choose one of: {', '.join(HEADS)}")
        if not self.strengths or any(not (c > 0 and math.isfinite(c)) for c in self.strengths):
            raise ValueError(f"probe strengths={list(self.strengths)}: give one or more finite C > 0")
        object.__setattr__(self, "strengths", tuple(sorted(float(c) for c in self.strengths)))

    @classmethod
    def from_config(cls, settings: dict | None) -> ProbeSolver:
        """The solver of a strategy's ``probe:`` block (YAML lists become the strengths tuple); an unknown key is a
        ValueError naming the valid ones."""
        settings = dict(settings or {})
        known = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"probe: unknown key(s) {unknown}; valid keys: {known}")
        if "strengths" in settings:
            settings["strengths"] = tuple(float(c) for c in settings["strengths"])
        return cls(**settings)

    @property
    def solved(self) -> bool:
        return self.head == "solved"


HEADS = ("solved", "sgd")


def solved_probe(strategy: object) -> ProbeSolver | None:
    """The strategy's solver when it solves its probe (a ``probe`` setting with ``head: solved``), else None."""
    solver = getattr(strategy, "probe", None)
    return solver if isinstance(solver, ProbeSolver) and solver.solved else None


RESTARTS = 5
"""L-BFGS runs restarted from where a stalled one stopped, before a fit is reported unconverged."""


@dataclass
class Fit:
    """One strength's solution: weights ``(classes, dim)``, bias, objective, iterations and convergence."""

    C: float
    weight: torch.Tensor
    bias: torch.Tensor
    objective: float
    grad_max: float
    iterations: int
    converged: bool
    val_acc: float = math.nan
    val_loss: float = math.nan


@dataclass
class ProbeResult:
    """The chosen fit and the path of every strength (the trace a run logs)."""

    chosen: Fit
    path: list[Fit] = field(default_factory=list)

    def trace(self) -> list[dict[str, float]]:
        return [
            {"C": f.C, "val_acc": f.val_acc, "val_loss": f.val_loss, "objective": f.objective,
             "iterations": f.iterations, "converged": float(f.converged)}
            for f in self.path
        ]  # fmt: skip

    def metrics(self) -> dict[str, float]:
        """What a run logs about its probe: the chosen ``C``, its convergence, iterations and objective; whether the
        choice lies at the edge of the grid (``probe/C_at_edge``)."""
        c = self.chosen
        grid = [f.C for f in self.path]
        return {
            "probe/C": c.C,
            "probe/converged": float(all(f.converged for f in self.path)),
            "probe/iterations": float(sum(f.iterations for f in self.path)),
            "probe/objective": c.objective,
            "probe/grad_max": c.grad_max,
            "probe/C_at_edge": float(len(grid) > 1 and c.C in (grid[0], grid[-1])),
        }


def save(result: ProbeResult, path) -> None:
    """Write a solved probe (every fit of its path and the chosen one) for ``load``."""
    chosen = next(i for i, f in enumerate(result.path) if f is result.chosen)
    torch.save({"path": [asdict(f) for f in result.path], "chosen": chosen}, path)


def load(path) -> ProbeResult:
    data = torch.load(path, map_location="cpu", weights_only=True)
    path_ = [Fit(**f) for f in data["path"]]
    return ProbeResult(path_[data["chosen"]], path_)


def objective(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, C: float) -> torch.Tensor:
    """scikit-learn's multinomial L2 objective at strength ``C``: mean cross-entropy + ||W||² / (2 C n)."""
    return F.cross_entropy(x @ weight.T + bias, y) + (weight * weight).sum() / (2.0 * C * len(y))


def fit_one(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float, start: tuple[torch.Tensor, torch.Tensor]
            | None = None, max_iter: int = 5000, tol: float = 1e-6) -> Fit:  # fmt: skip
    """Minimise ``objective`` at ``C`` by L-BFGS (strong Wolfe) in float64 from ``start`` (zeros when None)."""
    x, y = x.double(), y.long()
    w = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, device=x.device) if start is None else start[0]
    b = torch.zeros(num_classes, dtype=torch.float64, device=x.device) if start is None else start[1]
    w, b = w.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-15,
                            history_size=20, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective(w, b, x, y, C)
        loss.backward()
        return loss

    iterations, grad_max = 0, math.inf
    for _ in range(RESTARTS):  # a stalled line search (a change below float64's resolution) restarts its memory
        opt.step(closure)
        iterations += int(opt.state[opt._params[0]].get("n_iter", 0))
        loss = closure()
        grad_max = float(max(w.grad.abs().max(), b.grad.abs().max()))
        if grad_max <= 10 * tol or iterations >= max_iter:
            break
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter - iterations, tolerance_grad=tol,
                                tolerance_change=1e-15, history_size=20, line_search_fn="strong_wolfe")  # fmt: skip
    return Fit(C, w.detach(), b.detach(), float(loss.detach()), grad_max, iterations, grad_max <= 10 * tol)


@torch.no_grad()
def score(fit: Fit, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``fit`` on ``(x, y)``."""
    logits = x.double() @ fit.weight.T + fit.bias
    return float((logits.argmax(1) == y).double().mean()), float(F.cross_entropy(logits, y.long()))


def solve(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, num_classes: int,
          solver: ProbeSolver = ProbeSolver(), device: str | torch.device = "cpu") -> ProbeResult:  # fmt: skip
    """Fit every strength of ``solver.strengths`` on the standardised training features (the regularisation path,
    strongest first, warm-started) and choose the one with the best validation accuracy (then the lower validation
    loss, then the stronger regularisation). Runs on ``device``; the returned weights act on the raw features, on
    the CPU; each fit's ``objective`` is ``J`` on the standardised features."""
    if len(y_train) == 0:
        raise ValueError("the probe's training set is empty")
    mean, std = standardization(x_train.to(device))
    if not solver.standardize:  # the raw features' minimum (centring moves only the bias): weights stay the size
        std = torch.ones_like(std)  # the L2 penalty allows on the raw features
    x_train, y_train = (x_train.to(device).double() - mean) / std, y_train.to(device)
    x_val, y_val = (x_val.to(device).double() - mean) / std, y_val.to(device)
    path: list[Fit] = []
    start = None

    def rank(i: int) -> tuple[float, float, int]:
        return -_or(path[i].val_acc, -1.0), _or(path[i].val_loss, 0.0), i

    for C in solver.strengths:
        fit = fit_one(x_train, y_train, num_classes, C, start, solver.max_iter, solver.tol)
        fit.val_acc, fit.val_loss = score(fit, x_val, y_val) if len(y_val) else (math.nan, math.nan)
        start = (fit.weight, fit.bias)
        path.append(fit)
        best = min(range(len(path)), key=rank)
        if len(path) - 1 - best >= solver.patience:  # weaker strengths stopped helping on validation: stop the path
            break
    ranked = sorted(range(len(path)), key=rank)
    for f in path:  # the head on the raw features: W z + b with z = (x - m) / s
        w = f.weight / std
        f.weight, f.bias = w.cpu(), (f.bias - w @ mean).cpu()
    return ProbeResult(path[ranked[0]], path)


def standardization(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` per dimension of ``x`` in float64; a constant dimension gets std 1 (it is only centred)."""
    x = x.double()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))


def _or(value: float, default: float) -> float:
    return default if math.isnan(value) else value
