"""Fuzz: random byte corruption of a small D4RL-schema file gives a clean UserError or a valid load."""

import collections

import h5py
import numpy as np
import pytest

from jaxrl_bayes.data import registry
from jaxrl_bayes.data.dataset import MIN_TRANSITIONS, Dataset
from jaxrl_bayes.errors import UserError

CASES = 50
ROWS = 40


def _clean_file(path):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(ROWS, 11)).astype(np.float32)
        f["next_observations"] = rng.normal(size=(ROWS, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(ROWS, 3)).astype(np.float32)
        f["rewards"] = rng.normal(size=ROWS).astype(np.float32)
        f["terminals"] = np.arange(ROWS) % 13 == 12
        f["timeouts"] = np.arange(ROWS) % 17 == 16
        f.attrs["env_id"] = "Hopper-v4"
    return path.read_bytes()


def test_corrupted_files_fail_cleanly_or_load_valid_data(tmp_path):
    clean = _clean_file(tmp_path / "clean.hdf5")
    outcomes = collections.Counter()
    for seed in range(CASES):
        rng = np.random.default_rng(seed)
        data = bytearray(clean)
        if seed % 10 == 9:  # a truncated download
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 9))):
                data[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"case{seed}.hdf5"
        path.write_bytes(bytes(data))
        try:
            ds = registry.get_spec(str(path), eval_env="Hopper-v4").load()
        except UserError as e:
            msg = str(e)
            assert msg and "\n" not in msg, (seed, msg)
            outcomes["error"] += 1
            continue
        except Exception as e:  # noqa: BLE001 - the test's point: nothing else may escape
            pytest.fail(f"case {seed}: {type(e).__name__}: {e}")
        assert isinstance(ds, Dataset) and (ds.obs_dim, ds.act_dim) == (11, 3)
        assert MIN_TRANSITIONS <= ds.size <= ROWS
        for leaf in (ds.observations, ds.actions, ds.rewards, ds.next_observations):
            assert np.isfinite(np.asarray(leaf)).all()
        outcomes["load"] += 1
    assert outcomes["error"] + outcomes["load"] == CASES
    assert outcomes["error"] > 0  # the corruption is strong enough to be caught sometimes
