"""PSPO / RRPI / PMDB train steps: analytic bandit optimum, seeds, resume, compile-once.

The bandit: one state, every transition terminal, reward r(a) = -(a - 0.5)^2 on actions drawn
uniformly from [-1, 1]. Then Q(s, a) = r~(a) (PMDB-normalized reward) exactly, and
- RRPI with mu = the current iterate (ref_tau = 1) iterates pi <- Proj[pi exp(Q/alpha)], whose
  limit is the greedy action a* = 0.5 (RRPI Theorem 2);
- PSPO's fixed point pi ∝ pi_beta exp(Q/alpha) has, with a near-uniform behaviour policy,
  its mode at a* = 0.5 as well.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import dynamics
from jaxrl_bayes.algos import algo_config, make_trainer
from jaxrl_bayes.algos.common import critic_values
from jaxrl_bayes.data.dataset import Dataset
from jaxrl_bayes.errors import UserError

A_STAR = 0.5


def _always_done(obs, act, next_obs):
    return jnp.ones(next_obs.shape[:-1], bool)


@pytest.fixture(scope="module")
def bandit():
    rng = np.random.default_rng(0)
    n = 4000
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    obs = np.zeros((n, 1), np.float32)
    rew = -((act[:, 0] - A_STAR) ** 2)
    ds = Dataset.from_arrays(observations=obs, actions=act, rewards=rew, terminals=np.ones(n, bool),
                             next_observations=obs, name="bandit")
    pool, _ = dynamics.train_pool(jax.random.PRNGKey(0), ds.observations, ds.actions, ds.rewards,
                                  ds.next_observations,
                                  dynamics.DynamicsConfig(num_members=3, hidden=(32, 32), max_epochs=30, batch_size=128))
    return ds, pool


SMALL = dict(num_active=3, critic_hidden=(64, 64), policy_hidden=(64, 64), real_batch=64, model_batch=64,
             num_candidates=16, num_next_samples=2, rollout_batch=64, rollout_horizon=1,
             buffer_capacity=2048, consistency_batch=16)


def _train(ds, pool, name, chunks, seeds=(0,), **overrides):
    config = algo_config(name, **{**SMALL, **overrides})
    trainer = make_trainer(config, ds, pool, _always_done)
    states = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(42), len(seeds)) if seeds != (0,) else jax.random.PRNGKey(0)[None])
    history = []
    for _ in range(chunks):
        states, metrics = trainer.run_chunk_seeds(states)
        history.append(metrics)
    return trainer, states, history


def _mode_and_q(trainer, states, ds):
    params = jax.tree_util.tree_map(lambda x: x[0], states.policy)
    mode = float(trainer.act_fn(params)(jnp.zeros((1, 1)))[0, 0])
    grid = jnp.linspace(-0.9, 0.9, 19)[:, None]
    critic = jax.tree_util.tree_map(lambda x: x[0], states.critic)
    nets_q = critic_values(trainer.nets, critic, trainer.data, jnp.zeros((19, 1)), grid, trainer.config)
    true = (-((np.asarray(grid[:, 0]) - A_STAR) ** 2) - float(ds.reward_shift)) / float(ds.reward_scale)
    return mode, np.asarray(nets_q), true


def test_rrpi_reaches_the_bandit_optimum(bandit):
    ds, pool = bandit
    trainer, states, hist = _train(ds, pool, "rrpi", chunks=3, steps_per_chunk=500, ref_tau=1.0,
                                   policy_lr=1e-3, critic_lr=1e-3, auto_temperature=False, temperature=0.05)
    mode, q, true = _mode_and_q(trainer, states, ds)
    assert abs(mode - A_STAR) < 0.1, mode
    # Q learned the normalized reward (robust target: at most slightly pessimistic)
    assert np.max(np.abs(q - true)) < 0.08, np.c_[q, true]
    assert float(hist[-1]["critic_loss"][0]) < float(hist[0]["critic_loss"][0])
    # the run's greedy gain: no draw of pi beats the critic's own maximum over actions (on the
    # grid, to within its resolution), and the converged policy sits at the critic's peak
    from jaxrl_bayes.algos.diagnostics import deployed_greedy_gain

    gain = float(deployed_greedy_gain(trainer.nets, trainer.config, trainer.data,
                                      jax.tree_util.tree_map(lambda x: x[0], states.critic),
                                      jax.tree_util.tree_map(lambda x: x[0], states.policy), jax.random.PRNGKey(0)))
    assert 0.0 <= gain <= float(np.max(q) - np.interp(mode, np.linspace(-0.9, 0.9, 19), q)) + 2e-3, gain
    assert gain < 0.01


def test_pspo_reaches_the_bandit_optimum(bandit):
    ds, pool = bandit
    trainer, states, hist = _train(ds, pool, "pspo", chunks=3, steps_per_chunk=500, bc_steps=300, auto_temperature=False,
                                   policy_lr=1e-3, critic_lr=1e-3, ref_tau=1.0, behaviour_weight=0.02, trust_eta=0.02)
    mode, q, true = _mode_and_q(trainer, states, ds)
    assert abs(mode - A_STAR) < 0.1, mode
    assert np.max(np.abs(q - true)) < 0.08
    # No belief assertion here: this pool's members agree (consistency gaps ~1e-3 in learning
    # units), so the Gibbs belief at lam = 1 stays near uniform. The belief's
    # behaviour is checked against a planted bad member in
    # test_selector_is_orthogonal_and_the_belief_avoids_a_planted_member.


def test_rrpi_with_the_persistent_scheme_reaches_the_bandit_optimum(bandit):
    """PMDB's persistent rollouts: every bandit transition is terminal, so each path restarts
    every step and the model rows are dataset states acting with pi; the optimum is unchanged."""
    ds, pool = bandit
    trainer, states, hist = _train(ds, pool, "rrpi", chunks=3, steps_per_chunk=500, ref_tau=1.0, policy_lr=1e-3,
                                   critic_lr=1e-3, auto_temperature=False, temperature=0.05, rollout_scheme="persistent")
    mode, q, true = _mode_and_q(trainer, states, ds)
    assert abs(mode - A_STAR) < 0.1, mode
    assert np.max(np.abs(q - true)) < 0.08
    assert float(hist[-1]["rollout_restart_frac"][0]) == 1.0  # every path terminates at once
    assert int(states.buffer.count[0]) == 2048  # the model rows are kept for the chunk diagnostics


def _plant_pessimistic_member(data, member=0):
    """Active member `member` predicts a reward 100 target-stds too low: its one-step target is
    the clip floor 0 in every state (every transition of the bandit is terminal)."""
    model = data.model
    params = model.params["params"]
    last = max(params, key=lambda name: int(name.split("_")[-1]))
    bias = params[last]["bias"].at[member, model.obs_dim].add(-100.0)  # reward-mean output
    new_params = {**model.params, "params": {**params, last: {**params[last], "bias": bias}}}
    return data.replace(model=model.replace(params=new_params))


def test_selector_is_orthogonal_and_the_belief_avoids_a_planted_member(bandit):
    """`--algo rrpi --agent.targets.selector posterior` and `--algo pspo --agent.targets.selector worst` take
    effect: the member rule, not the algorithm, decides both the rollout member and the model-state
    target. (Each algorithm under its own rule: tests/test_planted_fault.py.)"""
    ds, pool = bandit
    runs = {}
    for name, selector in [("rrpi", "posterior"), ("pspo", "worst")]:
        config = algo_config(name, **{**SMALL, "steps_per_chunk": 3, "bc_steps": 0, "selector": selector})
        assert config.targets.selector == selector
        trainer = make_trainer(config, ds, pool, _always_done)
        data = _plant_pessimistic_member(trainer.data)
        states, metrics = trainer.run_chunk_seeds_jit(trainer.init_seeds(jax.random.PRNGKey(0)[None]), data)
        runs[name] = (states, jax.tree_util.tree_map(lambda x: np.asarray(x[0]), metrics))
    worst, post = runs["pspo"][1], runs["rrpi"][1]
    # PSPO under the worst case: the planted member (target 0 everywhere; ties go to the lowest
    # index) is every rollout's member and the model-state target is the clip floor
    assert worst["member_pick_frac"][0] == 1.0, worst["member_pick_frac"]
    assert worst["target_mean"] < 1e-6, worst["target_mean"]
    # RRPI under posterior draws (its belief is the uniform prior): about a third of 64 rollout
    # starts; P(>= 0.6) is negligible
    assert post["member_pick_frac"][0] < 0.6, post["member_pick_frac"]
    assert post["target_mean"] > 0.2, post["target_mean"]
    # RRPI keeps the uniform prior; PSPO's belief (profile rule, lam = 1), which reads the data and
    # not the selector, moves the mass off the planted member: its d is the mean normalized reward
    # ~0.7 against ~0 for the others
    np.testing.assert_allclose(np.asarray(runs["rrpi"][0].belief[0]), np.full(3, 1 / 3), rtol=1e-6)
    b = np.asarray(runs["pspo"][0].belief[0])
    assert b[0] < 0.25 and b[0] < 0.7 * b[1:].min(), b


@pytest.fixture(scope="module")
def pspo_trainer(bandit):
    """One compiled PSPO trainer shared by the seed, resume and compile-count tests."""
    ds, pool = bandit
    config = algo_config("pspo", **{**SMALL, "steps_per_chunk": 5, "bc_steps": 5})
    return make_trainer(config, ds, pool, _always_done)


def test_seeds_vmapped_equal_seeds_one_by_one(pspo_trainer):
    trainer = pspo_trainer
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    states, _ = trainer.run_chunk_seeds(trainer.init_seeds(keys))
    init1, chunk1 = jax.jit(trainer.init), jax.jit(trainer.run_chunk)
    for i in range(2):
        single, _ = chunk1(init1(keys[i], trainer.data), trainer.data)
        for a, b in zip(jax.tree_util.tree_leaves(single.policy), jax.tree_util.tree_leaves(states.policy)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(single.buffer.count), np.asarray(states.buffer.count[i]))


def test_stop_and_resume_from_a_checkpoint_equals_the_uninterrupted_run(pspo_trainer, tmp_path):
    from jaxrl_bayes.checkpoint import Checkpointer

    trainer = pspo_trainer
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    straight = trainer.init_seeds(keys)
    for _ in range(3):
        straight, _ = trainer.run_chunk_seeds(straight)

    stopped = trainer.init_seeds(keys)
    stopped, _ = trainer.run_chunk_seeds(stopped)
    Checkpointer(tmp_path / "ckpt").save(1, stopped, {"chunk": 1})
    del stopped
    # as a new process would: a target from eval_shape, restore from disk, continue
    target = jax.eval_shape(trainer.init_seeds, keys)
    resumed, meta = Checkpointer(tmp_path / "ckpt").restore(target)
    assert meta["chunk"] == 1
    for _ in range(2):
        resumed, _ = trainer.run_chunk_seeds(resumed)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _CompileCounter:
    """Counts XLA backend compilations through jax.monitoring."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.count += 1


COMPILES = _CompileCounter()


def test_a_chunk_compiles_once(pspo_trainer, tmp_path):
    from jaxrl_bayes.checkpoint import Checkpointer

    trainer = pspo_trainer
    sanity = COMPILES.count
    jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(7))  # the counter sees a fresh compilation
    assert COMPILES.count > sanity
    states = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(0), 2))
    states, _ = trainer.run_chunk_seeds(states)  # compiled here (or by an earlier test)
    # new data of the same shapes (other rewards, other normalizers), and a restored state
    data2 = trainer.data.replace(reward=trainer.data.reward[::-1], obs_std=trainer.data.obs_std * 2)
    Checkpointer(tmp_path / "c").save(0, states)
    restored, _ = Checkpointer(tmp_path / "c").restore(jax.eval_shape(lambda: states))
    jax.block_until_ready((data2, restored))
    before = COMPILES.count
    states, _ = trainer.run_chunk_seeds(states)
    states, _ = trainer.run_chunk_seeds_jit(states, data2)
    states, _ = trainer.run_chunk_seeds(restored)
    assert COMPILES.count == before


def test_unknown_algorithm_and_bad_config_are_clear(bandit):
    with pytest.raises(ValueError, match="unknown algorithm 'psp'.*did you mean 'pspo'"):
        algo_config("psp")
    with pytest.raises(ValueError, match="unknown AgentConfig fields"):
        algo_config("rrpi", gama=0.9)
    with pytest.raises(ValueError, match="kth must be"):
        algo_config("rrpi", kth=20)
    ds, pool = bandit
    with pytest.raises(ValueError, match="pool has only 3"):
        make_trainer(algo_config("rrpi", num_active=10), ds, pool, _always_done)
    with pytest.raises(UserError, match="trains through a dynamics pool"):
        make_trainer(algo_config("rrpi", num_active=3), ds, None)


@pytest.mark.parametrize("field, bad, choices, close", [
    ("selector", "wrst", "worst, posterior, uniform", "worst"),
    ("belief", "gibs", "gibbs, uniform, profile", "gibbs"),
    ("consistency", "observd", "observed, consensus", "observed"),
    ("real_target", "robst", "data, robust", "robust"),
    ("algo", "pspoo", "rrpi, pspo, bc", "pspo"),
    ("reward_normalization", "pmbd", "pmdb, scale", "pmdb"),
    ("model_reward", "men", "sample, mean", "mean"),
    ("model_successor", "mene", "sample, mean", "mean"),
    ("deploy", "refrence", "policy, reference", "reference"),
])
def test_a_bad_config_string_is_one_line_with_choices_and_closest(field, bad, choices, close):
    with pytest.raises(UserError) as err:
        algo_config("pspo", **{field: bad})
    msg = str(err.value)
    assert "\n" not in msg
    from jaxrl_bayes.algos.overrides import FLAT_NAMES

    assert f"agent.{FLAT_NAMES.get(field, field)} = {bad!r}" in msg and f"choose one of: {choices}" in msg and f"did you mean {close!r}" in msg, msg


def test_the_deployed_policy_is_the_configured_one():
    from types import SimpleNamespace

    from jaxrl_bayes.algos import deployed_policy

    states = SimpleNamespace(policy="pi", ref_policy="pi_ref")
    assert deployed_policy(states, algo_config("rrpi")) == "pi"
    assert deployed_policy(states, algo_config("rrpi", deploy="reference")) == "pi_ref"
    assert deployed_policy(SimpleNamespace(policy="pi"), algo_config("bc")) == "pi"  # bc: one policy


def test_the_average_deployment_is_the_moving_average_of_pi_and_changes_no_training(bandit):
    """deploy "average": avg_k = (1 - tau) avg_(k-1) + tau pi_k from avg_0 = pi_0, step by step,
    while pi itself is bit for bit the pi of the same run deploying pi."""
    ds, pool = bandit
    tau = 0.25
    runs = {}
    for deploy in ("policy", "average"):
        trainer, states, _ = _train(ds, pool, "rrpi", 0, steps_per_chunk=1, deploy=deploy, **{"optim.avg_tau": tau})
        pis = [states.policy]
        for _ in range(3):
            states, _ = trainer.run_chunk_seeds(states)
            pis.append(states.policy)
        runs[deploy] = (states, pis)
    states, pis = runs["average"]
    assert runs["policy"][0].avg_policy is None  # the other deployments keep no average
    for a, b in zip(jax.tree_util.tree_leaves(runs["policy"][0].policy), jax.tree_util.tree_leaves(states.policy)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    want = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), pis[0])
    for pi in pis[1:]:
        want = jax.tree_util.tree_map(lambda w, p: (1 - tau) * w + tau * np.asarray(p, np.float64), want, pi)
    for w, got in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(states.avg_policy)):
        np.testing.assert_allclose(np.asarray(got), w, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(states.avg_policy),
                                                     jax.tree_util.tree_leaves(states.policy)))  # it lags pi
    from jaxrl_bayes.algos import deployed_policy
    assert deployed_policy(states, algo_config("rrpi", deploy="average")) is states.avg_policy


def test_registries_refuse_a_second_entry_under_a_taken_name():
    from jaxrl_bayes import posterior

    with pytest.raises(ValueError, match="already registered"):
        posterior.register_consistency("observed")(lambda member_y, observed_y: member_y[:, 0])
    assert posterior.CONSISTENCY["observed"] is posterior.consistency_metric


# ----------------------------------------------------------------------------- bc


def test_bc_clones_a_deterministic_policy_without_a_model():
    """Actions a = clip(0.5 s, -1, 1) of states s ~ U(-3, 3): a third of them exactly +-1."""
    from jaxrl_bayes.algos import algo_needs_model

    rng = np.random.default_rng(1)
    n = 3000
    obs = rng.uniform(-3, 3, size=(n, 1)).astype(np.float32)
    act = np.clip(0.5 * obs, -1.0, 1.0).astype(np.float32)
    ds = Dataset.from_arrays(observations=obs, actions=act, rewards=np.zeros(n, np.float32),
                             terminals=np.zeros(n, bool), next_observations=obs, name="clip-half")
    assert not algo_needs_model("bc") and algo_needs_model("rrpi") and algo_needs_model("pspo")
    config = algo_config("bc", policy_hidden=(64, 64), steps_per_chunk=400, bc_batch=128)
    trainer = make_trainer(config, ds, None)  # no dynamics pool, no termination function
    states = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(0), 2))
    losses = []
    for _ in range(3):
        states, metrics = trainer.run_chunk_seeds(states)
        losses.append(np.asarray(metrics["bc_loss"]))
        np.testing.assert_array_equal(losses[-1], np.asarray(metrics["policy_loss"]))
    assert np.all(np.isfinite(losses)), losses  # actions at exactly +-1 have finite log-densities
    assert np.all(losses[-1] < losses[0] - 1.0), losses  # the log-likelihood rises (per seed)
    assert np.all(np.asarray(states.step) == 3 * 400)
    grid = jnp.linspace(-2.8, 2.8, 29)[:, None]
    want = np.clip(0.5 * np.asarray(grid[:, 0]), -1, 1)
    for seed in range(2):
        params = jax.tree_util.tree_map(lambda x: x[seed], states.policy)
        got = np.asarray(trainer.act_fn(params)(grid))[:, 0]
        np.testing.assert_allclose(got, want, atol=0.06)


# --------------------------------------------------------------------------- greedy_gain (diagnostics)


def _dist(mean, std, n=64):
    from jaxrl_bayes import networks
    return networks.GaussianParams(jnp.full((n, 1), mean, jnp.float32), jnp.full((n, 1), np.log(std), jnp.float32))


def test_greedy_gain_is_zero_where_the_critic_peaks_at_the_deployed_action():
    from jaxrl_bayes.algos.diagnostics import greedy_gain
    dist = _dist(0.3, 1.0)
    peak = jnp.tanh(dist.mean)
    gain = greedy_gain(lambda a: -jnp.sum((a - peak) ** 2, axis=-1), dist, jax.random.PRNGKey(0), 32)
    assert float(gain) == 0.0


def test_greedy_gain_of_a_linear_critic_follows_the_policy_width():
    from jaxrl_bayes.algos.diagnostics import greedy_gain
    linear = lambda a: a[..., 0]  # Q(s, a) = a on (-1, 1)
    # a wide policy centred at 0: among 256 draws of tanh(3 z) one is above tanh(3 * 2) ~ 0.99999
    # on all but ~0.3 % of states, so the gain is the sup of Q over actions, 1, to within 1 %
    wide = greedy_gain(linear, _dist(0.0, 3.0), jax.random.PRNGKey(1), 256)
    assert 0.99 < float(wide) <= 1.0
    # a narrow one (std 1e-4 pre-tanh): no draw differs from the mode by more than ~5 std
    narrow = greedy_gain(linear, _dist(float(np.arctanh(0.5)), 1e-4), jax.random.PRNGKey(2), 32)
    assert 0.0 <= float(narrow) < 1e-3


def test_init_from_behaviour_starts_rrpi_at_the_cloned_policy(bandit):
    """RRPI has no pi_beta of its own; `init_from_behaviour` fits one (bc_steps of cloning) and
    starts pi and pi_ref there. Planted: the data's actions sit at -0.5 (std 0.05), so the cloned
    policy's deterministic action is -0.5 and a fresh network's is near 0."""
    _, pool = bandit
    rng = np.random.default_rng(1)
    n = 2000
    act = np.clip(rng.normal(-0.5, 0.05, size=(n, 1)), -1, 1).astype(np.float32)
    obs = np.zeros((n, 1), np.float32)
    ds = Dataset.from_arrays(observations=obs, actions=act, rewards=np.zeros(n, np.float32), terminals=np.ones(n, bool),
                             next_observations=obs, name="planted-behaviour")
    modes = {}
    for init in (False, True):
        config = algo_config("rrpi", **{**SMALL, "init_from_behaviour": init, **({"bc_steps": 3000} if init else {})})
        trainer = make_trainer(config, ds, pool, _always_done)
        state = jax.jit(trainer.init)(jax.random.PRNGKey(0), trainer.data)
        modes[init] = float(trainer.act_fn(state.policy)(jnp.zeros((1, 1)))[0, 0])
        ref_mode = float(trainer.act_fn(state.ref_policy)(jnp.zeros((1, 1)))[0, 0])
        assert ref_mode == pytest.approx(modes[init], abs=1e-6)
    assert abs(modes[True] + 0.5) < 0.05, modes
    assert abs(modes[False]) < 0.05, modes  # a fresh network starts at tanh(0)


def test_fields_an_algorithm_never_reads_are_named():
    """Each field below is read, or not, as the code reads it: RRPI's reference is pi_ref alone
    (no behaviour weight, no trust region); a uniform belief measures no member on real pairs;
    the KL-budget rule replaces the fixed temperature; PSPO's temperature is eta."""
    from jaxrl_bayes.algos import Gibbs, Rrpi, fields_without_effect
    from jaxrl_bayes.components import paths

    pspo_only = ["algo.behaviour_weight", "algo.trust_eta", "algo.trust_epsilon", "algo.trust_rate"]
    evidence = ["belief.consistency", "belief.lam", "belief.batch", "belief.samples"]
    rrpi = algo_config("rrpi")
    assert rrpi.algo == Rrpi() and not set(pspo_only) & set(paths(rrpi))  # RRPI has no such knobs at all
    assert fields_without_effect(rrpi, ["temperature", "temperature.target_kl"]) == []
    pspo = algo_config("pspo")
    assert fields_without_effect(pspo, pspo_only + evidence) == []
    assert fields_without_effect(algo_config("pspo", auto_temperature=False), ["temperature.alpha"]) == ["temperature.alpha"]
    assert not isinstance(algo_config("pspo-avg").belief, Gibbs)  # a uniform belief has no evidence knobs at all
    noreg = algo_config("pspo-noreg")
    assert fields_without_effect(noreg, ["algo.trust_eta"]) == ["algo.trust_eta"]
    assert fields_without_effect(algo_config("pspo-noreg", auto_temperature=False), ["algo.trust_eta"]) == []


def test_which_knobs_exist_follows_from_the_algorithm_choice():
    """No hand-kept applicability list: `Parts` has neither `reads` nor `ignores`; an algorithm's
    own knobs are fields of its `AlgoConfig` member, and what it never reads of the rest its
    member's `unread` says. BC reads the policy, its cloning steps and its own rows only."""
    from jaxrl_bayes.algos import PARTS, Bc, Parts, Pspo, fields_without_effect
    from jaxrl_bayes.components import paths

    assert not {"reads", "ignores"} & set(Parts._fields)
    assert all(not hasattr(parts, "reads") and not hasattr(parts, "ignores") for parts in PARTS.values())
    assert {name: algo_config(name).algo.kind for name in ("rrpi", "pmdb", "pspo", "pspo-noreg", "bc-top10")} == {
        "rrpi": "rrpi", "pmdb": "rrpi", "pspo": "pspo", "pspo-noreg": "pspo", "bc-top10": "bc"}
    assert algo_config("pspo-noreg").algo == Pspo(behaviour_weight=0.0)
    assert algo_config("bc-top10").algo == Bc(top_fraction=0.1)
    bc = algo_config("bc")
    read = {"algo", "algo.top_fraction", "algo.holdout", "algo.loss", "policy_hidden", "action_scale", "behaviour.lr",
            "behaviour.batch", "steps_per_chunk"}
    every = set(paths(bc))
    assert read <= every
    assert fields_without_effect(bc, sorted(every)) == sorted(every - read)
    with pytest.raises(UserError, match="no field 'behaviour_weight' under 'rrpi'"):
        algo_config("rrpi", **{"algo.behaviour_weight": 0.5})
