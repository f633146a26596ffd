"""RRPI: robust regularized policy iteration as a composition of the shared parts.

- Member rule `targets.selector = "worst"`: the k-th smallest one-step member target backs up model
  states and picks the rollout member (k = 1: the worst case of RRPI Eq. 5-6 / §3.2; k = 2 over
  10 members is PMDB's pessimism-modulated belief).
- Reference mu = the previous iterate, a slow Polyak copy of pi (Theorem 2 sets mu = pi_i;
  PMDB tau_policy = 1e-5); temperature fixed or PMDB's KL-budget rule.
- Belief: none is learned (`belief = "uniform"`, the constant prior).
- Ablation "random member" (`targets.selector = "uniform"`): a uniformly drawn member replaces the worst
  case in both the target and the rollouts.
"""

from __future__ import annotations

from jaxrl_bayes import networks
from jaxrl_bayes.algos.common import PARTS, Ctx, Parts, register_algorithm, temperature_for


def reference(ctx: Ctx, obs, actions, dists, q, log_q):
    """mu = pi_ref (the previous iterate)."""
    log_mu = networks.tanh_gaussian_log_prob(dists["ref"], actions)
    return log_mu, temperature_for(ctx.config, q, log_mu, log_q)


PARTS.register("rrpi", Parts(reference=reference))  # its knobs: `common.Rrpi` (none)

register_algorithm("rrpi", {"algo": "rrpi", "targets.kth": 1, "targets.selector": "worst", "belief": "uniform"})
register_algorithm("pmdb", {"algo": "rrpi", "targets.kth": 2, "targets.selector": "worst", "belief": "uniform",
                            "num_active": 10})  # PMDB: k = 2 of N = 10
register_algorithm("rrpi-random", {"algo": "rrpi", "targets.kth": 1, "targets.selector": "uniform", "belief": "uniform"})
