"""Rollout schemes: how the train step gets its model rows, as registered strategies.

A scheme (`RolloutScheme`, registered in `ROLLOUT_SCHEMES` under the `kind` of its config, a
member of the choice `RolloutConfig` below, `AgentConfig.rollout`)
is five pure functions over the learner's model buffer and the scheme's own state (one pytree,
`TrainState.rollout`). The train step and the chunk call them and never branch on the
scheme's name (Unifloral passes its rollout into the train step as a function likewise):

    init(key, config, data) -> scheme state                                  once per seed
    begin_chunk(key, buffer, state, inputs) -> (buffer, state, record)       before the R steps
    model_rows(key, buffer, state, inputs) -> StateAction (model_batch rows)  each train step
    advance(key, buffer, state, rows, member, successors, inputs)
        -> (buffer, state, step metrics)                                      after the step's backup
    chunk_metrics(record, state, step means) -> (step means, rollout metrics) at the chunk's end

Entries:

- "short" (MOPO / MBPO-style, ALGORITHMS.md §5): every chunk, `rollout.batch` dataset states
  are rolled `rollout.horizon` steps through the member selector (`rollout.rollout`) into the
  ring buffer; the model rows are drawn from the buffer. Its own state is empty.
- "persistent" (PMDB's adversarial game): `model_batch` imagined states (`Paths`) ARE the model
  rows, acting with the current policy; after the step's backup each path moves to the
  successor of the member the backup followed (of a uniformly drawn member on a
  `rollout.explore` share of paths) and restarts from a dataset state (`restart_states`) when it
  terminates, leaves the data's box or reaches `rollout.horizon` steps. The rows are also
  written to the buffer, where the chunk diagnostics sample model states.

A scheme reads the learner only through `SchemeInputs` (config, data, policy, members,
termination, selector), so this module sits below `jaxrl_bayes.algos` and imports nothing of it.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

import dataclasses

from jaxrl_bayes import backups, buffer, rollout
from jaxrl_bayes.components import AT_LEAST_ONE, PROBABILITY, Component, numeric_problems
from jaxrl_bayes.registry import Registry


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class RolloutConfig(Component):
    """The choice `AgentConfig.rollout` (`--agent.rollout short|persistent`): a member per scheme,
    its `kind` the scheme's name in `ROLLOUT_SCHEMES`, its fields the knobs the scheme reads."""


@dataclasses.dataclass(frozen=True)
class Short(RolloutConfig):
    """Short rollouts (MOPO/MBPO-style, ALGORITHMS.md §5): every chunk, `batch` dataset states are
    rolled `horizon` steps into the ring buffer, and model rows are drawn from it."""

    kind = "short"
    batch: int = 1000  # start states per chunk (measured choice)
    horizon: int = 5  # H: the rollouts' length (MOPO-style; measured choice)
    samples: int = 1  # K used by the rollout selector's one-step targets

    def problems(self) -> list[str]:
        return numeric_problems(self, {"batch": AT_LEAST_ONE, "horizon": AT_LEAST_ONE, "samples": AT_LEAST_ONE})

    def unread(self, config) -> frozenset[str]:
        """Deterministic members (mean successor and reward) draw nothing."""
        return frozenset({"samples"}) if config.sampling.deterministic else frozenset()


@dataclasses.dataclass(frozen=True)
class Persistent(RolloutConfig):
    """PMDB's adversarial game: `model_batch` imagined states advance one step per train step
    through the selected member (a uniformly drawn one on an `explore` share of states) and ARE
    the step's model rows; a path restarts from a dataset state (an observation or a
    non-terminal next observation) when it terminates, leaves the data's box or reaches
    `horizon` steps (PMDB: 1000)."""

    kind = "persistent"
    horizon: int = 5  # a path's longest (PMDB adv_horizon: 1000, set by the presets)
    explore: float = 0.1  # PMDB adv_explore_ratio

    def problems(self) -> list[str]:
        return numeric_problems(self, {"horizon": AT_LEAST_ONE, "explore": PROBABILITY})


class SchemeInputs(NamedTuple):
    """What a rollout scheme reads of the learner at one point (built by `algos.train`).

    config: the AgentConfig (a scheme reads model_batch, num_active and its own `config.rollout`).
    data: the TrainData (obs, next_obs, done: start and restart states; obs_low, obs_high: the
      data's box).
    policy_fn: (key, obs (B, S)) -> actions (B, A) drawn from the current policy.
    termination_fn: (obs, act, next_obs) -> bool, any leading shape.
    sample_fn: (key, obs, act) -> (next_obs (N, K, B, S), rewards (N, K, B)) of the rollouts.
    selector: the rollout member selector (`rollout.Selector`).
    """

    config: Any
    data: Any
    policy_fn: Callable[[chex.PRNGKey, jax.Array], jax.Array]
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    sample_fn: Callable | None = None
    selector: rollout.Selector | None = None


class RolloutScheme(NamedTuple):
    """A rollout scheme: see the module docstring for the five functions' signatures.

    Its knobs are the fields of the `RolloutConfig` member whose `kind` is its name.
    """

    init: Callable[..., Any]
    begin_chunk: Callable[..., tuple[buffer.RingBuffer, Any, Any]]
    model_rows: Callable[..., buffer.StateAction]
    advance: Callable[..., tuple[buffer.RingBuffer, Any, dict]]
    chunk_metrics: Callable[..., tuple[dict, dict]]


ROLLOUT_SCHEMES: Registry[RolloutScheme] = Registry("rollout scheme")


# ----------------------------------------------------------------------------- short


def short_init(key: chex.PRNGKey, config, data) -> tuple:
    """The short scheme keeps nothing besides the model buffer."""
    del key, config, data
    return ()


def short_refill(key: chex.PRNGKey, model_buffer: buffer.RingBuffer, state: tuple, inputs: SchemeInputs):
    """Rolls `rollout.batch` dataset states `rollout.horizon` steps under the policy through the
    member selector and appends the valid (s, a) to the buffer.

    Returns (the new buffer, the state unchanged, the chunk's record: member_pick_frac (N,), the
    members the rollouts followed over valid transitions, and rollout_valid_frac, the share of
    valid transitions).
    """
    config, data = inputs.config, inputs.data
    k_start, k_roll = jax.random.split(key)
    start = data.obs[jax.random.randint(k_start, (config.rollout.batch,), 0, data.obs.shape[0])]
    roll = rollout.rollout(
        k_roll, start,
        policy_fn=inputs.policy_fn,
        sample_fn=inputs.sample_fn,
        termination_fn=inputs.termination_fn,
        selector=inputs.selector,
        horizon=config.rollout.horizon,
        obs_bounds=(data.obs_low, data.obs_high),
    )
    items, valid = rollout.flatten_rollout(roll)
    picks = jnp.sum(jax.nn.one_hot(roll.member, config.num_active) * roll.valid[..., None], axis=(0, 1))
    record = dict(member_pick_frac=picks / jnp.maximum(jnp.sum(picks), 1.0), rollout_valid_frac=jnp.mean(roll.valid))
    return buffer.buffer_add(model_buffer, buffer.StateAction(items.obs, items.act), valid), state, record


def short_rows(key: chex.PRNGKey, model_buffer: buffer.RingBuffer, state: tuple, inputs: SchemeInputs):
    """`model_batch` rows drawn uniformly from the filled part of the buffer."""
    del state
    return buffer.buffer_sample(model_buffer, key, inputs.config.model_batch)


def short_advance(key, model_buffer, state, rows, member, successors, inputs):
    """The train step moves nothing: the rows came from the chunk's rollouts."""
    del key, rows, member, successors, inputs
    return model_buffer, state, {}


def short_chunk_metrics(record: dict, state, metrics: dict) -> tuple[dict, dict]:
    """The refill's record (member_pick_frac, rollout_valid_frac) is the chunk's rollout metrics."""
    del state
    return metrics, record


ROLLOUT_SCHEMES.register("short", RolloutScheme(short_init, short_refill, short_rows, short_advance,
                                                short_chunk_metrics))


# ----------------------------------------------------------------------------- persistent


class Paths(NamedTuple):
    """The persistent scheme's imagined paths."""

    obs: jax.Array  # (model_batch, S) the paths' current states
    steps: jax.Array  # (model_batch,) int32: steps since each path's restart


def restart_states(key: chex.PRNGKey, data, n: int) -> jax.Array:
    """n dataset states where imagined paths (re)start: observations and non-terminal next
    observations, uniformly (PMDB's start set). Returns (n, S)."""
    size = data.obs.shape[0]
    idx = jax.random.randint(key, (n,), 0, 2 * size)
    row = idx % size
    use_next = (idx >= size) & (data.done[row] < 0.5)
    return jnp.where(use_next[:, None], data.next_obs[row], data.obs[row])


def persistent_init(key: chex.PRNGKey, config, data) -> Paths:
    """`config.model_batch` paths at restart states, none of them stepped yet."""
    n = config.model_batch
    return Paths(restart_states(jax.random.fold_in(key, 1), data, n), jnp.zeros((n,), jnp.int32))


def persistent_begin_chunk(key, model_buffer, paths: Paths, inputs):
    """The paths advance inside the train steps: nothing to do before them."""
    del key, inputs
    return model_buffer, paths, ()


def persistent_rows(key: chex.PRNGKey, model_buffer, paths: Paths, inputs: SchemeInputs) -> buffer.StateAction:
    """The imagined states themselves, acting with a draw of the current policy."""
    del model_buffer
    return buffer.StateAction(paths.obs, inputs.policy_fn(key, paths.obs))


class PathStep(NamedTuple):
    """What one step of the paths did (`advance_paths`)."""

    inside_frac: jax.Array  # share of successors inside the data's box
    restart_frac: jax.Array  # share of paths restarted


def advance_paths(key: chex.PRNGKey, paths: Paths, act: jax.Array, member: jax.Array, successors: jax.Array,
                  inputs: SchemeInputs) -> tuple[Paths, PathStep]:
    """One step of PMDB's adversarial game.

    Each path moves to the successor of `member` (of a uniformly drawn member on a
    `rollout.explore` share of paths) and restarts from `restart_states` when that successor
    terminates, leaves the data's box, or the path reaches `rollout.horizon` steps.

    Args:
      key: PRNG key.
      paths: the current paths (obs (B, S), steps (B,)).
      act: the actions taken at paths.obs, (B, A).
      member: int (B,), the member each path follows (the backup's).
      successors: (N, B, S) every member's successor of (paths.obs, act).
      inputs: the scheme's inputs (config, data, termination_fn).
    Returns:
      (the next paths, PathStep).
    """
    config, data = inputs.config, inputs.data
    steps = paths.steps
    k_explore, k_member, k_restart = jax.random.split(key, 3)
    explore = jax.random.uniform(k_explore, steps.shape) < config.rollout.explore
    member = jnp.where(explore, jax.random.randint(k_member, steps.shape, 0, config.num_active), member)
    nxt = backups.take_members(successors, member)
    done = inputs.termination_fn(paths.obs, act, nxt)
    inside = rollout.inside_box(nxt, data.obs_low, data.obs_high)
    steps = steps + 1
    restart = done | ~inside | (steps >= config.rollout.horizon)
    fresh = restart_states(k_restart, data, steps.shape[0])
    new = Paths(jnp.where(restart[:, None], fresh, nxt), jnp.where(restart, 0, steps).astype(jnp.int32))
    return new, PathStep(jnp.mean(inside), jnp.mean(restart))


def persistent_advance(key, model_buffer, paths: Paths, rows: buffer.StateAction, member, successors, inputs):
    """Moves the paths (`advance_paths`) and records the step's rows in the buffer.

    Step metrics: rollout_inside_frac, rollout_restart_frac, member_pick (N,) the share of
    paths whose backup followed each member.
    """
    new, step = advance_paths(key, paths, rows.act, member, successors, inputs)
    metrics = {"rollout_inside_frac": step.inside_frac, "rollout_restart_frac": step.restart_frac,
               "member_pick": jax.nn.one_hot(member, inputs.config.num_active).mean(0)}
    return buffer.buffer_add(model_buffer, rows), new, metrics


def persistent_chunk_metrics(record, paths: Paths, metrics: dict) -> tuple[dict, dict]:
    """member_pick_frac (N,), rollout_valid_frac (the share of successors inside the box) and
    rollout_path_len (mean steps since restart at the chunk's end); rollout_restart_frac stays
    among the step means."""
    del record
    metrics = dict(metrics)
    return metrics, dict(member_pick_frac=metrics.pop("member_pick"),
                         rollout_valid_frac=metrics.pop("rollout_inside_frac"),
                         rollout_path_len=jnp.mean(paths.steps))


ROLLOUT_SCHEMES.register("persistent", RolloutScheme(
    persistent_init, persistent_begin_chunk, persistent_rows, persistent_advance, persistent_chunk_metrics))


__all__ = ["ROLLOUT_SCHEMES", "Paths", "PathStep", "Persistent", "RolloutConfig", "RolloutScheme", "Short", "SchemeInputs", "advance_paths",
           "restart_states"]
