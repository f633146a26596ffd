"""Minari datasets made here with `minari.DataCollector`, loaded through the registry."""

import time
import warnings

import gymnasium as gym
import numpy as np
import pytest

from jaxrl_bayes import evaluation, termination
from jaxrl_bayes.data import d4rl, minari_data, registry
from jaxrl_bayes.errors import UserError

warnings.filterwarnings("ignore", message=".*is out of date.*")


def collect(dataset_id, env_id="Hopper-v4", episodes=4, max_steps=25):
    """Even episodes push every joint (+1: the hopper falls, ~21 steps), odd ones stand still
    (truncated at max_steps). Returns what was stepped, recorded independently of Minari."""
    import minari

    env = minari.DataCollector(gym.make(env_id, max_episode_steps=max_steps))
    record = {k: [] for k in ("obs", "act", "rew", "next_obs", "term", "trunc", "start")}
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep)
        record["start"].append(obs)
        act = np.full(3, 1.0 if ep % 2 == 0 else 0.0, np.float32)
        while True:
            nxt, rew, term, trunc, _ = env.step(act)
            for k, v in zip(("obs", "act", "rew", "next_obs", "term", "trunc"),
                            (obs, act, rew, nxt, term, trunc)):
                record[k].append(v)
            obs = nxt
            if term or trunc:
                break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env.create_dataset(dataset_id, algorithm_name="fixed", author="test",
                           author_email="test@example.org", code_permalink="none")
    env.close()
    return {k: np.array(v) for k, v in record.items()}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never reach for the network in tests
    return tmp_path


def test_collected_dataset_loads_through_the_registry(store):
    rec = collect("test/hopper/fixed-v0")
    assert rec["term"].any() and rec["trunc"].any()  # both kinds of episode end present
    ds = registry.load_dataset("test/hopper/fixed-v0")
    n = len(rec["act"])
    assert ds.size == n  # truncated steps kept: they have a true next observation
    np.testing.assert_allclose(ds.observations, rec["obs"], rtol=1e-6)
    np.testing.assert_allclose(ds.next_observations, rec["next_obs"], rtol=1e-6)
    np.testing.assert_allclose(ds.actions, rec["act"])
    np.testing.assert_allclose(ds.rewards, rec["rew"], rtol=1e-6)
    np.testing.assert_array_equal(ds.terminals, rec["term"].astype(np.float32))
    assert not np.any(np.asarray(ds.terminals)[rec["trunc"]])  # truncations are not terminals
    np.testing.assert_allclose(ds.start_observations, rec["start"], rtol=1e-6)

    flat = minari_data.to_arrays(minari_data.open_dataset("test/hopper/fixed-v0"))
    np.testing.assert_array_equal(flat["timeouts"], rec["trunc"])
    np.testing.assert_array_equal(flat["terminals"], rec["term"])

    spec = registry.get_spec("test/hopper/fixed-v0")
    assert (spec.source, spec.family, spec.eval_env_id) == ("minari", "hopper", "Hopper-v4")
    assert (spec.obs_dim, spec.act_dim) == (11, 3)
    assert spec.termination_fn is termination.hopper_termination
    # A v4 robot shares D4RL's MDP, so D4RL's reference scores apply.
    assert (spec.ref_min_score, spec.ref_max_score) == (d4rl.REF_MIN_SCORE["hopper"],
                                                        d4rl.REF_MAX_SCORE["hopper"])
    # Evaluation uses the recorded spec, time limit included (25 steps, standing still).
    returns = evaluation.evaluate_on(spec, lambda o: 0.0 * o[:, :3], num_episodes=2, seed=0)
    env = gym.make("Hopper-v4", max_episode_steps=25)
    expected = []
    for k in range(2):
        env.reset(seed=k)
        expected.append(sum(env.step(np.zeros(3, np.float32))[1] for _ in range(25)))
    np.testing.assert_allclose(returns, expected, rtol=1e-5)


def test_v5_dataset_gets_no_d4rl_reference(store):
    collect("test/hopper/fixed5-v0", env_id="Hopper-v5", episodes=1, max_steps=5)
    spec = registry.get_spec("test/hopper/fixed5-v0")
    assert spec.family == "hopper" and spec.eval_env_id == "Hopper-v5"
    assert spec.ref_min_score is None and spec.ref_max_score is None
    with pytest.raises(ValueError, match="no reference scores"):
        evaluation.normalize_for(spec, [1.0])


def test_missing_dataset_fails_fast_and_says_what_to_do(store):
    start = time.monotonic()
    with pytest.raises(minari_data.MinariNotFoundError) as info:
        registry.get_spec("jaxrl_bayes/walker2d/medium-replay-v0")
    assert time.monotonic() - start < 2.0
    msg = str(info.value)
    assert str(store / "jaxrl_bayes/walker2d/medium-replay-v0") in msg
    assert "HF_HUB_OFFLINE" in msg
    assert "python -m experiments.collect --env walker2d --levels medium-replay" in msg
    assert "\n" not in msg and isinstance(info.value, UserError)
    with pytest.raises(FileNotFoundError, match="download=False"):
        minari_data.load("mujoco/hopper/medium-v0", download=False)


def test_family_of_env():
    assert registry.family_of_env("Walker2d-v4") == ("walker2d", 4)
    assert registry.family_of_env("HalfCheetah-v5") == ("halfcheetah", 5)
    assert registry.family_of_env("Hopper-v3") == ("hopper", 3)
    assert registry.family_of_env("AntMaze_UMaze-v4") == ("other", 4)
    assert registry.family_of_env(None) == ("other", None)
