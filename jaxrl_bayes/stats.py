"""Small statistics used by the training diagnostics: average ranks and Spearman's rho.

PSPO (§5.2, Figure 3) reports Spearman's rank correlation between the TD target and the
member disagreement on the same (s, a). Pure `jnp`, jittable; O(n^2) pairwise comparisons,
meant for the few hundred states of a diagnostic batch, not for large arrays.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


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
