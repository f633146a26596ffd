"""Deployable policy files (jaxrl_bayes.policy) and `python -m experiments.evaluate`.

References are independent of the code under test: the actions of a loaded policy are compared
with a float64 numpy MLP written here and with the trainer's own building blocks
(`algos.common.policy_dist` + `networks.tanh_gaussian_mode`, i.e. `Trainer.act`); the CLI's
numbers with the liquidation evaluator called directly and the closed-form normalization.
"""

from __future__ import annotations

import json
import os
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import evaluate as evaluate_cli
from jaxrl_bayes import networks
from jaxrl_bayes import policy as pl
from jaxrl_bayes.algos import common

HIDDEN = (16, 8)
OBS_DIM, ACT_DIM = 3, 1
MEAN = np.array([9.5, 40.0, 1.3], np.float32)
STD = np.array([5.7, 35.0, 0.25], np.float32)


def random_params(key, action_dim=ACT_DIM, hidden=HIDDEN, obs_dim=OBS_DIM, scale=0.7):
    """Policy parameters with every entry ~ N(0, scale^2) (the init's tiny output layer would
    make every action ~0 and the comparison weak)."""
    module = networks.TanhGaussianPolicy(action_dim, hidden)
    params = module.init(jax.random.PRNGKey(0), jnp.zeros((1, obs_dim)))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [scale * jax.random.normal(k, x.shape, jnp.float32) for k, x in zip(keys, leaves)])


def numpy_actions(params, obs, mean, std):
    """tanh(mean head) of the ReLU MLP in float64, by hand."""
    dense = params["params"]["MLP_0"]
    x = (np.asarray(obs, np.float64) - mean) / std
    n = len(dense)
    for k in range(n):
        x = x @ np.asarray(dense[f"Dense_{k}"]["kernel"], np.float64) + np.asarray(dense[f"Dense_{k}"]["bias"], np.float64)
        if k < n - 1:
            x = np.maximum(x, 0.0)
    return np.tanh(x[..., : x.shape[-1] // 2])


def save(path, params, **meta):
    return pl.save_policy(path, params, obs_mean=MEAN, obs_std=STD, action_dim=ACT_DIM, hidden=HIDDEN,
                          activation="relu", meta={"dataset": "liquidation-random-v0", "algo": "test", **meta})


@pytest.fixture(scope="module")
def params():
    return random_params(jax.random.PRNGKey(1))


@pytest.fixture
def policy_file(tmp_path, params):
    return save(tmp_path / "policy_seed0.npz", params, seed_index=0, raw_return=np.float32(61.5))


# ----------------------------------------------------------------------------- library


def test_round_trip_equals_trainer_act_and_a_hand_computation(policy_file, params, tmp_path):
    deployed = pl.load_policy(policy_file)
    obs = np.random.default_rng(0).normal(MEAN, 2 * STD, size=(64, OBS_DIM)).astype(np.float32)
    got = np.asarray(deployed.act(obs))
    assert got.shape == (64, ACT_DIM) and got.dtype == np.float32
    # Trainer.act is tanh_gaussian_mode(policy_dist(nets, params, data, obs)) (algos/common.py)
    nets = common.Networks(networks.TanhGaussianPolicy(ACT_DIM, HIDDEN), None)
    data = types.SimpleNamespace(obs_mean=jnp.asarray(MEAN), obs_std=jnp.asarray(STD))
    trainer_act = jax.jit(lambda p, o: networks.tanh_gaussian_mode(common.policy_dist(nets, p, data, o)))
    np.testing.assert_array_equal(got, np.asarray(trainer_act(params, obs)))  # same ops: bit for bit
    np.testing.assert_allclose(got, numpy_actions(params, obs, MEAN, STD), atol=1e-5)
    assert np.std(got) > 0.1  # the comparison is not between near-constant outputs
    # header and meta
    h = deployed.header
    assert (h["format"], h["version"], h["obs_dim"], h["action_dim"], h["hidden"], h["activation"]) == (
        "jaxrl_bayes.policy", 1, 3, 1, [16, 8], "relu")
    assert deployed.meta == {"dataset": "liquidation-random-v0", "algo": "test", "seed_index": 0, "raw_return": 61.5}
    np.testing.assert_array_equal(np.asarray(deployed.obs_std), STD)
    # one file, no pickle, no temporary left behind
    assert os.listdir(tmp_path) == ["policy_seed0.npz"]
    with np.load(policy_file, allow_pickle=False) as d:
        assert "header_json" in d.files and "layer2_kernel" in d.files
    # a wrong observation width is refused with the widths named
    with pytest.raises(pl.PolicyMismatchError, match="width 3"):
        deployed.act(np.zeros((2, 4), np.float32))


def test_save_rejects_parameters_of_another_shape(tmp_path, params):
    stacked = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), params)  # a seed axis left on
    with pytest.raises(ValueError, match="ONE seed"):
        save(tmp_path / "p.npz", stacked)
    with pytest.raises(ValueError, match="ONE seed"):
        pl.save_policy(tmp_path / "p.npz", params, obs_mean=MEAN, obs_std=STD, action_dim=1, hidden=(16, 9))
    with pytest.raises(ValueError, match="JSON"):
        save(tmp_path / "p.npz", params, bad=object())
    assert not os.listdir(tmp_path)


def _rewrite(src, dst, drop=(), header_update=None):
    with np.load(src, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files if k not in drop}
    if header_update:
        h = json.loads(arrays["header_json"].tobytes().decode())
        h.update(header_update)
        arrays["header_json"] = np.frombuffer(json.dumps(h).encode(), np.uint8)
    np.savez(dst, **arrays)
    return dst


def test_bad_files_give_one_clear_error(tmp_path, policy_file):
    missing = tmp_path / "nope" / "policy_seed3.npz"
    with pytest.raises(FileNotFoundError, match=r"nope/policy_seed3\.npz does not exist.*run directory"):
        pl.load_policy(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    cases = {
        garbage: "not a readable .npz",
        _rewrite(policy_file, tmp_path / "v99.npz", header_update={"version": 99}): "version 99.*newer",
        _rewrite(policy_file, tmp_path / "fmt.npz", header_update={"format": "other"}): "format 'other'",
        _rewrite(policy_file, tmp_path / "miss.npz", drop=("layer1_bias",)): "missing the array.*layer1_bias",
        _rewrite(policy_file, tmp_path / "nohdr.npz", drop=("header_json",)): "no 'header_json'",
        tmp_path / "single.npy": "single .npy",
    }
    np.save(tmp_path / "single.npy", np.zeros(3))
    for path, pattern in cases.items():
        with pytest.raises(pl.PolicyFileError, match=pattern) as e:
            pl.load_policy(path)
        assert str(path) in str(e.value) and isinstance(e.value, ValueError)
    with pytest.raises(pl.PolicyFileError, match="is a directory"):
        pl.load_policy(tmp_path)


# ----------------------------------------------------------------------------- CLI


def test_cli_evaluates_a_liquidation_policy(policy_file, params, capsys):
    from jaxrl_bayes.envs import liquidation

    assert evaluate_cli.main(["--policy", str(policy_file), "--episodes", "100", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    # independent: the liquidation evaluator on a hand-written numpy-equivalent jnp policy
    def hand(o):
        return jnp.asarray(numpy_actions(params, np.asarray(o), MEAN, STD), jnp.float32)

    obs_probe = np.random.default_rng(1).normal(MEAN, STD, (5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(pl.load_policy(policy_file).act(obs_probe)), hand(obs_probe), atol=1e-5)
    r = liquidation.evaluate_policy(lambda o: pl.load_policy(policy_file).act(o), num_episodes=100, seed=4)
    raw_line = next(l for l in out.splitlines() if "raw return" in l)
    norm_line = next(l for l in out.splitlines() if "normalized" in l)
    frac_line = next(l for l in out.splitlines() if "fraction of the DP optimum" in l)
    assert f"{r.mean():.3f} ± {r.std():.3f}" in raw_line
    assert f"{100 * r.mean() / 135:.2f} ± {100 * r.std() / 135:.2f}" in norm_line
    assert f"{r.mean() / liquidation.dp_optimum().expected_return:.4f}" in frac_line
    assert "100 episodes, seed 4" in out and "liquidation-random-v0" in out


def test_cli_run_directory_evaluates_every_policy(tmp_path, params, capsys):
    save(tmp_path / "policy_seed0.npz", params, seed_index=0)
    save(tmp_path / "policy_seed1.npz", random_params(jax.random.PRNGKey(2)), seed_index=1)
    assert evaluate_cli.main(["--policy", str(tmp_path), "--episodes", "50"]) == 0
    out = capsys.readouterr().out
    assert out.count("raw return") == 3 and "mean over 2 policies" in out
    assert out.index("policy_seed0.npz") < out.index("policy_seed1.npz")


def test_cli_user_errors_exit_2_with_one_message(tmp_path, policy_file, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    v2 = _rewrite(policy_file, tmp_path / "v2.npz", header_update={"version": 2})
    empty_run = tmp_path / "emptyrun"
    empty_run.mkdir()
    cases = [
        (["--policy", str(tmp_path / "missing.npz")], "does not exist"),
        (["--policy", str(garbage)], "not a readable .npz"),
        (["--policy", str(v2)], "format version 2"),
        (["--policy", str(empty_run)], "holds no policy_seed"),
        (["--policy", str(policy_file), "--dataset", "liquidation-v9"], "unknown dataset 'liquidation-v9'"),
        (["--policy", str(policy_file), "--dataset", "hopper-medium-v2"], "width 3 .* width 11"),
    ]
    for argv, pattern in cases:
        assert evaluate_cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert re.search(pattern, err), (pattern, err)
        assert "Traceback" not in err
