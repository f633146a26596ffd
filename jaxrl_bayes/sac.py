"""Soft actor-critic (SAC) as pure functions: config, state pytree, update, scanned updates.

This is the online SAC that generates D4RL-protocol datasets (`jaxrl_bayes.collect`).
D4RL (Fu et al., 2020, §5 and App. C) trained rlkit's SAC with a tanh-Gaussian policy of two
hidden layers of 256 units; we follow rlkit's `SACTrainer` (Haarnoja et al., 2018b, "Soft
Actor-Critic Algorithms and Applications", Alg. 1 with automatic entropy tuning):

  critic:  y = r + gamma (1 - terminal) [min_i Qbar_i(s', a') - alpha log pi(a'|s')],
           a' ~ pi(.|s');  L_Q = sum_i mean (Q_i(s, a) - y)^2
  actor:   L_pi = mean [alpha log pi(a|s) - min_i Q_i(s, a)],  a ~ pi(.|s)
  alpha:   L_alpha = -mean [log alpha (log pi(a|s) + target_entropy)],  target = -|A|
  target:  Qbar <- tau Q + (1 - tau) Qbar after every update.

As in rlkit, all three losses are computed from the parameters before the update (so the
order of the three optimizer steps does not matter). `terminal` means a true termination
(a fall); time-limit truncations bootstrap (Pardo et al., 2018).

Functions take the frozen `SACConfig` as a static argument: jit them with
`jax.jit(f, static_argnames=("config", ...))`. `update_many` fuses G updates with `lax.scan`
and samples its minibatches from the project's one ring buffer (`jaxrl_bayes.buffer`, items
`buffer.Transition` with `done` = a true termination) with an explicit key.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl_bayes.buffer import RingBuffer, Transition, buffer_add, buffer_sample
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.networks import (
    TanhGaussianPolicy,
    TwinCritic,
    tanh_gaussian_mode,
    tanh_gaussian_sample,
)


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters. Defaults: rlkit `examples/sac.py` as used by D4RL, which match
    Haarnoja et al. (2018b) Table 1."""

    actor_hidden: tuple[int, ...] = (256, 256)  # D4RL App. C / rlkit layer_size=256, 2 layers
    critic_hidden: tuple[int, ...] = (256, 256)  # rlkit: same 2 x 256 for both Q networks
    activation: str = "relu"  # rlkit FlattenMlp / TanhGaussianPolicy hidden activation
    actor_lr: float = 3e-4  # rlkit policy_lr; Haarnoja et al. 2018b Table 1
    critic_lr: float = 3e-4  # rlkit qf_lr
    alpha_lr: float = 3e-4  # rlkit uses policy_lr for the temperature optimizer
    batch_size: int = 256  # rlkit batch_size; Haarnoja et al. 2018b Table 1
    discount: float = 0.99  # rlkit discount
    tau: float = 5e-3  # rlkit soft_target_tau, target_update_period=1
    reward_scale: float = 1.0  # rlkit reward_scale with automatic entropy tuning
    init_log_alpha: float = 0.0  # rlkit: log_alpha = zeros(1), i.e. alpha starts at 1
    target_entropy: float | None = None  # None -> -action_dim (Haarnoja et al. 2018b §5)

    def __post_init__(self):
        if self.batch_size < 1:
            raise UserError(f"SACConfig: batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 < self.tau <= 1.0:
            raise UserError(f"SACConfig: tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.discount <= 1.0:
            raise UserError(f"SACConfig: discount must be in [0, 1], got {self.discount}")
        if not self.actor_hidden or not self.critic_hidden:
            raise UserError("SACConfig: actor_hidden and critic_hidden need at least one layer")


class SACState(NamedTuple):
    """Everything SAC trains, as one pytree (checkpoint it with its leaves)."""

    actor_params: chex.ArrayTree
    critic_params: chex.ArrayTree
    target_critic_params: chex.ArrayTree
    log_alpha: jax.Array  # scalar
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    num_updates: jax.Array  # int32 scalar


class SACMetrics(NamedTuple):
    critic_loss: jax.Array
    actor_loss: jax.Array
    alpha_loss: jax.Array
    alpha: jax.Array
    entropy: jax.Array  # -mean log pi(a|s) of the batch
    q_mean: jax.Array


def actor_module(config: SACConfig, action_dim: int) -> TanhGaussianPolicy:
    return TanhGaussianPolicy(action_dim, tuple(config.actor_hidden), config.activation)


def critic_module(config: SACConfig) -> TwinCritic:
    return TwinCritic(tuple(config.critic_hidden), config.activation, num_qs=2)


def _optimizers(config: SACConfig):
    return (
        optax.adam(config.actor_lr),
        optax.adam(config.critic_lr),
        optax.adam(config.alpha_lr),
    )


def target_entropy(config: SACConfig, action_dim: int) -> float:
    return -float(action_dim) if config.target_entropy is None else float(config.target_entropy)


def init(key: chex.PRNGKey, config: SACConfig, obs_dim: int, action_dim: int) -> SACState:
    """Initialises actor, twin critic (target = copy), temperature and optimizers.

    Args:
      key: PRNG key.
      config: hyperparameters.
      obs_dim, action_dim: widths of observation and action.
    Returns:
      the initial `SACState`.
    """
    k_actor, k_critic = jax.random.split(key)
    obs = jnp.zeros((1, obs_dim), jnp.float32)
    act = jnp.zeros((1, action_dim), jnp.float32)
    actor_params = actor_module(config, action_dim).init(k_actor, obs)
    critic_params = critic_module(config).init(k_critic, obs, act)
    log_alpha = jnp.asarray(config.init_log_alpha, jnp.float32)
    actor_opt, critic_opt, alpha_opt = _optimizers(config)
    return SACState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt.init(actor_params),
        critic_opt_state=critic_opt.init(critic_params),
        alpha_opt_state=alpha_opt.init(log_alpha),
        num_updates=jnp.zeros((), jnp.int32),
    )


def explore(actor_params, obs: jax.Array, key: chex.PRNGKey, config: SACConfig, action_dim: int):
    """Samples a ~ pi(.|obs) (the behaviour policy of SAC and of D4RL's recorded levels).

    Args:
      actor_params: policy parameters.
      obs: observations of shape B + (obs_dim,).
      key: PRNG key.
      config: hyperparameters (static).
      action_dim: width of the action (static).
    Returns:
      actions of shape B + (action_dim,) in (-1, 1).
    """
    dist = actor_module(config, action_dim).apply(actor_params, obs)
    return tanh_gaussian_sample(key, dist)[0]


def act(actor_params, obs: jax.Array, config: SACConfig, action_dim: int) -> jax.Array:
    """Deterministic action tanh(mean) (evaluation). Shapes as in `explore`."""
    return tanh_gaussian_mode(actor_module(config, action_dim).apply(actor_params, obs))


def update(
    state: SACState, batch: Transition, key: chex.PRNGKey, config: SACConfig
) -> tuple[SACState, SACMetrics]:
    """One SAC gradient step on `batch` (see the module docstring for the losses).

    Args:
      state: current state.
      batch: `buffer.Transition` with leading axis B (act in [-1, 1], done = termination).
      key: PRNG key.
      config: hyperparameters (static).
    Returns:
      (new state, SACMetrics of scalars).
    """
    chex.assert_rank([batch.obs, batch.act, batch.reward, batch.done], [2, 2, 1, 1])
    chex.assert_equal_shape([batch.obs, batch.next_obs])
    chex.assert_equal_shape([batch.reward, batch.done])
    action_dim = batch.act.shape[-1]
    actor = actor_module(config, action_dim)
    critic = critic_module(config)
    actor_opt, critic_opt, alpha_opt = _optimizers(config)
    k_next, k_pi = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha)

    # Critic target (no gradient).
    next_dist = actor.apply(state.actor_params, batch.next_obs)
    next_a, next_logp = tanh_gaussian_sample(k_next, next_dist)
    next_q = critic.apply(state.target_critic_params, batch.next_obs, next_a).min(0)
    target = config.reward_scale * batch.reward + config.discount * (1.0 - batch.done) * (
        next_q - alpha * next_logp
    )
    target = jax.lax.stop_gradient(target)

    def critic_loss_fn(critic_params):
        q = critic.apply(critic_params, batch.obs, batch.act)  # (2, B)
        return jnp.sum(jnp.mean((q - target[None]) ** 2, axis=-1)), q.mean()

    def actor_loss_fn(actor_params):
        dist = actor.apply(actor_params, batch.obs)
        a, logp = tanh_gaussian_sample(k_pi, dist)
        q = critic.apply(state.critic_params, batch.obs, a).min(0)
        return jnp.mean(alpha * logp - q), logp

    (critic_loss, q_mean), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
        state.critic_params
    )
    (actor_loss, logp), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
        state.actor_params
    )
    logp = jax.lax.stop_gradient(logp)
    h_target = target_entropy(config, action_dim)

    def alpha_loss_fn(log_alpha):
        return -jnp.mean(log_alpha * (logp + h_target))

    alpha_loss, alpha_grad = jax.value_and_grad(alpha_loss_fn)(state.log_alpha)

    upd, actor_opt_state = actor_opt.update(actor_grads, state.actor_opt_state, state.actor_params)
    actor_params = optax.apply_updates(state.actor_params, upd)
    upd, critic_opt_state = critic_opt.update(
        critic_grads, state.critic_opt_state, state.critic_params
    )
    critic_params = optax.apply_updates(state.critic_params, upd)
    upd, alpha_opt_state = alpha_opt.update(alpha_grad, state.alpha_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, upd)
    target_critic_params = optax.incremental_update(
        critic_params, state.target_critic_params, config.tau
    )
    new_state = SACState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=target_critic_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        alpha_opt_state=alpha_opt_state,
        num_updates=state.num_updates + 1,
    )
    metrics = SACMetrics(critic_loss, actor_loss, alpha_loss, alpha, -jnp.mean(logp), q_mean)
    return new_state, metrics


def update_many(
    state: SACState, buffer: RingBuffer, key: chex.PRNGKey, config: SACConfig, num_updates: int
) -> tuple[SACState, SACMetrics]:
    """`num_updates` SAC steps fused with `lax.scan`, each on a fresh uniform minibatch.

    Args:
      state: current state.
      buffer: `jaxrl_bayes.buffer.RingBuffer` of `Transition`s (must be non-empty).
      key: PRNG key.
      config: hyperparameters (static).
      num_updates: G, the number of gradient steps (static).
    Returns:
      (new state, SACMetrics whose leaves have leading axis G).
    """

    def body(s, k):
        k_batch, k_upd = jax.random.split(k)
        return update(s, buffer_sample(buffer, k_batch, config.batch_size), k_upd, config)

    return jax.lax.scan(body, state, jax.random.split(key, num_updates))


def jitted(config: SACConfig, action_dim: int):
    """The jitted functions a training loop needs, closed over the static config.

    Returns:
      a `SACFns` with `explore(actor_params, obs, key)`, `act(actor_params, obs)`,
      `update_many(state, buffer, key, num_updates)` (num_updates static) and
      `buffer_add(buffer, batch)` (`jaxrl_bayes.buffer.buffer_add`, jitted; the old buffer is
      donated: do not reuse it).
    """
    return SACFns(
        explore=jax.jit(lambda p, o, k: explore(p, o, k, config, action_dim)),
        act=jax.jit(lambda p, o: act(p, o, config, action_dim)),
        update_many=jax.jit(
            lambda s, b, k, g: update_many(s, b, k, config, g), static_argnums=3
        ),
        buffer_add=jax.jit(buffer_add, donate_argnums=0),
    )


class SACFns(NamedTuple):
    explore: object
    act: object
    update_many: object
    buffer_add: object


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


__all__: Sequence[str] = (
    "SACConfig",
    "SACState",
    "SACMetrics",
    "SACFns",
    "init",
    "explore",
    "act",
    "update",
    "update_many",
    "jitted",
    "target_entropy",
)
