"""The losses of the train step, as pure module-level functions (brax's `losses.py` seam).

- `critic_loss`: RRPI Eq. 9, omega_1 E_D[(Q - y)^2] + omega_2 E_model[(Q - y)^2] for both twin
  critics, with per-row weights `w` (real rows omega_1 / B_real, model rows omega_2 / B_model).
- `projection_loss`: the Boltzmann projection of the policy (RRPI Eq. 10), weighted maximum
  likelihood of candidate actions (`value.projection_loss`), averaged with the same row weights.
- `behaviour_cloning_loss`: the negative log-likelihood of dataset actions (PSPO's pi_beta and
  the `bc` algorithm's default).
- `deterministic_cloning_loss`: the squared error of the deployed action tanh(mean) against the
  dataset's (CORL's BC; the `bc` algorithm with `algo.loss = "mse"`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_bayes import networks, value
from jaxrl_bayes.algos.common import Networks, TrainData, normalize_obs, policy_dist


def critic_loss(critic_params, nets: Networks, data: TrainData, obs: jax.Array, act: jax.Array,
                target: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """sum_b w_b sum_{i=1,2} (Q_i(s_b, a_b) - y_b)^2.

    Args:
      critic_params: twin-critic parameters (differentiated).
      obs (B, S), act (B, A): the rows (raw observations; normalized here).
      target: y (B,), no gradient.
      weights: w (B,), e.g. omega_1 / B_real on real rows and omega_2 / B_model on model rows.
    Returns:
      (loss, Q of both critics (2, B)).
    """
    q = nets.critic.apply(critic_params, normalize_obs(data, obs), act)  # (2, B)
    target = jax.lax.stop_gradient(target)
    return jnp.sum(weights * jnp.sum((q - target) ** 2, axis=0)), q


def projection_loss(policy_params, nets: Networks, data: TrainData, obs: jax.Array, candidates: jax.Array,
                    boltzmann_weights: jax.Array, weights: jax.Array) -> jax.Array:
    """sum_b w_b (-sum_i w_ib log pi_phi(a_ib | s_b)): projection onto the Boltzmann target.

    Args:
      policy_params: policy parameters (differentiated).
      obs (B, S); candidates (M, B, A); boltzmann_weights (M, B) from `value.boltzmann_weights`.
      weights: per-row weights w (B,).
    Returns:
      the scalar loss.
    """
    log_pi = networks.tanh_gaussian_log_prob(policy_dist(nets, policy_params, data, obs), candidates)
    return jnp.sum(weights * value.projection_loss(log_pi, boltzmann_weights))


def behaviour_cloning_loss(policy_params, nets: Networks, data: TrainData, obs: jax.Array, act: jax.Array) -> jax.Array:
    """-mean_b log pi(a_b | s_b) of dataset actions (clipped inside (-1, 1) by
    `networks.tanh_gaussian_log_prob`, so actions at exactly +-1 are finite)."""
    return -jnp.mean(networks.tanh_gaussian_log_prob(policy_dist(nets, policy_params, data, obs), act))


def deterministic_cloning_loss(policy_params, nets: Networks, data: TrainData, obs: jax.Array,
                               act: jax.Array) -> jax.Array:
    """mean_b ||tanh(mean(s_b)) - a_b||^2: the deployed action's squared error against dataset
    actions (in the policy's action space), whose minimizer is the conditional mean action."""
    return jnp.mean(jnp.sum((jnp.tanh(policy_dist(nets, policy_params, data, obs).mean) - act) ** 2, axis=-1))


# the `bc` algorithm's losses by `Bc.loss`: (loss, its metric's short name)
CLONING_LOSSES = {"likelihood": (behaviour_cloning_loss, "nll"), "mse": (deterministic_cloning_loss, "mse")}
