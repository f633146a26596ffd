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


# ----------------------------------------------------------------------------- scale-free tempering


def test_profile_posterior_matches_its_closed_form():
    d = np.array([0.3, 1.2, 0.05, 2.5])
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    n, lam = 8, 2.0
    expected = prior * d ** (-n / lam)
    expected /= expected.sum()
    got = posterior.profile_gibbs_posterior(jnp.asarray(d), n, lam, jnp.asarray(prior))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_profile_posterior_is_bayes_rule_with_the_laplace_scale_fitted_per_member():
    # lam = 1: b(m) ∝ max_sigma prod_i Laplace(gap_im; 0, sigma), maximised on a fine grid
    rng = np.random.default_rng(1)
    gaps = np.abs(rng.normal(size=(3, 6)) * np.array([[1.0], [1.3], [2.0]]))
    sigma = np.exp(np.linspace(-4, 3, 200001))[:, None]
    loglik = np.stack([np.max(np.sum(-np.log(2 * sigma) - g[None] / sigma, axis=1)) for g in gaps])
    bayes = np.exp(loglik - loglik.max())
    bayes /= bayes.sum()
    d = posterior.consistency_metric(jnp.asarray(gaps), jnp.zeros(6))
    np.testing.assert_allclose(np.asarray(posterior.profile_gibbs_posterior(d, 6, 1.0)), bayes, rtol=1e-3)


def test_profile_posterior_is_invariant_to_the_reward_scale_and_raw_gibbs_is_not():
    rng = np.random.default_rng(2)
    member_y = jnp.asarray(rng.normal(size=(5, 32)) * 0.1 + rng.normal(size=(5, 1)) * 0.05)
    observed = jnp.asarray(rng.normal(size=32) * 0.1)
    for c in (10.0, 1e-3):
        d1 = posterior.consistency_metric(member_y, observed)
        dc = posterior.consistency_metric(c * member_y, c * observed)
        np.testing.assert_allclose(np.asarray(dc), c * np.asarray(d1), rtol=1e-5)
        b1 = posterior.profile_gibbs_posterior(d1, 32, 1.0)
        bc = posterior.profile_gibbs_posterior(dc, 32, 1.0)
        np.testing.assert_allclose(np.asarray(bc), np.asarray(b1), rtol=1e-4, atol=1e-7)
        assert float(posterior.belief_entropy(b1)) < np.log(5) - 0.05  # it does discriminate
    # the raw rule moves with the units (the check above could fail): near uniform at these
    # value scales, it discriminates ten times more strongly once rewards are x10
    d1 = posterior.consistency_metric(member_y, observed)
    g1 = posterior.gibbs_posterior(d1, 1.0)
    g10 = posterior.gibbs_posterior(posterior.consistency_metric(10.0 * member_y, 10.0 * observed), 1.0)
    assert float(jnp.max(jnp.abs(g10 - g1))) > 1e-2


def test_profile_posterior_limits():
    prior = jnp.array([0.1, 0.2, 0.3, 0.4])
    # equal gaps (also all zero) give the prior; an exact member (d = 0) takes the mass
    np.testing.assert_allclose(np.asarray(posterior.profile_gibbs_posterior(jnp.full(4, 0.7), 32, 1.0, prior)), prior, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(posterior.profile_gibbs_posterior(jnp.zeros(4), 32, 1.0, prior)), prior, rtol=1e-6)
    b = posterior.profile_gibbs_posterior(jnp.array([0.5, 0.0, 0.5, 0.6]), 32, 1.0)
    assert float(b[1]) > 1 - 1e-6 and np.all(np.isfinite(np.asarray(b)))
    # lam -> infinity: the prior
    np.testing.assert_allclose(np.asarray(posterior.profile_gibbs_posterior(jnp.array([0.1, 1.0, 2.0, 3.0]), 32, 1e9, prior)), prior, rtol=1e-5)


def test_registered_belief_updates():
    rng = np.random.default_rng(3)
    member_y = jnp.asarray(rng.normal(size=(4, 16)))
    observed = jnp.asarray(rng.normal(size=16))
    ev = posterior.Evidence(member_y, observed, posterior.consistency_metric)
    prior = posterior.uniform_belief(4)
    d = posterior.consistency_metric(member_y, observed)
    np.testing.assert_allclose(np.asarray(posterior.BELIEFS["profile"].update(ev, prior, 0.5)),
                               np.asarray(posterior.profile_gibbs_posterior(d, 16, 0.5)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(posterior.BELIEFS["gibbs"].update(ev, prior, 0.5)),
                               np.asarray(posterior.gibbs_posterior(d, 0.5)), rtol=1e-6)
