"""Diagnostics of a trained pool against logged data: how often members predict terminal
successors (`termination_rates`) and how far their own rollouts drift along logged action
sequences (`open_loop_error`).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrl_bayes.dynamics.model import DynamicsPool, _member_gaussians, predict, sample


class TerminationRates(NamedTuple):
    """How often each member's successors end an episode (N members, batch shape B)."""

    sampled: jax.Array  # [N, *B] fraction of K drawn successors s' ~ N(mu, sigma) that terminate
    at_mean: jax.Array  # [N, *B] bool: the member's mean successor mu terminates


def termination_rates(pool: DynamicsPool, key: chex.PRNGKey, obs: jax.Array, act: jax.Array,
                      termination_fn, num_samples: int = 32, common_noise: bool = False) -> TerminationRates:
    """Each member's probability of a terminal successor at (s, a), estimated from K draws, and
    whether its mean successor is terminal.

    On logged transitions of a deterministic environment (MuJoCo) the two answer different
    questions: the draws count the falls the member's noise model produces near a termination
    threshold; the mean is the member's single best guess of the successor. Set beside the
    logged `terminals` they measure how far the model's terminations are calibrated.

    Args:
      pool: the pool; key: PRNG key; obs [*B, obs_dim], act [*B, act_dim].
      termination_fn: (obs, act, next_obs) -> bool, any leading shape.
      num_samples: K draws per member and input (static).
      common_noise: share the draws across members, as `sample` does.
    Returns:
      TerminationRates with sampled [N, *B] in [0, 1] and at_mean [N, *B].
    """
    draws = sample(pool, key, obs, act, num_samples, common_noise=common_noise).next_obs  # [N, K, *B, S]
    sampled = jnp.mean(termination_fn(obs[None, None], act[None, None], draws).astype(jnp.float32), axis=1)
    at_mean = termination_fn(obs[None], act[None], predict(pool, obs, act).next_obs_mean)
    return TerminationRates(sampled, at_mean)


class OpenLoopError(NamedTuple):
    """Per-member errors of open-loop model rollouts along logged action sequences (H steps)."""

    obs_rmse: jax.Array  # [P, H] RMS over segments and dimensions of (s_hat_h - s_h) / obs_scale
    reward_mae: jax.Array  # [P, H] mean |r_hat_h - r_h| over segments, raw reward units


def open_loop_error(pool: DynamicsPool, obs0: jax.Array, actions: jax.Array, next_obs: jax.Array,
                    rewards: jax.Array, obs_scale: jax.Array) -> OpenLoopError:
    """How far each member's own rollout drifts from logged trajectories (compounding error).

    Every member starts at the logged s_0 and feeds its own mean prediction back in
    (s_hat_{h+1} = s_hat_h + E_m[Δs | s_hat_h, a_h], the logged actions a_h; no sampling noise),
    with `lax.scan` over the H steps. Step h compares s_hat_{h+1} and r_hat_h with the logged
    s_{h+1} and r_h. Step 0 is the one-step error of `predict`; later steps show how the error
    compounds over a rollout horizon. Pure and jittable.

    Args:
      pool: a pool of P members.
      obs0: [B, obs_dim] logged start states.
      actions: [B, H, act_dim] logged actions.
      next_obs: [B, H, obs_dim] logged next states (s_1 .. s_H).
      rewards: [B, H] logged raw rewards.
      obs_scale: [obs_dim] per-dimension scale of the state error (e.g. the data's state std).
    Returns:
      OpenLoopError with [P, H] arrays.
    """
    num = pool.val_mse.shape[0]

    def step(s_hat, logged):
        a, s_true, r_true = logged  # [B, A], [B, S], [B]
        x = jnp.concatenate([s_hat, jnp.broadcast_to(a, s_hat.shape[:-1] + a.shape[-1:])], axis=-1)
        mean, _ = _member_gaussians(pool, x, shared_inputs=False)
        s_next = s_hat + mean[..., :-1]
        err = (s_next - s_true) / obs_scale
        return s_next, (jnp.sqrt(jnp.mean(err**2, axis=(1, 2))), jnp.mean(jnp.abs(mean[..., -1] - r_true), axis=1))

    s0 = jnp.broadcast_to(obs0, (num,) + obs0.shape)
    logged = (jnp.swapaxes(actions, 0, 1), jnp.swapaxes(next_obs, 0, 1), jnp.swapaxes(rewards, 0, 1))
    _, (obs_rmse, reward_mae) = jax.lax.scan(step, s0, logged)
    return OpenLoopError(obs_rmse=obs_rmse.T, reward_mae=reward_mae.T)
