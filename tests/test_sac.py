"""Tests of jaxrl_bayes.sac: losses against exact answers, replay through the one ring buffer, learning."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_bayes.collect as collect
from jaxrl_bayes import buffer, evaluation, sac
from jaxrl_bayes.errors import UserError

warnings.filterwarnings("ignore", message=".*out of date.*")

SMALL = sac.SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64)
# Jitted once per config (op-by-op dispatch of an un-jitted update is slow).
_update = jax.jit(sac.update, static_argnames="config")


def _transitions(n, obs_dim=3, act_dim=2, start=0):
    idx = jnp.arange(start, start + n, dtype=jnp.float32)
    return buffer.Transition(
        obs=jnp.tile(idx[:, None], (1, obs_dim)),
        act=jnp.zeros((n, act_dim)),
        reward=idx,
        next_obs=jnp.tile(idx[:, None], (1, obs_dim)) + 0.5,
        done=jnp.zeros((n,)),
    )


def _replay(capacity, items):
    example = jax.tree_util.tree_map(lambda x: x[0], items)
    return buffer.buffer_add(buffer.buffer_init(capacity, example), items)


def test_sac_samples_only_valid_rows_of_the_ring_buffer():
    rows = _transitions(7)
    state = sac.init(jax.random.PRNGKey(0), SMALL, 3, 2)
    buf = _replay(100, rows)
    assert int(buf.count) == 7
    batch = buffer.buffer_sample(buf, jax.random.PRNGKey(0), 2000)
    r = np.asarray(batch.reward)
    assert set(np.unique(r)) == set(range(7))  # every valid row, nothing else
    np.testing.assert_array_equal(np.asarray(batch.obs)[:, 0], r)  # rows stay aligned
    new, _ = sac.jitted(SMALL, 2).update_many(state, buf, jax.random.PRNGKey(1), 2)
    assert int(new.num_updates) == 2


def test_target_network_is_polyak_average():
    cfg = sac.SACConfig(actor_hidden=(8,), critic_hidden=(8,), tau=0.25)
    state = sac.init(jax.random.PRNGKey(0), cfg, 3, 2)
    batch = _transitions(16)
    new, _ = _update(state, batch, jax.random.PRNGKey(1), config=cfg)
    expect = jax.tree_util.tree_map(lambda q, t: 0.25 * q + 0.75 * t, new.critic_params,
                                    state.target_critic_params)
    for a, b in zip(jax.tree_util.tree_leaves(new.target_critic_params),
                    jax.tree_util.tree_leaves(expect)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(new.num_updates) == 1


@pytest.mark.parametrize("target, sign", [(-100.0, -1), (100.0, 1)])
def test_temperature_moves_toward_target_entropy(target, sign):
    # L = -log_alpha (log pi + H*): entropy far above H* (-100) must lower alpha, far below
    # (+100, unreachable) must raise it; Adam's first step has size lr.
    cfg = sac.SACConfig(actor_hidden=(8,), critic_hidden=(8,), target_entropy=target)
    state = sac.init(jax.random.PRNGKey(0), cfg, 3, 2)
    new, m = _update(state, _transitions(16), jax.random.PRNGKey(1), config=cfg)
    np.testing.assert_allclose(float(new.log_alpha - state.log_alpha), sign * cfg.alpha_lr,
                               rtol=1e-3)
    assert float(m.alpha) == pytest.approx(1.0)  # alpha of the pre-update state


@pytest.mark.parametrize("discount, terminal", [(0.0, 0.0), (0.99, 1.0)])
def test_critic_learns_reward_when_no_bootstrap(discount, terminal):
    """With gamma = 0, or every transition terminal, Q(s, a) -> r(s, a) exactly."""
    cfg = sac.SACConfig(actor_hidden=(32, 32), critic_hidden=(64, 64), discount=discount,
                        critic_lr=3e-3, batch_size=32)
    key = jax.random.PRNGKey(0)
    obs = jax.random.normal(key, (32, 3))
    act = jnp.tanh(jax.random.normal(jax.random.PRNGKey(1), (32, 2)))
    rew = jnp.sin(obs[:, 0]) + act[:, 1]
    batch = buffer.Transition(obs, act, rew, obs + 1.0, jnp.full((32,), terminal))
    state = sac.init(jax.random.PRNGKey(2), cfg, 3, 2)

    def body(s, k):
        return sac.update(s, batch, k, cfg)

    state, m = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(key, 1000)))(state)
    q = sac.critic_module(cfg).apply(state.critic_params, obs, act)
    np.testing.assert_allclose(np.asarray(q), np.broadcast_to(np.asarray(rew), q.shape),
                               atol=0.05)


def test_update_many_equals_sequential_updates():
    buf = _replay(64, _transitions(40))
    state = sac.init(jax.random.PRNGKey(0), SMALL, 3, 2)
    key = jax.random.PRNGKey(3)
    scanned, metrics = jax.jit(sac.update_many, static_argnums=(3, 4))(state, buf, key, SMALL, 3)
    assert metrics.critic_loss.shape == (3,)
    seq = state
    for k in jax.random.split(key, 3):
        kb, ku = jax.random.split(k)
        seq, _ = _update(seq, buffer.buffer_sample(buf, kb, SMALL.batch_size), ku, config=SMALL)
    for a, b in zip(jax.tree_util.tree_leaves(scanned), jax.tree_util.tree_leaves(seq)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_explore_and_act_shapes_and_bounds():
    state = sac.init(jax.random.PRNGKey(0), SMALL, 3, 2)
    obs = jnp.ones((5, 3))
    a = sac.explore(state.actor_params, obs, jax.random.PRNGKey(1), SMALL, 2)
    d = sac.act(state.actor_params, obs, SMALL, 2)
    assert a.shape == d.shape == (5, 2)
    assert bool(jnp.all(jnp.abs(a) < 1)) and bool(jnp.all(jnp.abs(d) < 1))


def test_bad_config_is_rejected():
    with pytest.raises(UserError, match="tau"):
        sac.SACConfig(tau=0.0)
    with pytest.raises(UserError, match="batch_size"):
        sac.SACConfig(batch_size=0)


def _pendulum_config(steps):
    # Small nets and lr 1e-3 so that a CI budget suffices (measured: the return goes from about
    # -1500 to about -250 within 3000 steps on seed 0).
    cfg = sac.SACConfig(actor_hidden=(64, 64), critic_hidden=(64, 64), batch_size=128,
                        actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3)
    return collect.CollectConfig(env="Pendulum-v1", sac=cfg, sac_steps=steps, start_steps=1000,
                             update_after=1000, steps_per_epoch=1000, eval_every=1000,
                             eval_episodes=5, max_episode_steps=200, seed=0)


def test_sac_improves_on_pendulum():
    """Pendulum-v1: an untrained policy scores about -1200 to -1800; SAC must beat -700."""
    config = _pendulum_config(4000)
    untrained = sac.init(jax.random.PRNGKey(123), config.sac, 3, 1)
    base = evaluation.evaluate_gym(  # Pendulum's torque box is [-2, 2]
        "Pendulum-v1", lambda p, o: 2.0 * sac.act(p, o, config.sac, 1), num_episodes=5,
        seed=999, params=untrained.actor_params).mean()
    result = collect.train_sac(config)
    late = np.mean([p.return_mean for p in result.curve[-2:]])
    assert base < -900, base
    assert late > -700 and late > base + 400, (base, [tuple(p) for p in result.curve])


@pytest.mark.slow
def test_sac_solves_inverted_pendulum():
    """InvertedPendulum-v4 with D4RL's SAC defaults: reaches the 1000-step maximum."""
    config = collect.CollectConfig(env="InvertedPendulum-v4", sac_steps=20_000, start_steps=2000,
                               eval_every=2000, eval_episodes=5)
    result = collect.train_sac(config)
    assert max(p.return_mean for p in result.curve) >= 900, [tuple(p) for p in result.curve]
