"""Tests of jaxrl_bayes.checkpoint: exact round trips, rotation, atomicity, mismatch errors."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import checkpoint as ckpt_lib


def _tree():
    """A nested pytree with float32/int32/uint32/bool leaves, a NamedTuple and a raw key."""
    rng = np.random.default_rng(0)
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: jax.Array
        b: jax.Array

    return {
        "params": {"w": jnp.asarray(rng.normal(size=(3, 4)).astype(np.float32)),
                   "b": jnp.asarray(np.float32([np.nextafter(np.float32(1), np.float32(2)), -0.0, 1e-38]))},
        "step": jnp.asarray(7, dtype=jnp.int32),
        "key": jax.random.split(jax.random.PRNGKey(3), 4),  # uint32 [4, 2]
        "pair": Pair(a=np.arange(5, dtype=np.int32), b=np.array([True, False])),
        "empty": jnp.zeros((0, 2), jnp.float32),
    }


def _assert_identical(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        # bit-exact: compare the raw bytes (distinguishes -0.0 from 0.0)
        assert x.tobytes() == y.tobytes()


def test_round_trip_is_bit_exact_and_meta_comes_back(tmp_path):
    tree = _tree()
    meta = {"chunk": 2, "config_hash": "abc", "history": [{"loss": 0.5}]}
    ckpt_lib.save_checkpoint(tmp_path / "ck", 2, tree, meta)
    # restore into an abstract target (what a resuming run has before running init)
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
    restored, meta2 = ckpt_lib.restore_checkpoint(tmp_path / "ck", target)
    _assert_identical(restored, tree)
    assert meta2 == meta
    assert type(restored["pair"]).__name__ == "Pair"
    # without a target: the leaves in flattening order
    with ckpt_lib.Checkpointer(tmp_path / "ck") as ck:
        leaves, meta3 = ck.restore_leaves()
    _assert_identical(leaves, [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree)])
    assert meta3 == meta


def test_typed_prng_keys_round_trip(tmp_path):
    keys = jax.random.split(jax.random.key(5), 3)
    ckpt_lib.save_checkpoint(tmp_path, 0, {"k": keys})
    restored, _ = ckpt_lib.restore_checkpoint(tmp_path, {"k": keys})
    assert jax.dtypes.issubdtype(restored["k"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored["k"]), jax.random.key_data(keys))
    # the restored keys draw the same numbers
    np.testing.assert_array_equal(jax.random.uniform(restored["k"][1]), jax.random.uniform(keys[1]))


def test_keep_last_k_and_restore_latest(tmp_path):
    with ckpt_lib.Checkpointer(tmp_path, max_to_keep=2) as ck:
        for step in range(5):
            ck.save(step, {"x": jnp.full((2,), step, jnp.int32)}, {"chunk": step})
        assert ck.all_steps() == [3, 4]
        assert ck.latest_step() == 4
        tree, meta = ck.restore({"x": jnp.zeros((2,), jnp.int32)})
        np.testing.assert_array_equal(tree["x"], [4, 4])
        assert meta == {"chunk": 4}
        tree3, meta3 = ck.restore({"x": jnp.zeros((2,), jnp.int32)}, step=3)
        np.testing.assert_array_equal(tree3["x"], [3, 3])
        assert ck.restore_meta(3) == {"chunk": 3}
        with pytest.raises(ckpt_lib.CheckpointError, match="already exists"):
            ck.save(4, {"x": jnp.zeros((2,), jnp.int32)})
    assert sorted(os.listdir(tmp_path)) == ["3", "4"]


def test_unfinished_temporary_directory_is_ignored(tmp_path):
    ckpt_lib.save_checkpoint(tmp_path, 1, {"x": jnp.ones(3)}, {"chunk": 1})
    # what a crash in the middle of saving step 2 leaves behind: orbax's temporary directory
    junk = tmp_path / "2.orbax-checkpoint-tmp-1234567"
    (junk / "state").mkdir(parents=True)
    (junk / "state" / "garbage").write_bytes(b"\x00\x01")
    assert ckpt_lib.latest_step(tmp_path) == 1
    tree, meta = ckpt_lib.restore_checkpoint(tmp_path, {"x": jnp.zeros(3)})
    np.testing.assert_array_equal(tree["x"], np.ones(3))
    assert meta == {"chunk": 1}


def test_mismatching_target_and_missing_checkpoints_raise_clear_errors(tmp_path):
    ckpt_lib.save_checkpoint(tmp_path, 0, {"x": jnp.ones((2, 3)), "y": jnp.ones(2, jnp.int32)})
    with pytest.raises(ckpt_lib.CheckpointError, match=r"differing arrays.*\(2, 3\).*\(3, 3\)"):
        ckpt_lib.restore_checkpoint(tmp_path, {"x": jnp.ones((3, 3)), "y": jnp.ones(2, jnp.int32)})
    with pytest.raises(ckpt_lib.CheckpointError, match="holds 2 arrays but the target has 1"):
        ckpt_lib.restore_checkpoint(tmp_path, {"x": jnp.ones((2, 3))})
    with pytest.raises(ckpt_lib.CheckpointError, match="no finished checkpoint"):
        ckpt_lib.Checkpointer(tmp_path / "new").restore({"x": jnp.ones(1)})
    with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoint directory"):
        ckpt_lib.restore_checkpoint(tmp_path / "nope", {"x": jnp.ones(1)})
    assert ckpt_lib.latest_step(tmp_path / "nope") is None


def test_atomic_write_json_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    ckpt_lib.atomic_write_json(path, {"a": 1})
    ckpt_lib.atomic_write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    # NaN is not JSON: refused before anything is written
    with pytest.raises(ValueError):
        ckpt_lib.atomic_write_json(path, {"c": float("nan")})
    # a crash at the rename (after the temporary file was written) keeps the old file whole
    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_lib.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt_lib.atomic_write_json(path, {"d": "x" * 100000})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert os.listdir(tmp_path) == ["results.json"]


def test_tree_of_only_empty_arrays_round_trips(tmp_path):
    tree = {"a": jnp.zeros((0,), jnp.float32), "b": np.zeros((2, 0), np.int32)}
    ckpt_lib.save_checkpoint(tmp_path, 0, tree, {"n": 0})
    restored, meta = ckpt_lib.restore_checkpoint(tmp_path, tree)
    _assert_identical(restored, jax.tree_util.tree_map(jnp.asarray, tree))
    assert meta == {"n": 0}


def test_full_disk_during_a_save_keeps_earlier_steps_and_leaves_no_temp_dir(tmp_path, monkeypatch):
    """orbax's full-disk ValueError becomes OSError(ENOSPC) naming the step; its half-written
    temporary directory is removed; the earlier checkpoint restores unchanged; saving works
    again once there is space."""
    import errno

    import orbax.checkpoint as ocp

    from tests.faults import orbax_full_disk

    tree = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    ck = ckpt_lib.Checkpointer(tmp_path / "ck", max_to_keep=3)
    ck.save(1, tree, {"chunk": 1})
    injected = orbax_full_disk(ocp.CheckpointManager.save, on_call=1)
    monkeypatch.setattr(ocp.CheckpointManager, "save", injected)
    with pytest.raises(OSError) as info:
        ck.save(2, jax.tree_util.tree_map(lambda x: x + 1, tree), {"chunk": 2})
    assert injected.calls == [2]
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "ck" / "2")
    assert sorted(os.listdir(tmp_path / "ck")) == ["1"]  # no temporary directory left
    assert ck.all_steps() == [1]
    back, meta = ck.restore(tree)
    assert meta == {"chunk": 1} and all(np.array_equal(back[k], tree[k]) for k in tree)
    monkeypatch.undo()
    ck.save(2, jax.tree_util.tree_map(lambda x: x + 1, tree), {"chunk": 2})  # space is back
    assert ck.all_steps() == [1, 2]
    ck.close()
