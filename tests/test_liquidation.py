"""Tests for the optimal-liquidation benchmark (jaxrl_bayes.envs.liquidation, liquidation_dp).

Reference answers are independent of the code under test: plain numpy Monte Carlo of the
price recursion written here, the unclipped OU closed form E[p_t] = 1.5 - 0.5 * 0.95^t, a
hand-computed transition, and the numpy Gymnasium environment against the JAX environment.
Monte Carlo comparisons use 4 standard errors (false-alarm rate about 6e-5 per comparison).
"""

from __future__ import annotations

import importlib
import math
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_bayes.envs as envs
from jaxrl_bayes.envs import liquidation as liq
from jaxrl_bayes.envs import liquidation_dp
from jaxrl_bayes.termination import liquidation_termination

THETA, MU, SIGMA = 0.05, 1.5, 0.2  # BENCHMARKS.md, written out independently of CONFIG
H = 20


# ------------------------------------------------------------------ independent references


def numpy_price_paths(num_paths: int, seed: int, clip: bool = True) -> np.ndarray:
    """[num_paths, 20] prices p_0..p_19 of the OU recursion, plain numpy (test-side)."""
    rng = np.random.default_rng(seed)
    p = 1.0 + 0.05 * rng.standard_normal(num_paths)
    out = np.empty((num_paths, H))
    for t in range(H):
        out[:, t] = p
        p = p + THETA * (MU - p) + SIGMA * rng.standard_normal(num_paths)
        if clip:
            p = np.clip(p, 0.0, 5.0)
    return out


@pytest.fixture(scope="module")
def price_mc():
    """E[p_t] and its standard error from 400k numpy paths."""
    paths = numpy_price_paths(400_000, seed=123)
    return paths.mean(0), paths.std(0, ddof=1) / math.sqrt(paths.shape[0])


def numpy_policy(name: str, rng: np.random.Generator):
    def act(obs):
        t = int(round(float(obs[0])))
        if name == "all_at_once":
            return np.array([1.0], np.float32)
        if name == "equal_shares":
            return np.array([1.0 / (H - t)], np.float32)
        if name == "last_step":
            return np.array([1.0 if t == H - 1 else -1.0], np.float32)
        if name == "behaviour":
            u = rng.random()
            return np.array([-u if rng.random() < 0.8 else 1.0 - u], np.float32)
        raise AssertionError(name)

    return act


def gym_returns(name: str, num_episodes: int, seed: int) -> np.ndarray:
    env = liq.LiquidationEnv()
    act = numpy_policy(name, np.random.default_rng(seed + 1))
    env.reset(seed=seed)
    out = np.empty(num_episodes)
    for i in range(num_episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            obs, r, done, truncated, _ = env.step(act(obs))
            assert not truncated
            total += r
        out[i] = total
    return out


def mean_std_se(x: np.ndarray) -> tuple[float, float, float, float]:
    """mean, std, s.e.(mean), s.e.(std) (delta method, s.e.(var) / 2 std)."""
    n = x.size
    mean, std = x.mean(), x.std(ddof=1)
    se_var = ((x - mean) ** 2).std(ddof=1) / math.sqrt(n)
    return mean, std, std / math.sqrt(n), se_var / (2 * std) if std > 0 else 0.0


# ------------------------------------------------------------------ environment agreement

JAX_POLICIES = {
    "all_at_once": liq.FIXED_POLICIES["all_at_once"],
    "equal_shares": liq.FIXED_POLICIES["equal_shares"],
    "last_step": liq.FIXED_POLICIES["last_step"],
    "behaviour": liq.FIXED_POLICIES["behaviour"],
}


@pytest.mark.parametrize("name", list(JAX_POLICIES))
def test_gym_and_jax_envs_agree_in_return_statistics(name):
    g = mean_std_se(gym_returns(name, 12_000, seed=7))
    j = mean_std_se(liq.monte_carlo_returns(JAX_POLICIES[name], 100_000, seed=11))
    assert abs(g[0] - j[0]) < 4 * math.hypot(g[2], j[2]), (name, g, j)
    assert abs(g[1] - j[1]) < 4 * math.hypot(g[3], j[3]), (name, g, j)


def test_gym_env_hand_computed_transition():
    env = liq.LiquidationEnv()
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (3,)
    assert obs[0] == 0 and obs[1] == 100 and abs(obs[2] - 1.0) < 0.3
    p0 = float(obs[2])
    obs1, r, term, trunc, info = env.step(np.array([0.25], np.float32))
    assert r == pytest.approx(25.0 * p0, rel=1e-6)
    assert obs1[0] == 1 and obs1[1] == pytest.approx(75.0)
    assert not term and not trunc
    obs2, r, term, _, _ = env.step(np.array([-0.4], np.float32))  # hold
    assert r == 0.0 and obs2[1] == pytest.approx(75.0) and not term
    _, r, term, _, _ = env.step(np.array([0.9995], np.float32))  # leaves 0.0375 < 0.1
    assert term and r == pytest.approx(75.0 * 0.9995 * float(obs2[2]), rel=1e-6)


def test_jax_env_hand_computed_transition_and_jit_vmap():
    state = liq.LiquidationState(jnp.int32(3), jnp.float32(50.0), jnp.float32(2.0))
    key = jax.random.PRNGKey(5)
    eps = float(jax.random.normal(key, (), dtype=jnp.float32))
    nxt, obs, r, done = jax.jit(liq.step)(state, jnp.array([0.5]), key)
    assert float(r) == pytest.approx(50.0)
    assert float(nxt.money) == pytest.approx(25.0) and int(nxt.t) == 4 and not bool(done)
    expected_p = min(max(2.0 + THETA * (MU - 2.0) + SIGMA * eps, 0.0), 5.0)
    assert float(nxt.price) == pytest.approx(expected_p, abs=1e-6)
    np.testing.assert_allclose(np.asarray(obs), [4.0, 25.0, expected_p], rtol=1e-6)
    # hold at the last step: done, nothing earned, the money is lost
    last = liq.LiquidationState(jnp.int32(19), jnp.float32(50.0), jnp.float32(2.0))
    _, _, r, done = liq.step(last, jnp.array([-0.2]), key)
    assert float(r) == 0.0 and bool(done)
    # the money cut: 100 -> 0.05 < 0.1 ends the episode
    s0, _ = liq.reset(key)
    _, _, _, done = liq.step(s0, jnp.array([0.9995]), key)
    assert bool(done)
    # vmap + jit over a batch
    keys = jax.random.split(key, 8)
    states, obs = jax.jit(jax.vmap(liq.reset))(keys)
    assert obs.shape == (8, 3) and obs.dtype == jnp.float32
    nxt, obs, r, done = jax.jit(jax.vmap(liq.step))(states, jnp.full((8, 1), 0.5), keys)
    assert obs.shape == (8, 3) and r.shape == (8,) and done.shape == (8,)
    np.testing.assert_allclose(np.asarray(nxt.money), 50.0)


def test_gymnasium_registration_and_env_checker():
    env = gymnasium.make("Liquidation-v0")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    from gymnasium.utils.env_checker import check_env

    check_env(liq.LiquidationEnv(), skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)  # the guard must prevent a second registration (a warning)
    assert "Liquidation-v0" in gymnasium.registry


# ------------------------------------------------------------------ dynamic programming


def test_dp_value_equals_monte_carlo_of_dp_policy():
    dp = liq.dp_optimum()
    assert dp.expected_return == pytest.approx(137.5, abs=0.1)
    assert dp.normalized == pytest.approx(101.8, abs=0.1)
    assert dp.value_table.shape == (H, dp.price_grid.size)
    # grid convergence: halving the step changes the optimum by < 0.005
    assert abs(liq.dp_optimum(1001).expected_return - dp.expected_return) < 5e-3
    # at t = 18 the continuation is E[p_19 | p] = 0.95 p + 0.075 (+ clip, negligible near 1.5)
    assert dp.thresholds[18] == pytest.approx(1.5, abs=1e-4)
    assert dp.thresholds[19] == 0.0
    assert np.all(np.diff(dp.thresholds[:19]) < 0)  # the bar falls as the deadline nears
    r = envs.evaluate_policy(envs.make_dp_policy(), num_episodes=200_000, seed=1)
    mean, _, se, _ = mean_std_se(r)
    assert abs(mean - dp.expected_return) < 4 * se, (mean, se, dp.expected_return)


def test_dp_beats_every_fixed_policy():
    dp = liq.dp_optimum()
    for name, value in liq.fixed_policy_values_analytic().items():
        assert dp.expected_return > value, name
    # and a perturbed threshold policy does not beat it (Monte Carlo, common random numbers)
    base = envs.evaluate_policy(envs.make_dp_policy(), 20_000, seed=2)
    for shift in (0.15,):  # one shift: each new threshold vector costs a compile
        other = envs.evaluate_policy(envs.make_dp_policy(dp.thresholds + shift), 20_000, seed=2)
        d = base - other
        assert d.mean() > -4 * d.std(ddof=1) / math.sqrt(d.size), shift


def test_transition_weights_are_exact_for_linear_functions():
    grid = np.linspace(0.0, 5.0, 501)
    means = np.array([-0.5, 0.0, 0.1, 1.0, 4.9, 5.3])
    w = liquidation_dp.gaussian_hat_weights(means, 0.2, grid)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert w.min() > -1e-12
    # E[clip(X, 0, 5)] for X ~ N(m, s^2), by direct numerical integration (test-side)
    x = np.linspace(-3.0, 8.0, 400_001)
    for m, row in zip(means, w):
        dens = np.exp(-0.5 * ((x - m) / 0.2) ** 2) / (0.2 * math.sqrt(2 * math.pi))
        expect = np.trapezoid(np.clip(x, 0.0, 5.0) * dens, x)
        assert row @ grid == pytest.approx(expect, abs=1e-8)


# ------------------------------------------------------------------ closed forms


def test_numpy_reference_recursion_matches_unclipped_closed_form():
    # Checks the test-side harness: without the clip, E[p_t] = 1.5 - 0.5 * 0.95^t exactly.
    paths = numpy_price_paths(200_000, seed=5, clip=False)
    se = paths.std(0, ddof=1) / math.sqrt(paths.shape[0])
    exact = 1.5 - 0.5 * 0.95 ** np.arange(H)
    assert np.all(np.abs(paths.mean(0) - exact) < 4 * se)


def test_expected_prices_match_numpy_monte_carlo(price_mc):
    mean, se = price_mc
    ep = liq.expected_prices()
    assert ep[0] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.abs(ep - mean) < 4 * se + 1e-4)
    # The clip at 0 is NOT negligible: it lifts E[p_19] from 1.3113 (no clip) to about 1.3195.
    assert ep[-1] - (1.5 - 0.5 * 0.95**19) > 0.005


def test_fixed_policy_values_match_closed_forms(price_mc):
    ep_mc, ep_se = price_mc
    n = 100_000
    # all at once: 100 E[p_0] = 100 (p_0 ~ N(1, 0.05^2); its clip is immaterial)
    r = liq.monte_carlo_returns(liq.FIXED_POLICIES["all_at_once"], n, seed=21)
    assert abs(r.mean() - 100.0) < 4 * r.std() / math.sqrt(n)
    # last step: 100 E[p_19]
    r = liq.monte_carlo_returns(liq.FIXED_POLICIES["last_step"], n, seed=22)
    assert abs(r.mean() - 100 * ep_mc[-1]) < 4 * math.hypot(r.std() / math.sqrt(n), 100 * ep_se[-1])
    # equal shares: 5 sum_t E[p_t]; the sum's s.e. is bounded by the sum of s.e.s
    r = liq.monte_carlo_returns(liq.FIXED_POLICIES["equal_shares"], n, seed=23)
    assert abs(r.mean() - 5 * ep_mc.sum()) < 4 * math.hypot(
        r.std() / math.sqrt(n), 5 * ep_se.sum()
    )
    # the library's analytic values agree with these references
    analytic = liq.fixed_policy_values_analytic()
    assert analytic["all_at_once"] == pytest.approx(100.0, abs=1e-6)
    assert abs(analytic["last_step"] - 100 * ep_mc[-1]) < 4 * 100 * ep_se[-1] + 0.01
    assert abs(analytic["equal_shares"] - 5 * ep_mc.sum()) < 4 * 5 * ep_se.sum() + 0.01


def test_behaviour_policy_value_closed_form(price_mc):
    ep_mc, ep_se = price_mc
    sales = liq.behaviour_expected_sales()
    # Without the m' < 0.1 cut each step sells E[f] = 0.1 of what is left: 10 * 0.9^t.
    no_cut = 10.0 * 0.9 ** np.arange(H)
    assert sales[0] == pytest.approx(10.0) and np.all(sales <= no_cut + 1e-12)
    # With the cut, by a test-side numpy simulation of the money process alone.
    rng = np.random.default_rng(9)
    m = np.full(500_000, 100.0)
    alive = np.ones(m.size, bool)
    sold = np.empty((H, m.size))
    for t in range(H):
        f = np.where(rng.random(m.size) < 0.8, 0.0, 1.0 - rng.random(m.size))
        m_next = m * (1 - f)
        sold[t] = np.where(alive, m - m_next, 0.0)
        alive &= m_next >= 0.1
        m = m_next
    se = sold.std(1, ddof=1) / math.sqrt(m.size)
    assert np.all(np.abs(sold.mean(1) - sales) < 4 * se + 1e-9)
    # Value: sum_t E[sale_t] E[p_t] (money and policy independent of the rate).
    expect = float(sales @ ep_mc)
    n = 200_000
    r = liq.monte_carlo_returns(liq.behaviour_policy, n, seed=24)
    assert abs(r.mean() - expect) < 4 * math.hypot(r.std() / math.sqrt(n), float(sales @ ep_se))
    # the library's value uses the grid's E[p_t]; the reference's noise is <= sales @ se
    analytic = liq.fixed_policy_values_analytic()["behaviour"]
    assert abs(analytic - expect) < 4 * float(sales @ ep_se) + 0.01


# ------------------------------------------------------------------ dataset


@pytest.fixture(scope="module")
def dataset():
    return envs.generate_dataset(seed=0, num_transitions=20_000)


def test_dataset_schema_size_and_determinism(dataset):
    d = dataset
    assert set(d) == {
        "observations", "actions", "rewards", "next_observations", "terminals", "timeouts"
    }
    n = 20_000
    assert d["observations"].shape == (n, 3) and d["observations"].dtype == np.float32
    assert d["next_observations"].shape == (n, 3) and d["next_observations"].dtype == np.float32
    assert d["actions"].shape == (n, 1) and d["actions"].dtype == np.float32
    assert d["rewards"].shape == (n,) and d["rewards"].dtype == np.float32
    assert d["terminals"].dtype == bool and d["timeouts"].dtype == bool
    again = envs.generate_dataset(seed=0, num_transitions=n)
    for k in d:
        np.testing.assert_array_equal(d[k], again[k])
    other = envs.generate_dataset(seed=1, num_transitions=n)
    assert not np.array_equal(d["observations"], other["observations"])
    small = envs.generate_dataset(seed=0, num_transitions=777)
    assert small["rewards"].shape == (777,)
    np.testing.assert_array_equal(small["observations"], d["observations"][:777])
    # a cut mid-episode is a time-out, as D4RL marks it
    assert small["timeouts"][-1] == (not small["terminals"][-1])
    assert not small["timeouts"][:-1].any()
    assert envs.generate_dataset(seed=3)["rewards"].shape == (200_000,)


def test_dataset_episodes_and_dynamics(dataset):
    d = dataset
    obs, nxt, act, rew = d["observations"], d["next_observations"], d["actions"][:, 0], d["rewards"]
    term = d["terminals"]
    # episodes: consecutive rows chain unless a terminal; after a terminal a fresh start
    chain = ~term[:-1]
    np.testing.assert_array_equal(nxt[:-1][chain], obs[1:][chain])
    starts = obs[1:][term[:-1]]
    assert np.all(starts[:, 0] == 0) and np.all(starts[:, 1] == 100)
    assert obs[0, 0] == 0 and obs[0, 1] == 100
    assert np.all(nxt[:, 0] == obs[:, 0] + 1) and np.all(obs[:, 0] <= H - 1)
    # terminals exactly where the MDP ends, agreeing with termination.py
    ends = (nxt[:, 0] >= H) | (nxt[:, 1] < 0.1)
    np.testing.assert_array_equal(term, ends)
    np.testing.assert_array_equal(
        term, np.asarray(liquidation_termination(jnp.asarray(obs), None, jnp.asarray(nxt)))
    )
    ep_len = np.diff(np.concatenate([[-1], np.flatnonzero(term)]))
    assert ep_len.max() <= H
    # behaviour: hold w.p. 0.8, sell fraction ~ U(0, 1]
    hold = act <= 0
    assert abs(hold.mean() - 0.8) < 4 * math.sqrt(0.16 / act.size)
    assert np.all(act >= -1) and np.all(act <= 1)
    sell = act[~hold]
    assert abs(sell.mean() - 0.5) < 4 * math.sqrt(1 / 12 / sell.size)
    # money and reward
    frac = np.clip(act, 0, 1)
    np.testing.assert_allclose(nxt[:, 1], obs[:, 1] * (1 - frac), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rew, (obs[:, 1] - nxt[:, 1]) * obs[:, 2], rtol=1e-4, atol=1e-5)
    # rate noise: standardised residuals ~ N(0, 1) where no clip acted
    p, p2 = obs[:, 2].astype(np.float64), nxt[:, 2].astype(np.float64)
    inside = (p2 > 0) & (p2 < 5)
    z = (p2 - p - THETA * (MU - p))[inside] / SIGMA
    assert abs(z.mean()) < 4 / math.sqrt(z.size)
    assert abs(z.std() - 1) < 4 / math.sqrt(2 * z.size)
    p0 = obs[obs[:, 0] == 0, 2]
    assert abs(p0.mean() - 1.0) < 4 * 0.05 / math.sqrt(p0.size)


# ------------------------------------------------------------------ evaluation and bad input


def test_evaluate_policy_and_score_summary():
    r = envs.evaluate_policy(envs.all_at_once_policy, num_episodes=1000, seed=0)
    assert r.shape == (1000,)
    s = envs.score_summary(r)
    assert s["return_mean"] == pytest.approx(r.mean())
    assert s["normalized_mean"] == pytest.approx(100 * r.mean() / 135)
    assert s["normalized_std"] == pytest.approx(100 * r.std(ddof=1) / 135)
    assert s["fraction_of_optimum"] == pytest.approx(r.mean() / liq.dp_optimum().expected_return)
    assert s["num_episodes"] == 1000
    # same seed, same episodes: common random numbers across calls
    np.testing.assert_array_equal(r, envs.evaluate_policy(envs.all_at_once_policy, 1000, 0))

    class Unhashable:  # e.g. a policy object defining __eq__ only: must still be accepted
        __hash__ = None

        def __call__(self, o):
            return jnp.ones((o.shape[0], 1))

    np.testing.assert_array_equal(r, envs.evaluate_policy(Unhashable(), 1000, 0))


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), float("inf")])
def test_gym_env_rejects_bad_actions(bad):
    env = liq.LiquidationEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([bad], np.float32))


def test_gym_env_rejects_wrong_shape_and_misuse():
    env = liq.LiquidationEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.5], np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([0.5, 0.5], np.float32))
    env.step(np.array([1.0], np.float32))  # sells everything: terminates
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.5], np.float32))
    with pytest.raises(ValueError, match="render_mode"):
        liq.LiquidationEnv(render_mode="human")


def test_evaluate_policy_rejects_bad_policies():
    with pytest.raises(ValueError, match=r"1000 out-of-range.*tanh"):
        envs.evaluate_policy(lambda o: 2.0 * jnp.ones((o.shape[0], 1)), 1000)
    with pytest.raises(ValueError, match=r"20000 non-finite"):
        envs.evaluate_policy(lambda o: jnp.full((o.shape[0], 1), -jnp.nan), 1000)
    with pytest.raises(ValueError, match="shape"):
        envs.evaluate_policy(lambda o: jnp.ones((o.shape[0],)), 10)
    with pytest.raises(ValueError, match="num_episodes"):
        envs.evaluate_policy(envs.all_at_once_policy, 0)
    with pytest.raises(ValueError, match="num_transitions"):
        envs.generate_dataset(0, num_transitions=0)


# ------------------------------------------------------------------ evaluation with traced params

_COMPILES: list[str] = []
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _on_event(event, duration, **kwargs):
    if event == _COMPILE_EVENT:
        _COMPILES.append(str(kwargs.get("fun_name", "")))


jax.monitoring.register_event_duration_secs_listener(_on_event)


def test_evaluate_policy_with_params_compiles_once_and_matches_the_closure_form():
    def act(params, obs):  # a fresh function object: nothing compiled for it yet
        z = (obs - jnp.array([10.0, 50.0, 1.3])) / jnp.array([6.0, 30.0, 0.3])
        return jnp.tanh(z @ params["w"] + params["b"])

    # the counter sees a fresh jit compilation (otherwise the zero below proves nothing)
    n0 = len(_COMPILES)
    jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(7))
    assert len(_COMPILES) > n0

    rng = np.random.default_rng(0)
    pa, pb = ({"w": jnp.asarray(rng.normal(size=(3, 1)) * s, jnp.float32), "b": jnp.full((1,), b, jnp.float32)}
              for s, b in ((0.5, 0.2), (2.0, -0.1)))
    n0 = len(_COMPILES)
    ra = liq.evaluate_policy(act, num_episodes=500, seed=3, params=pa)
    assert len(_COMPILES) > n0  # the first evaluation compiled the rollout
    n1 = len(_COMPILES)
    rb = liq.evaluate_policy(act, num_episodes=500, seed=3, params=pb)
    assert len(_COMPILES) == n1, _COMPILES[n1:]  # other parameter values: nothing compiled
    assert not np.allclose(ra, rb) and ra.std() > 0 and rb.std() > 0  # the parameters are used
    # the same returns as the old closure form (which compiles per closure)
    np.testing.assert_allclose(rb, liq.evaluate_policy(lambda o: act(pb, o), 500, 3), rtol=1e-6)
    assert len(_COMPILES) > n1
    np.testing.assert_allclose(ra, liq.evaluate_policy(lambda o: act(pa, o), 500, 3), rtol=1e-6)
