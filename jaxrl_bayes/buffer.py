"""The one fixed-capacity ring buffer of the project (model rollouts, SAC's replay).

`capacity` items of any pytree, a write index and a valid count. Adding writes the valid items
contiguously after the write index, overwriting the OLDEST entries, and sampling draws only from
the `count` valid slots. (A public JAX implementation overwrote its newest block instead,
leaving most of its buffer as zeros; `tests/test_rollout.py` checks the difference.)
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp


class Transition(NamedTuple):
    """One transition per leading index: obs (.., S), act (.., A), reward (..), next_obs, done."""

    obs: jax.Array
    act: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array


class StateAction(NamedTuple):
    """What the model buffer keeps of an imagined transition: the train step reads only (s, a)
    (its targets are recomputed through the current critic and the members)."""

    obs: jax.Array
    act: jax.Array


@flax.struct.dataclass
class RingBuffer:
    """Fixed-capacity FIFO storage of a pytree of items.

    data: pytree whose leaves have a leading axis `capacity`.
    index: next slot to write (int32).
    count: number of valid slots, min(total added, capacity) (int32). Valid slots are always
      [0, count): the buffer fills from slot 0 and only then wraps around.
    """

    data: object  # any pytree; leaves lead with the capacity axis
    index: jax.Array
    count: jax.Array

    @property
    def capacity(self) -> int:
        return jax.tree_util.tree_leaves(self.data)[0].shape[0]


def buffer_init(capacity: int, example) -> RingBuffer:
    """An empty buffer for items shaped like `example` (a pytree of single items, no batch axis)."""
    data = jax.tree_util.tree_map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return RingBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def buffer_add(buf: RingBuffer, items, valid: jax.Array | None = None) -> RingBuffer:
    """Appends the valid rows of `items`, overwriting the oldest entries when full.

    Args:
      buf: the buffer.
      items: pytree of arrays with a leading axis n (same structure as buf.data).
      valid: bool mask of shape (n,); None = all valid. Invalid rows are not written.
    Returns:
      the updated buffer. If more than `capacity` valid rows arrive at once, the last
      `capacity` of them are kept.
    """
    n = jax.tree_util.tree_leaves(items)[0].shape[0]
    cap = buf.capacity
    valid = jnp.ones((n,), bool) if valid is None else valid.astype(bool)
    chex.assert_shape(valid, (n,))
    rank = jnp.cumsum(valid) - 1  # position of each valid row among the valid rows
    num_new = jnp.sum(valid).astype(jnp.int32)
    keep = valid & (rank >= num_new - cap)  # of an oversized batch keep only the newest cap rows
    slots = jnp.where(keep, (buf.index + rank) % cap, cap)  # cap = out of bounds -> dropped
    data = jax.tree_util.tree_map(lambda d, x: d.at[slots].set(x.astype(d.dtype), mode="drop"), buf.data, items)
    return RingBuffer(
        data,
        ((buf.index + num_new) % cap).astype(jnp.int32),
        jnp.minimum(buf.count + num_new, cap).astype(jnp.int32),
    )


def buffer_sample(buf: RingBuffer, key: chex.PRNGKey, batch_size: int):
    """Draws `batch_size` items uniformly (with replacement) from the valid slots.

    An empty buffer has no valid slot; callers fill it before sampling (a chunk always rolls
    out first). Returns a pytree of arrays with leading axis batch_size.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.count, 1))
    return jax.tree_util.tree_map(lambda d: d[idx], buf.data)
