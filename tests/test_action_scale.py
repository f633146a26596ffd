"""A policy whose best action is the bound of the action box (`AgentConfig.action_scale`).

Exact answer: on a one-step task with reward r(a) = a on [-1, 1] the optimum is the bound,
a* = 1, with value exactly 1. A tanh-Gaussian deploys tanh(mean) < 1 at every finite mean, so
KL-regularized policy iteration (the library's Boltzmann weights and projection loss) never
deploys it; with action_scale c > 1 the environment receives clip(c tanh(mean), -1, 1), which
is exactly 1 from the finite mean atanh(1 / c) on.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrl_bayes import networks, policy as policy_lib, value
from jaxrl_bayes.algos.common import AgentConfig
from jaxrl_bayes.errors import UserError


def test_env_action_maps():
    a = jnp.array([-1.0, -0.6, 0.0, 0.3, 0.5, 0.9])
    assert jnp.array_equal(networks.to_env_action(a, 1.0), a)  # c = 1: the identity, bit for bit
    assert jnp.array_equal(networks.from_env_action(a, 1.0), a)
    np.testing.assert_allclose(networks.to_env_action(a, 2.0), [-1.0, -1.0, 0.0, 0.6, 1.0, 1.0])
    inside = jnp.array([-1.0, -0.25, 0.0, 0.7, 1.0])
    np.testing.assert_allclose(networks.to_env_action(networks.from_env_action(inside, 1.5), 1.5), inside, atol=1e-7)


def _policy_iteration(action_scale: float, iterations: int = 25) -> float:
    """Deployed environment action after KL-regularized policy iteration on r(a) = a."""
    module = networks.TanhGaussianPolicy(1, (), action_scale=action_scale)  # a free Gaussian (bias only)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    tx = optax.adam(0.05)
    obs = jnp.zeros((1, 1))

    def loss(p, candidates, weights):
        return value.projection_loss(networks.tanh_gaussian_log_prob(module.apply(p, obs), candidates), weights).sum()

    grad = jax.jit(jax.grad(loss))
    key = jax.random.PRNGKey(1)
    for _ in range(iterations):
        key, k = jax.random.split(key)
        mu = module.apply(params, obs)  # the reference pi_k, held fixed for the subproblem
        candidates, log_mu = networks.tanh_gaussian_sample(k, mu, (64,))
        q = networks.to_env_action(candidates, action_scale)[..., 0]  # the exact critic r(a)
        weights = value.boltzmann_weights(q, log_mu, log_mu, 0.1)
        opt = tx.init(params)
        for _ in range(20):
            updates, opt = tx.update(grad(params, candidates, weights), opt)
            params = optax.apply_updates(params, updates)
    return float(networks.deployed_action(module, module.apply(params, obs))[0, 0])


def test_a_bound_optimum_is_deployed_exactly_with_action_scale():
    plain = _policy_iteration(1.0)
    widened = _policy_iteration(1.5)
    assert 0.5 < plain < 1.0  # it learns to push up, but a tanh stops short of the bound
    assert widened == 1.0  # the exact optimum a* = 1, value 1


def test_policy_file_records_the_action_scale(tmp_path):
    module = networks.TanhGaussianPolicy(2, (8,), action_scale=1.5)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    params = jax.tree_util.tree_map(lambda x: x + 0.7, params)  # means beyond atanh(1 / 1.5)
    path = policy_lib.save_policy(tmp_path / "p.npz", params, obs_mean=np.zeros(3), obs_std=np.ones(3),
                                  action_dim=2, hidden=(8,), action_scale=1.5)
    loaded = policy_lib.load_policy(path)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    want = jnp.clip(1.5 * jnp.tanh(module.apply(params, obs).mean), -1.0, 1.0)
    np.testing.assert_allclose(loaded.act(obs), want, atol=1e-6)
    assert loaded.module.action_scale == 1.5
    with pytest.raises(ValueError, match="action_scale"):
        policy_lib.save_policy(tmp_path / "q.npz", params, obs_mean=np.zeros(3), obs_std=np.ones(3),
                               action_dim=2, hidden=(8,), action_scale=0.5)


def test_action_scale_below_one_is_refused():
    with pytest.raises(UserError, match=r"action_scale must be finite and in \[1, 10\]"):
        AgentConfig(action_scale=0.9).validate()
