"""Tests for jaxrl_bayes.dynamics: the pool recovers a known linear-Gaussian system.

Ground truth: s' = s + A s + B a + diag(σ) ε, r = c·s + d·a + σ_r ε'. A member that fits the
data well must predict the true mean E[s'|s, a] and the true noise scale σ; its validation
NLL in standardised target space must approach the analytic optimum
mean_d [0.5 + log(σ_d / std_d) + 0.5 log 2π].
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import dynamics as dyn
from jaxrl_bayes.data.dataset import MIN_TRANSITIONS, DatasetError, mean_std
from jaxrl_bayes.errors import UserError

OBS_DIM, ACT_DIM = 3, 2
NOISE = np.array([0.1, 0.2, 0.15])
REWARD_NOISE = 0.3
PREDICT = jax.jit(dyn.predict)  # one compilation instead of op-by-op dispatch


def _system(seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(OBS_DIM, OBS_DIM)) * 0.3
    B = rng.normal(size=(OBS_DIM, ACT_DIM)) * 0.5
    c = rng.normal(size=OBS_DIM)
    d = rng.normal(size=ACT_DIM)
    return A, B, c, d


def _true_mean(s, a, system):
    A, B, c, d = system
    return s + s @ A.T + a @ B.T, s @ c + a @ d


def _data(n, seed=1, system=None):
    system = system or _system()
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, OBS_DIM))
    a = rng.uniform(-1, 1, size=(n, ACT_DIM))
    mean_s, mean_r = _true_mean(s, a, system)
    s2 = mean_s + NOISE * rng.normal(size=(n, OBS_DIM))
    r = mean_r + REWARD_NOISE * rng.normal(size=n)
    return s, a, r, s2


CONFIG = dyn.DynamicsConfig(
    num_members=3, hidden=(64, 64), batch_size=64, max_epochs=300, max_epochs_since_update=10
)


@pytest.fixture(scope="module")
def trained():
    s, a, r, s2 = _data(6000)
    pool, report = dyn.train_pool(jax.random.PRNGKey(0), s, a, r, s2, CONFIG)
    return pool, report, (s, a, r, s2)


@pytest.fixture(scope="module")
def test_inputs():
    rng = np.random.default_rng(7)
    s = rng.normal(size=(400, OBS_DIM)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(400, ACT_DIM)).astype(np.float32)
    return s, a


# ----------------------------------------------------------------------------- recovery


def test_recovers_mean_map_and_noise_scale(trained, test_inputs):
    pool, _, _ = trained
    s, a = test_inputs
    pred = PREDICT(pool, jnp.asarray(s), jnp.asarray(a))
    assert pred.next_obs_mean.shape == (3, 400, OBS_DIM)
    assert pred.reward_mean.shape == (3, 400)
    true_s, true_r = _true_mean(s.astype(np.float64), a.astype(np.float64), _system())
    # Mean map: per-member RMS error well below the noise scale.
    rms_s = np.sqrt(((np.asarray(pred.next_obs_mean) - true_s) ** 2).mean(axis=1))  # [P, obs]
    rms_r = np.sqrt(((np.asarray(pred.reward_mean) - true_r) ** 2).mean(axis=1))  # [P]
    assert np.all(rms_s < 0.4 * NOISE), rms_s / NOISE
    assert np.all(rms_r < 0.4 * REWARD_NOISE), rms_r / REWARD_NOISE
    # Noise scale: predicted std averaged over inputs and members within 15 % of the truth,
    # every single member within 25 % (a member's snapshot is chosen by MSE, not by NLL).
    std_s = np.asarray(pred.next_obs_std).mean(axis=1) / NOISE  # [P, obs]
    std_r = np.asarray(pred.reward_std).mean(axis=1) / REWARD_NOISE  # [P]
    np.testing.assert_allclose(std_s.mean(0), 1.0, atol=0.15)
    np.testing.assert_allclose(std_r.mean(0), 1.0, atol=0.15)
    np.testing.assert_allclose(std_s, 1.0, atol=0.25)
    np.testing.assert_allclose(std_r, 1.0, atol=0.25)


def test_validation_metrics_match_analytic_optimum(trained):
    pool, report, _ = trained
    P = CONFIG.num_members
    sigma = np.append(NOISE, REWARD_NOISE) / np.asarray(pool.target_std)  # standardised noise
    best_mse = np.mean(sigma**2)
    best_nll = np.mean(0.5 + np.log(sigma) + 0.5 * np.log(2 * np.pi))
    assert pool.val_mse.shape == (P,) and pool.val_nll.shape == (P,)
    np.testing.assert_allclose(np.asarray(pool.val_mse), best_mse, rtol=0.3)
    np.testing.assert_allclose(np.asarray(pool.val_nll), best_nll, atol=0.15)
    np.testing.assert_allclose(report.val_mse, np.asarray(pool.val_mse))


def test_early_stopping_and_best_snapshots(trained):
    pool, report, _ = trained
    P = CONFIG.num_members
    assert report.stopped_early and report.epochs < CONFIG.max_epochs
    assert report.epochs > CONFIG.max_epochs_since_update
    assert report.val_mse_curve.shape == (report.epochs, P)
    assert report.train_loss.shape == (report.epochs,) and np.all(np.isfinite(report.train_loss))
    # the training NLL (per member, per output dim) ends near the held-out NLL of a good fit
    assert abs(report.train_loss[-1] - np.mean(report.val_nll)) < 0.1
    assert report.num_holdout == 600 and report.num_train == 5400
    # The last `patience + 1` epochs brought no >1 % improvement for any member.
    curve = report.val_mse_curve
    for m in range(P):
        kept = report.val_mse[m]
        # the kept snapshot is one of the epochs' parameters ...
        assert np.min(np.abs(curve[:, m] - kept)) <= 1e-6 * kept
        # ... and no epoch was better than it by more than the 1 % threshold
        assert curve[:, m].min() >= kept * (1 - dyn.IMPROVEMENT_THRESHOLD) - 1e-7
    last_improvement = []
    for m in range(P):
        running, last = np.inf, 0
        for e in range(report.epochs):
            if curve[e, m] < running * (1 - dyn.IMPROVEMENT_THRESHOLD):
                running, last = curve[e, m], e
        last_improvement.append(last)
    assert report.epochs - 1 - max(last_improvement) == CONFIG.max_epochs_since_update + 1
    np.testing.assert_array_equal(np.asarray(pool.elites), np.arange(P))


# ----------------------------------------------------------------------------- subsets, sampling


def test_select_and_members_match_full_pool(trained, test_inputs):
    pool, _, _ = trained
    s, a = jnp.asarray(test_inputs[0][:50]), jnp.asarray(test_inputs[1][:50])
    full = PREDICT(pool, s, a)
    members = jnp.array([2, 0])
    sub = dyn.select(pool, members)
    assert sub.num_members == 2
    np.testing.assert_array_equal(np.asarray(sub.val_mse), np.asarray(pool.val_mse)[[2, 0]])
    by_select = PREDICT(sub, s, a)
    by_arg = PREDICT(pool, s, a, members=members)
    for f_full, f_sel, f_arg in zip(full, by_select, by_arg):
        np.testing.assert_allclose(np.asarray(f_sel), np.asarray(f_full)[[2, 0]], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(f_sel), np.asarray(f_arg))
    # extra batch axes: [2, 25] inputs give [P, 2, 25, ...] predictions equal to the flat ones
    p2 = PREDICT(pool, s.reshape(2, 25, OBS_DIM), a.reshape(2, 25, ACT_DIM))
    assert p2.next_obs_mean.shape == (3, 2, 25, OBS_DIM) and p2.reward_std.shape == (3, 2, 25)
    np.testing.assert_allclose(
        np.asarray(p2.next_obs_mean).reshape(3, 50, OBS_DIM), np.asarray(full.next_obs_mean), rtol=1e-6, atol=1e-6
    )


def test_sample_statistics_match_predict(trained, test_inputs):
    pool, _, _ = trained
    s, a = jnp.asarray(test_inputs[0][:4]), jnp.asarray(test_inputs[1][:4])
    K = 20000
    members = jnp.array([1, 2])
    out = jax.jit(dyn.sample, static_argnames="num_samples")(pool, jax.random.PRNGKey(3), s, a, num_samples=K, members=members)
    assert out.next_obs.shape == (2, K, 4, OBS_DIM) and out.reward.shape == (2, K, 4)
    pred = PREDICT(pool, s, a, members=members)
    for x, mean, std in ((out.next_obs, pred.next_obs_mean, pred.next_obs_std),
                         (out.reward, pred.reward_mean, pred.reward_std)):
        x, mean, std = np.asarray(x, np.float64), np.asarray(mean), np.asarray(std)
        assert np.all(np.abs(x.mean(axis=1) - mean) < 5 * std / np.sqrt(K))
        np.testing.assert_allclose(x.std(axis=1), std, rtol=0.04)
    # vmappable over keys; different keys give different draws
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    vm = jax.jit(jax.vmap(lambda k: dyn.sample(pool, k, s, a, num_samples=2)))(keys)
    assert vm.next_obs.shape == (3, 3, 2, 4, OBS_DIM)
    assert not np.allclose(np.asarray(vm.reward[0]), np.asarray(vm.reward[1]))


def test_mean_reward_gives_each_members_mean_and_the_same_states(trained, test_inputs):
    """mean_reward (PMDB's targets): the reward is exactly mu_r of each member; the next states
    are the same draws as without it (same key)."""
    pool, _, _ = trained
    s, a = jnp.asarray(test_inputs[0][:4]), jnp.asarray(test_inputs[1][:4])
    key = jax.random.PRNGKey(5)
    drawn = dyn.sample(pool, key, s, a, num_samples=3, common_noise=True)
    mean = dyn.sample(pool, key, s, a, num_samples=3, common_noise=True, mean_reward=True)
    pred = PREDICT(pool, s, a)
    assert mean.reward.shape == drawn.reward.shape == (3, 3, 4)
    np.testing.assert_array_equal(np.asarray(mean.next_obs), np.asarray(drawn.next_obs))
    np.testing.assert_allclose(np.asarray(mean.reward), np.broadcast_to(np.asarray(pred.reward_mean)[:, None], (3, 3, 4)),
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(drawn.reward), np.asarray(mean.reward))


def test_mean_next_obs_gives_each_members_mean_successor_and_the_same_rewards(trained, test_inputs):
    """mean_next_obs (a deterministic member): the successor is exactly mu_s' of each member in
    every one of the K draws; the rewards are the same draws as without it (same key)."""
    pool, _, _ = trained
    s, a = jnp.asarray(test_inputs[0][:4]), jnp.asarray(test_inputs[1][:4])
    key = jax.random.PRNGKey(5)
    drawn = dyn.sample(pool, key, s, a, num_samples=3, common_noise=True)
    mean = dyn.sample(pool, key, s, a, num_samples=3, common_noise=True, mean_next_obs=True)
    pred = PREDICT(pool, s, a)
    np.testing.assert_array_equal(np.asarray(mean.reward), np.asarray(drawn.reward))
    np.testing.assert_allclose(np.asarray(mean.next_obs),
                               np.broadcast_to(np.asarray(pred.next_obs_mean)[:, None], mean.next_obs.shape),
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(drawn.next_obs), np.asarray(mean.next_obs))


# ----------------------------------------------------------------------------- files


def test_save_load_bit_identical(trained, test_inputs, tmp_path):
    pool, _, _ = trained
    path = tmp_path / "pool.npz"
    dyn.save_pool(pool, path)
    dyn.save_pool(pool, path)  # overwriting an existing file is fine
    assert sorted(os.listdir(tmp_path)) == ["pool.npz"]  # no stray temporary files
    loaded = dyn.load_pool(path)
    assert loaded.config == pool.config and isinstance(loaded.config.hidden, tuple)
    assert (loaded.obs_dim, loaded.act_dim) == (OBS_DIM, ACT_DIM)
    for name in ("input_mean", "input_std", "target_mean", "target_std", "max_logstd",
                 "min_logstd", "elites", "val_mse", "val_nll"):
        np.testing.assert_array_equal(np.asarray(getattr(loaded, name)), np.asarray(getattr(pool, name)))
        assert getattr(loaded, name).dtype == getattr(pool, name).dtype
    s, a = jnp.asarray(test_inputs[0]), jnp.asarray(test_inputs[1])
    for f1, f2 in zip(dyn.predict(pool, s, a), dyn.predict(loaded, s, a)):  # eager
        np.testing.assert_array_equal(np.asarray(f1), np.asarray(f2))
    for f1, f2 in zip(PREDICT(pool, s, a), PREDICT(loaded, s, a)):  # jitted
        np.testing.assert_array_equal(np.asarray(f1), np.asarray(f2))


def test_load_errors(trained, tmp_path):
    pool, _, _ = trained
    with pytest.raises(FileNotFoundError, match="train_pool"):
        dyn.load_pool(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file" * 10)
    with pytest.raises(dyn.DynamicsFileError, match="retrain"):
        dyn.load_pool(garbage)
    good = tmp_path / "good.npz"
    dyn.save_pool(pool, good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="retrain"):
        dyn.load_pool(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(dyn.DynamicsFileError, match="retrain"):
        dyn.load_pool(other)


# ----------------------------------------------------------------------------- bad input


def test_bad_input_raises_naming_the_array():
    s, a, r, s2 = _data(50)
    key = jax.random.PRNGKey(0)
    with pytest.raises(DatasetError, match="actions has 49 rows"):
        dyn.train_pool(key, s, a[:49], r, s2, CONFIG)
    with pytest.raises(ValueError, match="rewards must be 1-D"):
        dyn.train_pool(key, s, a, r[:, None], s2, CONFIG)
    with pytest.raises(ValueError, match="observations must be 2-D"):
        dyn.train_pool(key, s[:, 0], a, r, s2, CONFIG)
    with pytest.raises(ValueError, match="next_observations has shape"):
        dyn.train_pool(key, s, a, r, s2[:, :2], CONFIG)
    r_bad = r.copy()
    r_bad[[3, 17]] = [np.nan, np.inf]
    with pytest.raises(DatasetError, match=r"^dynamics training data: key 'rewards' has 2 non-finite "
                                           r"values \(1 NaN, 1 inf\) at rows \[3, 17\]; repair"):
        dyn.train_pool(key, s, a, r_bad, s2, CONFIG)
    s2_bad = s2.copy()
    s2_bad[5, 1] = np.nan
    with pytest.raises(DatasetError, match=r"'next_observations' has 1 non-finite values \(1 NaN, "
                                           r"0 inf\) at rows \[5\]"):
        dyn.train_pool(key, s, a, r, s2_bad, CONFIG)
    with pytest.raises(UserError, match="num_elites"):
        dyn.train_pool(key, s, a, r, s2, dataclasses.replace(CONFIG, num_elites=5))
    with pytest.raises(DatasetError, match=rf"has {MIN_TRANSITIONS - 1} transition\(s\), fewer than "
                                           rf"the {MIN_TRANSITIONS}"):
        n = MIN_TRANSITIONS - 1
        dyn.train_pool(key, s[:n], a[:n], r[:n], s2[:n], CONFIG)


# ----------------------------------------------------------------------------- pieces, options


def test_soft_clamp_and_nll_hand_values():
    hi, lo = 0.25, -5.0
    raw = jnp.array([-100.0, -2.0, 0.0, 100.0])
    out = np.asarray(dyn.soft_clamp_logstd(raw, hi, lo))
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    expected = [lo + sp(hi - sp(hi - x) - lo) for x in (-100.0, -2.0, 0.0)]
    np.testing.assert_allclose(out[:3], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0], lo, atol=1e-6)  # saturates at the lower bound
    # at the top it saturates at lo + softplus(hi - lo) = hi + log1p(exp(lo - hi)), just above hi
    np.testing.assert_allclose(out[3], hi + np.log1p(np.exp(lo - hi)), rtol=1e-6)
    assert np.all(out >= lo) and np.all(np.diff(out) > 0)
    np.testing.assert_allclose(out[1], -2.0, atol=0.1)  # ~identity well inside
    # Gaussian NLL: -log N(1.5; 0.5, e^-0.3) by hand; beta-NLL multiplies by sigma^(2 beta)
    m, ls, y = 0.5, -0.3, 1.5
    sigma = np.exp(ls)
    want = 0.5 * ((y - m) / sigma) ** 2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(float(dyn.gaussian_nll(jnp.float32(m), jnp.float32(ls), jnp.float32(y))), want, rtol=1e-6)
    np.testing.assert_allclose(
        float(dyn.gaussian_nll(jnp.float32(m), jnp.float32(ls), jnp.float32(y), beta=0.5)), want * sigma, rtol=1e-6
    )


def test_options_elites_beta_nll_no_target_norm():
    s, a, r, s2 = _data(600, seed=5)
    cfg = dyn.DynamicsConfig(
        num_members=4, hidden=(16,), batch_size=64, max_epochs=3, num_elites=2,
        beta_nll=0.5, bootstrap=False, normalize_targets=False,
    )
    pool, report = dyn.train_pool(jax.random.PRNGKey(1), s, a, r, s2, cfg)
    assert report.epochs == 3 and not report.stopped_early
    np.testing.assert_array_equal(np.asarray(pool.target_mean), 0.0)
    np.testing.assert_array_equal(np.asarray(pool.target_std), 1.0)
    val = np.asarray(pool.val_mse)
    elites = np.asarray(pool.elites)
    assert elites.shape == (2,) and len(set(elites.tolist())) == 2
    others = np.setdiff1d(np.arange(4), elites)
    assert val[elites].max() <= val[others].min()
    assert val[elites[0]] <= val[elites[1]]
    # elites of a subset are recomputed within it
    sub = dyn.select(pool, jnp.array(others))
    assert set(np.asarray(others)[np.asarray(sub.elites)].tolist()) == set(others.tolist())
    # the input normaliser is the training split's mean/std of concat(s, a)
    x = np.concatenate([s, a], axis=1)
    np.testing.assert_allclose(np.asarray(pool.input_mean), x.mean(0), atol=0.15)
    np.testing.assert_allclose(np.asarray(pool.input_std), x.std(0), rtol=0.1)


def test_predict_applies_normalisers(trained, test_inputs):
    """Shifting the input normaliser by δ and the inputs by δ leaves the member outputs (Δs, r)
    unchanged; scaling the target standardiser scales the predicted Δs mean and std."""
    pool, _, _ = trained
    s, a = jnp.asarray(test_inputs[0][:20]), jnp.asarray(test_inputs[1][:20])
    base = PREDICT(pool, s, a)
    delta = jnp.array([3.0, -2.0, 0.5, 1.0, -1.0])
    shifted = PREDICT(pool.replace(input_mean=pool.input_mean + delta), s + delta[:3], a + delta[3:])
    np.testing.assert_allclose(np.asarray(shifted.next_obs_mean - (s + delta[:3])),
                               np.asarray(base.next_obs_mean - s), atol=1e-5)
    np.testing.assert_allclose(np.asarray(shifted.reward_mean), np.asarray(base.reward_mean), atol=1e-5)
    scaled = PREDICT(pool.replace(target_std=2.0 * pool.target_std, target_mean=2.0 * pool.target_mean), s, a)
    np.testing.assert_allclose(np.asarray(scaled.next_obs_mean - s), 2.0 * np.asarray(base.next_obs_mean - s), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(scaled.reward_std), 2.0 * np.asarray(base.reward_std), rtol=1e-6)


def test_common_noise_shares_the_standard_normal_draw_across_members(trained, test_inputs):
    pool = trained[0]
    obs, act = test_inputs
    pred = dyn.predict(pool, obs, act)
    out = dyn.sample(pool, jax.random.PRNGKey(5), obs, act, num_samples=3, common_noise=True)
    z = (out.next_obs - pred.next_obs_mean[:, None]) / pred.next_obs_std[:, None]  # [N, K, B, S]
    np.testing.assert_allclose(np.asarray(z), np.broadcast_to(np.asarray(z[:1]), z.shape), atol=1e-3)
    zr = (out.reward - pred.reward_mean[:, None]) / pred.reward_std[:, None]
    np.testing.assert_allclose(np.asarray(zr), np.broadcast_to(np.asarray(zr[:1]), zr.shape), atol=1e-3)
    # independent noise differs between members
    ind = dyn.sample(pool, jax.random.PRNGKey(5), obs, act, num_samples=3)
    zi = (ind.next_obs - pred.next_obs_mean[:, None]) / pred.next_obs_std[:, None]
    assert np.max(np.abs(np.asarray(zi[0] - zi[1]))) > 0.5


def test_termination_rates_match_the_gaussian_tail_of_each_member(trained, test_inputs):
    """A planted threshold rule on the first state coordinate, "ends when s'_0 < s_0 + c": each
    member's true probability is Phi((s_0 + c - mu_m) / sigma_m), and its mean successor ends
    exactly when mu_m < s_0 + c."""
    from scipy.stats import norm

    pool = trained[0]
    obs, act = test_inputs
    pred = dyn.predict(pool, obs, act)
    mu, sigma = np.asarray(pred.next_obs_mean[..., 0]), np.asarray(pred.next_obs_std[..., 0])  # [N, B]
    c = float(np.median(mu - np.asarray(obs[:, 0])))  # a threshold inside the members' spread

    def ends_low(o, a, nxt):
        return nxt[..., 0] < o[..., 0] + c

    k = 4096
    rates = dyn.termination_rates(pool, jax.random.PRNGKey(3), obs, act, ends_low, num_samples=k)
    exact = norm.cdf((np.asarray(obs[:, 0]) + c - mu) / sigma)
    assert rates.sampled.shape == mu.shape and rates.at_mean.shape == mu.shape
    se = np.sqrt(exact * (1 - exact) / k) + 1e-3
    assert np.all(np.abs(np.asarray(rates.sampled) - exact) < 5 * se), np.max(np.abs(np.asarray(rates.sampled) - exact) / se)
    np.testing.assert_array_equal(np.asarray(rates.at_mean), mu < np.asarray(obs[:, 0]) + c)
    # both kinds of answers occur, so the test separates them
    assert 0 < np.asarray(rates.at_mean).mean() < 1
    # common noise: the same draw moves every member, and the rates keep their expectation
    shared = dyn.termination_rates(pool, jax.random.PRNGKey(4), obs, act, ends_low, num_samples=k, common_noise=True)
    assert np.all(np.abs(np.asarray(shared.sampled) - exact) < 5 * se)


def test_the_fewest_transitions_train_and_use_the_one_standardiser():
    """MIN_TRANSITIONS rows train (one held out at ratio 0.1); normalisers are data.mean_std's."""
    s, a, r, s2 = _data(MIN_TRANSITIONS)
    cfg = dyn.DynamicsConfig(num_members=2, hidden=(8,), max_epochs=2, batch_size=4)
    pool, report = dyn.train_pool(jax.random.PRNGKey(0), s, a, r, s2, cfg)
    assert (report.num_holdout, report.num_train) == (1, MIN_TRANSITIONS - 1)
    order = np.asarray(jax.random.permutation(jax.random.split(jax.random.PRNGKey(0), 4)[0],
                                              MIN_TRANSITIONS))
    train = order[1:]
    mean, std = mean_std(np.concatenate([s, a], axis=1)[train].astype(np.float64))
    np.testing.assert_array_equal(pool.input_mean, mean)
    np.testing.assert_array_equal(pool.input_std, std)


# ----------------------------------------------------------------------------- open-loop error


def test_open_loop_error_is_zero_for_the_member_that_generated_the_data_and_compounds_for_others(trained):
    """Planted truth: the logged trajectory IS member 0's own mean rollout, so its open-loop error
    is exactly 0 at every step; member 1's first-step error equals its one-step `predict` error,
    and every later step matches a hand-written loop of `predict` calls."""
    pool, _, _ = trained
    rng = np.random.default_rng(3)
    batch, horizon = 64, 4
    s0 = rng.normal(size=(batch, OBS_DIM)).astype(np.float32)
    acts = rng.uniform(-1, 1, size=(batch, horizon, ACT_DIM)).astype(np.float32)
    s, traj, rews = s0, [], []
    for h in range(horizon):  # member 0's mean rollout, one predict call per step
        p = PREDICT(pool, s, acts[:, h])
        s = np.asarray(p.next_obs_mean[0])
        traj.append(s)
        rews.append(np.asarray(p.reward_mean[0]))
    traj, rews = np.stack(traj, 1), np.stack(rews, 1)
    scale = np.array([1.0, 2.0, 0.5], np.float32)
    err = jax.jit(dyn.open_loop_error)(pool, s0, acts, traj, rews, scale)
    assert err.obs_rmse.shape == (CONFIG.num_members, horizon) == err.reward_mae.shape
    np.testing.assert_allclose(err.obs_rmse[0], 0.0, atol=1e-5)
    np.testing.assert_allclose(err.reward_mae[0], 0.0, atol=1e-5)
    # member 1 by hand: its own rollout fed back through predict
    s, want_obs, want_rew = s0, [], []
    for h in range(horizon):
        p = PREDICT(pool, s, acts[:, h])
        s = np.asarray(p.next_obs_mean[1])
        want_obs.append(np.sqrt(np.mean(((s - traj[:, h]) / scale) ** 2)))
        want_rew.append(np.mean(np.abs(np.asarray(p.reward_mean[1]) - rews[:, h])))
    np.testing.assert_allclose(err.obs_rmse[1], want_obs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(err.reward_mae[1], want_rew, rtol=1e-4, atol=1e-6)
    assert float(err.obs_rmse[1, 0]) > 0


def test_consecutive_segments_never_cross_a_terminal_or_a_jump():
    from jaxrl_bayes.data.dataset import consecutive_segments, episode_breaks

    # rows 0-4 one episode ending in a terminal at 4; rows 5-7 end in a jump at 7; rows 8-11 go on
    obs = np.arange(12, dtype=np.float32)[:, None]
    nxt = obs + 1
    nxt[7] = 99.0  # jump: row 7's next is not row 8's observation
    term = np.zeros(12)
    term[4] = 1
    assert episode_breaks(obs, nxt, term).nonzero()[0].tolist() == [4, 7]
    rows = consecutive_segments(obs, nxt, term, 3, 500, seed=0)
    assert {int(r[0]) for r in rows} == {0, 1, 2, 5, 8, 9}  # every valid start, nothing else
    np.testing.assert_array_equal(rows[:, 1:] - rows[:, :-1], 1)
    with pytest.raises(DatasetError, match="shorter horizon"):
        consecutive_segments(obs, nxt, term, 6, 10)


def test_geometric_early_stopping_counts_a_determined_dimension_beside_a_noisy_one():
    """Planted: target 0 is pure noise (held-out MSE stuck at its floor), target 1 is determined by
    the input. "mse" averages them, so the noise floor hides target 1's progress from the 1 % rule;
    "geometric_mse" does not: it trains more epochs and fits target 1 better."""
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    n = 4000
    obs = rng.normal(size=(n, 1)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    nxt = obs + 3.0 * rng.normal(size=(n, 1)).astype(np.float32)  # the noisy dimension
    rew = (obs[:, 0] * act[:, 0]).astype(np.float32)  # determined by (s, a)
    fits = {}
    for rule in ("mse", "geometric_mse"):
        cfg = dyn.DynamicsConfig(num_members=2, hidden=(32, 32), max_epochs=60, max_epochs_since_update=3,
                                      batch_size=256, early_stopping=rule)
        pool, report = dyn.train_pool(jax.random.PRNGKey(0), obs, act, rew, nxt, cfg)
        x = jnp.asarray(rng.normal(size=(500, 1)), jnp.float32)
        a = jnp.asarray(rng.uniform(-1, 1, size=(500, 1)), jnp.float32)
        pred = dyn.predict(pool, x, a)
        fits[rule] = (report.epochs, float(jnp.mean((pred.reward_mean - x[:, 0] * a[:, 0]) ** 2)))
    assert fits["geometric_mse"][0] > fits["mse"][0]
    assert fits["geometric_mse"][1] < fits["mse"][1]
    with pytest.raises(ValueError, match="early_stopping"):
        dyn.DynamicsConfig(early_stopping="nll").validate()
