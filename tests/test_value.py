"""soft_value, boltzmann_weights, projection_loss and temperatures against exact answers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrl_bayes import value


def _normal_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)


@pytest.mark.parametrize("alpha", [0.05, 0.3, 2.0])
def test_soft_value_is_exact_on_a_discrete_action_set(alpha):
    rng = np.random.default_rng(0)
    num_actions, batch = 7, 5
    q = rng.normal(size=(num_actions, batch)) * 3.0
    mu = rng.dirichlet(np.ones(num_actions), size=batch).T  # (A, B)
    # Enumerating every action once with a uniform "proposal" makes the estimator exact.
    log_uniform = np.full_like(q, -np.log(num_actions))
    got = value.soft_value(jnp.asarray(q, jnp.float32), jnp.log(jnp.asarray(mu, jnp.float32)),
                           jnp.asarray(log_uniform, jnp.float32), alpha)
    expected = alpha * np.log(np.sum(mu * np.exp(q / alpha), axis=0))  # float64 reference
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_soft_value_importance_sampling_converges_like_one_over_sqrt_m():
    # mu = N(0, 1), Q(a) = c a: alpha log E_mu exp(c a / alpha) = c^2 / (2 alpha) exactly.
    c, alpha = 0.6, 1.0
    exact = c**2 / (2 * alpha)
    prop_mean, prop_std = 0.3, 1.3  # proposal q differs from mu
    repeats = 4000
    rmse = {}
    for m in (16, 256, 4096):
        key = jax.random.PRNGKey(m)
        a = prop_mean + prop_std * jax.random.normal(key, (m, repeats))
        v = value.soft_value(c * a, _normal_logpdf(a, 0.0, 1.0), _normal_logpdf(a, prop_mean, prop_std), alpha)
        rmse[m] = float(jnp.sqrt(jnp.mean((v - exact) ** 2)))
    # 16x more candidates -> about 4x smaller error (1/sqrt(M)); allow 2.8x .. 5.7x.
    for small, large in ((16, 256), (256, 4096)):
        ratio = rmse[small] / rmse[large]
        assert 2.8 < ratio < 5.7, (rmse, ratio)
    assert rmse[4096] < 0.01


def test_boltzmann_weights_match_the_discrete_boltzmann_target():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5, 3))
    mu = rng.dirichlet(np.ones(5), size=3).T
    alpha = 0.7
    w = value.boltzmann_weights(jnp.asarray(q), jnp.log(jnp.asarray(mu)), jnp.zeros((5, 3)), alpha)
    expected = mu * np.exp(q / alpha)
    expected /= expected.sum(0, keepdims=True)
    np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-5)
    # The weights carry no gradient.
    g = jax.grad(lambda qq: value.boltzmann_weights(qq, jnp.log(jnp.asarray(mu)), jnp.zeros((5, 3)), alpha)[0, 0])(jnp.asarray(q))
    assert np.all(np.asarray(g) == 0.0)


def test_projection_recovers_the_analytic_boltzmann_target_for_quadratic_q():
    # mu = N(m0, s0^2), Q(a) = -kappa (a - a_star)^2  =>  pi* = N(m*, s*^2) with
    # 1/s*^2 = 1/s0^2 + 2 kappa / alpha,  m* = s*^2 (m0 / s0^2 + 2 kappa a_star / alpha).
    m0, s0, kappa, a_star, alpha = -0.5, 1.0, 1.5, 1.0, 1.0
    prec = 1 / s0**2 + 2 * kappa / alpha
    var_star = 1 / prec
    mean_star = var_star * (m0 / s0**2 + 2 * kappa * a_star / alpha)

    prop_mean, prop_std = 0.0, 2.0
    num_candidates, batch = 256, 64

    def loss(params, key):
        a = prop_mean + prop_std * jax.random.normal(key, (num_candidates, batch))
        q = -kappa * (a - a_star) ** 2
        w = value.boltzmann_weights(q, _normal_logpdf(a, m0, s0), _normal_logpdf(a, prop_mean, prop_std), alpha)
        log_pi = _normal_logpdf(a, params["mean"], jnp.exp(params["log_std"]))
        return jnp.mean(value.projection_loss(log_pi, w))

    opt = optax.adam(3e-2)
    params = {"mean": jnp.array(0.0), "log_std": jnp.array(0.0)}
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        g = jax.grad(loss)(params, key)
        upd, state = opt.update(g, state)
        return optax.apply_updates(params, upd), state

    for i in range(600):
        params, state = step(params, state, jax.random.PRNGKey(i))
    assert abs(float(params["mean"]) - mean_star) < 0.03
    assert abs(float(jnp.exp(2 * params["log_std"])) - var_star) < 0.03 * var_star + 0.01


def test_kl_budget_temperature_matches_pmdb_rule_on_a_hand_example():
    # Reference-uniform candidates (log rho = 0): greedy Q = max, reference Q = mean.
    q = jnp.array([[1.0], [2.0], [4.0]])
    zeros = jnp.zeros_like(q)
    alpha = value.kl_budget_temperature(q, zeros, zeros, target_kl=5.0)
    np.testing.assert_allclose(np.asarray(alpha), [(4.0 - 7.0 / 3.0) / 5.0], rtol=1e-5)
    flat = value.kl_budget_temperature(jnp.ones((3, 1)), zeros, zeros, target_kl=5.0)
    np.testing.assert_allclose(np.asarray(flat), [1e-3])


def test_geometric_mixture_reference_is_the_kkt_solution():
    # pi* ∝ beta^{a/(a+e)} prev^{e/(a+e)} exp(Q/(a+e)) equals argmax E[Q] - a KL(pi||beta) - e KL(pi||prev)
    rng = np.random.default_rng(3)
    n = 6
    beta, prev = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    q = rng.normal(size=n)
    a, e = 0.4, 0.9
    ref = value.geometric_mixture_reference(jnp.log(beta), jnp.log(prev), a, e)
    w = np.asarray(value.boltzmann_weights(jnp.asarray(q)[:, None], ref.log_mu[:, None], jnp.zeros((n, 1)), ref.temperature))[:, 0]

    def objective(p):
        return p @ q - a * np.sum(p * np.log(p / beta)) - e * np.sum(p * np.log(p / prev))

    best = objective(w)
    for _ in range(200):  # no random perturbation on the simplex does better
        p = np.clip(w + rng.normal(size=n) * 0.01, 1e-9, None)
        p /= p.sum()
        assert objective(p) <= best + 1e-9


def test_trust_region_multiplier_moves_toward_the_budget():
    eta = jnp.array(1.0)
    assert float(value.trust_region_multiplier_update(eta, 0.2, 0.1, 0.5)) > 1.0
    assert float(value.trust_region_multiplier_update(eta, 0.05, 0.1, 0.5)) < 1.0
    assert float(value.trust_region_multiplier_update(eta, 0.05, 0.1, 0.0)) == 1.0
