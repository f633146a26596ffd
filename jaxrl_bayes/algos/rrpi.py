"""RRPI: robust regularized policy iteration as a composition of the shared parts.

- Target on model states: the k-th smallest one-step member target (k = 1, the worst case of
  RRPI Eq. 5-6 / §3.2; k = 2 over 10 members is PMDB's pessimism-modulated belief).
- Rollouts follow the same member (`rollout.worst_case_selector`).
- Reference mu = the previous iterate, a slow Polyak copy of pi (Theorem 2 sets mu = pi_i;
  PMDB tau_policy = 1e-5); temperature fixed or PMDB's KL-budget rule.
- Ablation "random member" (`selector="uniform"`): a uniformly drawn member replaces the worst
  case in both the target and the rollouts.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_bayes import backups, networks, rollout
from jaxrl_bayes.algos.common import Ctx, Parts, all_member_targets, sampled_member_target, temperature_for
from jaxrl_bayes.posterior import uniform_belief


def reference(ctx: Ctx, obs, actions, dists, q, log_q):
    """mu = pi_ref (the previous iterate)."""
    log_mu = networks.tanh_gaussian_log_prob(dists["ref"], actions)
    return log_mu, temperature_for(ctx.config, q, log_mu, log_q)


def model_target(ctx: Ctx, key, obs, act, value_fn):
    c = ctx.config
    if c.selector == "uniform":
        choice = sampled_member_target(ctx, key, obs, act, value_fn, uniform_belief(c.num_active))
        return choice.target, {}
    targets = all_member_targets(ctx, key, obs, act, value_fn)
    choice = backups.kth_min_target(targets.member_y, c.kth)
    spread = jnp.mean(jnp.max(targets.member_y, 0) - jnp.min(targets.member_y, 0))
    return choice.target, {"member_target_spread": spread}


def selector(ctx: Ctx, value_fn):
    c = ctx.config
    if c.selector == "uniform":
        return rollout.uniform_selector
    return rollout.worst_case_selector(value_fn, c.discount, c.kth)


PARTS = Parts(reference=reference, model_target=model_target, selector=selector)
