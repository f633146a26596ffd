"""The registry of names: D4RL specs, liquidation, width checks and unknown names."""

import sys
import types
import warnings

import gymnasium as gym
import numpy as np
import pytest

from jaxrl_bayes import evaluation, termination
from jaxrl_bayes.data import d4rl, registry
from jaxrl_bayes.data.dataset import DatasetError

warnings.filterwarnings("ignore", message=".*is out of date.*")


def test_names():
    names = registry.list_datasets()
    assert len(names) == 19 and names[-1] == "liquidation-random-v0"
    for env in ("hopper", "walker2d", "halfcheetah"):
        for level in ("random", "medium", "expert", "medium-replay", "medium-expert",
                      "full-replay"):
            assert f"{env}-{level}-v2" in names


@pytest.mark.parametrize("env, env_id, obs_dim, act_dim, ref_min, ref_max", [
    ("hopper", "Hopper-v4", 11, 3, -20.272305, 3234.3),
    ("walker2d", "Walker2d-v4", 17, 6, 1.629008, 4592.3),
    ("halfcheetah", "HalfCheetah-v4", 17, 6, -280.178953, 12135.0),
])
def test_d4rl_specs(env, env_id, obs_dim, act_dim, ref_min, ref_max):
    spec = registry.get_spec(f"{env}-medium-replay-v2")
    assert (spec.family, spec.source, spec.eval_env_id) == (env, "d4rl", env_id)
    assert (spec.ref_min_score, spec.ref_max_score) == (ref_min, ref_max)
    assert spec.termination_fn is termination.TERMINATION_FNS[env]
    made = gym.make(env_id)  # the table's widths agree with Gymnasium's spaces
    assert (spec.obs_dim, spec.act_dim) == (made.observation_space.shape[0],
                                            made.action_space.shape[0]) == (obs_dim, act_dim)
    np.testing.assert_allclose(evaluation.normalize_for(spec, [ref_min, ref_max]), [0.0, 100.0])


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"Did you mean 'walker2d-medium-replay-v2'\?"):
        registry.get_spec("walker2d-medium-replay")
    with pytest.raises(ValueError, match=r"Did you mean 'halfcheetah-expert-v2'\?.*Known names"):
        registry.get_spec("half-cheetah-expert-v2")


def test_width_mismatch_is_refused_by_spec_load(tmp_path, monkeypatch):
    """spec.load() itself checks widths (experiments load through it), naming the file."""
    import h5py

    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(tmp_path))
    rows = 12
    path = tmp_path / "walker2d_full_replay-v2.hdf5"
    with h5py.File(path, "w") as f:  # hopper widths under a walker2d name
        f["observations"] = np.zeros((rows, 11))
        f["next_observations"] = np.zeros((rows, 11))
        f["actions"] = np.zeros((rows, 3))
        f["rewards"] = np.arange(rows, dtype=np.float32)
        f["terminals"] = np.zeros(rows, bool)
        f["timeouts"] = np.zeros(rows, bool)
    expected = (rf"^dataset 'walker2d-full-replay-v2' \({path}\) has observations of width 11 "
                r"and actions of width 3, but the evaluation environment Walker2d-v4 expects 17 "
                r"and 6: the data belongs to another environment; [^\n]*$")
    with pytest.raises(DatasetError, match=expected):
        registry.get_spec("walker2d-full-replay-v2").load()
    with pytest.raises(DatasetError, match=expected):
        registry.load_dataset("walker2d-full-replay-v2")
    spec = registry.get_spec("walker2d-full-replay-v2")
    no_env = dataclass_replace(spec, eval_env_spec=None)  # the registry's widths still object
    with pytest.raises(DatasetError, match="but the registry expects 17 and 6"):
        no_env.load()


def dataclass_replace(spec, **kw):
    import dataclasses

    return dataclasses.replace(spec, **kw)


def test_liquidation_entry_uses_the_env_module(monkeypatch):
    """The code path with a stand-in module honouring liquidation.py's contract."""
    calls = {}
    fake = types.ModuleType("jaxrl_bayes.envs.liquidation")
    fake.REF_MIN_SCORE, fake.REF_MAX_SCORE, fake.OBS_DIM, fake.ACT_DIM = 0.0, 135.0, 3, 1

    def generate_dataset(seed=0, num_transitions=200_000):
        calls["seed"] = seed
        obs = np.tile([[0, 100, 1.0], [1, 50, 1.1], [0, 100, 0.9], [1, 100, 1.0]], (3, 1))
        return {"observations": obs, "actions": np.tile([[0.5], [1.0], [-1.0], [1.0]], (3, 1)),
                "rewards": np.tile([50.0, 55.0, 0.0, 100.0], 3),
                "next_observations": obs + [1, 0, 0],
                "terminals": np.tile(np.array([0, 1, 0, 1], bool), 3),
                "timeouts": np.zeros(12, bool)}

    def evaluate_policy(act_fn, num_episodes=1000, seed=0):
        calls["eval"] = (num_episodes, seed)
        return np.full(num_episodes, 67.5)

    fake.generate_dataset, fake.evaluate_policy = generate_dataset, evaluate_policy
    import jaxrl_bayes.envs as envs_pkg

    monkeypatch.setitem(sys.modules, "jaxrl_bayes.envs.liquidation", fake)
    monkeypatch.setattr(envs_pkg, "liquidation", fake, raising=False)
    spec = registry.get_spec("liquidation-random-v0")
    assert (spec.family, spec.source, spec.eval_env_id) == ("liquidation", "liquidation", None)
    assert (spec.ref_min_score, spec.ref_max_score, spec.obs_dim, spec.act_dim) == (0, 135, 3, 1)
    assert spec.termination_fn is termination.liquidation_termination
    ds = registry.load_dataset("liquidation-random-v0")
    assert ds.size == 12 and calls["seed"] == 0 and ds.start_observations.shape == (6, 3)
    returns = evaluation.evaluate_on(spec, lambda o: o[:, :1], num_episodes=7, seed=3)
    assert calls["eval"] == (7, 3) and returns.shape == (7,)
    np.testing.assert_allclose(evaluation.normalize_for(spec, returns), 50.0)


def test_liquidation_real_module_contract():
    from jaxrl_bayes.envs import liquidation

    spec = registry.get_spec("liquidation-random-v0")
    assert (spec.ref_min_score, spec.ref_max_score) == (liquidation.REF_MIN_SCORE,
                                                        liquidation.REF_MAX_SCORE) == (0.0, 135.0)
    assert (spec.obs_dim, spec.act_dim) == (3, 1)


def test_evaluate_forwards_params_and_keeps_the_old_form(monkeypatch):
    import jax.numpy as jnp

    seen = []

    def old_evaluator(act_fn, num_episodes, seed):  # no params keyword: the old contract
        seen.append(("old", np.asarray(act_fn(np.ones((1, 2)))).item()))
        return np.zeros(num_episodes)

    def new_evaluator(act_fn, num_episodes, seed, params=None):
        seen.append(("new", np.asarray(act_fn(params, np.ones((1, 2)))).item()))
        return np.ones(num_episodes)

    base = registry.get_spec("liquidation-random-v0")
    with monkeypatch.context() as m:
        m.setattr(evaluation, "evaluator_for", lambda spec: old_evaluator)
        assert evaluation.evaluate_on(base, lambda o: o[:, :1] * 2, 3, 0).shape == (3,)
        assert seen[-1] == ("old", 2.0)
        m.setattr(evaluation, "evaluator_for", lambda spec: new_evaluator)
        out = evaluation.evaluate_on(base, lambda p, o: o[:, :1] * p, 4, 0, params=jnp.float32(5.0))
        assert out.dtype == np.float64 and out.shape == (4,) and seen[-1] == ("new", 5.0)

    # the real liquidation entry: params form == closure form
    def act(p, o):
        return jnp.where(o[:, 2:3] > p, 1.0, -1.0)

    np.testing.assert_array_equal(evaluation.evaluate_on(base, act, 200, 5, params=jnp.float32(1.2)),
                                  evaluation.evaluate_on(base, lambda o: act(jnp.float32(1.2), o), 200, 5))
