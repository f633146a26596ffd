"""Paired evaluation: every run on a dataset meets the same evaluation episodes."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import results
from jaxrl_bayes import evaluation
from jaxrl_bayes.data import registry
from jaxrl_bayes.envs import liquidation


def _half_now_half_last(obs):
    """Sell half at t = 0, hold, sell the rest at t = 19: return 50 p_0 + 50 p_19."""
    t = jnp.round(obs[:, 0])
    return jnp.where(t == 0, 0.5, jnp.where(t >= 19, 1.0, -1.0))[:, None].astype(jnp.float32)


def test_liquidation_policies_meet_the_same_price_paths():
    n, seed = 2000, results.eval_seed(final=True)
    first = liquidation.evaluate_policy(liquidation.all_at_once_policy, n, seed)  # 100 p_0 per path
    last = liquidation.evaluate_policy(liquidation.last_step_policy, n, seed)  # 100 p_19 per path
    half = liquidation.evaluate_policy(_half_now_half_last, n, seed)
    # halving is exact in floating point, so on shared paths the identity holds to the bit
    np.testing.assert_array_equal(half, 0.5 * (first + last))
    other = liquidation.evaluate_policy(liquidation.last_step_policy, n, seed + 1)
    assert not np.array_equal(other, last)  # another seed: other paths (the check above can fail)


def _act(params, obs):
    x = obs / jnp.array([20.0, 100.0, 2.0])
    return jnp.tanh(x @ params["w"] + params["b"])


def test_liquidation_runs_of_the_same_policy_give_bit_identical_per_path_returns():
    spec = registry.get_spec("liquidation-random-v0")
    p = {"w": jnp.array([[2.0], [-1.0], [3.0]]), "b": jnp.array([-4.0])}
    same = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), p)  # two seeds with one policy
    a = results.evaluate_seeds(spec, _act, same, 2, 3000, final=True)

    def act_again(params, obs):  # another run's act_fn object: the same maths, compiled anew
        return _act(params, obs)

    b = results.evaluate_seeds(spec, act_again, jax.tree_util.tree_map(lambda x: x[:1], same), 1, 3000, final=True)
    assert a["eval_seed"] == b["eval_seed"] == results.FINAL_EVAL_SEED
    assert a["returns"][0] == a["returns"][1] == b["returns"][0]  # bit-identical lists of floats
    assert len(a["returns"][0]) == 3000
    opt = np.asarray(a["optimum_returns"])
    np.testing.assert_array_equal(opt, liquidation.optimum_returns(3000, results.FINAL_EVAL_SEED))
    r = np.asarray(a["returns"][0])
    # the gap is taken path by path, in normalized units: 100 (opt - r) / 135
    assert a["optimality_gap"][0] == pytest.approx(np.mean(100.0 * (opt - r) / 135.0), rel=1e-12)
    assert a["normalized"][0] == pytest.approx(100.0 * r.mean() / 135.0, rel=1e-12)
    # the DP policy on those paths averages the exact optimum within 4 standard errors
    assert abs(opt.mean() - liquidation.dp_optimum().expected_return) < 4 * opt.std() / np.sqrt(opt.size)
    # the best one-line schedule on the same paths: holding to the last step beats selling at
    # once (E p_19 ~ 1.36 > p_0 ~ 1) and equal shares (the mean of the E p_t), path for path
    name, sched = a["best_schedule"]
    assert name == "last_step"
    np.testing.assert_array_equal(sched, liquidation.evaluate_policy(liquidation.last_step_policy, 3000,
                                                                     results.FINAL_EVAL_SEED))
    periodic = results.evaluate_seeds(spec, _act, same, 2, 3000, final=False)
    assert periodic["eval_seed"] == results.PERIODIC_EVAL_SEED != results.FINAL_EVAL_SEED
    assert "returns" not in periodic  # per-episode returns are kept for the final evaluation only


def test_gym_runs_of_the_same_policy_meet_the_same_reset_seeds():
    w = np.array([[0.5], [-0.3], [0.2]], np.float32)

    def act_a(params, obs):
        return jnp.tanh(obs @ params)

    def act_b(params, obs):  # another algorithm's act_fn, the same function
        return jnp.tanh(obs @ params)

    spec = types.SimpleNamespace(name="pendulum", family="other", eval_env_spec="Pendulum-v1",
                                 ref_min_score=None, ref_max_score=None)
    a = results.evaluate_seeds(spec, act_a, w[None], 1, 3, final=True)
    b = results.evaluate_seeds(spec, act_b, w[None], 1, 3, final=True)
    assert a["returns"] == b["returns"] and a["optimum_returns"] is None and a["optimality_gap"] is None
    assert a["best_schedule"] is None
    # episode k starts from reset(seed = FINAL_EVAL_SEED * 2**20 + k), whatever the run
    by_hand = evaluation.evaluate_gym("Pendulum-v1", lambda obs: jnp.tanh(obs @ w), 3, results.FINAL_EVAL_SEED)
    np.testing.assert_array_equal(a["returns"][0], by_hand)
    assert len(set(a["returns"][0])) == 3  # three different episodes
    # Q at the first states: start_q gets each seed's episodes' own first observations, once
    seen = []

    def start_q(first):
        seen.append(first)
        return first[:, :, 0].mean(axis=1)

    c = results.evaluate_seeds(spec, act_a, np.stack([w, -w]), 2, 3, final=False, units=(0.9, 0.0, 1.0),
                               start_q=start_q)
    want = evaluation.gym_episodes("Pendulum-v1", act_a, 3, results.PERIODIC_EVAL_SEED, params=w).first_obs
    assert len(seen) == 1 and seen[0].shape == (2, 3, 3)
    np.testing.assert_array_equal(seen[0], np.stack([want, want]))  # the same resets for every seed
    assert c["q_start"] == pytest.approx([want[:, 0].mean()] * 2)
    assert "q_start" not in a  # no start_q, no Q
