"""The train step, the rollout refill and the chunk as module-level functions; `make_trainer`
binds them (functools.partial) and jits (brax's `train.py` seam; PureJaxRL's `make_train`).

    train_step(learner, state, data) -> (state, metrics)      ALGORITHMS.md §6
      real = sample(D); fake = the rollout scheme's model rows
      belief b <- belief_update (PSPO's E-step; uniform for RRPI)
      critic update toward the backup rule's targets (losses.critic_loss)
      policy update by Boltzmann projection toward the algorithm's reference (losses.projection_loss)
      Polyak updates: target critics, reference policy; the rollout scheme advances
    run_chunk(learner, state, data) -> (state, metrics)       the scheme's chunk hook (the short
                                                              scheme's refill, ALGORITHMS.md §5),
                                                              then lax.scan of R train steps

The rollout scheme (`rollout_schemes.ROLLOUT_SCHEMES[config.rollout.kind]`) and the backup rule
(`common.MODEL_BACKUPS[config.targets.backup]`) are looked up, never branched on: a new one is a
registration in its own file.

`Learner` holds the static pieces (config, networks, parts, termination rule, optimizers); the
state and the data are arguments, so `jax.jit(jax.vmap(run_chunk, (0, None)))` trains many seeds
and compiles once per Trainer.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from jaxrl_bayes import buffer, dynamics, networks, posterior, rollout, rollout_schemes, value
from jaxrl_bayes.algos import diagnostics, losses, targets
from jaxrl_bayes.algos.common import (
    PARTS, AgentConfig, Ctx, Networks, Parts, Pspo, TrainData, TrainState, critic_values, make_networks,
    make_train_data, make_value_fn, policy_candidates, policy_dist, reference_dists, sample_real,
    strong_types,
)
from jaxrl_bayes.errors import UserError


class Learner(NamedTuple):
    """The static pieces of one learner, bound into the jitted functions by `make_trainer`."""

    config: AgentConfig
    nets: Networks
    parts: Parts
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    critic_tx: optax.GradientTransformation
    policy_tx: optax.GradientTransformation


def _apply(tx: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


# ----------------------------------------------------------------------------- behaviour cloning


def behaviour_cloning_step(params, opt_state, key: chex.PRNGKey, data: TrainData, nets: Networks,
                           tx: optax.GradientTransformation, batch_size: int, loss_fn=losses.behaviour_cloning_loss):
    """One gradient step of `loss_fn` (`losses.behaviour_cloning_loss`, or another of
    `losses.CLONING_LOSSES`) on `batch_size` dataset pairs.

    Returns (params, opt_state, loss before the step).
    """
    idx = jax.random.randint(key, (batch_size,), 0, data.obs.shape[0])
    loss, grads = jax.value_and_grad(loss_fn)(params, nets, data, data.obs[idx], data.act[idx])
    params, opt_state = _apply(tx, grads, opt_state, params)
    return params, opt_state, loss


def behaviour_cloning(key: chex.PRNGKey, params, data: TrainData, nets: Networks, config: AgentConfig):
    """pi_beta: `config.behaviour.steps` steps of behaviour cloning (Adam, behaviour.lr, behaviour.batch) from `params`."""
    tx = optax.adam(config.behaviour.lr)

    def step(carry, k):
        p, opt = carry
        p, opt, loss = behaviour_cloning_step(p, opt, k, data, nets, tx, config.behaviour.batch)
        return (p, opt), loss

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, config.behaviour.steps))
    return params


# ----------------------------------------------------------------------------- init


def init_state(learner: Learner, key: chex.PRNGKey, data: TrainData) -> TrainState:
    """Fresh networks, optimizers, an empty model buffer, the uniform belief (and pi_beta by BC
    where the algorithm needs it, or where `init_from_behaviour` starts pi and pi_ref at it)."""
    config, nets = learner.config, learner.nets
    obs_dim, act_dim = data.obs.shape[1], data.act.shape[1]
    k_pol, k_crit, k_bc, k_state = jax.random.split(key, 4)
    dummy_obs = jnp.zeros((1, obs_dim))
    policy = nets.policy.init(k_pol, dummy_obs)
    critic = nets.critic.init(k_crit, dummy_obs, jnp.zeros((1, act_dim)))
    behaviour = policy
    if (learner.parts.needs_behaviour or config.behaviour.init_policy) and config.behaviour.steps > 0:
        behaviour = behaviour_cloning(k_bc, policy, data, nets, config)
        if config.behaviour.init_policy:
            policy = behaviour
    example = buffer.StateAction(jnp.zeros((obs_dim,)), jnp.zeros((act_dim,)))
    scheme_state = scheme_of(learner).init(k_state, config, data)
    return strong_types(TrainState(
        critic=critic,
        target_critic=critic,
        critic_opt=learner.critic_tx.init(critic),
        policy=policy,
        policy_opt=learner.policy_tx.init(policy),
        ref_policy=policy,
        behaviour=behaviour,
        buffer=buffer.buffer_init(config.buffer_capacity, example),
        rollout=scheme_state,
        belief=posterior.uniform_belief(config.num_active),
        eta=jnp.asarray(getattr(config.algo, "trust_eta", Pspo.trust_eta), jnp.float32),  # read by pspo only
        step=jnp.zeros((), jnp.int32),
        key=k_state,
        avg_policy=policy if config.deploy == "average" else None,
    ))


# ----------------------------------------------------------------------------- one train step


def row_weights(config: AgentConfig) -> jax.Array:
    """Per-row loss weights of [real rows; model rows]: omega_1 / B_real and omega_2 / B_model."""
    return jnp.concatenate([
        jnp.full((config.real_batch,), config.targets.real_weight / config.real_batch),
        jnp.full((config.model_batch,), (1.0 - config.targets.real_weight) / config.model_batch),
    ])


def context(learner: Learner, state: TrainState, data: TrainData) -> Ctx:
    """What the parts see at `state`."""
    return Ctx(learner.config, learner.nets, data, state, learner.termination_fn)


def scheme_of(learner: Learner) -> rollout_schemes.RolloutScheme:
    """The configured rollout scheme (`rollout_schemes.ROLLOUT_SCHEMES`)."""
    return rollout_schemes.ROLLOUT_SCHEMES[learner.config.rollout.kind]


def scheme_inputs(learner: Learner, state: TrainState, data: TrainData) -> rollout_schemes.SchemeInputs:
    """What the rollout scheme reads at `state`: the current policy acting, the members sampling
    `rollout.samples` successors (the short scheme's; 1 elsewhere), the termination rule, and the configured member selector (with
    soft values under the target critic where it reads member targets).

    Builds closures only: what a scheme never calls is never computed.
    """
    config, nets = learner.config, learner.nets

    def policy_fn(k, o):
        return networks.tanh_gaussian_sample(k, policy_dist(nets, state.policy, data, o))[0]

    ctx = context(learner, state, data)
    selector = rollout.SELECTORS[config.targets.selector]
    value_fn = make_value_fn(ctx, learner.parts, state.target_critic) if selector.needs_targets else None
    return rollout_schemes.SchemeInputs(
        config=config,
        data=data,
        policy_fn=policy_fn,
        termination_fn=learner.termination_fn,
        sample_fn=config.model_sampler(data, getattr(config.rollout, "samples", 1)),
        selector=rollout.rollout_selector(selector, targets.selector_inputs(ctx), value_fn, config.discount,
                                          config.reward_range),
    )


def train_step(learner: Learner, state: TrainState, data: TrainData) -> tuple[TrainState, dict]:
    """One critic and one policy update on a real and a model minibatch (ALGORITHMS.md §6).

    Returns (new state, metrics): critic_loss, policy_loss, q_mean / q_max (min-twin Q over all
    rows), q_real_mean / q_model_mean (over real / model rows), target_mean (model rows),
    target_real_mean, temperature, posterior_entropy, posterior_max, the backup rule's extras
    (member_target_spread where it computes all member targets) and the rollout scheme's step
    metrics.
    """
    config, nets, parts = learner.config, learner.nets, learner.parts
    scheme = scheme_of(learner)
    key, k_real, k_fake, k_vreal, k_fake_t, k_belief, k_pol = jax.random.split(state.key, 7)
    ctx = context(learner, state, data)
    target_value = make_value_fn(ctx, parts, state.target_critic)
    inputs = scheme_inputs(learner, state, data)

    real = sample_real(k_real, data, config.real_batch)
    fake = scheme.model_rows(k_fake, state.buffer, state.rollout, inputs)

    # targets
    observed_y = targets.observed_backup(ctx, k_vreal, real, target_value)
    belief = targets.belief_update(ctx, k_belief, real, observed_y, target_value)
    ctx = ctx._replace(state=state.replace(belief=belief))
    backup = targets.model_backup(ctx, k_fake_t, fake.obs, fake.act, target_value)
    y_fake, target_metrics = backup.target, dict(backup.metrics)
    y_real = targets.REAL_TARGETS[config.targets.real_target](ctx, k_fake_t, real, observed_y, target_value)
    obs = jnp.concatenate([real.obs, fake.obs])
    act = jnp.concatenate([real.act, fake.act])
    y = jax.lax.stop_gradient(jnp.concatenate([y_real, y_fake]))
    w = row_weights(config)

    # critic step (RRPI Eq. 9)
    (c_loss, q_pred), grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(state.critic, nets, data, obs, act, y, w)
    critic, critic_opt = _apply(learner.critic_tx, grads, state.critic_opt, state.critic)

    # policy step: Boltzmann projection (RRPI Eq. 10)
    dists = reference_dists(ctx, obs)
    cand, log_q = policy_candidates(k_pol, dists, real.act, config)
    q_cand = critic_values(nets, critic, data, obs, cand, config)
    log_mu, temp = parts.reference(ctx, obs, cand, dists, q_cand, log_q)
    weights = value.boltzmann_weights(q_cand, log_mu, log_q, temp)
    p_loss, grads = jax.value_and_grad(losses.projection_loss)(state.policy, nets, data, obs, cand, weights, w)
    policy, policy_opt = _apply(learner.policy_tx, grads, state.policy_opt, state.policy)

    # the scheme moves its state after the backup (the persistent paths follow its member)
    model_buffer, scheme_state, scheme_metrics = scheme.advance(
        jax.random.fold_in(k_fake, 1), state.buffer, state.rollout, fake, backup.member, backup.successors, inputs)
    new_state = state.replace(
        buffer=model_buffer,
        rollout=scheme_state,
        critic=critic,
        target_critic=optax.incremental_update(critic, state.target_critic, config.optim.tau),
        critic_opt=critic_opt,
        policy=policy,
        policy_opt=policy_opt,
        ref_policy=optax.incremental_update(policy, state.ref_policy, config.optim.ref_tau),
        avg_policy=(None if state.avg_policy is None
                    else optax.incremental_update(policy, state.avg_policy, config.optim.avg_tau)),
        belief=belief,
        step=state.step + 1,
        key=key,
    )
    q_min = q_pred.min(0)
    metrics = {
        "critic_loss": c_loss,
        "policy_loss": p_loss,
        "q_mean": jnp.mean(q_min),
        "q_max": jnp.max(q_min),
        "q_real_mean": jnp.mean(q_min[:config.real_batch]),
        "q_model_mean": jnp.mean(q_min[config.real_batch:]),
        "target_mean": jnp.mean(y_fake),
        "target_real_mean": jnp.mean(y_real),
        "temperature": jnp.mean(temp),
        "posterior_entropy": posterior.belief_entropy(belief),
        "posterior_max": jnp.max(belief),
        "posterior_belief": belief,  # (N,); its chunk mean gives posterior_argmax
        **target_metrics,
        **scheme_metrics,
    }
    return new_state, metrics


# ----------------------------------------------------------------------------- one chunk


def begin_chunk(learner: Learner, state: TrainState, data: TrainData, key: chex.PRNGKey):
    """The rollout scheme's chunk hook at `state` (the short scheme's refill: `rollout_batch`
    dataset states rolled `rollout_horizon` steps into the model buffer).

    Returns (the new buffer, the scheme's new state, its chunk record).
    """
    return scheme_of(learner).begin_chunk(key, state.buffer, state.rollout, scheme_inputs(learner, state, data))


def run_chunk(learner: Learner, state: TrainState, data: TrainData) -> tuple[TrainState, dict]:
    """The rollout scheme's chunk hook (`begin_chunk`), then `steps_per_chunk` train steps in lax.scan.

    Metrics: the train steps' means, plus policy_kl (KL between the policies at the start and
    the end of the chunk on dataset states), ref_kl (KL(pi || pi_ref) on dataset states),
    greedy_gain (on the same states: the Q a greedy pick among `diagnostics.GREEDY_SAMPLES` policy
    samples gains above the deployed action), the rollout scheme's chunk metrics
    (`rollout_schemes`: member_pick_frac (N,), rollout_valid_frac; rollout_path_len for the
    persistent scheme), buffer_count, eta (after PSPO's dual update when trust_rate > 0) and the
    Figure-3 diagnostics (`diagnostics.chunk_diagnostics`: target_uncertainty_spearman,
    member_target_std, posterior_argmax).
    """
    config, nets = learner.config, learner.nets
    key, k_refill, k_kl = jax.random.split(state.key, 3)
    old_policy = state.policy
    model_buffer, scheme_state, record = begin_chunk(learner, state, data, k_refill)
    state = state.replace(buffer=model_buffer, rollout=scheme_state, key=key)
    state, metrics = jax.lax.scan(lambda s, _: train_step(learner, s, data), state, None, length=config.steps_per_chunk)
    metrics = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), metrics)  # over steps
    metrics, rollout_metrics = scheme_of(learner).chunk_metrics(record, state.rollout, metrics)
    diag_ctx = context(learner, state, data)
    metrics.update(diagnostics.chunk_diagnostics(
        diag_ctx, jax.random.fold_in(k_kl, 1), make_value_fn(diag_ctx, learner.parts, state.target_critic), metrics))

    kl_obs = data.obs[jax.random.randint(k_kl, (256,), 0, data.obs.shape[0])]
    pi_now = policy_dist(nets, state.policy, data, kl_obs)
    kl = jnp.mean(networks.tanh_gaussian_kl(pi_now, policy_dist(nets, old_policy, data, kl_obs)))
    # KL(pi || mu) to the reference policy: how far the projection has moved pi from mu
    ref_kl = jnp.mean(networks.tanh_gaussian_kl(pi_now, policy_dist(nets, state.ref_policy, data, kl_obs)))
    if isinstance(config.algo, Pspo) and config.algo.trust_rate > 0:
        state = state.replace(eta=value.trust_region_multiplier_update(
            state.eta, kl, config.algo.trust_epsilon, config.algo.trust_rate))
    metrics.update(
        policy_kl=kl,
        ref_kl=ref_kl,
        **rollout_metrics,
        buffer_count=state.buffer.count,
        eta=state.eta,
    )
    return state, metrics


def act(nets: Networks, policy_params, obs: jax.Array, data: TrainData) -> jax.Array:
    """The deployed deterministic policy clip(c tanh(mean), -1, 1) at raw observations (B, S) -> (B, A)."""
    return networks.deployed_action(nets.policy, policy_dist(nets, policy_params, data, obs))


# ----------------------------------------------------------------------------- the trainer


class Trainer(NamedTuple):
    """Pure functions of one learner, plus jitted seed-vmapped versions compiled once."""

    config: AgentConfig
    data: TrainData
    nets: Networks
    init: Callable[[chex.PRNGKey, TrainData], Any]
    run_chunk: Callable[[Any, TrainData], tuple[Any, dict]]
    act: Callable[[Any, jax.Array, TrainData], jax.Array]
    init_seeds_jit: Callable
    run_chunk_seeds_jit: Callable
    learner: Learner | None = None  # the static pieces bound into init / run_chunk (benchmarks time its parts)

    def init_seeds(self, keys: jax.Array):
        """Initial states of S seeds (keys of shape (S, 2)), vmapped and jitted."""
        return self.init_seeds_jit(keys, self.data)

    def run_chunk_seeds(self, states):
        """One chunk for all S seeds at once; metrics gain a leading seed axis."""
        return self.run_chunk_seeds_jit(states, self.data)

    def act_fn(self, policy_params) -> Callable[[jax.Array], jax.Array]:
        """A deterministic obs -> action function of one seed's policy (for evaluation)."""
        return functools.partial(self.act, policy_params, data=self.data)


def bind(config: AgentConfig, data: TrainData, nets: Networks, init: Callable, run: Callable,
         learner: Learner | None = None) -> Trainer:
    """A Trainer of pure `init(key, data)` and `run(state, data)`: jit(vmap) over seeds."""
    return Trainer(
        config=config,
        data=data,
        nets=nets,
        init=init,
        run_chunk=run,
        act=functools.partial(act, nets),
        init_seeds_jit=jax.jit(jax.vmap(init, in_axes=(0, None))),
        run_chunk_seeds_jit=jax.jit(jax.vmap(run, in_axes=(0, None))),
        learner=learner,
    )


def make_trainer(config: AgentConfig, dataset, pool: dynamics.DynamicsPool | None = None, termination_fn=None,
                 parts: Parts | None = None, active_key: chex.PRNGKey | None = None) -> Trainer:
    """Builds the trainer of `config.algo`'s kind (or of explicitly given `parts`).

    Args:
      config: AgentConfig (validated here).
      dataset: a `jaxrl_bayes.data.Dataset` (or any object with its fields).
      pool: the trained dynamics pool; `config.num_active` members are drawn from it. None for
        an algorithm whose parts say `needs_model=False` (bc).
      termination_fn: (obs, act, next_obs) -> bool (unused without a model).
      parts: override the algorithm's registered parts (research variants).
      active_key: PRNG key for drawing the active members (default PRNGKey(0)).
    """
    config.validate()
    parts = PARTS[config.algo.kind] if parts is None else parts
    active_key = jax.random.PRNGKey(0) if active_key is None else active_key
    if parts.build is not None:
        return parts.build(config, dataset, pool, termination_fn, active_key)
    if pool is None or termination_fn is None:
        raise UserError(f"algorithm {config.algo.kind!r} trains through a dynamics pool: pass a pool and a termination "
                        f"function (only algorithms with needs_model=False, such as bc, train without)")
    data = make_train_data(dataset, pool, config, active_key)
    nets = make_networks(config, data.act.shape[1])
    learner = Learner(config, nets, parts, termination_fn, optax.adam(config.optim.critic_lr), optax.adam(config.optim.policy_lr))
    return bind(config, data, nets, functools.partial(init_state, learner), functools.partial(run_chunk, learner),
                learner)


def make_train(config: AgentConfig, dataset, pool, termination_fn, num_chunks: int, parts: Parts | None = None):
    """PureJaxRL-style `train(key, data) -> (final state, metrics stacked over chunks)`.

    The whole run is one pure function: `jax.jit(jax.vmap(train, (0, None)))(keys, trainer.data)`
    trains many seeds. Returns (train, trainer).
    """
    trainer = make_trainer(config, dataset, pool, termination_fn, parts)

    def train(key, data):
        state = trainer.init(key, data)
        return jax.lax.scan(lambda s, _: trainer.run_chunk(s, data), state, None, length=num_chunks)

    return train, trainer
