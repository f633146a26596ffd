"""Bellman backups through an ensemble of dynamics members: robust (k-th min) and posterior.

For a member m, the one-step model target is (ALGORITHMS.md §1)

  y_m(s, a) = mean_k [ r_m^k + gamma (1 - d_m^k) V(s'_m^k) ],   s'_m^k, r_m^k ~ p_m(.|s, a)

clipped to [0, 1/(1-gamma)] (rewards in PMDB's normalized units, model rewards clipped to
[0, 1]). From the N x B matrix of member targets:

- RRPI (Eq. 5-6, §3.2) backs up the worst member: `kth_min_target(y, k=1)`. PMDB's
  pessimism-modulated belief is the k-th minimum over N sampled members (k = 2, N = 10), so
  PMDB is this function with another k, not another code path.
- PSPO (Eq. 5-6, Remark 2) backs up one member per state drawn from the posterior b
  (Thompson-style): `posterior_target`. Only the drawn member's y is needed per state, so
  `sample_members` + `take_members` let a caller compute just those (N times less critic work).

`model_targets` is the fused computation: it samples K successors from every member,
evaluates the soft value of all N x K x B successors in one call of a user-given value
function, and returns y together with the successors, so one pass serves both the backup and
the choice of the rollout member.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp


def bellman_target(
    reward: jax.Array,
    done: jax.Array,
    next_value: jax.Array,
    discount: float,
    value_range: tuple[float, float] | None = None,
) -> jax.Array:
    """r + gamma (1 - done) V(s'), optionally clipped to value_range. Shapes broadcast."""
    target = reward + discount * (1.0 - done.astype(next_value.dtype)) * next_value
    return _clip(target, value_range)


def _clip(x: jax.Array, value_range: tuple[float, float] | None) -> jax.Array:
    return x if value_range is None else jnp.clip(x, *value_range)


def member_targets(
    rewards: jax.Array,
    dones: jax.Array,
    next_values: jax.Array,
    discount: float,
    reward_range: tuple[float, float] | None = (0.0, 1.0),
    value_range: tuple[float, float] | None = None,
) -> jax.Array:
    """y_m(s, a) for every member from its K sampled successors.

    Args:
      rewards: model rewards, shape (N, K) + B.
      dones: termination of each sampled successor (bool or 0/1), shape (N, K) + B.
      next_values: V(s') of each successor, shape (N, K) + B.
      discount: gamma.
      reward_range: clip for model rewards (PMDB: [0, 1] in normalized units); None = no clip.
      value_range: clip for the target (RRPI: [0, 1/(1-gamma)]); None = no clip.
    Returns:
      y of shape (N,) + B: the mean over the K samples of the per-sample targets, then clipped.
    """
    chex.assert_equal_shape([rewards, dones, next_values])
    if rewards.ndim < 2:
        raise ValueError(f"member_targets needs shape (N, K) + B, got {rewards.shape}")
    per_sample = bellman_target(_clip(rewards, reward_range), dones, next_values, discount)
    return _clip(jnp.mean(per_sample, axis=1), value_range)


class MemberChoice(NamedTuple):
    """A target per state and the member that produced it (None from a rule that combines
    members, e.g. their mean, where no one member produced it)."""

    target: jax.Array  # shape B
    member: jax.Array | None  # int32, shape B


def kth_min_target(member_y: jax.Array, k: int = 1) -> MemberChoice:
    """The k-th smallest member target per state (k = 1: worst case, RRPI; k = 2 of 10: PMDB).

    Args:
      member_y: y_m(s, a), shape (N,) + B.
      k: 1 <= k <= N (static).
    Returns:
      MemberChoice(target of shape B, index of the member attaining it, shape B).
    """
    n = member_y.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kth_min_target needs 1 <= k <= N = {n}, got k = {k}")
    if k == 1:
        member = jnp.argmin(member_y, axis=0)
    else:
        member = jnp.argsort(member_y, axis=0)[k - 1]
    member = member.astype(jnp.int32)
    return MemberChoice(take_members(member_y, member), member)


def sample_members(key: chex.PRNGKey, probs: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Draws member indices i.i.d. from a belief over N members.

    Args:
      key: PRNG key.
      probs: belief b, shape (N,), non-negative, summing to one.
      shape: batch shape B of the draws.
    Returns:
      int32 indices of shape B.
    """
    chex.assert_rank(probs, 1)
    logits = jnp.log(jnp.maximum(probs, 0.0))
    return jax.random.categorical(key, logits, shape=shape).astype(jnp.int32)


def take_members(per_member: jax.Array, member: jax.Array) -> jax.Array:
    """Gathers per_member[member[b], b, ...] for every batch position b.

    Args:
      per_member: shape (N,) + B + E (any trailing event shape E).
      member: int indices, shape B.
    Returns:
      shape B + E.
    """
    batch_ndim = member.ndim
    chex.assert_equal_shape_prefix([per_member[0], member], batch_ndim)
    idx = member.reshape((1,) + member.shape + (1,) * (per_member.ndim - 1 - batch_ndim))
    return jnp.take_along_axis(per_member, idx, axis=0)[0]


def posterior_target(key: chex.PRNGKey, member_y: jax.Array, belief: jax.Array) -> MemberChoice:
    """PSPO's posterior-sampled backup: for each state draw m ~ b and use y_m(s, a).

    Args:
      key: PRNG key.
      member_y: y_m(s, a), shape (N,) + B.
      belief: b, shape (N,).
    Returns:
      MemberChoice(target of shape B, drawn member of shape B).
    """
    chex.assert_equal_shape_prefix([member_y, belief], 1)
    member = sample_members(key, belief, member_y.shape[1:])
    return MemberChoice(take_members(member_y, member), member)


class ModelTargets(NamedTuple):
    """Output of `model_targets`: member targets and the successors behind them."""

    member_y: jax.Array  # (N,) + B
    next_obs: jax.Array  # (N, K) + B + (obs_dim,)
    rewards: jax.Array  # (N, K) + B, unclipped model rewards
    dones: jax.Array  # (N, K) + B, bool


def model_targets(
    key: chex.PRNGKey,
    obs: jax.Array,
    act: jax.Array,
    *,
    sample_fn: Callable[[chex.PRNGKey, jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    value_fn: Callable[[chex.PRNGKey, jax.Array], jax.Array],
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    discount: float,
    reward_range: tuple[float, float] | None = (0.0, 1.0),
    value_range: tuple[float, float] | None = None,
) -> ModelTargets:
    """All member targets y_m(s, a) in one fused computation (members x samples x batch).

    Args:
      key: PRNG key.
      obs: states, shape (B, obs_dim).
      act: actions, shape (B, act_dim).
      sample_fn: (key, obs, act) -> (next_obs of shape (N, K, B, obs_dim), rewards (N, K, B)),
        e.g. `functools.partial(dynamics.sample, pool, num_samples=K)` unpacked.
      value_fn: (key, states of shape (..., obs_dim)) -> V of shape (...): the soft value under
        the target critic; called ONCE on all N*K*B successors.
      termination_fn: (obs, act, next_obs) -> bool, any leading shape.
      discount, reward_range, value_range: see `member_targets`.
    Returns:
      ModelTargets.
    """
    chex.assert_rank([obs, act], 2)
    k_sample, k_value = jax.random.split(key)
    next_obs, rewards = sample_fn(k_sample, obs, act)
    dones = termination_fn(obs, act, next_obs)
    next_values = value_fn(k_value, next_obs)
    y = member_targets(rewards, dones, next_values, discount, reward_range, value_range)
    return ModelTargets(y, next_obs, rewards, dones)
