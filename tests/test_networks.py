"""Networks: tanh-Gaussian densities, ensembles, twin critic."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import networks as nets


def test_tanh_gaussian_log_prob_is_the_change_of_variables_density():
    dist = nets.GaussianParams(jnp.array([[0.3]]), jnp.array([[-0.4]]))
    a = np.linspace(-0.999, 0.999, 20001)
    logp = np.asarray(nets.tanh_gaussian_log_prob(dist, jnp.asarray(a[:, None, None], jnp.float32)))[:, 0]
    u = np.arctanh(a)
    std = np.exp(-0.4)
    expected = -0.5 * ((u - 0.3) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2)
    np.testing.assert_allclose(logp, expected, rtol=2e-3, atol=2e-3)
    # integrates to ~1 over (-1, 1)
    assert abs(np.trapezoid(np.exp(logp), a) - 1.0) < 2e-3


def test_sample_log_prob_agrees_with_log_prob_of_the_sample():
    dist = nets.GaussianParams(jnp.array([[0.1, -0.5], [1.0, 0.0]]), jnp.array([[-1.0, 0.5], [-2.0, -0.3]]))
    a, logp = nets.tanh_gaussian_sample(jax.random.PRNGKey(0), dist, (1000,))
    assert a.shape == (1000, 2, 2) and logp.shape == (1000, 2)
    again = nets.tanh_gaussian_log_prob(dist, a)
    inside = np.all(np.abs(np.asarray(a)) < 0.999, axis=-1)  # away from the eps clip
    np.testing.assert_allclose(np.asarray(again)[inside], np.asarray(logp)[inside], rtol=1e-3, atol=1e-3)


def test_kl_matches_monte_carlo():
    p = nets.GaussianParams(jnp.array([[0.2, -0.1]]), jnp.array([[-0.5, 0.1]]))
    q = nets.GaussianParams(jnp.array([[0.5, 0.3]]), jnp.array([[-0.2, -0.3]]))
    a, logp = nets.tanh_gaussian_sample(jax.random.PRNGKey(1), p, (200_000,))
    mc = float(jnp.mean(logp - nets.tanh_gaussian_log_prob(q, a)))
    assert abs(mc - float(nets.tanh_gaussian_kl(p, q)[0])) < 0.02


def test_ensemble_apply_equals_member_by_member_apply():
    mlp = nets.MLP((16, 16), 3, "silu")
    params = nets.init_ensemble(mlp, jax.random.PRNGKey(0), 4, jnp.zeros((1, 5)))
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 5))
    out = nets.apply_ensemble(mlp, params, x)
    for m in range(4):
        single = jax.tree_util.tree_map(lambda p: p[m], params)
        np.testing.assert_allclose(np.asarray(out[m]), np.asarray(mlp.apply(single, x)), rtol=1e-5, atol=1e-6)
    sub = nets.select_members(params, jnp.array([3, 1]))
    np.testing.assert_allclose(np.asarray(nets.apply_ensemble(mlp, sub, x)), np.asarray(out[jnp.array([3, 1])]), rtol=1e-6)
    # per-member inputs
    xs = jax.random.normal(jax.random.PRNGKey(2), (4, 7, 5))
    out2 = nets.apply_ensemble(mlp, params, xs, shared_inputs=False)
    np.testing.assert_allclose(np.asarray(out2[2]), np.asarray(mlp.apply(jax.tree_util.tree_map(lambda p: p[2], params), xs[2])), rtol=1e-5, atol=1e-6)


def test_twin_critic_has_independent_members():
    critic = nets.TwinCritic((32, 32))
    params = critic.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1, 2)))
    q = critic.apply(params, jnp.ones((5, 3)), jnp.ones((5, 2)))
    assert q.shape == (2, 5)
    assert not np.allclose(np.asarray(q[0]), np.asarray(q[1]))


def test_policy_log_std_is_clamped():
    pol = nets.TanhGaussianPolicy(2, (8,))
    params = pol.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    dist = pol.apply(params, jnp.full((4, 3), 1e4))
    assert np.all(np.asarray(dist.log_std) >= nets.LOG_STD_MIN) and np.all(np.asarray(dist.log_std) <= nets.LOG_STD_MAX)


def test_critic_layer_norm_sits_between_each_hidden_dense_and_its_activation():
    """LayerNorm is invariant to a positive rescaling of its input (up to its epsilon), so scaling
    the first layer's kernel and bias by 50 leaves a LayerNorm critic's output unchanged and moves
    a plain one."""
    from jaxrl_bayes.algos import algo_config, fields_without_effect
    from jaxrl_bayes.algos.common import make_networks

    obs, act = jax.random.normal(jax.random.PRNGKey(0), (16, 4)), jax.random.normal(jax.random.PRNGKey(1), (16, 2))
    for layer_norm in (True, False):
        critic = nets.TwinCritic((32, 32), layer_norm=layer_norm)
        params = critic.init(jax.random.PRNGKey(2), obs, act)
        first = params["params"]["VmapCritic_0"]["MLP_0"]["Dense_0"]
        scaled = jax.tree_util.tree_map(lambda x: x, params)
        scaled["params"]["VmapCritic_0"]["MLP_0"]["Dense_0"] = jax.tree_util.tree_map(lambda x: 50.0 * x, first)
        q, q_scaled = critic.apply(params, obs, act), critic.apply(scaled, obs, act)
        if layer_norm:
            np.testing.assert_allclose(np.asarray(q_scaled), np.asarray(q), rtol=1e-3, atol=1e-4)
            assert "LayerNorm_0" in params["params"]["VmapCritic_0"]["MLP_0"]
        else:
            assert np.max(np.abs(np.asarray(q_scaled - q))) > 0.1
    # the agent's switch builds it; bc has no critic and refuses it
    built = make_networks(algo_config("rrpi", critic_layer_norm=True, critic_hidden=(8,)), act_dim=2)
    assert built.critic.layer_norm
    assert fields_without_effect(algo_config("bc"), ["critic_layer_norm"]) == ["critic_layer_norm"]
