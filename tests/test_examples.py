"""examples/ run as a user would run them, at tiny sizes."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import posterior
from jaxrl_bayes.algos import targets, train
from jaxrl_bayes.algos.common import MODEL_BACKUPS, make_value_fn
from jaxrl_bayes.algos.overrides import apply_overrides

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _load("custom_consistency")


def test_custom_consistency_is_registered_and_is_what_it_says():
    assert "rms" in posterior.CONSISTENCY
    member_y = jnp.array([[1.0, 3.0], [0.0, 0.0]])
    observed = jnp.array([0.0, 0.0])
    np.testing.assert_allclose(np.asarray(posterior.CONSISTENCY["rms"](member_y, observed)), [np.sqrt(5.0), 0.0])


def test_custom_consistency_example_trains_pspo_with_its_metric():
    before = EXAMPLE.TRACES["rms"]
    out = EXAMPLE.main(chunks=1)
    assert EXAMPLE.TRACES["rms"] > before  # the metric was compiled into PSPO's train step
    b = out["belief"]
    assert b.shape == (3,) and np.all(np.isfinite(b)) and abs(b.sum() - 1.0) < 1e-5
    assert np.isfinite(out["metrics"]["critic_loss"])


def test_a_metric_registered_outside_the_library_decides_the_belief():
    # A planted metric through the same public API: d = (0, 5, 5) whatever the data, so the
    # raw Gibbs belief (belief="gibbs", lam = 1) must be softmax(-d) exactly; any other belief
    # means the configured metric was not the one used.
    name = "planted-for-test"
    if name not in posterior.CONSISTENCY:
        @posterior.register_consistency(name)
        def planted(member_y, observed_y):
            return jnp.zeros(member_y.shape[:1]).at[1:].set(5.0) + 0.0 * jnp.mean(observed_y)

    out = EXAMPLE.main(consistency=name, chunks=1, belief="gibbs")
    np.testing.assert_allclose(out["belief"], np.asarray(jax.nn.softmax(-jnp.array([0.0, 5.0, 5.0]))), rtol=1e-5)


LCB = _load("lcb_backup")


def test_lcb_rule_is_mean_minus_k_std_of_the_members():
    assert "lcb" in MODEL_BACKUPS
    member_y = jnp.array([[1.0, 4.0], [3.0, 4.0], [5.0, 4.0]])  # (N = 3, B = 2)
    # by hand: means (3, 4); population stds (sqrt(8/3), 0)
    np.testing.assert_allclose(np.asarray(LCB.lcb_target(member_y, 1.5)), [3.0 - 1.5 * np.sqrt(8 / 3), 4.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(LCB.lcb_target(member_y, 0.0)), [3.0, 4.0])  # k = 0: the mean
    np.testing.assert_allclose(np.asarray(LCB.lcb_backup(None, None, member_y)),
                               [3.0 - LCB.LCB_K * np.sqrt(8 / 3), 4.0], rtol=1e-6)


@pytest.fixture(scope="module")
def lcb_run():
    """The example trained for one chunk, and how often that traced its rule."""
    before = LCB.TRACES["lcb"]
    out = LCB.main(chunks=1)
    return out, LCB.TRACES["lcb"] - before


def _backup_and_members(out, **config_changes):
    """The configured backup on 64 dataset pairs of the trained learner (its config changed by
    `config_changes`) and the member targets the step computes there, with one key."""
    trainer = out["trainer"]
    learner = trainer.learner._replace(config=apply_overrides(trainer.config, config_changes))
    state = jax.tree_util.tree_map(lambda x: x[0], out["states"])
    obs, act = trainer.data.obs[:64], trainer.data.act[:64]

    @jax.jit
    def run(state, key):
        ctx = train.context(learner, state, trainer.data)
        vf = make_value_fn(ctx, learner.parts, state.target_critic)
        return targets.model_backup(ctx, key, obs, act, vf), targets.all_member_targets(ctx, key, obs, act, vf).member_y

    return run(state, jax.random.PRNGKey(3))


def test_lcb_example_trains_and_its_rule_sets_the_model_state_target(lcb_run):
    out, traced = lcb_run
    assert traced > 0  # the rule was compiled into the train step
    m = out["metrics"]
    assert np.isfinite(m["critic_loss"]) and np.isfinite(m["target_mean"]) and np.isfinite(m["rollout_path_len"])
    # through the library's slot on the trained learner: the configured rule's target is the LCB of
    # the very member targets the step computes, and the paths follow the worst member (RRPI's
    # selector), as the rule names none
    backup, member_y = _backup_and_members(out)
    assert float(jnp.max(jnp.std(member_y, axis=0))) > 0  # the members disagree somewhere
    np.testing.assert_allclose(np.asarray(backup.target), np.asarray(LCB.lcb_target(member_y, LCB.LCB_K)),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(backup.member), np.asarray(jnp.argmin(member_y, axis=0)))


def test_a_min_over_members_rule_is_the_default_worst_member_backup(lcb_run):
    """RRPI's default backup ("selected" with the worst-member selector, k = 1) and a rule over all
    members that returns their minimum are two code paths of one operator: same targets, members."""
    name = "min-for-test"
    if name not in MODEL_BACKUPS:
        targets.register_member_backup(name)(lambda key, inputs, member_y: jnp.min(member_y, axis=0))
    out, _ = lcb_run
    worst = {"targets.selector": "worst", "targets.kth": 1}
    selected, member_y = _backup_and_members(out, **{"targets.backup": "selected", **worst})
    by_rule, _ = _backup_and_members(out, **{"targets.backup": name, **worst})
    np.testing.assert_array_equal(np.asarray(selected.target), np.asarray(jnp.min(member_y, axis=0)))
    np.testing.assert_array_equal(np.asarray(by_rule.target), np.asarray(selected.target))
    np.testing.assert_array_equal(np.asarray(by_rule.member), np.asarray(selected.member))
    np.testing.assert_array_equal(np.asarray(by_rule.successors), np.asarray(selected.successors))
