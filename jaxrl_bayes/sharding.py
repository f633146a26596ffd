"""Seeds across local devices: the seed axis of a vmapped train state laid over a 1-D mesh.

Seeds are independent learners stacked on a leading axis (`Trainer.init_seeds` vmaps `init`
over keys), so spreading them over devices needs no collective: each device runs its share of
the seeds, and the constant data (dataset, dynamics members, normalizers) is replicated.

    trainer, mesh = shard_trainer(trainer, num_seeds)  # all local devices; data replicated
    states = init_sharded(trainer, keys, mesh)          # every leaf split over the seed axis
    states, metrics = trainer.run_chunk_seeds(states)   # jit follows the input sharding
    ...
    states = shard_seeds(checkpointer.restore(target)[0], mesh)   # after a restore

There is one code path: with one device the mesh has one device and the placement is a no-op
(the same program runs, with the same compilation count). jit compiles the chunk once for the
sharded signature: its outputs keep the seed sharding of its inputs (GSPMD propagation through
vmap/scan), so the next chunk's inputs hit the same cache entry.

Sources: JAX "Distributed arrays and automatic parallelization" (`jax.make_mesh`,
`NamedSharding`, `PartitionSpec`); PureJaxRL's `jax.jit(jax.vmap(train))(keys)` pattern.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxrl_bayes.errors import UserError

SEED_AXIS = "seed"


def seed_mesh(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "seed" over `devices` (default: all local devices).

    Args:
      num_seeds: S, the number of seeds to be laid over the mesh.
      devices: the devices to use (default `jax.local_devices()`).
    Returns:
      a `Mesh` of shape (D,) with `Auto` axis type (jit propagates shardings freely).
    Raises:
      UserError: S is not a multiple of the device count D.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    if num_seeds < 1 or num_seeds % n:
        lower, upper = (num_seeds // n) * n, -(-num_seeds // n) * n
        choices = " or ".join(str(s) for s in sorted({lower, upper}) if s > 0)
        raise UserError(
            f"--seeds {num_seeds} cannot be split evenly over {n} devices; use a multiple of {n} "
            f"(e.g. --seeds {choices}), or make fewer devices visible (CUDA_VISIBLE_DEVICES)"
        )
    return jax.make_mesh((n,), (SEED_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of arrays whose leading axis is the seed axis (split over the mesh)."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of arrays held whole on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree whose every leaf has a leading seed axis S over the mesh.

    Args:
      tree: pytree of arrays of shape (S, ...) (keys (S, 2), a vmapped TrainState, ...).
      mesh: from `seed_mesh(S)`.
    Returns:
      the same tree, each leaf split along axis 0 over the mesh's devices.
    Raises:
      UserError: a leaf's leading axis is not a multiple of the device count.
    """
    n = mesh.devices.size
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = jax.numpy.shape(leaf)
        if not shape or shape[0] % n:
            raise UserError(f"cannot split an array of shape {shape} over {n} devices along its seed axis; "
                            f"use a number of seeds that is a multiple of {n}")
    return jax.device_put(tree, seed_sharding(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (dataset, dynamics members, normalizers) whole on every mesh device."""
    return jax.device_put(tree, replicated(mesh))


def replicate_data(trainer: Any, mesh: Mesh) -> Any:
    """A `jaxrl_bayes.algos.Trainer` whose constant `data` is replicated over the mesh.

    The trainer's jitted functions take `data` as an argument, so replacing the field is all
    that is needed; nothing is recompiled beyond the first call with the new placement.
    """
    return trainer._replace(data=replicate(trainer.data, mesh))


def shard_trainer(trainer: Any, num_seeds: int, devices: Sequence[jax.Device] | None = None) -> tuple[Any, Mesh]:
    """The mesh for `num_seeds` seeds and the trainer with its data replicated over it.

    Args:
      trainer: a `jaxrl_bayes.algos.Trainer` (anything with a `data` field and `_replace`).
      num_seeds: S.
      devices: default all local devices.
    Returns:
      (trainer with replicated data, mesh).
    Raises:
      UserError: S is not a multiple of the device count.
    """
    mesh = seed_mesh(num_seeds, devices)
    return replicate_data(trainer, mesh), mesh


def init_sharded(trainer: Any, keys: jax.Array, mesh: Mesh) -> Any:
    """Initial states of S seeds (keys (S, 2)) with every leaf split over the mesh's seed axis.

    `init_seeds` runs on sharded keys, then every leaf is placed seed-sharded: leaves that do
    not depend on the key (zero biases, optimizer counts, the empty buffer) would otherwise
    come back replicated, and the first chunk's outputs (all seed-sharded) would then have
    another signature than its inputs: a second compilation.
    """
    return shard_seeds(trainer.init_seeds(shard_seeds(keys, mesh)), mesh)


def num_shards(tree: Any) -> int:
    """How many devices the first leaf of `tree` is spread over (1 for an unsharded state)."""
    leaf = jax.tree_util.tree_leaves(tree)[0]
    return len(leaf.sharding.device_set)


__all__ = [
    "SEED_AXIS", "init_sharded", "num_shards", "replicate", "replicate_data", "replicated", "seed_mesh",
    "seed_sharding", "shard_seeds", "shard_trainer",
]
