"""Statistics: ranks and Spearman's rho for the training diagnostics, and interval estimates
for comparing methods over runs and tasks.

Diagnostics (pure `jnp`, jittable). PSPO (§5.2, Figure 3) reports Spearman's rank correlation
between the TD target and the member disagreement on the same (s, a): `average_ranks`,
`spearman_correlation`; O(n^2) pairwise comparisons, meant for the few hundred states of a
diagnostic batch, not for large arrays.

Comparisons (numpy/scipy, on the host). Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice" (NeurIPS 2021; the `rliable` library): a score matrix is given as one 1-D array per
task (dataset) of per-run (per-seed) scores; tasks may have different run counts.

- `iqm`: the interquartile mean, `scipy.stats.trim_mean(x, 0.25)` (the mean of the middle half);
- `aggregate_iqm`, `aggregate_mean`, `optimality_gap`: the runs of all tasks pooled;
- `probability_of_improvement`: P(X > Y) of a run of X against a run of Y on the same task
  (ties count 1/2; the Mann-Whitney U statistic over N M pairs), averaged over tasks;
- `performance_profile`: for each threshold tau, the fraction of runs scoring above tau,
  averaged over tasks;
- `interval`: any of those with a 95 % stratified-bootstrap interval. The bootstrap is
  `scipy.stats.bootstrap` with one sample per (task, method): scipy resamples each sample on
  its own, which is exactly rliable's stratified bootstrap (runs resampled within their task,
  every task kept). Percentile intervals, as rliable's default.

`rliable` itself is not used: `pip install rliable` (1.2.0) resolves to arch 7.2 with pandas 3.1
here (Python 3.11), and that arch fails on import under pandas 3 (`deprecate_kwarg() missing 1
required positional argument`), besides pulling statsmodels, seaborn and pandas for what scipy
already does.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np


def average_ranks(x: jax.Array) -> jax.Array:
    """1-based ranks of the entries of x, tied entries sharing the average of their ranks.

    rank_i = #{j : x_j < x_i} + (#{j : x_j = x_i} + 1) / 2  (scipy.stats.rankdata "average").

    Args:
      x: values, shape (n,).
    Returns:
      ranks of shape (n,), float32 for float32 input; they sum to n (n + 1) / 2.
    """
    chex.assert_rank(x, 1)
    less = jnp.sum(x[None, :] < x[:, None], axis=1)
    equal = jnp.sum(x[None, :] == x[:, None], axis=1)
    dtype = jnp.result_type(x.dtype, jnp.float32)
    return less.astype(dtype) + (equal.astype(dtype) + 1.0) / 2.0


def spearman_correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """Spearman's rho: the Pearson correlation of the average ranks of x and y.

    Ties are handled by average ranks. A constant input has no rank variation; rho is then 0
    (not NaN), so a diagnostic curve stays finite.

    Args:
      x, y: shape (n,), n >= 2.
    Returns:
      a scalar in [-1, 1].
    """
    chex.assert_rank([x, y], 1)
    chex.assert_equal_shape([x, y])
    rx = average_ranks(x)
    ry = average_ranks(y)
    rx = rx - jnp.mean(rx)
    ry = ry - jnp.mean(ry)
    denom = jnp.sqrt(jnp.sum(rx**2) * jnp.sum(ry**2))
    return jnp.where(denom > 0, jnp.sum(rx * ry) / jnp.where(denom > 0, denom, 1.0), 0.0)


# ----------------------------------------------------------------------------- comparisons of runs

TRIM = 0.25  # IQM: a quarter cut from each end
CONFIDENCE = 0.95
N_RESAMPLES = 10_000


def iqm(x, axis: Optional[int] = -1) -> np.ndarray:
    """Interquartile mean: `scipy.stats.trim_mean(x, 0.25, axis)`.

    trim_mean cuts int(0.25 n) values from each end of the sorted sample (so for n < 4 it is the
    plain mean) and averages the rest.
    """
    import scipy.stats  # here, not at the top: the jitted diagnostics above need no scipy

    return scipy.stats.trim_mean(np.asarray(x, dtype=np.float64), TRIM, axis=axis)


def _pooled(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Task samples [..., n_k] joined along the last axis."""
    return np.concatenate([np.asarray(x, dtype=np.float64) for x in samples], axis=-1)


def aggregate_mean(*task_scores) -> np.ndarray:
    """Mean of all runs of all tasks pooled (each task's runs on the last axis)."""
    return _pooled(task_scores).mean(axis=-1)


def aggregate_iqm(*task_scores) -> np.ndarray:
    """IQM of all runs of all tasks pooled (rliable's aggregate IQM of the runs x tasks matrix)."""
    return iqm(_pooled(task_scores), axis=-1)


def optimality_gap(*task_scores, gamma: float = 100.0) -> np.ndarray:
    """Mean of max(gamma - score, 0) over all runs pooled: how far below gamma (100 = expert on a
    normalized score) the runs fall, scores above gamma counting as gamma."""
    return np.maximum(gamma - _pooled(task_scores), 0.0).mean(axis=-1)


def probability_of_improvement(*paired_task_scores) -> np.ndarray:
    """P(X > Y): `probability_of_improvement(x_1, y_1, x_2, y_2, ...)` with x_k, y_k the runs of
    X and Y on task k (each on the last axis).

    Per task, the fraction of the N_k M_k pairs (x_i, y_j) with x_i > y_j, ties counting 1/2;
    then the mean over tasks. 1: every run of X beats every run of Y; 0.5: no difference.
    """
    if not paired_task_scores or len(paired_task_scores) % 2:
        raise ValueError("give the runs of X and Y task by task: x_1, y_1, x_2, y_2, ...")
    per_task = []
    for x, y in zip(paired_task_scores[0::2], paired_task_scores[1::2]):
        x = np.asarray(x, dtype=np.float64)[..., :, None]
        y = np.asarray(y, dtype=np.float64)[..., None, :]
        per_task.append(((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1)))
    return np.mean(per_task, axis=0)


def mean_difference(*paired_task_scores) -> np.ndarray:
    """mean(x_k) - mean(y_k), averaged over tasks (arguments as `probability_of_improvement`)."""
    if not paired_task_scores or len(paired_task_scores) % 2:
        raise ValueError("give the runs of X and Y task by task: x_1, y_1, x_2, y_2, ...")
    return np.mean([np.asarray(x, dtype=np.float64).mean(axis=-1) - np.asarray(y, dtype=np.float64).mean(axis=-1)
                    for x, y in zip(paired_task_scores[0::2], paired_task_scores[1::2])], axis=0)


def performance_profile(task_scores: Sequence, taus) -> np.ndarray:
    """[len(taus), ...]: for each tau, the fraction of runs with score > tau, averaged over tasks
    (`task_scores`: one array of runs per task, runs on the last axis; other leading axes follow
    the tau axis, as `scipy.stats.bootstrap` wants a vector statistic)."""
    taus = np.asarray(taus, dtype=np.float64)
    per_task = [(np.asarray(x, dtype=np.float64)[..., None, :] > taus[:, None]).mean(axis=-1) for x in task_scores]
    return np.moveaxis(np.mean(per_task, axis=0), -1, 0)


class Interval(NamedTuple):
    """A point estimate and its bootstrap interval (low, high are None when it cannot be formed:
    a sample with fewer than 2 runs)."""

    point: float | np.ndarray
    low: Optional[float | np.ndarray]
    high: Optional[float | np.ndarray]


def interval(statistic: Callable[..., np.ndarray], samples: Sequence, *, confidence: float = CONFIDENCE,
             n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """`statistic(*samples)` with its stratified-bootstrap percentile interval.

    Args:
      statistic: vectorized over leading axes, runs on the last axis (every function above;
        a vector-valued one, like a bound `performance_profile`, gives vector intervals).
      samples: 1-D arrays, one per (task, method); each is resampled on its own.
      confidence: coverage of the interval.
      n_resamples: bootstrap resamples.
      seed: seed of the resampling (the same data and seed give the same interval).

    Returns:
      Interval(point, low, high), floats (arrays for a vector statistic); low and high are None
      when a sample has fewer than 2 runs (scipy cannot resample it).
    """
    samples = [np.asarray(x, dtype=np.float64).reshape(-1) for x in samples]
    if not samples or any(x.size == 0 for x in samples):
        raise ValueError("interval needs at least one run in every sample")
    point = np.asarray(statistic(*samples), dtype=np.float64)
    point = float(point) if point.ndim == 0 else point
    if any(x.size < 2 for x in samples):
        return Interval(point, None, None)

    import scipy.stats

    def stat(*xs, axis=-1):
        return statistic(*(np.moveaxis(x, axis, -1) for x in xs))

    res = scipy.stats.bootstrap(samples, stat, n_resamples=n_resamples, vectorized=True, paired=False, axis=-1,
                                confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = (np.asarray(v, dtype=np.float64) for v in res.confidence_interval)
    if low.ndim == 0:
        return Interval(point, float(low), float(high))
    return Interval(point, low, high)


def run_intervals(scores, *, seed: int = 0) -> dict[str, Any]:
    """The per-(task, method) summary of per-run scores: {"runs": n, "mean": Interval,
    "iqm": Interval} (bootstrap over the runs; no interval for a single run)."""
    x = np.asarray(scores, dtype=np.float64).reshape(-1)
    return {"runs": int(x.size), "mean": interval(lambda a: a.mean(axis=-1), [x], seed=seed),
            "iqm": interval(iqm, [x], seed=seed)}


def last_half_spread(steps: Sequence[int], scores: Sequence[float], total_steps: int,
                     final: Optional[float] = None) -> Optional[dict[str, Any]]:
    """How much one run's learning curve moves at its end: the periodic evaluation `scores` at
    `steps` in the last half of the run (step >= total_steps / 2) as {"points", "first_step",
    "min", "max", "std" (population), "range" (max - min)}, and with `final` (the final
    evaluation's score) "final_within": whether min <= final <= max. None with no such point.

    A final score outside the last half's range, or a range as wide as the differences between
    methods, means that stopping one evaluation earlier or later gives another result."""
    pts = [(int(s), float(x)) for s, x in zip(steps, scores) if x is not None and 2 * int(s) >= total_steps]
    if not pts:
        return None
    x = np.asarray([v for _, v in pts], dtype=np.float64)
    out: dict[str, Any] = {"points": int(x.size), "first_step": pts[0][0], "min": float(x.min()),
                           "max": float(x.max()), "std": float(x.std()), "range": float(x.max() - x.min())}
    if final is not None:
        out["final_within"] = bool(x.min() <= final <= x.max())
    return out
