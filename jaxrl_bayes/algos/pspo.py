"""PSPO: posterior sampling policy optimization as a composition of the shared parts.

- Belief (E-step, recomputed every train step): the Gibbs posterior b ∝ b0 exp(-d / lam) of a
  consistency metric d measured through the current target critic on a real sub-batch
  (reconstruction of PSPO Eq. 3-4; ALGORITHMS.md §4). Ablation "average utilization":
  `belief="uniform"`.
- Target on model states: one member per state drawn from b (Thompson-style, Eq. 5-6,
  Remark 2); only the drawn member's soft value is computed.
- Rollouts draw the member from b too.
- Reference: the geometric mixture pi_beta^{a/(a+e)} pi_k^{e/(a+e)} at temperature a + e, the
  KKT solution of max E[Q] - a KL(pi || pi_beta) s.t. KL(pi || pi_k) <= eps (reconstruction of
  Eq. 7-9); pi_beta is fitted by behaviour cloning before policy iteration, pi_k is the Polyak
  reference copy. Ablation "without regularization": `behaviour_weight=0`.
"""

from __future__ import annotations

from jaxrl_bayes import networks, posterior, rollout, value
from jaxrl_bayes.algos.common import Ctx, Parts, all_member_targets, sampled_member_target, temperature_for


def reference(ctx: Ctx, obs, actions, dists, q, log_q):
    """log mu = (a log pi_beta + e log pi_k) / (a + e); temperature a + e, or, with
    `auto_temperature`, PMDB's KL-budget rule applied to this mixture (the exponents a/(a+e),
    e/(a+e) stay; only the overall scale adapts to the Q spread of the task's reward units)."""
    c = ctx.config
    log_prev = networks.tanh_gaussian_log_prob(dists["ref"], actions)
    if c.behaviour_weight == 0.0:
        log_mu, temp = log_prev, ctx.state.eta
    else:
        log_beta = networks.tanh_gaussian_log_prob(dists["beta"], actions)
        log_mu, temp = value.geometric_mixture_reference(log_beta, log_prev, c.behaviour_weight, ctx.state.eta)
    if c.auto_temperature:
        temp = temperature_for(c, q, log_mu, log_q)
    return log_mu, temp


def model_target(ctx: Ctx, key, obs, act, value_fn):
    choice = sampled_member_target(ctx, key, obs, act, value_fn, ctx.state.belief)
    return choice.target, {}


def belief_update(ctx: Ctx, key, real, y_real, value_fn):
    c = ctx.config
    if c.belief == "uniform":
        return posterior.uniform_belief(c.num_active)
    nb = min(c.consistency_batch, real.obs.shape[0])
    member_y = all_member_targets(ctx, key, real.obs[:nb], real.act[:nb], value_fn, c.consistency_samples).member_y
    if c.consistency == "observed":
        d = posterior.consistency_metric(member_y, y_real[:nb])
    else:
        d = posterior.consensus_consistency(member_y)
    return posterior.gibbs_posterior(d, c.lam)


def selector(ctx: Ctx, value_fn):
    del value_fn
    return rollout.posterior_selector(ctx.state.belief)


PARTS = Parts(reference=reference, model_target=model_target, selector=selector,
              belief_update=belief_update, needs_behaviour=True)
