"""Model rollouts with `lax.scan` and a fixed-capacity ring buffer for imagined transitions.

A rollout starts B states, and for H steps: the policy acts, every active member samples a
successor, a *selector* picks one member per state (RRPI: the worst case by one-step target;
PSPO: a draw from the posterior b; ablations: uniform), and the path moves to that member's
successor. Member selectors live in the registry `SELECTORS` (name -> `MemberSelector`); a new
one is one function plus `@register_selector(name, needs_targets=...)`, and the same rule picks
the member of the model-state backup (`jaxrl_bayes.algos.targets`). A path stops at its first
termination by masking (`alive`), never by branching, so the whole rollout is one scanned,
vmappable computation (ALGORITHMS.md §5). Imagined transitions go to the ring buffer of
`jaxrl_bayes.buffer`; the rollout schemes that use these rollouts (or not) to make the train
step's model rows live in `jaxrl_bayes.rollout_schemes`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrl_bayes import backups
from jaxrl_bayes.buffer import Transition
from jaxrl_bayes.posterior import uniform_belief
from jaxrl_bayes.registry import Registry


# ----------------------------------------------------------------------------- selectors

# A rollout selector maps (key, obs (B,S), act (B,A), next_obs (N,K,B,S), rewards (N,K,B),
# dones (N,K,B)) to the chosen member per state, int32 (B,). `rollout_selector` builds one from a
# registered `MemberSelector`; any function of this signature works in `rollout`.
Selector = Callable[..., jax.Array]


class SelectorInputs(NamedTuple):
    """What a member selector may read besides the member targets."""

    belief: jax.Array  # (N,) belief over the active members (uniform where none is learned)
    kth: int = 1  # order statistic of the worst-case rule (static; RRPI 1, PMDB 2)


class MemberSelector(NamedTuple):
    """A rule choosing one ensemble member per state, for rollouts AND model-state backups.

    select(key, inputs: SelectorInputs, member_y, batch_shape) -> int32 members of batch_shape.
    needs_targets: True if `select` reads member_y, the (N,) + B one-step member targets (the
      caller computes them for every member); False if it never does (member_y is None and the
      caller evaluates the soft value only for the chosen member: N times less critic work).
    """

    select: Callable[..., jax.Array]
    needs_targets: bool


SELECTORS: Registry[MemberSelector] = Registry("selector")


def register_selector(name: str, needs_targets: bool):
    """Decorator: registers `select(key, inputs, member_y, batch_shape)` as selector `name`."""

    def add(select):
        SELECTORS.register(name, MemberSelector(select, needs_targets))
        return select

    return add


@register_selector("worst", needs_targets=True)
def worst_member(key, inputs: SelectorInputs, member_y: jax.Array, batch_shape) -> jax.Array:
    """The member with the k-th smallest one-step target (k = 1: RRPI's worst case; PMDB k = 2)."""
    del key, batch_shape
    return backups.kth_min_target(member_y, inputs.kth).member


@register_selector("posterior", needs_targets=False)
def posterior_member(key, inputs: SelectorInputs, member_y, batch_shape) -> jax.Array:
    """A member per state drawn from the belief b (PSPO: Thompson-style, Eq. 5-6, Remark 2)."""
    del member_y
    return backups.sample_members(key, inputs.belief, tuple(batch_shape))


@register_selector("uniform", needs_targets=False)
def uniform_member(key, inputs: SelectorInputs, member_y, batch_shape) -> jax.Array:
    """A uniformly drawn member per state (RRPI's "random member" ablation)."""
    del member_y
    return jax.random.randint(key, tuple(batch_shape), 0, inputs.belief.shape[0]).astype(jnp.int32)


def rollout_selector(
    selector: MemberSelector,
    inputs: SelectorInputs,
    value_fn: Callable | None = None,
    discount: float | None = None,
    reward_range: tuple[float, float] | None = (0.0, 1.0),
) -> Selector:
    """The rollout `Selector` of a registered member selector.

    Args:
      selector: a `MemberSelector` (e.g. `SELECTORS["worst"]`).
      inputs: its `SelectorInputs`.
      value_fn: (key, states (..., S)) -> soft value (...); needed iff selector.needs_targets,
        then evaluated once on all N*K*B sampled successors.
      discount: gamma of the one-step targets (iff selector.needs_targets).
      reward_range: clip of model rewards in the one-step targets.
    """
    if selector.needs_targets and (value_fn is None or discount is None):
        raise ValueError("a selector that reads member targets needs value_fn and discount")

    def select(key, obs, act, next_obs, rewards, dones):
        del obs, act
        member_y = None
        if selector.needs_targets:
            key, k_value = jax.random.split(key)
            member_y = backups.member_targets(rewards, dones, value_fn(k_value, next_obs), discount, reward_range)
        return selector.select(key, inputs, member_y, next_obs.shape[2:-1])

    return select


def uniform_selector(key, obs, act, next_obs, rewards, dones) -> jax.Array:
    """Uniform member per state (RRPI "random member" ablation), as a ready rollout `Selector`."""
    inputs = SelectorInputs(uniform_belief(next_obs.shape[0]))
    return rollout_selector(SELECTORS["uniform"], inputs)(key, obs, act, next_obs, rewards, dones)


def posterior_selector(belief: jax.Array) -> Selector:
    """A member per state drawn from the belief b (PSPO's rollouts), as a rollout `Selector`."""
    return rollout_selector(SELECTORS["posterior"], SelectorInputs(belief))


def worst_case_selector(value_fn: Callable, discount: float, k: int = 1, reward_range=(0.0, 1.0)) -> Selector:
    """The member with the k-th smallest one-step target y_m (k = 1: RRPI's worst case).

    Args:
      value_fn: (key, states (..., S)) -> soft value V (...), evaluated once on all N*K*B successors.
      discount: gamma.
      k: which order statistic (PMDB: 2).
    """
    # the belief's length is not read by the worst-case rule
    return rollout_selector(SELECTORS["worst"], SelectorInputs(jnp.ones((1,)), k), value_fn, discount, reward_range)


# ----------------------------------------------------------------------------- rollouts


class Rollout(NamedTuple):
    """H x B transitions, a validity mask, and the member chosen at each step."""

    transitions: Transition  # leaves (H, B, ...)
    valid: jax.Array  # (H, B) bool: the path was alive when this transition was taken
    member: jax.Array  # (H, B) int32


def inside_box(obs: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Whether each state (..., S) lies within [low, high] in every coordinate (False for a
    non-finite state): the data's box that ends an imagined path. Shape (...,)."""
    return jnp.all((obs >= low) & (obs <= high), axis=-1)


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
            valid = valid & inside_box(chosen_next, *obs_bounds)
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
