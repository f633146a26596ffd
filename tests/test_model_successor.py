"""A member whose noise crosses a termination threshold: `agent.sampling.successor`.

Task: one state s in [0.2, 1.0] that the model keeps in place (mean successor s' = s) with
Gaussian noise of std sigma = 0.5, reward 0.5, and a "fall" when s' < 0. Every member is the same
hand-built constant network (no training). With a constant value V = 1 and discount 1/2, each
member's one-step target is exactly

    "sample": y = r~ + 0.5 (1 - Phi(-s / sigma))    (falls the noise produces)
    "mean":   y = r~ + 0.5                          (its mean successor never falls)

with r~ the reward in learning units.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxrl_bayes import dynamics
from jaxrl_bayes.algos import algo_config, make_trainer
from jaxrl_bayes.algos import targets
from jaxrl_bayes.algos.common import Ctx
from jaxrl_bayes.data.dataset import Dataset

N = 2


def noisy_pool():
    """Constant members: mean change 0, mean reward 0.5; log-std of the change near log 0.5."""
    member = {"params": {"Dense_0": {"kernel": jnp.zeros((2, 1)), "bias": jnp.zeros(1)},
                         "Dense_1": {"kernel": jnp.zeros((1, 4)), "bias": jnp.array([0.0, 0.5, 5.0, -10.0])}}}
    params = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[member] * N)
    return dynamics.DynamicsPool(
        params=params, max_logstd=jnp.full((N, 2), float(np.log(0.5))), min_logstd=jnp.full((N, 2), -10.0),
        input_mean=jnp.zeros(2), input_std=jnp.ones(2), target_mean=jnp.zeros(2), target_std=jnp.ones(2),
        elites=jnp.arange(N, dtype=jnp.int32), val_mse=jnp.zeros(N), val_nll=jnp.zeros(N),
        config=dynamics.DynamicsConfig(num_members=N, hidden=(1,), normalize_targets=False),
        obs_dim=1, act_dim=1)


def falls_below_zero(obs, act, next_obs):
    return next_obs[..., 0] < 0.0


@pytest.mark.parametrize("successor", ["sample", "mean"])
def test_member_targets_count_the_noise_falls_only_when_successors_are_drawn(successor):
    rng = np.random.default_rng(0)
    n = 512
    s = rng.uniform(0.2, 1.0, (n, 1)).astype(np.float32)
    a = rng.uniform(-0.9, 0.9, (n, 1)).astype(np.float32)
    ds = Dataset.from_arrays(observations=s, actions=a, rewards=np.full(n, 0.5, np.float32), terminals=np.zeros(n, bool),
                             next_observations=s, name="noisy")
    k = 2048
    config = algo_config("rrpi", num_active=N, num_next_samples=k, discount=0.5, value_max=2.0,
                         reward_normalization="scale", model_reward="mean", model_successor=successor,
                         common_noise=False, box_terminal=False, critic_hidden=(8,), policy_hidden=(8,))
    pool = noisy_pool()
    trainer = make_trainer(config, ds, pool, falls_below_zero)
    ctx = Ctx(config, trainer.nets, trainer.data, None, falls_below_zero)
    obs, act = jnp.asarray(s[:64]), jnp.asarray(a[:64])
    out = targets.all_member_targets(ctx, jax.random.PRNGKey(1), obs, act, lambda key, x: jnp.ones(x.shape[:-1]))
    reward = (0.5 - float(trainer.data.reward_shift)) / float(trainer.data.reward_scale)
    sigma = np.asarray(dynamics.predict(pool, obs, act).next_obs_std[..., 0])  # [N, B], about 0.5
    assert np.allclose(sigma, 0.5, rtol=0.01)
    if successor == "mean":
        # K identical draws would only repeat work: one is drawn
        assert out.next_obs.shape[1] == 1
        np.testing.assert_allclose(np.asarray(out.member_y), reward + 0.5, rtol=1e-5)
        assert not np.asarray(out.dones).any()
    else:
        p_fall = norm.cdf(-np.asarray(obs[:, 0]) / sigma)  # [N, B]
        exact = reward + 0.5 * (1.0 - p_fall)
        se = 0.5 * np.sqrt(p_fall * (1 - p_fall) / k) + 1e-4
        assert np.all(np.abs(np.asarray(out.member_y) - exact) < 5 * se)
        assert np.asarray(out.dones).mean() > 0.05  # the noise does make it fall


def test_deterministic_members_leave_the_draw_count_and_noise_sharing_without_effect():
    from jaxrl_bayes.algos import fields_without_effect

    mean = algo_config("rrpi", model_successor="mean", model_reward="mean")
    assert {"num_next_samples", "common_noise"} <= set(fields_without_effect(mean, ["num_next_samples", "common_noise"]))
    assert mean.draws(10) == 1
    # a drawn reward still needs K draws
    half = algo_config("rrpi", model_successor="mean", model_reward="sample")
    assert fields_without_effect(half, ["num_next_samples", "common_noise"]) == [] and half.draws(10) == 10
