"""Soft value and Boltzmann policy projection of a KL-regularized Bellman operator.

Both papers regularize toward a reference policy mu with temperature alpha > 0:

  V(s)     = alpha * log E_{a ~ mu(.|s)} exp(Q(s, a) / alpha)          (RRPI Eq. 6)
  pi*(a|s) ∝ mu(a|s) exp(Q(s, a) / alpha)                               (RRPI Eq. 7; PSPO Thm 1)

With M candidate actions a_i drawn from a proposal q (ALGORITHMS.md §2) and importance log-ratios
log rho_i = log mu(a_i|s) - log q(a_i|s), the self-normalized estimates are

  V(s) ≈ alpha * [logsumexp_i(Q_i / alpha + log rho_i) - logsumexp_i(log rho_i)]
  w_i  = softmax_i(Q_i / alpha + log rho_i)

and the policy step projects pi_phi onto pi* by minimising KL(pi* || pi_phi), the weighted
maximum likelihood  L(phi) = -sum_i w_i log pi_phi(a_i|s)  (RRPI Eq. 10; MPO's M-step,
Abdolmaleki et al. 2018). The same three functions serve RRPI (mu = the previous iterate) and
PSPO (mu = a geometric mixture of the behaviour policy and the previous iterate, see
`geometric_mixture_reference`): the reference enters only through its log-density.

Conventions: the candidate (sample) axis is the LEADING axis, matching
`networks.tanh_gaussian_sample(key, dist, (M,))`; so Q values have shape (M,) + B for a batch
shape B, and temperatures broadcast against B.

Temperature rules (`fixed` is a float):
- `kl_budget_temperature`: PMDB's automatic per-state rule (Guo et al. 2022, public code
  `cal_alpha`): alpha(s) = max(min_temperature, (E_{w_greedy}[Q] - E_{rho}[Q]) / target_kl),
  the spread between the near-greedy and the reference-weighted Q over the KL budget.
- `trust_region_multiplier_update`: dual ascent for the Lagrange multiplier eta of a KL trust
  region KL(pi_{k+1} || pi_k) <= epsilon (PSPO Eq. 7-9 read through MPO's dual device).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


def importance_log_ratio(log_mu: jax.Array, log_proposal: jax.Array) -> jax.Array:
    """log rho = log mu(a|s) - log q(a|s) for candidates drawn from the proposal q."""
    chex.assert_equal_shape([log_mu, log_proposal])
    return log_mu - log_proposal


def soft_value(
    q_values: jax.Array,
    log_mu: jax.Array,
    log_proposal: jax.Array,
    temperature: jax.Array | float,
) -> jax.Array:
    """Self-normalized importance-sampled alpha * log E_mu exp(Q / alpha).

    With a discrete action set enumerated once as candidates and a uniform proposal
    (log_proposal constant) the estimate is exact: alpha * log sum_a mu(a) exp(Q(a) / alpha).

    Args:
      q_values: Q(s, a_i), shape (M,) + B.
      log_mu: reference log-density of each candidate, shape (M,) + B.
      log_proposal: log-density under which each candidate was drawn, shape (M,) + B.
      temperature: alpha > 0, a scalar or an array broadcastable to B.
    Returns:
      V(s) of shape B.
    """
    chex.assert_equal_shape([q_values, log_mu, log_proposal])
    log_rho = importance_log_ratio(log_mu, log_proposal)
    alpha = jnp.asarray(temperature, q_values.dtype)
    lse_q = jax.nn.logsumexp(q_values / alpha + log_rho, axis=0)
    lse_rho = jax.nn.logsumexp(log_rho, axis=0)
    return alpha * (lse_q - lse_rho)


def boltzmann_weights(
    q_values: jax.Array,
    log_mu: jax.Array,
    log_proposal: jax.Array,
    temperature: jax.Array | float,
) -> jax.Array:
    """Self-normalized weights of the Boltzmann target pi* ∝ mu exp(Q / alpha) on the candidates.

    w_i = stop_gradient(softmax_i(Q_i / alpha + log mu_i - log q_i)).

    Args:
      q_values, log_mu, log_proposal: shape (M,) + B (see `soft_value`).
      temperature: alpha > 0, scalar or broadcastable to B.
    Returns:
      weights of shape (M,) + B, summing to one over the leading axis; no gradient flows.
    """
    chex.assert_equal_shape([q_values, log_mu, log_proposal])
    alpha = jnp.asarray(temperature, q_values.dtype)
    logits = q_values / alpha + importance_log_ratio(log_mu, log_proposal)
    return jax.lax.stop_gradient(jax.nn.softmax(logits, axis=0))


def projection_loss(log_pi: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted maximum likelihood that projects pi_phi onto the Boltzmann target.

    L(s) = -sum_i w_i log pi_phi(a_i|s), the KL(pi* || pi_phi) up to a phi-independent constant
    (RRPI Eq. 10).

    Args:
      log_pi: log pi_phi(a_i|s) of the candidates, shape (M,) + B, differentiable in phi.
      weights: `boltzmann_weights`, shape (M,) + B.
    Returns:
      the per-state loss, shape B (average it, or weight real vs model states, in the caller).
    """
    chex.assert_equal_shape([log_pi, weights])
    return -jnp.sum(jax.lax.stop_gradient(weights) * log_pi, axis=0)


def kl_budget_temperature(
    q_values: jax.Array,
    log_mu: jax.Array,
    log_proposal: jax.Array,
    target_kl: float,
    min_temperature: float = 1e-3,
) -> jax.Array:
    """PMDB's automatic per-state temperature for a KL budget (public PMDB code, `cal_alpha`).

    alpha(s) = max(min_temperature,
                   (sum_i softmax(log rho + Q / min_temperature)_i Q_i
                    - sum_i softmax(log rho)_i Q_i) / target_kl)

    i.e. how far the near-greedy candidate's Q lies above the reference's mean Q, divided by the
    KL budget: a larger Q spread gets a larger temperature so the Boltzmann target moves by a
    comparable amount in every state. PMDB's default budget is 5.

    Args:
      q_values, log_mu, log_proposal: shape (M,) + B.
      target_kl: the budget (> 0).
      min_temperature: lower bound on alpha.
    Returns:
      alpha of shape B, without gradient.
    """
    chex.assert_equal_shape([q_values, log_mu, log_proposal])
    q = jax.lax.stop_gradient(q_values)
    log_rho = importance_log_ratio(log_mu, log_proposal)
    greedy = jnp.sum(q * jax.nn.softmax(log_rho + q / min_temperature, axis=0), axis=0)
    reference = jnp.sum(q * jax.nn.softmax(log_rho, axis=0), axis=0)
    return jnp.maximum((greedy - reference) / target_kl, min_temperature)


class MixtureReference(NamedTuple):
    """A geometric-mixture reference: its log-density and the temperature that goes with it."""

    log_mu: jax.Array
    temperature: jax.Array


def geometric_mixture_reference(
    log_behaviour: jax.Array,
    log_previous: jax.Array,
    alpha: jax.Array | float,
    eta: jax.Array | float,
) -> MixtureReference:
    """PSPO's KKT reference: pi* ∝ pi_beta^{a/(a+e)} pi_k^{e/(a+e)} exp(Q / (a+e)). (reconstruction)

    Maximising E[Q] - alpha KL(pi || pi_beta) subject to KL(pi || pi_k) <= epsilon with a
    multiplier eta gives a Boltzmann target with reference log-density
    (alpha log pi_beta + eta log pi_k) / (alpha + eta) and temperature alpha + eta
    (ALGORITHMS.md §4; the PSPO text lost these equations, so this is our reconstruction).
    The un-normalized mixture is fine: self-normalized weights ignore its constant.
    alpha = 0 ("without regularization" ablation) gives mu = pi_k with temperature eta.

    Args:
      log_behaviour: log pi_beta of the candidates, shape (M,) + B.
      log_previous: log pi_k of the candidates, shape (M,) + B.
      alpha: behaviour-regularization weight >= 0.
      eta: trust-region multiplier > 0.
    Returns:
      MixtureReference(log_mu of shape (M,) + B, temperature alpha + eta).
    """
    chex.assert_equal_shape([log_behaviour, log_previous])
    alpha = jnp.asarray(alpha, log_behaviour.dtype)
    eta = jnp.asarray(eta, log_behaviour.dtype)
    total = alpha + eta
    return MixtureReference((alpha * log_behaviour + eta * log_previous) / total, total)


def trust_region_multiplier_update(
    eta: jax.Array, measured_kl: jax.Array, epsilon: float, rate: float,
    min_eta: float = 1e-4, max_eta: float = 1e4,
) -> jax.Array:
    """Multiplicative dual ascent on a KL trust-region multiplier (MPO's Lagrange device).

    eta <- clip(eta * exp(rate * (measured_kl / epsilon - 1)), min_eta, max_eta): eta grows
    (updates get more conservative) while the measured KL(pi_{k+1} || pi_k) exceeds epsilon,
    and shrinks while it is below. rate = 0 keeps eta fixed.
    """
    return jnp.clip(eta * jnp.exp(rate * (measured_kl / epsilon - 1.0)), min_eta, max_eta)
