"""The pool itself: the Gaussian member network, `DynamicsPool`, and inference on it
(`predict`, `sample`, member subsets with `select`).

Member m maps the normalised input concat(s, a) to the mean and the soft-clamped log-std of the
target [Δs, r] in the standardised target space; `predict` and `sample` return original units,
with the next-state mean s + E[Δs].
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import chex
import flax.struct
import jax
import jax.numpy as jnp

from jaxrl_bayes import networks
from jaxrl_bayes.dynamics.config import DynamicsConfig


@flax.struct.dataclass
class DynamicsPool:
    """A trained pool (a pytree; P = number of members, D = obs_dim + 1 outputs).

    Attributes:
      params: member MLP parameters, every leaf with leading axis P.
      max_logstd, min_logstd: [P, D] learned soft bounds of the log-std (standardised space).
      input_mean, input_std: [obs_dim + act_dim] normaliser of concat(s, a).
      target_mean, target_std: [D] standardiser of [Δs, r] (0 / 1 if `normalize_targets` off).
      elites: [E] int32 indices of the best members by validation MSE (arange(P) if
        `config.num_elites` is None).
      val_mse, val_nll: [P] validation MSE / NLL per member (standardised target space).
      config, obs_dim, act_dim: static.
    """

    params: Any
    max_logstd: jax.Array
    min_logstd: jax.Array
    input_mean: jax.Array
    input_std: jax.Array
    target_mean: jax.Array
    target_std: jax.Array
    elites: jax.Array
    val_mse: jax.Array
    val_nll: jax.Array
    config: DynamicsConfig = flax.struct.field(pytree_node=False)
    obs_dim: int = flax.struct.field(pytree_node=False)
    act_dim: int = flax.struct.field(pytree_node=False)

    @property
    def num_members(self) -> int:
        return int(self.max_logstd.shape[0])


class Prediction(NamedTuple):
    """Per-member Gaussian predictions in original units (N members, batch shape B)."""

    next_obs_mean: jax.Array  # [N, *B, obs_dim]  s + E[Δs]
    reward_mean: jax.Array  # [N, *B]
    next_obs_std: jax.Array  # [N, *B, obs_dim]
    reward_std: jax.Array  # [N, *B]


class Sample(NamedTuple):
    """Samples from every requested member (N members, K samples, batch shape B)."""

    next_obs: jax.Array  # [N, K, *B, obs_dim]
    reward: jax.Array  # [N, K, *B]


# ----------------------------------------------------------------------------- network


def member_module(config: DynamicsConfig, obs_dim: int) -> networks.MLP:
    """The member network: concat(s, a) -> [mean, raw log-std] of [Δs, r] (2·(obs_dim+1))."""
    return networks.MLP(tuple(int(h) for h in config.hidden), 2 * (obs_dim + 1), config.activation)


def soft_clamp_logstd(raw: jax.Array, max_logstd: jax.Array, min_logstd: jax.Array) -> jax.Array:
    """PETS / MBPO soft clamp: max − softplus(max − raw), then min + softplus(· − min).

    Args:
      raw: unbounded log-std, any shape broadcastable with the bounds.
      max_logstd, min_logstd: bounds (broadcastable).
    Returns:
      log-std, increasing in raw, ≈ raw well inside the bounds, saturating at min below and
      at min + softplus(max − min) = max + log1p(exp(min − max)) (just above max) above.
    """
    logstd = max_logstd - jax.nn.softplus(max_logstd - raw)
    return min_logstd + jax.nn.softplus(logstd - min_logstd)


def _member_outputs(module, params, max_logstd, min_logstd, x, shared_inputs):
    """Member means and clamped log-stds in standardised space: two [P, R, D] arrays."""
    out = networks.apply_ensemble(module, params, x, shared_inputs=shared_inputs)
    mean, raw = jnp.split(out, 2, axis=-1)
    logstd = soft_clamp_logstd(raw, max_logstd[:, None, :], min_logstd[:, None, :])
    return mean, logstd


# ----------------------------------------------------------------------------- inference


def select(pool: DynamicsPool, members: jax.Array) -> DynamicsPool:
    """The sub-pool of the members `members` (int indices, in that order).

    Elites are recomputed within the subset (the `num_elites` lowest validation MSEs, or all
    of it). `members` must have a static length; its values may be traced.

    Args:
      pool: a pool of P members.
      members: [N] int indices into [0, P).
    Returns:
      a pool of N members.
    """
    members = jnp.asarray(members, jnp.int32)
    chex.assert_rank(members, 1)
    sub_val = pool.val_mse[members]
    n = members.shape[0]
    if pool.config.num_elites is None:
        elites = jnp.arange(n, dtype=jnp.int32)
    else:
        elites = jnp.argsort(sub_val, stable=True)[: min(pool.config.num_elites, n)].astype(jnp.int32)
    return pool.replace(
        params=networks.select_members(pool.params, members),
        max_logstd=pool.max_logstd[members],
        min_logstd=pool.min_logstd[members],
        elites=elites,
        val_mse=sub_val,
        val_nll=pool.val_nll[members],
    )


def _member_gaussians(pool: DynamicsPool, x: jax.Array, shared_inputs: bool) -> tuple[jax.Array, jax.Array]:
    """Means and stds of [Δs, r] in original units, [P, R, D] each, from raw inputs concat(s, a):
    x [R, in] seen by every member, or [P, R, in] one batch per member (`shared_inputs` False)."""
    x = (x - pool.input_mean) / pool.input_std
    module = member_module(pool.config, pool.obs_dim)
    mean, logstd = _member_outputs(module, pool.params, pool.max_logstd, pool.min_logstd, x, shared_inputs)
    return mean * pool.target_std + pool.target_mean, jnp.exp(logstd) * pool.target_std


def predict(pool: DynamicsPool, obs: jax.Array, act: jax.Array, members: Optional[jax.Array] = None) -> Prediction:
    """Gaussian predictions of every requested member, in original units.

    Args:
      pool: the pool.
      obs: [*B, obs_dim] states.
      act: [*B, act_dim] actions.
      members: optional [N] int indices; None = all P members.
    Returns:
      Prediction with next_obs_mean/std [N, *B, obs_dim] and reward_mean/std [N, *B].
    """
    if members is not None:
        pool = select(pool, members)
    chex.assert_shape(obs, (..., pool.obs_dim))
    chex.assert_shape(act, (..., pool.act_dim))
    chex.assert_equal_shape_prefix((obs, act), obs.ndim - 1)
    batch_shape = obs.shape[:-1]
    x = jnp.concatenate([obs, act], axis=-1).reshape(-1, pool.obs_dim + pool.act_dim)
    mean, std = _member_gaussians(pool, x, shared_inputs=True)
    n = mean.shape[0]
    mean = mean.reshape((n,) + batch_shape + (pool.obs_dim + 1,))
    std = std.reshape((n,) + batch_shape + (pool.obs_dim + 1,))
    return Prediction(
        next_obs_mean=obs + mean[..., :-1],
        reward_mean=mean[..., -1],
        next_obs_std=std[..., :-1],
        reward_std=std[..., -1],
    )


def sample(
    pool: DynamicsPool,
    key: chex.PRNGKey,
    obs: jax.Array,
    act: jax.Array,
    num_samples: int = 1,
    members: Optional[jax.Array] = None,
    common_noise: bool = False,
    mean_reward: bool = False,
    mean_next_obs: bool = False,
) -> Sample:
    """Draws next states and rewards from every requested member (no clipping: callers clip).

    s' = s + μ_Δs + σ_Δs·ε, r = μ_r + σ_r·ε', ε ~ N(0, I). Pure, jittable, vmappable.

    Args:
      pool: the pool.
      key: PRNG key.
      obs: [*B, obs_dim]; act: [*B, act_dim].
      num_samples: K samples per member and input (static).
      members: optional [N] int indices; None = all members.
      common_noise: share the standard-normal noise across members (common random numbers):
        a min or a spread over members then measures model disagreement, not sampling noise.
      mean_reward: give each member's mean reward mu_r instead of a draw (PMDB's targets use
        the mean: a min over members then compares expected rewards, not reward noise).
      mean_next_obs: give each member's mean successor mu_s' instead of a draw (a deterministic
        member: in a deterministic environment its noise is fit error, and a draw across a
        termination threshold is a fall the member does not predict).
    Returns:
      Sample with next_obs [N, K, *B, obs_dim] and reward [N, K, *B].
    """
    pred = predict(pool, obs, act, members)
    mean = jnp.concatenate([pred.next_obs_mean, pred.reward_mean[..., None]], axis=-1)[:, None]
    std = jnp.concatenate([pred.next_obs_std, pred.reward_std[..., None]], axis=-1)[:, None]
    # common_noise: one standard-normal draw per (sample, input) shared by every member, so
    # member differences reflect their means and stds only (common random numbers), not noise.
    shape = (1 if common_noise else mean.shape[0], num_samples) + mean.shape[2:]
    draw = mean + std * jax.random.normal(key, shape, mean.dtype)
    reward = jnp.broadcast_to(mean[..., -1], draw.shape[:-1]) if mean_reward else draw[..., -1]
    next_obs = jnp.broadcast_to(mean[..., :-1], draw[..., :-1].shape) if mean_next_obs else draw[..., :-1]
    return Sample(next_obs=next_obs, reward=reward)
