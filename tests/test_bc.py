"""BC's early stopping on held-out likelihood and %BC's episode filter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes.algos import algo_config, bc, deployed_policy, losses, make_trainer
from jaxrl_bayes.data.dataset import Dataset, episode_ids, top_episode_rows


def _episodes(returns, length=5):
    """Episodes of `length` steps, each ending in a terminal, with per-step reward return/length;
    the observation is (episode index, step), the action the episode's return / 10 (clipped)."""
    rows = [(e, t) for e in range(len(returns)) for t in range(length)]
    obs = np.array(rows, np.float32)
    nxt = obs + np.array([0.0, 1.0], np.float32)
    rew = np.array([returns[e] / length for e, _ in rows], np.float32)
    act = np.clip(np.array([[returns[e] / 10.0] for e, _ in rows], np.float32), -1, 1)
    done = np.array([t == length - 1 for _, t in rows])
    return obs, nxt, rew, act, done


def test_top_episode_rows_keeps_the_best_complete_episodes():
    obs, nxt, rew, _, done = _episodes([3.0, 9.0, 1.0, 7.0, 5.0, 8.0, 2.0, 6.0, 4.0, 0.0])
    ids = episode_ids(obs, nxt, done)
    np.testing.assert_array_equal(ids, np.repeat(np.arange(10), 5))
    assert set(ids[top_episode_rows(obs, nxt, rew, done, 0.1)]) == {1}          # the top 10 %: return 9
    assert set(ids[top_episode_rows(obs, nxt, rew, done, 0.3)]) == {1, 5, 3}    # 9, 8, 7
    assert top_episode_rows(obs, nxt, rew, done, 1.0).all()
    # an unfinished last episode is never ranked, however large its return
    cut = 5 * 9 + 3
    rew2 = rew.copy()
    rew2[5 * 9:] = 100.0
    kept = top_episode_rows(obs[:cut], nxt[:cut], rew2[:cut], done[:cut], 0.2)
    assert set(ids[:cut][kept]) == {1, 5}


def test_the_holdout_is_whole_episodes_of_the_kept_ones():
    obs, nxt, rew, act, done = _episodes([float(i) for i in range(40)])
    ds = Dataset.from_arrays(observations=obs, actions=act, rewards=rew, terminals=done, next_observations=nxt,
                             name="eps")
    ids = episode_ids(obs, nxt, done)
    train_rows, held = bc.split_rows(ds, algo_config("bc", bc_holdout=0.25), jax.random.PRNGKey(0))
    assert not set(ids[train_rows]) & set(ids[held]) and len(set(ids[held])) == 10
    assert sorted(np.r_[train_rows, held]) == list(range(200))
    train_rows, held = bc.split_rows(ds, algo_config("bc-top10", bc_holdout=0.25), jax.random.PRNGKey(0))
    assert set(ids[train_rows]) | set(ids[held]) == {36, 37, 38, 39} and len(set(ids[held])) == 1
    assert bc.split_rows(ds, algo_config("bc", bc_holdout=0.0), jax.random.PRNGKey(0))[1] is None
    with pytest.raises(ValueError, match="algo.holdout = 0.25 needs at least two episodes .* but bc clones 1"):
        bc.split_rows(ds, algo_config("bc", bc_top_fraction=0.02, bc_holdout=0.25), jax.random.PRNGKey(0))


def test_the_deployed_bc_policy_is_the_best_on_held_out_episodes():
    """Held-out episodes act against the training ones (a = -0.5 vs +0.5 in the same states):
    the held-out likelihood peaks early and falls as BC fits the training episodes, so the
    deployed policy is an early one; its held-out NLL is the running minimum, exactly."""
    rng = np.random.default_rng(0)
    n_ep, length = 60, 10
    obs = rng.normal(size=(n_ep * length, 2)).astype(np.float32)
    nxt = obs + 1.0
    done = np.tile(np.arange(length) == length - 1, n_ep)
    ds0 = Dataset.from_arrays(observations=obs, actions=np.zeros((len(obs), 1), np.float32),
                              rewards=np.zeros(len(obs), np.float32), terminals=done, next_observations=nxt,
                              name="conflict")
    config = algo_config("bc", policy_hidden=(32, 32), steps_per_chunk=100, bc_batch=64, bc_holdout=0.2)
    _, held = bc.split_rows(ds0, config, jax.random.PRNGKey(0))
    act = np.full((len(obs), 1), 0.5, np.float32)
    act[held] = -0.5
    ds = Dataset.from_arrays(observations=obs, actions=act, rewards=np.zeros(len(obs), np.float32),
                             terminals=done, next_observations=nxt, name="conflict")
    trainer = make_trainer(config, ds, None)
    states = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(1), 2))
    held_nll = []
    for _ in range(6):
        states, metrics = trainer.run_chunk_seeds(states)
        held_nll.append(np.asarray(metrics["holdout_nll"]))
        np.testing.assert_allclose(np.asarray(metrics["best_holdout_nll"]), np.min(held_nll, axis=0), rtol=1e-6)
    held_nll = np.array(held_nll)
    assert np.all(held_nll[-1] > held_nll.min(axis=0) + 0.5), held_nll  # it overfits: the last is not the best
    for s in range(2):
        best = jax.tree_util.tree_map(lambda x: x[s], deployed_policy(states, config))
        got = losses.behaviour_cloning_loss(best, trainer.nets, trainer.data, trainer.data.holdout_obs,
                                            trainer.data.holdout_act)
        np.testing.assert_allclose(float(got), held_nll[:, s].min(), rtol=1e-5)


@pytest.mark.parametrize("loss, want", [("mse", 0.2),  # the conditional mean action: (0.9 - 0.5) / 2
                                        # the pre-tanh Gaussian's mean is the mean of atanh(a)
                                        ("likelihood", float(np.tanh((np.arctanh(0.9) + np.arctanh(-0.5)) / 2)))])
def test_the_cloning_loss_decides_the_deployed_action_of_a_two_action_behaviour(loss, want):
    """Every state has two logged actions, +0.9 and -0.5, equally often: squared-error cloning
    deploys their mean 0.2, likelihood cloning tanh(mean of atanh(a)) = 0.431."""
    rng = np.random.default_rng(0)
    n = 2000
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = np.where(np.arange(n) % 2 == 0, 0.9, -0.5).astype(np.float32)[:, None]
    done = np.arange(n) % 20 == 19
    ds = Dataset.from_arrays(observations=obs, actions=act, rewards=np.zeros(n, np.float32), terminals=done,
                             next_observations=obs + 1.0, name="two-actions")
    config = algo_config("bc", policy_hidden=(16, 16), steps_per_chunk=500, bc_batch=256,
                         **{"algo.loss": loss, "algo.holdout": 0.1})
    trainer = make_trainer(config, ds, None)
    states = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(1), 1))
    for _ in range(6):
        states, metrics = trainer.run_chunk_seeds(states)
    name = {"mse": "mse", "likelihood": "nll"}[loss]
    assert f"best_holdout_{name}" in metrics and f"holdout_{'nll' if name == 'mse' else 'mse'}" not in metrics
    policy = jax.tree_util.tree_map(lambda x: x[0], deployed_policy(states, config))
    deployed = np.asarray(trainer.act(policy, jnp.asarray(obs[:200]), trainer.data))
    # the two answers are 0.23 apart; the states are noise, which a small net fits a little of
    assert abs(float(deployed.mean()) - want) < 0.04 and float(deployed.std()) < 0.1, (deployed.mean(), deployed.std())
