"""Robust and posterior backups: k-th min, posterior sampling, and the tabular theory.

The tabular tests build RRPI's robust regularized operator and PSPO's posterior operator from
the library's own pieces (soft_value, member_targets, kth_min_target) on an MDP with an
ensemble of transition matrices, where everything is computable exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import backups, value

S, A, N = 6, 3, 4
GAMMA, ALPHA = 0.9, 0.5


def test_kth_min_target_equals_sorting():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(10, 4, 5)).astype(np.float32)
    for k in range(1, 11):
        out = backups.kth_min_target(jnp.asarray(y), k)
        np.testing.assert_array_equal(np.asarray(out.target), np.sort(y, axis=0)[k - 1])
        np.testing.assert_array_equal(np.take_along_axis(y, np.asarray(out.member)[None], 0)[0], np.sort(y, axis=0)[k - 1])
    with pytest.raises(ValueError, match="1 <= k <= N"):
        backups.kth_min_target(jnp.asarray(y), 11)


def test_member_targets_hand_example():
    # N=2 members, K=2 samples, B=1; gamma 0.5; rewards clipped to [0, 1].
    r = jnp.array([[[0.2], [1.5]], [[0.4], [-0.1]]])
    d = jnp.array([[[False], [True]], [[False], [False]]])
    v = jnp.array([[[2.0], [9.0]], [[1.0], [3.0]]])
    y = backups.member_targets(r, d, v, 0.5, reward_range=(0.0, 1.0), value_range=(0.0, 1.1))
    # member 0: mean(0.2 + 1.0, 1.0 + 0) = 1.1 ; member 1: mean(0.4 + 0.5, 0 + 1.5) = 1.2 -> clip 1.1
    np.testing.assert_allclose(np.asarray(y), [[1.1], [1.1]], rtol=1e-6)
    y = backups.member_targets(r, d, v, 0.5, reward_range=None, value_range=None)
    np.testing.assert_allclose(np.asarray(y), [[(1.2 + 1.5) / 2], [(0.9 + 1.4) / 2]], rtol=1e-6)


def test_posterior_target_frequencies_follow_the_belief():
    b = jnp.array([0.6, 0.3, 0.1, 0.0])
    y = jnp.broadcast_to(jnp.arange(4.0)[:, None], (4, 200_000))
    out = backups.posterior_target(jax.random.PRNGKey(0), y, b)
    np.testing.assert_array_equal(np.asarray(out.target), np.asarray(out.member, np.float32))
    freq = np.bincount(np.asarray(out.member), minlength=4) / 200_000
    # binomial standard error <= sqrt(0.25 / 2e5) ~ 1.1e-3; allow 5 s.e.
    np.testing.assert_allclose(freq, np.asarray(b), atol=6e-3)
    assert freq[3] == 0.0


def test_take_members_gathers_per_state():
    x = jnp.arange(3 * 4 * 2).reshape(3, 4, 2)
    m = jnp.array([2, 0, 1, 2])
    np.testing.assert_array_equal(np.asarray(backups.take_members(x, m)), np.asarray(x)[np.asarray(m), np.arange(4)])


# ----------------------------------------------------------------------------- tabular theory


def _mdp(seed=0):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S) * 0.5, size=(N, S, A))  # (N, S, A, S')
    r = rng.uniform(size=(S, A))
    rho0 = rng.dirichlet(np.ones(S))
    return jnp.asarray(P, jnp.float32), jnp.asarray(r, jnp.float32), jnp.asarray(rho0, jnp.float32)


def _soft_v(q, mu):
    """V(s) = alpha log sum_a mu(a|s) exp(Q(s,a)/alpha) via the library (exact on discrete A)."""
    log_uniform = jnp.full((A, S), -jnp.log(A))
    return value.soft_value(q.T, jnp.log(mu).T, log_uniform, ALPHA)


def _member_y(P, r, next_v):
    # y_m(s, a) = r + gamma E_{P_m}[V(s')]; K = 1 "sample" carrying the exact expectation.
    ev = jnp.einsum("msat,t->msa", P, next_v)
    rewards = jnp.broadcast_to(r, (N, S, A))[:, None]
    return backups.member_targets(rewards, jnp.zeros_like(rewards, bool), ev[:, None], GAMMA, reward_range=None)


def robust_operator(q, P, r, mu):
    y = _member_y(P, r, _soft_v(q, mu))  # (N, S, A)
    return backups.kth_min_target(y.reshape(N, S * A), 1).target.reshape(S, A)


def posterior_operator(q, P, r, mu, b):
    y = _member_y(P, r, _soft_v(q, mu))
    return jnp.tensordot(b, y, axes=1)


def test_robust_and_posterior_operators_are_gamma_contractions():
    P, r, _ = _mdp(1)
    rng = np.random.default_rng(2)
    mu = jnp.asarray(rng.dirichlet(np.ones(A), size=S), jnp.float32)
    b = jnp.asarray(rng.dirichlet(np.ones(N)), jnp.float32)
    worst_ratio = {"robust": 0.0, "posterior": 0.0}
    for i in range(60):
        q1 = jnp.asarray(rng.normal(size=(S, A)) * 5, jnp.float32)
        q2 = q1 + jnp.asarray(rng.normal(size=(S, A)) * 10 ** rng.uniform(-2, 1), jnp.float32)
        gap = float(jnp.max(jnp.abs(q1 - q2)))
        for name, op in (("robust", lambda q: robust_operator(q, P, r, mu)),
                         ("posterior", lambda q: posterior_operator(q, P, r, mu, b))):
            ratio = float(jnp.max(jnp.abs(op(q1) - op(q2)))) / gap
            worst_ratio[name] = max(worst_ratio[name], ratio)
    for name, ratio in worst_ratio.items():
        assert ratio <= GAMMA * (1 + 1e-4), (name, ratio)
        assert ratio > 0.3 * GAMMA, (name, ratio)  # the bound is not vacuous


def _fixed_point(op, iters=250):
    q = jnp.zeros((S, A))
    for _ in range(iters):  # 0.9^250 ~ 4e-12
        q = op(q)
    return q


def _robust_return(pi, P, r, rho0):
    """J(pi) = min_p eta(pi, p) for the (s, a)-rectangular ensemble: robust policy evaluation."""
    q = jnp.zeros((S, A))
    for _ in range(250):
        v = jnp.sum(pi * q, axis=1)
        q = r + GAMMA * jnp.min(jnp.einsum("msat,t->msa", P, v), axis=0)
    return float(rho0 @ jnp.sum(pi * q, axis=1))


def test_rrpi_policy_iteration_improves_the_robust_return_monotonically():
    P, r, rho0 = _mdp(4)
    rng = np.random.default_rng(5)
    pi = jnp.asarray(rng.dirichlet(np.ones(A), size=S), jnp.float32)  # full support
    returns = [_robust_return(pi, P, r, rho0)]
    run = jax.jit(lambda pi: _fixed_point(lambda q: robust_operator(q, P, r, pi)))
    for _ in range(40):
        q_star = run(pi)
        # pi_{i+1} ∝ pi_i exp(Q*_i / alpha): the Boltzmann target over the discrete actions
        pi = value.boltzmann_weights(q_star.T, jnp.log(pi).T, jnp.zeros((A, S)), ALPHA).T
        returns.append(_robust_return(pi, P, r, rho0))
    diffs = np.diff(returns)
    assert np.all(diffs >= -1e-5), returns
    assert returns[-1] > returns[0] + 0.05
    # ... and it approaches the optimal robust return from robust value iteration
    q = jnp.zeros((S, A))
    for _ in range(250):
        q = r + GAMMA * jnp.min(jnp.einsum("msat,t->msa", P, q.max(1)), axis=0)
    optimum = float(rho0 @ q.max(1))
    assert returns[-1] <= optimum + 1e-4
    assert optimum - returns[-1] < 0.05 * (optimum - returns[0])


def test_model_targets_fuses_sampling_termination_and_value():
    # Deterministic "members": member m moves s -> s + m; value V(s') = s'; done if s' > 2.5.
    def sample_fn(key, obs, act):
        shift = jnp.arange(3.0)[:, None, None, None]
        nxt = jnp.broadcast_to(obs[None, None] + shift, (3, 2) + obs.shape)
        return nxt, jnp.full((3, 2, obs.shape[0]), 0.5)

    out = backups.model_targets(
        jax.random.PRNGKey(0), jnp.array([[0.0], [1.0]]), jnp.zeros((2, 1)),
        sample_fn=sample_fn, value_fn=lambda k, s: s[..., 0],
        termination_fn=lambda o, a, s: s[..., 0] > 2.5, discount=0.5, value_range=(0.0, 10.0))
    # state 0: members give 0.5 + 0.5*{0,1,2}; state 1: s'={1,2,3}: 0.5+0.5*1, 0.5+0.5*2, 0.5 (done)
    np.testing.assert_allclose(np.asarray(out.member_y), [[0.5, 1.0], [1.0, 1.5], [1.5, 0.5]])
    assert out.next_obs.shape == (3, 2, 2, 1)


def _stand_or_walk(normalization: str):
    """Value iteration on a 1-state task that ends on a fall: "stand" pays r = 1 and never falls,
    "walk" pays r = 3.5 and falls (terminal, value 0) with probability 0.02; a third action
    "crawl" pays -0.5 and never falls. The data's rewards span [-3.58, 8.45] (the walker2d
    look-alike's). Rewards in the learning units of `normalization`, targets clipped to that
    config's value range, as the trainer does. Returns (Q (3,), value range)."""
    from jaxrl_bayes.algos import algo_config
    from jaxrl_bayes.data.dataset import reward_normalizer

    config = algo_config("rrpi", reward_normalization=normalization)
    shift, scale = reward_normalizer(-3.58, 8.45, normalization)
    r = (jnp.asarray([1.0, 3.5, -0.5]) - shift) / scale
    fall = jnp.asarray([0.0, 0.02, 0.0])
    v = jnp.zeros(())
    for _ in range(3000):
        # expectation over the fall: (1 - p) of the alive successor's target, p of a terminal one
        q = ((1 - fall) * backups.bellman_target(r, jnp.zeros(3), v, config.discount, config.value_range)
             + fall * backups.bellman_target(r, jnp.ones(3), v, config.discount, config.value_range))
        v = q.max()
    return np.asarray(q), config.value_range


def test_pmdb_reward_shift_changes_the_optimal_policy_of_a_task_that_ends_on_a_fall():
    """Raw rewards: walking is worth 3.5 / (1 - 0.99 * 0.98) = 117.4 against standing's 1 / 0.01 = 100
    (forever), so walking is optimal. PMDB's shift adds (4.18 + ...) / 13.2 to every step, a bonus for staying alive
    that makes standing optimal; "signed" (a pure scale) keeps walking optimal, with Q = raw Q / 9.3."""
    gamma = 0.99
    walk = 3.5 / (1 - gamma * 0.98)  # V* = walking forever
    raw = np.array([1.0 + gamma * walk, walk, -0.5 + gamma * walk])  # each action once, then walk
    q_signed, rng = _stand_or_walk("signed")
    np.testing.assert_allclose(q_signed, raw / (1.1 * 8.45), rtol=1e-4)
    assert q_signed.argmax() == 1 and rng == pytest.approx((-100.0, 100.0))
    q_pmdb, _ = _stand_or_walk("pmdb")
    assert q_pmdb.argmax() == 0  # stand: the shift rewards survival more than the task does


def test_signed_rewards_keep_negative_values():
    """A task that only pays -0.5 per step is worth -0.5 / (1 - gamma) = -50 (raw); under "signed" the
    clip [-1/(1 - gamma), 1/(1 - gamma)] keeps it; a [0, 1/(1 - gamma)] clip would read 0."""
    from jaxrl_bayes.algos import algo_config
    from jaxrl_bayes.data.dataset import reward_normalizer

    config = algo_config("rrpi", reward_normalization="signed")
    shift, scale = reward_normalizer(-0.5, -0.5, "signed")
    assert (shift, scale) == (0.0, 0.55) and config.reward_range == (-1.0, 1.0)
    v = jnp.zeros(())
    for _ in range(3000):
        v = backups.bellman_target(jnp.asarray(-0.5 / scale), jnp.zeros(()), v, config.discount, config.value_range)
    np.testing.assert_allclose(float(v) * scale, -50.0, rtol=1e-4)
    assert reward_normalizer(0.0, 0.0, "signed") == (0.0, 1.0)
    assert reward_normalizer(-5.0, 2.0, "signed") == (0.0, 5.5)
