"""PSPO: posterior sampling policy optimization as a composition of the shared parts.

- Belief (E-step, recomputed every train step; `--agent.belief profile`): the Gibbs posterior of a
  consistency metric d measured through the current target critic on a real sub-batch, with the
  scale of its likelihood profiled out, b ∝ b0 d^(-n / lam), so lam means the same in any reward
  units (reconstruction of PSPO Eq. 3-4; ALGORITHMS.md §4; `posterior` module docstring;
  `posterior.BELIEFS`, `posterior.CONSISTENCY`). The raw rule b ∝ b0 exp(-d / lam) is
  `--agent.belief gibbs`. Ablation "average utilization": `--agent.belief uniform`.
- Member rule `targets.selector = "posterior"`: one member per model state drawn from b backs up its
  target (Thompson-style, Eq. 5-6, Remark 2; only the drawn member's soft value is computed),
  and rollouts draw the member from b too.
- Reference: the geometric mixture pi_beta^{a/(a+e)} pi_k^{e/(a+e)} at temperature a + e, the
  KKT solution of max E[Q] - a KL(pi || pi_beta) s.t. KL(pi || pi_k) <= eps (reconstruction of
  Eq. 7-9); pi_beta is fitted by behaviour cloning before policy iteration, pi_k is the Polyak
  reference copy. Ablation "without regularization": `algo.behaviour_weight = 0` (`common.Pspo`).
"""

from __future__ import annotations

from jaxrl_bayes import networks, value
from jaxrl_bayes.algos.common import PARTS, Ctx, KLBudget, Parts, register_algorithm, temperature_for


def reference(ctx: Ctx, obs, actions, dists, q, log_q):
    """log mu = (a log pi_beta + e log pi_k) / (a + e); temperature a + e, or, with
    the `KLBudget` temperature, PMDB's KL-budget rule applied to this mixture (the exponents a/(a+e),
    e/(a+e) stay; only the overall scale adapts to the Q spread of the task's reward units)."""
    c = ctx.config
    log_prev = networks.tanh_gaussian_log_prob(dists["ref"], actions)
    if c.algo.behaviour_weight == 0.0:
        log_mu, temp = log_prev, ctx.state.eta
    else:
        log_beta = networks.tanh_gaussian_log_prob(dists["beta"], actions)
        log_mu, temp = value.geometric_mixture_reference(log_beta, log_prev, c.algo.behaviour_weight, ctx.state.eta)
    if isinstance(c.temperature, KLBudget):
        temp = temperature_for(c, q, log_mu, log_q)
    return log_mu, temp


PARTS.register("pspo", Parts(reference=reference, needs_behaviour=True))  # its knobs: `common.Pspo`

register_algorithm("pspo", {"algo": "pspo", "targets.selector": "posterior", "belief": "profile", "behaviour.steps": 5000})
register_algorithm("pspo-avg", {"algo": "pspo", "targets.selector": "posterior", "belief": "uniform", "behaviour.steps": 5000})
register_algorithm("pspo-noreg", {"algo": "pspo", "targets.selector": "posterior", "belief": "profile",
                                  "behaviour.steps": 5000, "algo.behaviour_weight": 0.0})
