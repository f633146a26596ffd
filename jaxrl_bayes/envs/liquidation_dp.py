"""Exact optimal stopping for a clipped, discretely sampled Ornstein-Uhlenbeck price (numpy).

This is the dynamic-programming engine behind the liquidation benchmark's ceiling
(`jaxrl_bayes.envs.liquidation.dp_optimum`); it knows nothing about the environment class and
takes the price model as plain numbers.

Price model (BENCHMARKS.md, "Optimal liquidation"; PSPO §12.1.2, environment from the 1R2R
code of Rigter et al. 2023):

    p_{t+1} = clip(p_t + theta (mu - p_t) + sigma eps sqrt(dt), lo, hi),   eps ~ N(0, 1),
    p_0     = clip(N(p0_mean, p0_std^2), lo, hi).

Because the liquidation reward (m - m') p is linear in the fraction sold, the value of holding
money m at step t and price p is V(t, m, p) = m v(t, p) with

    v(T - 1, p) = p,                       (sell everything at the last step)
    v(t, p)     = max(p, E[v(t + 1, p') | p]),

an optimal-stopping problem. We represent v(t, .) by its piecewise-linear interpolant on a
uniform price grid and compute E[f(clip(X, lo, hi))] for a Gaussian X and piecewise-linear f
*exactly* with the Gaussian call-price formula

    E[(X - k)^+] = (m - k) Phi(d) + s phi(d),   d = (m - k) / s,

so the only approximation is the interpolation of v (error O(h^2) in the grid step h). Mass of
X beyond a bound sits at that bound, as the clip puts it there. The same weights propagate the
price distribution forward, which gives E[p_t] for the closed-form values of fixed schedules.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr


class OptimalStoppingSolution(NamedTuple):
    """Output of `solve_optimal_stopping` (all per unit of money)."""

    value_table: np.ndarray  # [T, n] v(t, p) on the grid
    continuation: np.ndarray  # [T, n] E[v(t + 1, p') | p]; 0 at the last step
    price_grid: np.ndarray  # [n]
    thresholds: np.ndarray  # [T] sell everything iff p >= thresholds[t]
    initial_weights: np.ndarray  # [n] hat-function weights of the initial price
    expected_unit_value: float  # E[v(0, p_0)]


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    # scipy is a dependency of jax itself, so it is always installed alongside it.
    return ndtr(x)


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _call(mean: np.ndarray, strike: np.ndarray, sd: float) -> np.ndarray:
    """E[(X - k)^+] for X ~ N(mean, sd^2); broadcasts mean against strike."""
    d = (mean - strike) / sd
    return (mean - strike) * _normal_cdf(d) + sd * _normal_pdf(d)


def gaussian_hat_weights(means: np.ndarray, sd: float, grid: np.ndarray) -> np.ndarray:
    """Weights W with E[f(clip(X_i, grid[0], grid[-1]))] = W[i] @ f(grid), X_i ~ N(means[i], sd^2).

    Exact for every f that is piecewise linear between the grid nodes (so for the grid's
    linear interpolant of any f).

    Args:
      means: [k] Gaussian means.
      sd: Gaussian standard deviation (> 0).
      grid: [n] strictly increasing nodes; the clip bounds are grid[0] and grid[-1].

    Returns:
      [k, n] float64 weights; each row is a probability vector (sums to 1, >= 0 up to
      rounding).
    """
    means = np.asarray(means, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be a 1-D strictly increasing array with at least 2 nodes")
    if not sd > 0:
        raise ValueError(f"sd must be positive, got {sd}")
    hi = grid[-1]
    h = np.diff(grid)  # [n - 1]
    # For y in [lo, hi]: f(y) = f_0 + sum_j ds_j (y - x_j)^+, j = 0..n-2, with s_j the slope on
    # [x_j, x_{j+1}] and ds_j = s_j - s_{j-1} (s_{-1} = 0). With y = clip(X):
    # E[(min(X, hi) - x_j)^+] = E[(X - x_j)^+] - E[(X - hi)^+]   (x_j >= lo).
    c = _call(means[:, None], grid[None, :-1], sd) - _call(means, hi, sd)[:, None]  # [k, n-1]
    # sum_j ds_j C_j = sum_j s_j (C_j - C_{j+1}) with C_{n-1} = 0 ...
    b = c - np.concatenate([c[:, 1:], np.zeros_like(c[:, :1])], axis=1)  # [k, n-1]
    # ... and s_j = (f_{j+1} - f_j) / h_j, so f_k collects B_{k-1}/h_{k-1} - B_k/h_k.
    bh = b / h[None, :]
    w = np.zeros((means.size, grid.size))
    w[:, 1:] += bh
    w[:, :-1] -= bh
    w[:, 0] += 1.0
    return w


def threshold_from_gap(grid: np.ndarray, gap: np.ndarray) -> float:
    """Smallest p with gap(p) >= 0 for an increasing gap = p - continuation, interpolated.

    Returns grid[0] if gap >= 0 everywhere, +inf if gap < 0 everywhere.
    """
    idx = np.flatnonzero(gap >= 0.0)
    if idx.size == 0:
        return math.inf
    k = int(idx[0])
    if k == 0:
        return float(grid[0])
    g0, g1 = gap[k - 1], gap[k]
    return float(grid[k - 1] + (grid[k] - grid[k - 1]) * (-g0) / (g1 - g0))


def price_transition_weights(
    grid: np.ndarray, theta: float, mu: float, sigma: float, dt: float
) -> np.ndarray:
    """[n, n] one-step weights of the clipped OU price from each grid node (see module doc)."""
    grid = np.asarray(grid, dtype=np.float64)
    means = grid + theta * (mu - grid)
    return gaussian_hat_weights(means, sigma * math.sqrt(dt), grid)


def solve_optimal_stopping(
    *,
    horizon: int,
    theta: float,
    mu: float,
    sigma: float,
    dt: float,
    p0_mean: float,
    p0_std: float,
    lo: float,
    hi: float,
    num_grid: int,
) -> OptimalStoppingSolution:
    """Backward induction v(t, p) = max(p, E[v(t + 1, p') | p]), v(T - 1, p) = p.

    Args:
      horizon: number of decision steps T (t = 0..T-1).
      theta, mu, sigma, dt: OU parameters of the price step.
      p0_mean, p0_std: Gaussian initial price (clipped to [lo, hi]).
      lo, hi: price bounds of the clip.
      num_grid: number of uniform grid nodes on [lo, hi].

    Returns:
      OptimalStoppingSolution with value_table/continuation [T, n], price_grid [n],
      thresholds [T] (thresholds[T-1] = lo: sell at the last step whatever the price) and
      expected_unit_value = E[v(0, p_0)].
    """
    if horizon < 1 or num_grid < 2:
        raise ValueError("horizon must be >= 1 and num_grid >= 2")
    grid = np.linspace(lo, hi, num_grid)
    w = price_transition_weights(grid, theta, mu, sigma, dt)
    values = np.zeros((horizon, num_grid))
    cont = np.zeros((horizon, num_grid))
    thresholds = np.zeros(horizon)
    values[-1] = grid
    thresholds[-1] = lo
    for t in range(horizon - 2, -1, -1):
        cont[t] = w @ values[t + 1]
        values[t] = np.maximum(grid, cont[t])
        thresholds[t] = threshold_from_gap(grid, grid - cont[t])
    w0 = gaussian_hat_weights(np.array([p0_mean]), p0_std, grid)[0]
    return OptimalStoppingSolution(
        value_table=values,
        continuation=cont,
        price_grid=grid,
        thresholds=thresholds,
        initial_weights=w0,
        expected_unit_value=float(w0 @ values[0]),
    )


def expected_prices(
    *,
    horizon: int,
    theta: float,
    mu: float,
    sigma: float,
    dt: float,
    p0_mean: float,
    p0_std: float,
    lo: float,
    hi: float,
    num_grid: int,
) -> np.ndarray:
    """E[p_t] for t = 0..horizon-1 of the clipped OU price, by forward propagation on the grid.

    Returns:
      [horizon] float64.
    """
    grid = np.linspace(lo, hi, num_grid)
    w = price_transition_weights(grid, theta, mu, sigma, dt)
    dist = gaussian_hat_weights(np.array([p0_mean]), p0_std, grid)[0]
    out = np.zeros(horizon)
    for t in range(horizon):
        out[t] = dist @ grid
        dist = dist @ w
    return out
