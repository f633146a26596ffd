"""PMDB's persistent rollout scheme (`agent.rollout = "persistent"`, a registered
`rollout_schemes.RolloutScheme`): the imagined states advance one step per train step through the
member the backup followed and restart from dataset states; checked on planted successors with a
known right answer (end to end on the bandit:
tests/test_algos.py::test_rrpi_with_the_persistent_scheme_reaches_the_bandit_optimum)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import buffer, rollout_schemes
from jaxrl_bayes.algos import algo_config
from jaxrl_bayes.algos.common import make_train_data
from jaxrl_bayes.data.dataset import Dataset


def _data(n=50):
    """1-D states 0..n-1 with next state s + 0.5; every 10th transition terminal."""
    obs = np.arange(n, dtype=np.float32)[:, None]
    done = (np.arange(n) % 10 == 9)
    ds = Dataset.from_arrays(observations=obs, actions=np.zeros((n, 1), np.float32), rewards=np.zeros(n, np.float32),
                             terminals=done, next_observations=obs + 0.5, name="line")
    return make_train_data(ds, None, algo_config("rrpi", obs_bound_std=0.0), jax.random.PRNGKey(0))


def test_restart_states_are_observations_or_non_terminal_next_observations():
    data = _data()
    s = np.asarray(rollout_schemes.restart_states(jax.random.PRNGKey(1), data, 20_000))[:, 0]
    nxt = s[s % 1 == 0.5]
    assert 0.4 < len(nxt) / len(s) < 0.5  # half of the draws, less the terminal ones (10 %)
    assert set(np.round(nxt - 0.5).astype(int)) <= {i for i in range(50) if i % 10 != 9}
    assert set(s[s % 1 == 0].astype(int)) == set(range(50))


def _advance(config, member, successors, steps, done_at=None):
    data = _data()
    term = (lambda o, a, n: n[..., 0] == done_at) if done_at is not None else (lambda o, a, n: jnp.zeros(n.shape[:-1], bool))
    inputs = rollout_schemes.SchemeInputs(config, data, policy_fn=None, termination_fn=term)
    b = member.shape[0]
    paths = rollout_schemes.Paths(jnp.zeros((b, 1)), steps)
    new, step = rollout_schemes.advance_paths(jax.random.PRNGKey(2), paths, jnp.zeros((b, 1)), member, successors,
                                              inputs)
    return new.obs, new.steps, step.inside_frac, step.restart_frac


def test_paths_follow_the_selected_member_and_restart_on_termination_box_and_horizon():
    config = algo_config("rrpi", rollout_scheme="persistent", num_active=3, rollout_explore=0.0, rollout_horizon=4, obs_bound_std=0.0)
    successors = jnp.array([[[1.0], [2.0], [3.0], [4.0], [60.0]],      # member 0
                            [[11.0], [12.0], [13.0], [14.0], [15.0]],  # member 1
                            [[21.0], [22.0], [23.0], [24.0], [25.0]]])  # member 2
    member = jnp.array([0, 1, 2, 1, 0])
    steps = jnp.array([0, 1, 3, 0, 0])
    obs, new_steps, inside, restarted = _advance(config, member, successors, steps, done_at=14.0)
    obs, new_steps = np.asarray(obs)[:, 0], np.asarray(new_steps)
    np.testing.assert_array_equal(obs[:2], [1.0, 12.0])  # the selected members' successors
    np.testing.assert_array_equal(new_steps, [1, 2, 0, 0, 0])
    # restarted: path 2 at the horizon (4 steps), path 3 terminated (14), path 4 left the box (60 > 49.5)
    assert all(x != y for x, y in zip(obs[2:], [23.0, 14.0, 60.0]))
    assert float(inside) == pytest.approx(0.8) and float(restarted) == pytest.approx(0.6)


def test_exploration_follows_a_uniform_member():
    config = algo_config("rrpi", rollout_scheme="persistent", num_active=3, rollout_explore=1.0, rollout_horizon=1000, obs_bound_std=0.0)
    n = 3000
    successors = jnp.broadcast_to(jnp.array([1.0, 2.0, 3.0])[:, None, None], (3, n, 1))
    obs, *_ = _advance(config, jnp.zeros(n, jnp.int32), successors, jnp.zeros(n, jnp.int32))
    counts = np.bincount(np.asarray(obs)[:, 0].astype(int), minlength=4)[1:]
    assert np.all(np.abs(counts / n - 1 / 3) < 0.04), counts


def test_the_registered_scheme_trains_on_its_paths_and_records_them():
    """One step of the registered "persistent" entry: the model rows are the paths' states acting
    with the policy, the rows go to the buffer, and the paths move to the followed member's
    successors (the short entry moves nothing and draws its rows from the buffer)."""
    config = algo_config("rrpi", rollout_scheme="persistent", num_active=2, rollout_explore=0.0, rollout_horizon=10, obs_bound_std=0.0,
                         model_batch=3)
    scheme = rollout_schemes.ROLLOUT_SCHEMES["persistent"]
    data = _data()
    inputs = rollout_schemes.SchemeInputs(config, data, policy_fn=lambda k, o: jnp.full(o.shape, 0.25),
                                          termination_fn=lambda o, a, n: jnp.zeros(n.shape[:-1], bool))
    paths = scheme.init(jax.random.PRNGKey(0), config, data)
    assert paths.obs.shape == (3, 1) and np.all(np.asarray(paths.steps) == 0)
    model_buffer = buffer.buffer_init(8, buffer.StateAction(jnp.zeros((1,)), jnp.zeros((1,))))
    rows = scheme.model_rows(jax.random.PRNGKey(1), model_buffer, paths, inputs)
    np.testing.assert_array_equal(np.asarray(rows.obs), np.asarray(paths.obs))
    np.testing.assert_array_equal(np.asarray(rows.act), 0.25)
    successors = jnp.stack([paths.obs + 1.0, paths.obs + 2.0])
    model_buffer, new, metrics = scheme.advance(jax.random.PRNGKey(2), model_buffer, paths, rows,
                                                jnp.array([0, 1, 1]), successors, inputs)
    np.testing.assert_array_equal(np.asarray(new.obs - paths.obs)[:, 0], [1.0, 2.0, 2.0])
    np.testing.assert_array_equal(np.asarray(new.steps), [1, 1, 1])
    assert int(model_buffer.count) == 3
    np.testing.assert_allclose(np.asarray(metrics["member_pick"]), [1 / 3, 2 / 3])
    short = rollout_schemes.ROLLOUT_SCHEMES["short"]
    assert short.init(jax.random.PRNGKey(0), config, data) == ()
    same_buffer, state, metrics = short.advance(jax.random.PRNGKey(2), model_buffer, (), rows, jnp.array([0, 1, 1]),
                                                successors, inputs)
    assert same_buffer is model_buffer and state == () and metrics == {}
