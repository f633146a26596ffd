"""Dataset and D4RL's Q-learning view, checked against hand-computed arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes.data.dataset import Dataset, DatasetError, qlearning_view, reward_normalizer


def _raw_rows():
    """7 rows, 3 episodes: rows 0-2 (row 2 timeout), rows 3-4 (row 4 falls), rows 5-6."""
    obs = np.array([[float(i), 10.0 * i] for i in range(7)], np.float64)
    act = np.array([[0.1 * i] for i in range(7)])
    rew = np.array([1.0, 2.0, 100.0, 4.0, -3.0, 6.0, 7.0])
    term = np.array([0, 0, 0, 0, 1, 0, 0], bool)
    tout = np.array([0, 0, 1, 0, 0, 0, 0], bool)
    return obs, act, rew, term, tout


def test_view_without_next_observations_matches_hand_computed():
    obs, act, rew, term, tout = _raw_rows()
    ds = Dataset.from_arrays(obs, act, rew, term, timeouts=tout, name="toy", min_transitions=1)
    # Kept rows: 0, 1, 3, 4, 5 (row 2 is a timeout, row 6 is the last row: no next obs).
    np.testing.assert_array_equal(ds.observations, [[0, 0], [1, 10], [3, 30], [4, 40], [5, 50]])
    np.testing.assert_array_equal(ds.next_observations,
                                  [[1, 10], [2, 20], [4, 40], [5, 50], [6, 60]])
    np.testing.assert_allclose(ds.actions, [[0.0], [0.1], [0.3], [0.4], [0.5]], rtol=1e-6)
    np.testing.assert_array_equal(ds.rewards, [1, 2, 4, -3, 6])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(ds.start_observations, [[0, 0], [3, 30], [5, 50]])
    assert ds.size == 5 and ds.obs_dim == 2 and ds.act_dim == 1 and ds.num_episodes == 3
    assert ds.name == "toy"
    for leaf in jax.tree_util.tree_leaves(ds):
        assert leaf.dtype == jnp.float32
    # Statistics over the kept rows, by hand.
    np.testing.assert_allclose(ds.obs_mean, [2.6, 26.0], rtol=1e-6)
    np.testing.assert_allclose(ds.obs_std, [np.sqrt(3.44), np.sqrt(344.0)], rtol=1e-6)
    np.testing.assert_allclose(ds.act_mean, [0.26], rtol=1e-6)
    assert float(ds.reward_min) == -3.0 and float(ds.reward_max) == 6.0
    # shift = -3 - 0.05 * 9 = -3.45, scale = 1.1 * 9 = 9.9.
    np.testing.assert_allclose([ds.reward_shift, ds.reward_scale], [-3.45, 9.9], rtol=1e-6)
    np.testing.assert_allclose(ds.normalized_rewards(),
                               (np.array([1, 2, 4, -3, 6]) + 3.45) / 9.9, rtol=1e-6)
    assert float(ds.normalized_rewards().min()) == pytest.approx(0.05 / 1.1, rel=1e-6)
    assert float(ds.normalized_rewards().max()) == pytest.approx(1.05 / 1.1, rel=1e-6)


def test_view_with_next_observations_keeps_last_row_and_uses_the_key():
    obs, act, rew, term, tout = _raw_rows()
    nxt = obs + 0.5  # distinguishable from observations[i + 1]
    view = qlearning_view({"observations": obs, "actions": act, "rewards": rew,
                           "terminals": term, "timeouts": tout, "next_observations": nxt},
                          min_transitions=1)
    kept = [0, 1, 3, 4, 5, 6]
    np.testing.assert_array_equal(view["observations"], obs[kept])
    np.testing.assert_array_equal(view["next_observations"], nxt[kept])
    np.testing.assert_array_equal(view["terminals"], [0, 0, 0, 1, 0, 0])


def test_keep_timeouts_and_explicit_starts():
    obs, act, rew, term, tout = _raw_rows()
    ds = Dataset.from_arrays(obs, act, rew, term, timeouts=tout, next_observations=obs + 1,
                             drop_timeouts=False, start_observations=obs[[0, 3]], min_transitions=1)
    assert ds.size == 7
    np.testing.assert_array_equal(ds.terminals, term.astype(np.float32))  # timeout not terminal
    assert ds.num_episodes == 2


def test_constant_rewards_and_features_are_guarded():
    assert reward_normalizer(2.0, 2.0) == (1.95, 1.0)
    obs = np.stack([np.arange(4.0), np.full(4, 3.0)], axis=1)
    ds = Dataset.from_arrays(obs, np.zeros((4, 1)), np.ones(4), np.zeros(4),
                             next_observations=obs, min_transitions=1)
    np.testing.assert_allclose(ds.normalized_rewards(), 0.05, rtol=1e-6)
    assert float(ds.obs_std[1]) == 1.0 and float(ds.act_std[0]) == 1.0


def test_dataset_is_a_pytree_that_jits():
    obs, act, rew, term, tout = _raw_rows()
    ds = Dataset.from_arrays(obs, act, rew, term, timeouts=tout, name="toy", min_transitions=1)
    out = jax.jit(lambda d: d.normalized_rewards().sum())(ds)
    assert float(out) == pytest.approx(float(ds.normalized_rewards().sum()), rel=1e-6)
    assert len(jax.tree_util.tree_leaves(ds)) == 14  # name is static


@pytest.mark.parametrize("bad, count, kind", [(np.nan, 2, "2 NaN"), (np.inf, 1, "0 NaN, 1 inf")])
def test_non_finite_values_name_the_key_and_count(bad, count, kind):
    obs, act, rew, term, tout = _raw_rows()
    act = act.copy()
    act[1:1 + count, 0] = bad
    with pytest.raises(DatasetError, match=rf"'actions' has {count} non-finite values \({kind}"):
        Dataset.from_arrays(obs, act, rew, term, timeouts=tout, name="toy", min_transitions=1)


def test_missing_key_unequal_lengths_and_bad_dims():
    obs, act, rew, term, tout = _raw_rows()
    with pytest.raises(DatasetError, match=r"lacks required key\(s\) \['terminals'\]"):
        qlearning_view({"observations": obs, "actions": act, "rewards": rew})
    with pytest.raises(DatasetError, match="unequal lengths"):
        Dataset.from_arrays(obs, act[:-1], rew, term)
    with pytest.raises(DatasetError, match="'observations' has shape"):
        Dataset.from_arrays(obs[:, 0], act, rew, term)
    with pytest.raises(DatasetError, match="no transition left"):
        Dataset.from_arrays(obs[:1], act[:1], rew[:1], term[:1])


def test_the_data_package_only_reads():
    """Importing jaxrl_bayes.data pulls in no SAC, no collection, no env stepping."""
    import subprocess
    import sys

    code = ("import sys, jaxrl_bayes.data, jaxrl_bayes.data.d4rl, jaxrl_bayes.data.minari_data; "
            "print([m for m in sys.modules if m.startswith(('jaxrl_bayes.sac', "
            "'jaxrl_bayes.collect', 'gymnasium', 'mujoco', 'orbax'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
