"""Critic targets through the ensemble, and the belief update, as module-level functions.

- `model_target`: the target on model states, by the configured backup rule (`MODEL_BACKUPS`,
  `AgentConfig.backup`). The default, "selected": the configured member selector
  (`rollout.SELECTORS[config.targets.selector]`) picks one member per state and its one-step target
  y_m(s, a) is backed up: RRPI's worst case (k-th min over all N member targets, RRPI Eq. 5-6;
  PMDB k = 2), PSPO's posterior draw (Eq. 5-6, Remark 2; only the drawn member's soft value is
  computed), or a uniform draw. The same selector picks the rollout member (the short scheme's
  rollouts, `rollout_schemes`). A rule that combines members (their mean, a lower confidence
  bound, a CVaR) is a function of all N member targets registered with `register_member_backup`;
  the persistent scheme's paths then follow the member it names, or the selector's member.
- `REAL_TARGETS` (registry in `common`): the target on real pairs, "data" (the observed
  r + gamma (1 - done) V(s'), PMDB) or "robust" (`model_target` on the real pairs).
- `belief_update`: the configured `posterior.BELIEFS` rule over the active members, fed with
  the configured `posterior.CONSISTENCY` metric on a real sub-batch where the rule reads it.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrl_bayes import backups, buffer, posterior, rollout
from jaxrl_bayes.algos.common import MODEL_BACKUPS, REAL_TARGETS, Ctx, sample_model


def target_termination(ctx: Ctx):
    """The termination rule of the targets: the environment's, and with `box_terminal` also any
    successor outside the data's box (`TrainData.obs_low/obs_high`), whose value is then 0."""
    if not ctx.config.targets.box_terminal:
        return ctx.termination_fn
    low, high = ctx.data.obs_low, ctx.data.obs_high

    def done(obs, act, next_obs):
        outside = jnp.any((next_obs < low) | (next_obs > high), axis=-1)
        return ctx.termination_fn(obs, act, next_obs) | outside

    return done


def all_member_targets(ctx: Ctx, key: chex.PRNGKey, obs, act, value_fn, num_samples: int | None = None) -> backups.ModelTargets:
    """y_m(s, a) of all N active members with K samples each (default K = num_next_samples).

    Args:
      obs (B, S), act (B, A); value_fn: (key, states (..., S)) -> soft value (...).
    """
    c = ctx.config
    return backups.model_targets(
        key, obs, act,
        sample_fn=c.model_sampler(ctx.data, num_samples or c.sampling.num_next_samples),
        value_fn=value_fn,
        termination_fn=target_termination(ctx),
        discount=c.discount,
        reward_range=c.reward_range,
        value_range=c.value_range,
    )


def chosen_member_target(ctx: Ctx, key: chex.PRNGKey, obs, act, value_fn, member: jax.Array,
                         with_successors: bool = False):
    """y_m(s, a) of ONE given member per state (member: int (B,)): N times less critic work.

    All members' successors are sampled (cheap), but the soft value, the expensive part, is
    evaluated only on the chosen member's K successors. Returns shape (B,), or with
    `with_successors` (y (B,), every member's first successor (N, B, S)).
    """
    c = ctx.config
    k_model, k_value = jax.random.split(key)
    all_next, rewards = sample_model(ctx.data, c.draws(c.sampling.num_next_samples), mean_reward=c.sampling.reward == "mean",
                                     mean_next_obs=c.sampling.successor == "mean", action_scale=c.action_scale)(k_model, obs, act)
    # (N, K, B, ...) -> (N, B, K, ...) so take_members picks per state
    next_obs = backups.take_members(jnp.swapaxes(all_next, 1, 2), member)  # (B, K, S)
    reward = backups.take_members(jnp.swapaxes(rewards, 1, 2), member)  # (B, K)
    done = target_termination(ctx)(obs[:, None], act[:, None], next_obs)
    next_v = value_fn(k_value, next_obs)
    # member_targets wants (N, K) + B: use N = 1 and move K to axis 1
    y = backups.member_targets(reward.T[None], done.T[None], next_v.T[None], c.discount, c.reward_range,
                               c.value_range)[0]
    return (y, all_next[:, 0]) if with_successors else y


def selector_inputs(ctx: Ctx) -> rollout.SelectorInputs:
    """What the configured member selector reads: the current belief and k."""
    return rollout.SelectorInputs(ctx.state.belief, ctx.config.targets.kth)


class ModelBackup(NamedTuple):
    """The model-state target and the step behind it (a `MODEL_BACKUPS` rule's output)."""

    target: jax.Array  # (B,) the target on the model rows
    metrics: dict  # member_target_spread, picked_done_frac, member_done_frac where all member targets are computed
    member: jax.Array  # (B,) int32, the member the persistent scheme's paths follow
    successors: jax.Array  # (N, B, S) every member's first sampled successor


def _all_members_metrics(targets: backups.ModelTargets, member: jax.Array) -> dict:
    """member_target_spread (mean over states of max - min over members), and how often the
    followed member's successors terminate (picked_done_frac) against all members'
    (member_done_frac): does the rule follow the member that predicts a fall?"""
    done = jnp.mean(targets.dones.astype(jnp.float32), axis=1)  # (N, B) over the K samples
    return {"member_target_spread": jnp.mean(jnp.max(targets.member_y, 0) - jnp.min(targets.member_y, 0)),
            "picked_done_frac": jnp.mean(backups.take_members(done, member)),
            "member_done_frac": jnp.mean(done)}


@MODEL_BACKUPS.register("selected")
def selected_member_backup(ctx: Ctx, key: chex.PRNGKey, obs, act, value_fn) -> ModelBackup:
    """The selected member's one-step target on (s, a) pairs, with the member and the successors
    (the persistent rollout scheme moves its states to the selected member's successor).

    Where the selector reads no member targets (posterior, uniform), only the chosen member's
    soft value is computed (`chosen_member_target`: N times less critic work).

    Args:
      ctx: the step's context (its state carries the current belief).
      key: PRNG key.
      obs (B, S), act (B, A).
      value_fn: soft value under the target critic.
    """
    selector = rollout.SELECTORS[ctx.config.targets.selector]
    inputs = selector_inputs(ctx)
    if selector.needs_targets:
        targets = all_member_targets(ctx, key, obs, act, value_fn)
        member = selector.select(jax.random.fold_in(key, 2), inputs, targets.member_y, obs.shape[:1])
        return ModelBackup(backups.take_members(targets.member_y, member), _all_members_metrics(targets, member),
                           member, targets.next_obs[:, 0])
    k_member, k_target = jax.random.split(key)
    member = selector.select(k_member, inputs, None, obs.shape[:1])
    y, successors = chosen_member_target(ctx, k_target, obs, act, value_fn, member, with_successors=True)
    return ModelBackup(y, {}, member, successors)


# combine(key, inputs, member_y (N,) + B) -> target B, or backups.MemberChoice(target B, member B | None)
MemberBackup = Callable[[chex.PRNGKey, rollout.SelectorInputs, jax.Array], "jax.Array | backups.MemberChoice"]


def member_backup(combine: MemberBackup, ctx: Ctx, key: chex.PRNGKey, obs, act, value_fn) -> ModelBackup:
    """The model-state target of a rule over all members' one-step targets.

    Every member's target y_m(s, a) is computed (`all_member_targets`), and `combine` maps
    them to the target per state. The member the persistent scheme's paths follow is the one
    `combine` names (a `backups.MemberChoice` with a member), else the configured selector's
    choice on the same member targets.

    Args:
      combine: (key, inputs: rollout.SelectorInputs, member_y (N, B)) -> target (B,), or a
        `backups.MemberChoice` (target (B,), member (B,) int32 or None).
      ctx, key, obs (B, S), act (B, A), value_fn: as for `selected_member_backup`.
    """
    inputs = selector_inputs(ctx)
    targets = all_member_targets(ctx, key, obs, act, value_fn)
    out = combine(jax.random.fold_in(key, 3), inputs, targets.member_y)
    target, member = (out.target, out.member) if isinstance(out, backups.MemberChoice) else (out, None)
    chex.assert_shape(target, obs.shape[:1])
    if member is None:
        selector = rollout.SELECTORS[ctx.config.targets.selector]
        member = selector.select(jax.random.fold_in(key, 2), inputs, targets.member_y, obs.shape[:1])
    member = jnp.asarray(member, jnp.int32)
    return ModelBackup(target, _all_members_metrics(targets, member), member, targets.next_obs[:, 0])


def register_member_backup(name: str):
    """Decorator: registers `combine(key, inputs, member_y)` (see `member_backup`) as the backup
    rule `name` (`AgentConfig.backup = name`)."""

    def add(combine: MemberBackup) -> MemberBackup:
        MODEL_BACKUPS.register(name, functools.partial(member_backup, combine))
        return combine

    return add


def model_backup(ctx: Ctx, key: chex.PRNGKey, obs, act, value_fn) -> ModelBackup:
    """The configured backup rule's (`AgentConfig.backup`) target on (s, a) pairs, with the member
    the persistent scheme's paths follow and every member's successor.

    Args:
      ctx: the step's context (its state carries the current belief).
      key: PRNG key.
      obs (B, S), act (B, A).
      value_fn: soft value under the target critic.
    """
    return MODEL_BACKUPS[ctx.config.targets.backup](ctx, key, obs, act, value_fn)


def model_target(ctx: Ctx, key: chex.PRNGKey, obs, act, value_fn) -> tuple[jax.Array, dict]:
    """Target on (s, a) pairs by the configured backup rule (`model_backup`).

    Returns:
      (target (B,), metrics): metrics has "member_target_spread" (mean max - min over members)
      where the rule computes all member targets.
    """
    backup = model_backup(ctx, key, obs, act, value_fn)
    return backup.target, backup.metrics


def observed_backup(ctx: Ctx, key: chex.PRNGKey, real: buffer.Transition, value_fn) -> jax.Array:
    """r + gamma (1 - done) V(s') on real pairs, clipped to the value range: shape (B,)."""
    c = ctx.config
    return backups.bellman_target(real.reward, real.done, value_fn(key, real.next_obs), c.discount, c.value_range)


@REAL_TARGETS.register("data")
def observed_target(ctx: Ctx, key, real: buffer.Transition, observed_y: jax.Array, value_fn) -> jax.Array:
    """The observed backup r + gamma (1 - done) V(s') (PMDB's choice)."""
    del ctx, key, real, value_fn
    return observed_y


@REAL_TARGETS.register("robust")
def robust_real_target(ctx: Ctx, key, real: buffer.Transition, observed_y: jax.Array, value_fn) -> jax.Array:
    """The model-state target rule (`model_target`) applied to the real pairs."""
    del observed_y
    # own key (folded, so the model-state target's random stream is unchanged)
    return model_target(ctx, jax.random.fold_in(key, 1), real.obs, real.act, value_fn)[0]


def belief_update(ctx: Ctx, key: chex.PRNGKey, real: buffer.Transition, observed_y: jax.Array, value_fn) -> jax.Array:
    """The configured belief over the N active members from a real sub-batch.

    The rule's evidence (`posterior.Evidence`: member targets with `consistency_samples`
    successors on the first `consistency_batch` real pairs, their observed backups, and the
    configured consistency metric) is computed only if the rule reads it. Returns b (N,).
    """
    c = ctx.config
    rule = posterior.BELIEFS[c.belief.kind]
    prior = posterior.uniform_belief(c.num_active)
    evidence = None
    if rule.needs_evidence:
        nb = min(c.belief.batch, real.obs.shape[0])
        member_y = all_member_targets(ctx, key, real.obs[:nb], real.act[:nb], value_fn, c.belief.samples).member_y
        evidence = posterior.Evidence(member_y, observed_y[:nb], posterior.CONSISTENCY[c.belief.consistency])
    return rule.update(evidence, prior, c.belief.lam if rule.needs_evidence else None)
