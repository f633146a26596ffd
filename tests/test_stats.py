"""Average ranks and Spearman's rho against hand-computed answers (no scipy)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import stats


def test_average_ranks_share_ties():
    r = stats.average_ranks(jnp.array([3.0, 1.0, 2.0, 2.0, 5.0]))
    np.testing.assert_array_equal(np.asarray(r), [4.0, 1.0, 2.5, 2.5, 5.0])
    r = stats.average_ranks(jnp.array([7.0, 7.0, 7.0]))
    np.testing.assert_array_equal(np.asarray(r), [2.0, 2.0, 2.0])


def test_spearman_monotone_maps_give_plus_minus_one():
    x = jax.random.normal(jax.random.PRNGKey(0), (50,))
    assert float(stats.spearman_correlation(x, jnp.exp(3.0 * x))) == 1.0
    np.testing.assert_allclose(float(stats.spearman_correlation(x, -x**3)), -1.0, rtol=1e-6)


def test_spearman_with_ties_by_hand():
    # ranks x: [1, 2.5, 2.5, 4], y: [1, 3, 2, 4]; centred products sum 4.5,
    # squares 4.5 and 5 -> rho = 4.5 / sqrt(22.5)
    rho = stats.spearman_correlation(jnp.array([1.0, 2.0, 2.0, 3.0]), jnp.array([1.0, 3.0, 2.0, 4.0]))
    np.testing.assert_allclose(float(rho), 4.5 / np.sqrt(22.5), rtol=1e-6)
    # no ties: ranks y = (1, 4, 2, 3), rank differences (0, -2, 1, 1), rho = 1 - 6 sum d^2 / (n (n^2 - 1))
    rho = stats.spearman_correlation(jnp.array([10.0, 20.0, 30.0, 40.0]), jnp.array([0.1, 0.9, 0.2, 0.3]))
    np.testing.assert_allclose(float(rho), 1 - 6 * 6 / (4 * 15), rtol=1e-6)


def test_spearman_of_a_constant_is_zero_and_jittable():
    f = jax.jit(stats.spearman_correlation)
    assert float(f(jnp.ones(5), jnp.arange(5.0))) == 0.0
