"""Gymnasium evaluation equals stepping the environment by hand; the normalised score."""

import dataclasses
import warnings

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes.evaluation import evaluate_gym, normalized_score

warnings.filterwarnings("ignore", message=".*is out of date.*")

W = np.random.default_rng(0).normal(scale=0.3, size=(11, 3)).astype(np.float32)


def policy(obs):
    return jnp.tanh(obs @ W)


def returns_by_hand(env_id, num_episodes, seed):
    env = gym.make(env_id)
    out = []
    for k in range(num_episodes):
        obs, _ = env.reset(seed=seed * 2**20 + k)  # episode k of evaluation seed `seed`
        total, done = 0.0, False
        while not done:
            act = np.asarray(policy(obs[None].astype(np.float32)))[0]
            obs, reward, terminated, truncated, _ = env.step(act)
            total += reward
            done = terminated or truncated
        out.append(total)
    env.close()
    return np.array(out)


@pytest.mark.parametrize("num_envs", [2, None])
def test_hopper_returns_match_stepping_by_hand(num_envs):
    expected = returns_by_hand("Hopper-v4", 5, seed=3)
    got = evaluate_gym("Hopper-v4", policy, num_episodes=5, seed=3, num_envs=num_envs)
    assert got.shape == (5,)
    assert len(set(np.round(expected, 6))) == 5  # episodes differ: seeds do matter
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_truncated_episodes_with_a_recorded_spec():
    spec = dataclasses.replace(gym.spec("Hopper-v4"), max_episode_steps=7)
    zero = lambda obs: jnp.zeros((obs.shape[0], 3))  # noqa: E731  stands still: truncated
    got = evaluate_gym(spec, zero, num_episodes=3, seed=0, num_envs=2)
    env = gym.make(spec)
    expected = []
    for k in range(3):
        env.reset(seed=k)
        rewards = [env.step(np.zeros(3, np.float32))[1] for _ in range(7)]
        expected.append(sum(rewards))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_bad_policy_output_and_arguments():
    with pytest.raises(ValueError, match=r"act_fn returned shape \(2, 2\), expected \(2, 3\)"):
        evaluate_gym("Hopper-v4", lambda o: jnp.zeros((o.shape[0], 2)), num_episodes=2)
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate_gym("Hopper-v4", policy, num_episodes=0)


def test_normalized_score():
    # D4RL hopper references: random -20.272305, expert 3234.3.
    np.testing.assert_allclose(
        normalized_score([-20.272305, 3234.3, 1607.0138475], -20.272305, 3234.3), [0, 100, 50])
    assert normalized_score(135.0, 0.0, 135.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no reference scores"):
        normalized_score(1.0, None, 2.0)


_COMPILES: list[str] = []


def _on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES.append(str(kwargs.get("fun_name", "")))


jax.monitoring.register_event_duration_secs_listener(_on_event)


def test_params_form_compiles_the_policy_once():
    def act(params, obs):  # a fresh function object: nothing compiled for it yet
        return jnp.tanh(obs @ params)

    n0 = len(_COMPILES)
    jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(5))
    assert len(_COMPILES) > n0  # the counter sees a fresh compilation
    w2 = np.random.default_rng(1).normal(scale=0.3, size=(11, 3)).astype(np.float32)
    n0 = len(_COMPILES)
    got_w = evaluate_gym("Hopper-v4", act, num_episodes=3, seed=3, num_envs=2, params=jnp.asarray(W))
    assert len(_COMPILES) > n0
    n1 = len(_COMPILES)
    got_w2 = evaluate_gym("Hopper-v4", act, num_episodes=3, seed=3, num_envs=2, params=jnp.asarray(w2))
    assert len(_COMPILES) == n1, _COMPILES[n1:]
    np.testing.assert_allclose(got_w, returns_by_hand("Hopper-v4", 3, seed=3), rtol=1e-5)  # policy() uses W
    assert not np.allclose(got_w, got_w2)
    np.testing.assert_allclose(got_w2, evaluate_gym("Hopper-v4", lambda o: act(jnp.asarray(w2), o),
                                                    num_episodes=3, seed=3, num_envs=2), rtol=1e-6)


def test_behaviour_score_counts_complete_episodes_of_the_qlearning_view():
    """Three raw episodes: one ends in a terminal (rows 0-3), one in a timeout (rows 4-8; D4RL's
    view drops the timeout row 8), one is cut off (rows 9-11). No next_observations key: the
    view takes row i+1's observation."""
    from jaxrl_bayes.data.dataset import Dataset
    from jaxrl_bayes.evaluation import behaviour_score, episode_returns

    n = 12
    obs = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    rewards = np.arange(1, n + 1, dtype=np.float32)  # 1 .. 12
    terminals = np.zeros(n, bool)
    terminals[3] = True
    timeouts = np.zeros(n, bool)
    timeouts[8] = True
    ds = Dataset.from_arrays(obs, np.zeros((n, 1), np.float32), rewards, terminals, timeouts)
    want = [1 + 2 + 3 + 4, 5 + 6 + 7 + 8]  # row 8 (reward 9) is dropped with its timeout
    np.testing.assert_array_equal(
        episode_returns(ds.observations, ds.next_observations, ds.rewards, ds.terminals), want)
    s = behaviour_score(ds, ref_min=0.0, ref_max=20.0)
    assert (s.episodes, s.raw_return, s.raw_return_std) == (2, 18.0, 8.0)
    assert s.normalized_score == pytest.approx(90.0)
    assert behaviour_score(ds, None, None).normalized_score is None
    # no complete episode at all
    assert behaviour_score(Dataset.from_arrays(obs, np.zeros((n, 1), np.float32), rewards, np.zeros(n, bool)),
                           0.0, 1.0) == (0, None, None, None)


def test_gym_episodes_discounted_returns_and_lengths_match_stepping_by_hand():
    from jaxrl_bayes.evaluation import gym_episodes

    env, g = gym.make("Hopper-v4"), 0.9
    want, steps = [], []
    for k in range(3):
        obs, _ = env.reset(seed=10 * 2**20 + k)
        rewards, done = [], False
        while not done:
            before = obs
            obs, r, terminated, truncated, _ = env.step(np.asarray(policy(obs[None].astype(np.float32)))[0])
            steps.append(np.concatenate([before, obs, [float(terminated)]]))
            rewards.append(r)
            done = terminated or truncated
        want.append((sum(rewards), sum(g ** t * r for t, r in enumerate(rewards)), len(rewards)))
    recorded = []
    got = gym_episodes("Hopper-v4", policy, num_episodes=3, seed=10, num_envs=2, discount=g,
                       on_transition=lambda o, a, o2, d: recorded.extend(np.c_[o, o2, d.astype(float)]))
    np.testing.assert_allclose(np.stack([got.returns, got.discounted_returns, got.lengths], 1), want, rtol=1e-5)
    # on_transition sees exactly the episodes' real steps (two sub-envs interleave them): as sets
    assert len(recorded) == len(steps) == int(got.lengths.sum())
    order = lambda rows: np.asarray(rows)[np.lexsort(np.asarray(rows).T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(recorded), order(steps), rtol=1e-5, atol=1e-6)


def test_value_in_learning_units_of_a_constant_reward():
    from jaxrl_bayes.evaluation import value_in_learning_units

    r, shift, scale, g, t = 3.0, 0.5, 2.0, 0.99, np.array([1, 10, 250])
    discounted = r * (1 - g ** t) / (1 - g)
    want = np.array([np.sum((r - shift) / scale * g ** np.arange(n)) for n in t])  # summed step by step
    np.testing.assert_allclose(value_in_learning_units(discounted, t, g, shift, scale), want, rtol=1e-12)
    np.testing.assert_allclose(value_in_learning_units(r * t, t, 1.0, shift, scale), (r - shift) / scale * t)


def test_gym_episodes_record_the_first_states_the_episodes_act_in():
    """`Episodes.first_obs[k]` is the first observation the policy sees in episode k (reset with
    seed * 2^20 + k), one environment at a time, and the same with two sub-environments."""
    from jaxrl_bayes.evaluation import gym_episodes

    seen = []

    def act_fn(obs):
        seen.append(np.array(obs[0]))
        return np.full((obs.shape[0], 1), 0.5, np.float32)

    eps = gym_episodes("Pendulum-v1", act_fn, num_episodes=3, seed=40, num_envs=1, jit=False)
    starts = np.cumsum(np.concatenate([[0], eps.lengths[:-1]])).astype(int)
    first = eps.first_obs
    assert first.shape == (3, 3) and first.dtype == np.float32
    np.testing.assert_allclose(np.stack([seen[i] for i in starts]), first, rtol=1e-6)
    assert not np.allclose(first[0], first[1])  # other seeds, other states
    env = gym.make("Pendulum-v1")
    np.testing.assert_allclose([env.reset(seed=40 * 2**20 + k)[0] for k in range(3)], first, rtol=1e-6)
    two = gym_episodes("Pendulum-v1", act_fn, num_episodes=3, seed=40, num_envs=2, jit=False)
    np.testing.assert_array_equal(two.first_obs, first)


def test_evaluation_seeds_have_disjoint_episodes():
    """Evaluation seeds 0 and 1 meet no common episode (with reset seed s + k they shared all but one)."""
    from jaxrl_bayes.evaluation import episode_seed, gym_episodes

    def act_fn(obs):
        return np.zeros((obs.shape[0], 1), np.float32)

    a = gym_episodes("Pendulum-v1", act_fn, num_episodes=20, seed=0, jit=False).first_obs
    b = gym_episodes("Pendulum-v1", act_fn, num_episodes=20, seed=1, jit=False).first_obs
    assert not any(np.array_equal(x, y) for x in a for y in b)
    assert len({episode_seed(s, k) for s in range(5) for k in range(1000)}) == 5000
    with pytest.raises(ValueError, match="evaluation seed must be >= 0"):
        episode_seed(-1, 0)
