"""Gibbs posterior and consistency metrics against closed forms."""

import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import posterior


def test_gibbs_posterior_matches_the_closed_form():
    d = np.array([0.3, 1.2, 0.0, 2.5])
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    lam = 0.7
    expected = prior * np.exp(-d / lam)
    expected /= expected.sum()
    got = posterior.gibbs_posterior(jnp.asarray(d), lam, jnp.asarray(prior))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    uniform = posterior.gibbs_posterior(jnp.asarray(d), lam)
    e2 = np.exp(-d / lam)
    np.testing.assert_allclose(np.asarray(uniform), e2 / e2.sum(), rtol=1e-5)


def test_gibbs_posterior_limits():
    d = jnp.array([0.3, 1.2, 0.1, 2.5])
    prior = jnp.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(np.asarray(posterior.gibbs_posterior(d, 1e9, prior)), np.asarray(prior), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(posterior.gibbs_posterior(d, 1e-6, prior)), [0, 0, 1, 0], atol=1e-6)


def test_gibbs_posterior_minimises_the_free_energy():
    # b* = argmin E_b[d] + lam KL(b || b0): no other point on the simplex does better.
    rng = np.random.default_rng(0)
    d = rng.uniform(size=5)
    b0 = rng.dirichlet(np.ones(5))
    lam = 0.4
    b = np.asarray(posterior.gibbs_posterior(jnp.asarray(d), lam, jnp.asarray(b0)), np.float64)
    f = lambda p: p @ d + lam * np.sum(p * np.log(p / b0))
    for _ in range(300):
        p = rng.dirichlet(np.ones(5))
        assert f(p) >= f(b) - 1e-6


def test_consistency_metrics_by_hand():
    y = jnp.array([[1.0, 2.0], [0.0, 4.0], [2.0, 3.0]])
    obs = jnp.array([1.0, 3.0])
    np.testing.assert_allclose(np.asarray(posterior.consistency_metric(y, obs)), [0.5, 1.0, 0.5])
    # consensus: column means (1, 3)
    np.testing.assert_allclose(np.asarray(posterior.consensus_consistency(y)), [0.5, 1.0, 0.5])


def test_belief_entropy():
    np.testing.assert_allclose(float(posterior.belief_entropy(posterior.uniform_belief(4))), np.log(4), rtol=1e-6)
    assert float(posterior.belief_entropy(jnp.array([1.0, 0.0, 0.0]))) == 0.0
