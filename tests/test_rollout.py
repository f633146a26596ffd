"""Ring buffer and lax.scan model rollouts with member selectors."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import buffer, rollout


def _items(values):
    v = jnp.asarray(values, jnp.float32)
    return buffer.Transition(v[:, None], v[:, None], v, v[:, None], jnp.zeros_like(v, bool))


def test_ring_buffer_keeps_exactly_the_newest_entries():
    buf = buffer.buffer_init(10, jax.tree_util.tree_map(lambda x: x[0], _items([0.0])))
    buf = buffer.buffer_add(buf, _items(np.arange(1, 8)))  # 1..7
    assert int(buf.count) == 7 and int(buf.index) == 7
    valid = np.array([True, False, True, True, True, False, True, True])
    buf = buffer.buffer_add(buf, _items(np.arange(8, 16)), jnp.asarray(valid))  # adds 8,10,11,12,14,15
    assert int(buf.count) == 10
    added = [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 14, 15]
    assert sorted(np.asarray(buf.data.reward).tolist()) == added[-10:]
    # An oversized batch keeps its newest `capacity` valid rows.
    buf = buffer.buffer_add(buf, _items(np.arange(100, 125)))
    assert sorted(np.asarray(buf.data.reward).tolist()) == list(range(115, 125))
    assert int(buf.count) == 10


def test_oldest_not_newest_block_is_overwritten():
    buf = buffer.buffer_init(6, jax.tree_util.tree_map(lambda x: x[0], _items([0.0])))
    for start in (1, 5, 9):
        buf = buffer.buffer_add(buf, _items(np.arange(start, start + 4)))
    # 12 values added into 6 slots: exactly the newest six survive
    assert sorted(np.asarray(buf.data.reward).tolist()) == [7, 8, 9, 10, 11, 12]


def test_samples_never_touch_empty_slots():
    buf = buffer.buffer_init(100, jax.tree_util.tree_map(lambda x: x[0], _items([0.0])))
    buf = buffer.buffer_add(buf, _items([5.0, 6.0, 7.0]))
    batch = buffer.buffer_sample(buf, jax.random.PRNGKey(0), 5000)
    values = np.asarray(batch.reward)
    assert set(values.tolist()) == {5.0, 6.0, 7.0}  # never a zero-filled empty slot


# Deterministic members: member m moves s -> s + step[m] and pays reward[m].
STEPS = jnp.array([1.0, 0.5, 2.0])
REWARDS = jnp.array([1.0, 0.0, 2.0])


def _sample_fn(key, obs, act):
    nxt = obs[None, None] + STEPS[:, None, None, None]
    rew = jnp.broadcast_to(REWARDS[:, None, None], (3, 1, obs.shape[0]))
    return nxt, rew


def _policy(key, obs):
    return jnp.zeros((obs.shape[0], 1))


def test_terminated_paths_stay_terminated_and_add_nothing():
    start = jnp.array([[0.0], [2.5], [10.0]])
    r = rollout.rollout(
        jax.random.PRNGKey(0), start, policy_fn=_policy, sample_fn=_sample_fn,
        termination_fn=lambda o, a, s: s[..., 0] > 3.0,
        selector=rollout.uniform_selector, horizon=8)
    valid = np.asarray(r.valid)
    done = np.asarray(r.transitions.done)
    for b in range(3):
        # valid is a prefix: once invalid, always invalid
        v = valid[:, b]
        assert np.all(np.diff(v.astype(int)) <= 0)
        # the last valid transition is the first done one, nothing valid after it
        first_done = np.argmax(done[:, b] & v) if np.any(done[:, b] & v) else None
        assert first_done is not None
        assert not np.any(v[first_done + 1:])
    assert valid[0, 2] and done[0, 2]  # starts beyond the threshold: one transition, then stop
    items, flat_valid = rollout.flatten_rollout(r)
    buf = buffer.buffer_add(buffer.buffer_init(64, jax.tree_util.tree_map(lambda x: x[0], items)), items, flat_valid)
    assert int(buf.count) == int(valid.sum())


def test_worst_case_selector_picks_the_smallest_target():
    start = jnp.linspace(-1, 1, 7)[:, None]
    gamma = 0.9
    sel = rollout.worst_case_selector(lambda k, s: s[..., 0], gamma, k=1, reward_range=None)
    r = rollout.rollout(jax.random.PRNGKey(0), start, policy_fn=_policy, sample_fn=_sample_fn,
                        termination_fn=lambda o, a, s: jnp.zeros(s.shape[:-1], bool), selector=sel, horizon=3)
    # y_m = reward[m] + gamma (s + step[m]) -> member 1 (0 + 0.5 gamma) is always the smallest
    assert np.all(np.asarray(r.member) == 1)
    np.testing.assert_allclose(np.asarray(r.transitions.next_obs[-1, :, 0]), np.asarray(start[:, 0]) + 1.5)
    sel2 = rollout.worst_case_selector(lambda k, s: s[..., 0], gamma, k=2, reward_range=None)
    r2 = rollout.rollout(jax.random.PRNGKey(0), start, policy_fn=_policy, sample_fn=_sample_fn,
                         termination_fn=lambda o, a, s: jnp.zeros(s.shape[:-1], bool), selector=sel2, horizon=1)
    assert np.all(np.asarray(r2.member) == 0)  # second smallest: 1 + gamma


def test_posterior_selector_frequencies_match_the_belief():
    b = jnp.array([0.5, 0.35, 0.15])
    start = jnp.zeros((20_000, 1))
    r = rollout.rollout(jax.random.PRNGKey(3), start, policy_fn=_policy, sample_fn=_sample_fn,
                        termination_fn=lambda o, a, s: jnp.zeros(s.shape[:-1], bool),
                        selector=rollout.posterior_selector(b), horizon=2)
    freq = np.bincount(np.asarray(r.member).ravel(), minlength=3) / r.member.size
    # 40,000 draws: standard error <= sqrt(0.25/4e4) = 0.0025; tolerance 4 s.e. = 0.01
    np.testing.assert_allclose(freq, np.asarray(b), atol=0.01)


def test_out_of_bounds_successors_end_the_path_and_are_discarded():
    start = jnp.array([[0.0]])
    r = rollout.rollout(jax.random.PRNGKey(0), start, policy_fn=_policy, sample_fn=_sample_fn,
                        termination_fn=lambda o, a, s: jnp.zeros(s.shape[:-1], bool),
                        selector=rollout.uniform_selector, horizon=10,
                        obs_bounds=(jnp.array([-5.0]), jnp.array([5.0])))
    valid = np.asarray(r.valid[:, 0])
    nxt = np.asarray(r.transitions.next_obs[:, 0, 0])
    assert np.all(nxt[valid] <= 5.0)
    assert not valid[-1]
