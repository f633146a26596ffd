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


# ----------------------------------------------------------------------------- interval estimates


def test_iqm_is_the_mean_of_the_middle_half():
    # n = 8: trim_mean cuts int(0.25 * 8) = 2 values from each end -> mean(3, 4, 5, 6)
    assert stats.iqm([100.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0]) == 4.5
    # n = 5: int(1.25) = 1 from each end -> mean(2, 3, 10)
    assert stats.iqm([1.0, 2.0, 3.0, 10.0, 1000.0]) == 5.0
    # n = 3: nothing is cut, the plain mean
    assert stats.iqm([1.0, 2.0, 9.0]) == 4.0
    # pooled over tasks of different sizes: (1, 2) and (3, 4, 5, 6, 7, 1000) -> 8 values, mean(3, 4, 5, 6)
    assert stats.aggregate_iqm(np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0, 6.0, 7.0, 1000.0])) == 4.5


def test_probability_of_improvement_by_hand():
    assert stats.probability_of_improvement([5.0, 6.0, 7.0], [1.0, 2.0, 3.0]) == 1.0
    assert stats.probability_of_improvement([1.0, 2.0, 3.0], [5.0, 6.0, 7.0]) == 0.0
    assert stats.probability_of_improvement([2.0, 2.0], [2.0, 2.0, 2.0]) == 0.5
    same = np.array([3.0, 1.0, 2.0])
    assert stats.probability_of_improvement(same, same) == 0.5  # identical samples: no difference
    # pairs (2 v 2: 1/2) (2 v 1: 1) (3 v 2: 1) (3 v 1: 1) -> 3.5 / 4
    assert stats.probability_of_improvement([2.0, 3.0], [2.0, 1.0]) == 0.875
    # two tasks: 1 on the first, 0.5 on the second -> 0.75 (tasks weigh equally, whatever their runs)
    assert stats.probability_of_improvement([9.0], [1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0]) == 0.75
    assert stats.mean_difference([2.0, 4.0], [1.0], [0.0], [1.0, 3.0]) == 0.0  # (3 - 1 + 0 - 2) / 2


def test_optimality_gap_and_performance_profile_by_hand():
    assert stats.optimality_gap(np.array([90.0, 110.0, 100.0]), np.array([70.0])) == 10.0  # (10 + 0 + 0 + 30) / 4
    # task 1: runs 1..4, task 2: 5, 5; tau 2.5 -> (2/4 + 1) / 2; tau 4.5 -> (0 + 1) / 2; tau 6 -> 0
    np.testing.assert_array_equal(stats.performance_profile([np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0, 5.0])],
                                                            [2.5, 4.5, 6.0]), [0.75, 0.5, 0.0])


def test_bootstrap_intervals_by_hand():
    # fully separated runs: every resample has P(X > Y) = 1, so the interval is [1, 1]
    iv = stats.interval(stats.probability_of_improvement, [[5.0, 6.0, 7.0], [1.0, 2.0, 3.0]])
    assert iv == (1.0, 1.0, 1.0)
    # the mean of two runs 0 and 1 resamples to 0 (p 1/4), 0.5 (1/2) or 1 (1/4): the 95 % interval is [0, 1]
    assert stats.interval(lambda x: x.mean(axis=-1), [[0.0, 1.0]]) == (0.5, 0.0, 1.0)
    # stratified: each task's runs are resampled within the task, so a task of equal runs stays
    # what it is and the pooled mean of (2 x 10, 3 x 20) is always 16 (a pooled resample would vary)
    assert stats.interval(stats.aggregate_mean, [[10.0, 10.0], [20.0, 20.0, 20.0]]) == (16.0, 16.0, 16.0)
    # one run: a point and no interval
    assert stats.interval(stats.aggregate_iqm, [[1.0, 2.0, 3.0], [4.0]]) == (2.5, None, None)
    # the same data and seed give the same interval; the interval holds the point
    x = np.array([3.0, 9.0, 4.0, 7.0, 5.0])
    a, b = stats.run_intervals(x), stats.run_intervals(x)
    assert a == b and a["runs"] == 5 and a["mean"].low < a["mean"].point == 5.6 < a["mean"].high
    assert a["iqm"].point == 16.0 / 3  # cut 3 and 9 -> mean(4, 5, 7)


def test_interval_is_scipys_percentile_bootstrap():
    import scipy.stats

    x = np.array([1.0, 4.0, 2.0, 8.0, 5.0, 7.0])
    want = scipy.stats.bootstrap((x,), np.mean, n_resamples=10_000, method="percentile",
                                 rng=np.random.default_rng(0)).confidence_interval
    got = stats.interval(lambda a: a.mean(axis=-1), [x])
    assert (got.low, got.high) == (float(want.low), float(want.high))


def test_last_half_spread_by_hand():
    """Steps 2k..10k of a 10k-step run: the last half holds 6k, 8k and 10k (step >= 5000)."""
    out = stats.last_half_spread([2000, 4000, 6000, 8000, 10000], [12.5, 20.3, 12.8, 82.0, 28.9], 10000, final=30.0)
    assert out["points"] == 3 and out["first_step"] == 6000
    assert out["min"] == 12.8 and out["max"] == 82.0 and abs(out["range"] - 69.2) < 1e-9
    assert abs(out["std"] - np.std([12.8, 82.0, 28.9])) < 1e-12
    assert out["final_within"] is True
    assert stats.last_half_spread([6000, 8000], [10.0, 11.0], 10000, final=11.5)["final_within"] is False
    assert stats.last_half_spread([1000, 2000], [1.0, 2.0], 10000) is None  # nothing in the last half
    assert "final_within" not in stats.last_half_spread([5000], [1.0], 10000)
