"""PSPO's belief over the active ensemble members: consistency metrics and the Gibbs posterior.

PSPO (Eq. 3-4) updates a belief b over dynamics members from the offline data by a
minimum-information principle,  min_b E_b[d] + lam KL(b || b0),  whose solution is the Gibbs
posterior  b(m) ∝ b0(m) exp(-d(m) / lam)  (`gibbs_posterior`; generalized Bayesian inference,
Bissiri et al. 2016). PSPO Table 5: lam = 1, b0 uniform.

The consistency metric d(m) is a RECONSTRUCTION: the PSPO text lost its equations in
extraction, and ALGORITHMS.md §4 defines d(m) through the current critic as the mean absolute
gap between the member's backup and the observed backup on a real minibatch
(`consistency_metric`). A second metric compares each member with the ensemble consensus per
(s, a) (`consensus_consistency`), needing no observed successor. Both are plain functions of
the N x B target matrix, so a research variant registers another one.

Units of the likelihood (RECONSTRUCTION, beside Eq. 3-4). lam divides d, and d is measured in
value units, so one lam is "uniform" in one task and "one-hot" in another (liquidation in its
learning units: member gaps ~1e-3, entropy log 7 all run; a hopper-like file in PMDB units:
entropy log 5 after 4,000 steps). The paper gives lam = 1 without units. The default belief
update, "profile" (`profile_gibbs_posterior`), reads Eq. 4's solution as generalized Bayes on
the n real transitions of the step (PSPO §4.2 applies Eq. 3-4 "sequentially" to transitions)
with the scale of the likelihood fitted per member instead of fixed by lam's units: if the gaps
|y_m - y_obs| follow a Laplace law of scale sigma, the log-likelihood -n log(2 sigma) - n d(m) /
sigma is largest at sigma = d(m) (profile likelihood), which leaves

    b(m) ∝ b0(m) d(m)^(-n / lam),        n = the number of real pairs d(m) averages over.

b depends on d only through the ratios d(m) / d(m'), so multiplying rewards (and with them
every value, target and gap) by any c > 0 leaves it unchanged. The paper's lam = 1 becomes one
exact Bayes update on the step's n transitions; near uniformity it is the raw rule with a
temperature that follows the gaps' own size, log b(m) ≈ const - (n / lam)(d(m) - dbar) / dbar,
i.e. a raw lam of dbar / n: a member whose gap is 1 % larger than another's keeps
e^(-0.01 n / lam) of its relative weight (0.73 at n = 32). The raw rule stays selectable as
"gibbs". (For a metric in squared units, Gaussian profile, pass n / 2: the invariance holds
for any metric homogeneous in the reward scale; only lam's reading changes.)

Registries (filled here at definition; a fork adds entries from its own file):
- `CONSISTENCY`: name -> metric(member_y (N, B), observed_y (B,)) -> d (N,); add one with
  `@register_consistency("name")` and select it with `--agent.belief.consistency name`.
- `BELIEFS`: name -> `BeliefUpdate(update, needs_evidence)`; update(evidence, prior, lam) -> b.
  "profile" (PSPO's default, scale-free), "gibbs" (the raw rule b ∝ b0 exp(-d / lam)) and
  "uniform" (the "average utilization" ablation, and RRPI's constant belief).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrl_bayes.components import AT_LEAST_ONE, POSITIVE, Component, numeric_problems
from jaxrl_bayes.registry import Registry, closest

# name -> consistency metric (member_y (N, B), observed_y (B,)) -> d (N,), smaller = more consistent
CONSISTENCY: Registry[Callable[[jax.Array, jax.Array], jax.Array]] = Registry("consistency metric")


def register_consistency(name: str):
    """Decorator: registers `metric(member_y (N, B), observed_y (B,)) -> d (N,)` under `name`."""
    return CONSISTENCY.register(name)


@register_consistency("observed")

def consistency_metric(member_y: jax.Array, observed_y: jax.Array) -> jax.Array:
    """d(m) = mean_B |y_m(s, a) - (r + gamma (1 - done) V(s'))|.  (reconstruction of PSPO Eq. 3)

    Args:
      member_y: member targets y_m(s, a) on real (s, a), shape (N, B).
      observed_y: the observed backup r + gamma (1 - done) V(s') of the same pairs, shape (B,).
    Returns:
      d of shape (N,), non-negative.
    """
    chex.assert_rank([member_y, observed_y], [2, 1])
    chex.assert_equal_shape([member_y[0], observed_y])
    return jnp.mean(jnp.abs(member_y - observed_y[None]), axis=1)


@register_consistency("consensus")
def consensus_consistency(member_y: jax.Array, observed_y: jax.Array | None = None) -> jax.Array:
    """d(m) = mean_B |y_m(s, a) - mean_n y_n(s, a)|: disagreement with the ensemble consensus.

    A per-(s, a) variant of `consistency_metric` (reconstruction): it scores members against the
    ensemble mean instead of the observed successor, so it works on model states too.

    Args:
      member_y: shape (N, B).
      observed_y: ignored (the registry's common signature).
    Returns:
      d of shape (N,).
    """
    del observed_y
    chex.assert_rank(member_y, 2)
    return jnp.mean(jnp.abs(member_y - jnp.mean(member_y, axis=0, keepdims=True)), axis=1)


def gibbs_posterior(d: jax.Array, lam: float | jax.Array, prior: jax.Array | None = None) -> jax.Array:
    """b(m) ∝ prior(m) exp(-d(m) / lam), the minimiser of E_b[d] + lam KL(b || prior).

    lam -> infinity returns the prior; lam -> 0 puts all mass on argmin d (ties shared in
    proportion to the prior).

    Args:
      d: consistency of each member (smaller is better), shape (N,).
      lam: temperature lam > 0.
      prior: b0, shape (N,); uniform when None.
    Returns:
      b of shape (N,), summing to one.
    """
    chex.assert_rank(d, 1)
    log_prior = jnp.zeros_like(d) if prior is None else jnp.log(prior)
    if prior is not None:
        chex.assert_equal_shape([d, prior])
    return jax.nn.softmax(log_prior - d / lam)


def profile_gibbs_posterior(
    d: jax.Array,
    num_evidence: int | float,
    lam: float | jax.Array = 1.0,
    prior: jax.Array | None = None,
) -> jax.Array:
    """b(m) ∝ prior(m) d(m)^(-n / lam): the Gibbs posterior with the metric's scale profiled out.

    Our reconstruction of PSPO Eq. 3-4 in units-free form (see the module docstring): with d(m)
    the mean absolute gap of member m on n real transitions, -n log d(m) is (up to a constant)
    the log-likelihood of those n gaps under a Laplace law whose scale is fitted per member, so
    lam = 1 is Bayes' rule on the n transitions. Scaling every d(m) by c > 0 (rewards, and so
    values, in other units) multiplies every weight by c^(-n/lam), which the normalisation
    removes: the belief is unchanged. For a mean SQUARED gap (Gaussian profile) pass n / 2.

    Gaps below 1e-6 max(d) are raised to it, so an exact member (d = 0) gets a finite,
    dominant weight; all-zero d gives the prior.

    Args:
      d: consistency of each member (smaller is better, >= 0), shape (N,).
      num_evidence: n, the number of real transitions d was averaged over.
      lam: temperature lam > 0 (PSPO Table 5: 1).
      prior: b0, shape (N,); uniform when None.
    Returns:
      b of shape (N,), summing to one.
    """
    chex.assert_rank(d, 1)
    floor = 1e-6 * jnp.max(d) + jnp.finfo(d.dtype).tiny
    log_d = jnp.log(jnp.maximum(d, floor))
    # log d - max log d: the same softmax, and zero for every member when all d are equal
    return gibbs_posterior(log_d - jnp.max(log_d), lam / num_evidence, prior)


def uniform_belief(num_members: int) -> jax.Array:
    """The uniform belief over N members (PSPO's prior and its "average utilization" ablation)."""
    return jnp.full((num_members,), 1.0 / num_members, dtype=jnp.float32)


def belief_entropy(b: jax.Array) -> jax.Array:
    """Shannon entropy (nats) of a belief, shape (N,) -> scalar; 0 log 0 = 0."""
    return -jnp.sum(jnp.where(b > 0, b * jnp.log(jnp.where(b > 0, b, 1.0)), 0.0), axis=-1)


# ----------------------------------------------------------------------------- belief updates


class Evidence(NamedTuple):
    """What a belief update sees: member targets and observed backups on a real sub-batch."""

    member_y: jax.Array  # (N, B) y_m(s, a) on real pairs
    observed_y: jax.Array  # (B,) r + gamma (1 - done) V(s') of the same pairs
    consistency: Callable[[jax.Array, jax.Array], jax.Array]  # the configured metric


class BeliefUpdate(NamedTuple):
    """update(evidence: Evidence | None, prior (N,), lam) -> b (N,).

    needs_evidence: False if `update` never reads the evidence (then it is None and the caller
    skips computing the N member targets on real pairs).
    """

    update: Callable[..., jax.Array]
    needs_evidence: bool


BELIEFS: Registry[BeliefUpdate] = Registry("belief update")  # by the `kind` of a `BeliefConfig` member


def register_belief(name: str, needs_evidence: bool = True):
    """Decorator: registers `update(evidence, prior, lam) -> b` as belief update `name`."""

    def add(update):
        BELIEFS.register(name, BeliefUpdate(update, needs_evidence))
        return update

    return add


@register_belief("profile", needs_evidence=True)
def profile_belief(evidence: Evidence, prior: jax.Array, lam) -> jax.Array:
    """PSPO's E-step, scale-free (the default): b ∝ prior d^(-n / lam) with d the configured
    consistency metric on the evidence's n real pairs (`profile_gibbs_posterior`)."""
    d = evidence.consistency(evidence.member_y, evidence.observed_y)
    return profile_gibbs_posterior(d, evidence.member_y.shape[1], lam, prior)


@register_belief("gibbs", needs_evidence=True)
def gibbs_belief(evidence: Evidence, prior: jax.Array, lam) -> jax.Array:
    """PSPO's E-step as a raw Gibbs rule: b ∝ prior exp(-d / lam), d the configured consistency
    metric in value units (lam's meaning then depends on the task's reward scale)."""
    return gibbs_posterior(evidence.consistency(evidence.member_y, evidence.observed_y), lam, prior)


@register_belief("uniform", needs_evidence=False)
def prior_belief(evidence, prior: jax.Array, lam) -> jax.Array:
    """The prior, unchanged (uniform: PSPO's "average utilization" ablation; RRPI)."""
    del evidence, lam
    return prior


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class BeliefConfig(Component):
    """The choice `AgentConfig.belief` (`--agent.belief profile|gibbs|uniform`): a member per
    belief rule, its `kind` the rule's name in `BELIEFS`. A rule that reads evidence derives
    from `Gibbs` (its knobs: the consistency metric, lam, and the real pairs it is measured on)."""


@dataclasses.dataclass(frozen=True)
class Gibbs(BeliefConfig):
    """PSPO's E-step as a raw Gibbs rule, b ∝ b0 exp(-d / lam) (`gibbs_belief`)."""

    kind = "gibbs"
    consistency: str = "observed"  # `CONSISTENCY`: observed (ALGORITHMS.md §4) | consensus
    lam: float = 1.0  # PSPO T5 likelihood coefficient
    batch: int = 32  # real pairs on which d(m) is measured each step (measured choice)
    # K for d(m): with common random numbers the member comparison stays low-variance at small K;
    # 2 keeps PSPO's step >= 5x cheaper than PMDB's (benchmarks/throughput.py)
    samples: int = 2

    def problems(self) -> list[str]:
        out = [] if self.consistency in CONSISTENCY else [
            f"consistency = {self.consistency!r} is not a consistency metric; choose one of: {', '.join(CONSISTENCY)}"
            f"{closest(self.consistency, list(CONSISTENCY))}"]
        return out + numeric_problems(self, {"lam": POSITIVE, "batch": AT_LEAST_ONE, "samples": AT_LEAST_ONE})

    def unread(self, config) -> frozenset[str]:
        """Deterministic members (mean successor and reward) draw one successor: K idles."""
        return frozenset({"samples"}) if config.sampling.deterministic else frozenset()


@dataclasses.dataclass(frozen=True)
class Profile(Gibbs):
    """PSPO's E-step, scale-free: b ∝ b0 d^(-n / lam) (`profile_belief`)."""

    kind = "profile"


@dataclasses.dataclass(frozen=True)
class Uniform(BeliefConfig):
    """The prior, unchanged: no evidence is measured (RRPI; PSPO's "average utilization")."""

    kind = "uniform"
