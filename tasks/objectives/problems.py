"""The problems, one class each: f, the minimiser x* (or set), f*, and mu, L where they are defined.

Every problem computes in float64 on the task's device. `value(xs)` is the whole deterministic
objective (regulariser included); `loss(xs, step, rows)` is what one step sees: the objective on
a minibatch of rows (data problems), the round's loss (Reddi's online problem), else the value.
`constants` are the numbers a step size or a claim may be written in (`mu`, `L`, `kappa`, ...).

- Quadratic: 1/2 x^T A x with A = Q diag(lambda) Q^T, lambda in [L/kappa, L] (L = 1) spread
  `linear` or `geometric`ally, or only at the two `extremes`; `zeros` eigenvalues 0 (merely
  convex: the minimiser set is A's null space). f* = 0 exactly. Start x0 ~ N(0, I), or `equal`:
  a unit component along every eigenvector (the O(1/t) worst case of GD needs that even spread).
- LeastSquares / Logistic: scikit-learn's diabetes / breast-cancer data, standardised; x*, f*
  by a Newton solve to gradient ~1e-14 (solve.py, cached); mu, L from the Hessian at x*.
- Rosenbrock: sum b (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 (divided by its L at x* unless told not),
  minimiser (1, ..., 1), f* = 0.
- Reddi: the online problem of Reddi, Kale & Kumar 2018 (Theorem 1): f_t(x) = C x when t = 1 mod 3,
  else -x, on [-1, 1]; the average objective (C - 2) x / 3 has x* = -1.
- Factorisation: 1/2 |U V^T - M|_F^2 with M = U0 V0^T planted of rank `rank`; f* = 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from tasks.objectives.solve import cached, digest, newton

SPECTRA, STARTS = ("linear", "geometric", "extremes"), ("random", "equal")
F64 = torch.float64


def _tensor(a: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)


def _conditioning(eigs: np.ndarray) -> dict[str, float]:
    mu, big_l = float(eigs.min()), float(eigs.max())
    return {"mu": mu, "L": big_l, **({"kappa": big_l / mu} if mu > 0 else {})}


class Problem:
    """What every problem has; subclasses set shapes, f_star, constants and define value()."""

    CONSTANTS: tuple[str, ...] = ()  # the names it defines, for checking step-size expressions early
    n_samples: int | None = None     # rows a minibatch is drawn from (data problems)
    online = False                   # the step's loss changes with the step: regret is recorded
    ROWS = False                     # it has data rows, so `task.batch_size` may draw minibatches
    LINEAR = False                   # every loss is linear: no second derivatives (AdaHessian) to take

    def __init__(self, device: torch.device):
        self.device = device
        self.shapes: list[tuple[int, ...]] = []
        self.f_star = 0.0
        self.constants: dict[str, float] = {}

    @staticmethod
    def check(node: Mapping) -> list[str]:
        """Problems with the problem's config node that its rules cannot say (task.check calls it)."""
        return []

    def start(self) -> list[Tensor]:
        return [torch.randn(s, dtype=F64, device=self.device) for s in self.shapes]

    def value(self, xs: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def loss(self, xs: list[Tensor], step: int, rows: Tensor | None = None) -> Tensor:
        return self.value(xs)

    def subopt(self, xs: list[Tensor]) -> Tensor:
        return self.value(xs) - self.f_star

    def distance(self, xs: list[Tensor]) -> Tensor | None:
        return None

    def project(self, xs: list[Tensor]) -> None:
        """Back onto the feasible set after a step (unconstrained: nothing)."""


class Quadratic(Problem):
    CONSTANTS = ("mu", "L", "kappa", "dim")

    def __init__(self, device: torch.device, dim: int = 20, kappa: float = 10.0, spectrum: str = "linear",
                 zeros: int = 0, rotate: bool = True, seed: int = 0, start: str = "random"):
        super().__init__(device)
        self.start_kind = start
        k = dim - zeros  # the nonzero eigenvalues, from 1/kappa up to L = 1
        if spectrum == "linear":
            lam = np.linspace(1 / kappa, 1.0, k)
        elif spectrum == "geometric":
            lam = np.geomspace(1 / kappa, 1.0, k)
        else:  # extremes: half at each end; the slowest and fastest modes only
            lam = np.where(np.arange(k) < k // 2, 1 / kappa, 1.0)
        eigs = np.concatenate([np.zeros(zeros), np.sort(lam)])
        q = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))[0] if rotate else np.eye(dim)
        self.eigs, self.q = _tensor(eigs, device), _tensor(q, device)
        self.a = _tensor((q * eigs) @ q.T, device)
        self.null = self.q[:, :zeros]  # the minimiser set: A's null space
        self.shapes = [(dim,)]
        self.constants = {**_conditioning(eigs[zeros:]), "dim": float(dim)}
        if zeros:  # merely convex: mu is 0; the nonzero eigenvalues' smallest is kept apart
            self.constants = {"mu": 0.0, "L": 1.0, "mu_nonzero": 1 / kappa, "dim": float(dim)}

    @staticmethod
    def check(node: Mapping) -> list[str]:
        found = [f"problem.{key}={node[key]!r}: allowed: {', '.join(allowed)}"
                 for key, allowed in (("spectrum", SPECTRA), ("start", STARTS)) if node[key] not in allowed]
        if node.zeros >= node.dim:
            found.append(f"problem.zeros={node.zeros}: must be below problem.dim={node.dim} (some eigenvalue is L = 1)")
        return found

    def start(self) -> list[Tensor]:
        if self.start_kind == "equal":  # one unit along every eigenvector: no mode weighted by chance
            return [self.q.sum(1)]
        return super().start()

    def value(self, xs: list[Tensor]) -> Tensor:
        y = self.q.T @ xs[0]  # in A's eigenbasis: exact 0 at x* = 0, no cancellation in x^T A x
        return 0.5 * (self.eigs * y * y).sum()

    def distance(self, xs: list[Tensor]) -> Tensor:
        x = xs[0]
        return torch.linalg.vector_norm(x - self.null @ (self.null.T @ x))


class _Data(Problem):
    """A problem on the rows of a standardised scikit-learn data set, solved once in float64."""

    CONSTANTS = ("mu", "L", "kappa", "dim", "n", "reg")
    ROWS = True

    def __init__(self, device: torch.device, features: np.ndarray, target: np.ndarray, reg: float, cache: str,
                 intercept: bool = False):
        super().__init__(device)
        a = (features - features.mean(0)) / features.std(0)
        if intercept:
            a = np.hstack([a, np.ones((len(a), 1))])
        self.a_np, self.b_np, self.reg = a, target, reg
        self.a, self.b = _tensor(a, device), _tensor(target, device)
        self.n_samples, dim = a.shape
        self.shapes = [(dim,)]
        key = {"problem": type(self).__name__, "reg": reg, "data": digest(a, target)}
        sol = cached(cache, key, self._solve)
        self.x_star = _tensor(sol["x"], device)
        self.f_star = float(self.value([self.x_star]))  # f(x*) as the task computes f: subopt(x*) = 0 exactly
        self.constants = {**_conditioning(sol["eigs"]), "dim": float(dim), "n": float(self.n_samples),
                          "reg": reg, "solve_grad_norm": float(sol["grad_norm"])}

    def grad_hess(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _solve(self) -> dict[str, np.ndarray]:
        x = newton(self.grad_hess, np.zeros(self.a_np.shape[1]))
        g, h = self.grad_hess(x)
        return {"x": x, "eigs": np.linalg.eigvalsh(h),
                "grad_norm": np.array(np.linalg.norm(g))}

    def value(self, xs: list[Tensor]) -> Tensor:
        return self.loss(xs, 0, None)

    def distance(self, xs: list[Tensor]) -> Tensor:
        return torch.linalg.vector_norm(xs[0] - self.x_star)


class LeastSquares(_Data):
    """1/(2n) |A x - b|^2 + reg/2 |x|^2 on load_diabetes (442 x 10; b standardised too)."""

    def __init__(self, device: torch.device, reg: float = 0.0, cache: str = "~/.cache/runner/objectives"):
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        super().__init__(device, x, (y - y.mean()) / y.std(), reg, cache)
        d = self.a.shape[1]
        self.h = self.a.T @ self.a / self.n_samples + reg * torch.eye(d, dtype=F64, device=device)

    def subopt(self, xs: list[Tensor]) -> Tensor:
        e = xs[0] - self.x_star  # f is quadratic: f - f* = e^T H e / 2 exactly, free of f*'s rounding
        return 0.5 * e @ (self.h @ e)

    def grad_hess(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, d = self.a_np.shape
        h = self.a_np.T @ self.a_np / n + self.reg * np.eye(d)
        return self.a_np.T @ (self.a_np @ x - self.b_np) / n + self.reg * x, h

    def loss(self, xs: list[Tensor], step: int, rows: Tensor | None = None) -> Tensor:
        a, b = (self.a, self.b) if rows is None else (self.a[rows], self.b[rows])
        r = a @ xs[0] - b
        return 0.5 * (r @ r) / len(r) + self.reg / 2 * (xs[0] @ xs[0])


class Logistic(_Data):
    """mean log(1 + exp(-y a.x)) + reg/2 |x|^2 on load_breast_cancer (569 x 30, y = +-1, plus an
    intercept column; the regulariser covers every coordinate, so mu >= reg)."""

    def __init__(self, device: torch.device, reg: float = 1e-2, cache: str = "~/.cache/runner/objectives"):
        from sklearn.datasets import load_breast_cancer

        x, y = load_breast_cancer(return_X_y=True)
        super().__init__(device, x, 2.0 * y - 1, reg, cache, intercept=True)

    def grad_hess(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.b_np * (self.a_np @ x)
        s = 0.5 * (1 - np.tanh(m / 2))  # sigmoid(-m), without overflow
        n, d = self.a_np.shape
        g = -self.a_np.T @ (self.b_np * s) / n + self.reg * x
        return g, (self.a_np.T * (s * (1 - s))) @ self.a_np / n + self.reg * np.eye(d)

    def loss(self, xs: list[Tensor], step: int, rows: Tensor | None = None) -> Tensor:
        a, b = (self.a, self.b) if rows is None else (self.a[rows], self.b[rows])
        return torch.nn.functional.softplus(-b * (a @ xs[0])).mean() + self.reg / 2 * (xs[0] @ xs[0])


class Rosenbrock(Problem):
    """Non-convex, with the unique minimiser (1, ..., 1) (a = 1); mu, L are the Hessian's extremes
    at x* (local). `normalise` divides f by that L (~1,000 at b = 100), so that L = 1 at x* as for
    the quadratic and an lr of order 1 is the natural scale (GD at lr on f/L is GD at lr/L on f)."""

    CONSTANTS = ("mu", "L", "kappa", "dim", "b", "scale")

    def __init__(self, device: torch.device, dim: int = 2, b: float = 100.0, normalise: bool = True):
        super().__init__(device)
        self.b, self.shapes = b, [(dim,)]
        self.x_star = torch.ones(dim, dtype=F64, device=device)
        h = np.zeros((dim, dim))  # the Hessian at x* = 1: 2 b v v^T per term, v = (-2, 1) on (i, i+1), plus 2 e_i e_i^T
        for i in range(dim - 1):
            v = np.zeros(dim)
            v[i], v[i + 1] = -2.0, 1.0
            h += 2 * b * np.outer(v, v)
            h[i, i] += 2.0
        eigs = np.linalg.eigvalsh(h)
        self.scale = 1 / float(eigs[-1]) if normalise else 1.0
        self.constants = {**_conditioning(eigs * self.scale), "dim": float(dim), "b": b, "scale": self.scale}

    def start(self) -> list[Tensor]:
        x = torch.ones(self.shapes[0], dtype=F64, device=self.device)  # the classic start (-1.2, 1, -1.2, ...)
        x[::2] = -1.2
        return [x]

    def value(self, xs: list[Tensor]) -> Tensor:
        x = xs[0]
        return self.scale * (self.b * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    def distance(self, xs: list[Tensor]) -> Tensor:
        return torch.linalg.vector_norm(xs[0] - self.x_star)


class Reddi(Problem):
    """f_t(x) = C x for t = 1 mod 3, else -x, x in [-1, 1] (projected after every step). With
    beta1 = 0 and beta2 = 1/(1 + C^2) Adam goes to x = +1, where the average regret stays at
    2(C - 2)/3; AMSGrad goes to x* = -1."""

    CONSTANTS = ("C",)
    online, LINEAR = True, True

    def __init__(self, device: torch.device, C: float = 3.0, x0: float = 0.0):
        super().__init__(device)
        self.c, self.x0, self.shapes = C, x0, [(1,)]
        self.f_star = -(C - 2) / 3
        self.x_star = torch.full((1,), -1.0, dtype=F64, device=device)
        self.constants = {"C": C}

    def start(self) -> list[Tensor]:
        return [torch.full((1,), self.x0, dtype=F64, device=self.device)]

    def value(self, xs: list[Tensor]) -> Tensor:
        return (self.c - 2) / 3 * xs[0].sum()

    def loss(self, xs: list[Tensor], step: int, rows: Tensor | None = None) -> Tensor:
        return (self.c if step % 3 == 1 else -1.0) * xs[0].sum()

    def distance(self, xs: list[Tensor]) -> Tensor:
        return torch.linalg.vector_norm(xs[0] - self.x_star)

    def project(self, xs: list[Tensor]) -> None:
        xs[0].clamp_(-1.0, 1.0)


class Factorisation(Problem):
    """1/2 |U V^T - M|_F^2, M = U0 V0^T of rank `rank` (entries of U0, V0 ~ N(0, 1/rank)), U and V
    of that rank: every (U0 R, V0 R^-T) is a minimiser; obj/dist is |U V^T - M|_F. Not convex:
    no mu or L."""

    CONSTANTS = ("rows", "cols", "rank")

    def __init__(self, device: torch.device, rows: int = 20, cols: int = 15, rank: int = 3,
                 init_scale: float = 0.1, seed: int = 0):
        super().__init__(device)
        rng = np.random.default_rng(seed)
        u0, v0 = (rng.standard_normal((k, rank)) / math.sqrt(rank) for k in (rows, cols))
        self.m = _tensor(u0 @ v0.T, device)
        self.init_scale, self.shapes = init_scale, [(rows, rank), (cols, rank)]
        self.constants = {"rows": float(rows), "cols": float(cols), "rank": float(rank)}

    def start(self) -> list[Tensor]:
        return [self.init_scale * x for x in super().start()]

    def value(self, xs: list[Tensor]) -> Tensor:
        r = xs[0] @ xs[1].T - self.m
        return 0.5 * (r * r).sum()

    def distance(self, xs: list[Tensor]) -> Tensor:
        return torch.linalg.matrix_norm(xs[0] @ xs[1].T - self.m)
