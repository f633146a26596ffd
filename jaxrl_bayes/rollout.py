"""Model rollouts with `lax.scan` and a fixed-capacity ring buffer for imagined transitions.

A rollout starts B states, and for H steps: the policy acts, every active member samples a
successor, a *selector* picks one member per state (RRPI: the worst case by one-step target;
PSPO: a draw from the posterior b; ablations: uniform), and the path moves to that member's
successor. A path stops at its first termination by masking (`alive`), never by branching, so
the whole rollout is one scanned, vmappable computation (ALGORITHMS.md §5).
Imagined transitions go to the ring buffer of `jaxrl_bayes.buffer`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrl_bayes import backups
from jaxrl_bayes.buffer import Transition


# ----------------------------------------------------------------------------- selectors

# A selector maps (key, obs (B,S), act (B,A), next_obs (N,K,B,S), rewards (N,K,B), dones (N,K,B))
# to the chosen member per state, int32 (B,).
Selector = Callable[..., jax.Array]


def uniform_selector(key, obs, act, next_obs, rewards, dones) -> jax.Array:
    """Uniform member per state (RRPI "random member" ablation, PSPO "average utilization")."""
    del obs, act, rewards, dones
    n, batch = next_obs.shape[0], next_obs.shape[2]
    return jax.random.randint(key, (batch,), 0, n).astype(jnp.int32)


def posterior_selector(belief: jax.Array) -> Selector:
    """A member per state drawn from the belief b (PSPO's rollouts)."""

    def select(key, obs, act, next_obs, rewards, dones):
        del obs, act, rewards, dones
        return backups.sample_members(key, belief, (next_obs.shape[2],))

    return select


def worst_case_selector(value_fn: Callable, discount: float, k: int = 1, reward_range=(0.0, 1.0)) -> Selector:
    """The member with the k-th smallest one-step target y_m (k = 1: RRPI's worst case).

    Args:
      value_fn: (key, states (..., S)) -> soft value V (...), evaluated once on all N*K*B successors.
      discount: gamma.
      k: which order statistic (PMDB: 2).
    """

    def select(key, obs, act, next_obs, rewards, dones):
        del obs, act
        y = backups.member_targets(rewards, dones, value_fn(key, next_obs), discount, reward_range)
        return backups.kth_min_target(y, k).member

    return select


# ----------------------------------------------------------------------------- rollouts


class Rollout(NamedTuple):
    """H x B transitions, a validity mask, and the member chosen at each step."""

    transitions: Transition  # leaves (H, B, ...)
    valid: jax.Array  # (H, B) bool: the path was alive when this transition was taken
    member: jax.Array  # (H, B) int32


def rollout(
    key: chex.PRNGKey,
    start_obs: jax.Array,
    *,
    policy_fn: Callable[[chex.PRNGKey, jax.Array], jax.Array],
    sample_fn: Callable[[chex.PRNGKey, jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    selector: Selector,
    horizon: int,
    obs_bounds: tuple[jax.Array, jax.Array] | None = None,
) -> Rollout:
    """Rolls B start states H steps through the ensemble with `lax.scan`.

    Args:
      key: PRNG key.
      start_obs: (B, S).
      policy_fn: (key, obs (B, S)) -> actions (B, A).
      sample_fn: (key, obs, act) -> (next_obs (N, K, B, S), rewards (N, K, B)): every member's
        K sampled successors (K = 1 suffices unless the selector averages over samples).
      termination_fn: (obs, act, next_obs) -> bool, any leading shape.
      selector: see `Selector`.
      horizon: H (static).
      obs_bounds: optional (low, high) of shape (S,); a successor outside them ends its path and
        the transition is discarded (model states far outside the data are not trusted).
    Returns:
      Rollout with leaves of leading shape (H, B). Once a path is done, later steps are invalid.
    """
    chex.assert_rank(start_obs, 2)

    def step(carry, key):
        obs, alive = carry
        k_act, k_model, k_select = jax.random.split(key, 3)
        act = policy_fn(k_act, obs)
        next_obs, rewards = sample_fn(k_model, obs, act)
        dones = termination_fn(obs[None, None], act[None, None], next_obs)
        member = selector(k_select, obs, act, next_obs, rewards, dones)
        chosen_next = backups.take_members(next_obs[:, 0], member)
        chosen_reward = backups.take_members(rewards[:, 0], member)
        chosen_done = backups.take_members(dones[:, 0], member)
        valid = alive
        if obs_bounds is not None:
            inside = jnp.all((chosen_next >= obs_bounds[0]) & (chosen_next <= obs_bounds[1]), axis=-1)
            valid = valid & inside
        out = (Transition(obs, act, chosen_reward, chosen_next, chosen_done), valid, member)
        alive = valid & ~chosen_done
        # A stopped path keeps its last state (its transitions are masked out anyway).
        obs = jnp.where(alive[:, None], chosen_next, obs)
        return (obs, alive), out

    keys = jax.random.split(key, horizon)
    alive0 = jnp.ones(start_obs.shape[:1], bool)
    _, (transitions, valid, member) = jax.lax.scan(step, (start_obs, alive0), keys)
    return Rollout(transitions, valid, member)


def flatten_rollout(r: Rollout) -> tuple[Transition, jax.Array]:
    """(H, B, ...) -> (H*B, ...) transitions and validity, ready for `buffer_add`."""
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), r.transitions)
    return flat, r.valid.reshape(-1)
