"""The shared train-step skeleton of PSPO and RRPI (ALGORITHMS.md §5-6; PureJaxRL's pattern).

An algorithm is a set of *parts* (`Parts`): how the model-state critic target is formed (worst
case, k-th min, posterior sample), which member a rollout follows (`rollout.Selector`), the
reference log-density and temperature of the KL-regularized backup and projection, and an
optional belief update (PSPO's E-step). `make_trainer(config, dataset, pool, termination_fn)`
closes the parts over a config and returns pure functions:

    init(key, data)       -> TrainState          (behaviour cloning first where an algorithm needs it)
    run_chunk(state, data)-> (state, metrics)    a rollout refills the ring buffer, then lax.scan
                                                 runs `steps_per_chunk` train steps
    act(policy_params, obs, data) -> actions     the deployed deterministic policy tanh(mean)

`data` (`TrainData`: the dataset on device, the active dynamics members and normalizers) is an
ARGUMENT, never a closure: jit would otherwise embed it in the compiled program as a constant.
`Trainer.init_seeds` / `Trainer.run_chunk_seeds` are the jitted `vmap` over seeds, compiled once
per Trainer; `make_train` is the one-call `train(key)` of PureJaxRL.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_bayes import backups, buffer, dynamics, networks, rollout, value
from jaxrl_bayes.posterior import belief_entropy, uniform_belief
from jaxrl_bayes.data.dataset import reward_normalizer


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Every hyperparameter of PSPO / RRPI / PMDB training. Sources in comments.

    "PMDB" = the public PMDB code's defaults (huawei-noah/HEBO, PMDB/config.py), which RRPI
    builds on; "PSPO T5" = PSPO Table 5.
    """

    algo: str = "rrpi"  # rrpi | pspo (variants such as pmdb are configurations of these)
    # --- RL
    discount: float = 0.99  # both papers
    critic_hidden: tuple[int, ...] = (256, 256, 256)  # PMDB: 3 x 256 twin critics
    policy_hidden: tuple[int, ...] = (256, 256)  # PSPO T5 width 256; D4RL SAC 2 x 256
    critic_lr: float = 3e-4  # PMDB
    policy_lr: float = 3e-5  # PMDB actor_lr
    tau: float = 5e-3  # PMDB tau_value (target critics)
    ref_tau: float = 1e-5  # PMDB tau_policy (reference policy mu = Polyak copy of pi)
    real_batch: int = 128  # PMDB real_batch_size
    model_batch: int = 128  # PMDB adv_batch_size
    real_weight: float = 0.5  # RRPI Eq. 9: omega_1 = omega_2 = 0.5
    real_target: str = "data"  # "data" (observed r, s'; PMDB) | "robust" (model target on real pairs)
    num_candidates: int = 20  # M, PMDB MC_size_action
    data_action_std: float = 0.1  # PMDB: pre-tanh std of the proposal around dataset actions
    # --- temperature of the KL-regularized backup and projection
    temperature: float = 0.1  # alpha, PMDB
    auto_temperature: bool = True  # PMDB's per-state KL-budget rule (value.kl_budget_temperature)
    target_kl: float = 5.0  # PMDB target_kld
    # --- ensemble and targets
    num_active: int = 10  # N members drawn from the pool (PSPO T5 / PMDB: 10 of 100)
    num_next_samples: int = 10  # K, PMDB MC_size_state
    kth: int = 1  # RRPI worst case; PMDB = 2
    # Members share their sampling noise (common random numbers), so the k-th min over members
    # compares their expectations, as RRPI's operator min_p E_p[V] does, instead of also picking
    # the luckiest-worst noise draw (a downward bias ~ std/sqrt(K)). PMDB samples independently
    # (set False to reproduce it). Measured choice: liquidation, see experiments/configs.
    common_noise: bool = True
    value_clip: bool = True  # clip Q and targets to [0, value_max] (RRPI §3.2, PMDB)
    value_max: float | None = None  # None = 1/(1-gamma) (RRPI); required when discount = 1
    # Reward units of learning. "pmdb": r~ = (r - shift)/scale in [0.045, 0.955] (PMDB). It adds
    # a constant per step, which changes the optimal policy wherever the policy controls episode
    # length (liquidation: selling ends the episode). "scale": r~ = r / (1.1 max r), for tasks
    # with non-negative rewards; the optimal policy is unchanged.
    reward_normalization: str = "pmdb"
    # --- model rollouts into the ring buffer
    rollout_batch: int = 1000  # start states per chunk (measured choice)
    rollout_horizon: int = 5  # H (MOPO-style short rollouts; measured choice)
    rollout_samples: int = 1  # K used by the rollout selector's one-step targets
    selector: str = "worst"  # worst | posterior | uniform
    buffer_capacity: int = 100_000
    obs_bound_std: float = 10.0  # successors beyond data min/max +- this many stds end a path
    steps_per_chunk: int = 1000  # R train steps per jitted call
    # Soft values are computed in chunks of this many states (lax.map): one 256k-row critic batch
    # is memory-bound on CPU; 64 states x M candidates was fastest (benchmarks/value_chunking.py,
    # -17..-44 % per PMDB step). 0 = one batch.
    value_chunk: int = 64
    # --- PSPO
    belief: str = "gibbs"  # gibbs | uniform ("average utilization" ablation)
    consistency: str = "observed"  # observed (ALGORITHMS.md §4) | consensus
    lam: float = 1.0  # PSPO T5 likelihood coefficient
    consistency_batch: int = 32  # real pairs on which d(m) is measured each step (measured choice)
    # K for d(m): with common random numbers the member comparison stays low-variance at small K;
    # 2 keeps PSPO's step >= 5x cheaper than PMDB's (benchmarks/throughput.py)
    consistency_samples: int = 2
    behaviour_weight: float = 0.1  # alpha in KL(pi || pi_beta); 0 = "without regularization"
    trust_eta: float = 0.1  # initial trust-region multiplier eta
    trust_epsilon: float = 0.05  # KL(pi_{k+1} || pi_k) budget per chunk
    trust_rate: float = 0.0  # dual-ascent rate for eta (0 = fixed eta)
    bc_steps: int = 0  # behaviour-cloning steps before policy iteration (PSPO)
    bc_lr: float = 1e-3
    # Start pi and pi_k at pi_beta? Not in the papers. Measured on liquidation (3 seeds): with the
    # slow reference (ref_tau 1e-5) pi_k then stays near the behaviour policy all run, 95.3 vs 97.4.
    init_from_behaviour: bool = False

    def validate(self) -> None:
        problems = []
        if self.algo not in ("rrpi", "pspo"):
            problems.append(f"algo must be 'rrpi' or 'pspo', got {self.algo!r}")
        if self.selector not in ("worst", "posterior", "uniform"):
            problems.append(f"selector must be worst|posterior|uniform, got {self.selector!r}")
        if self.belief not in ("gibbs", "uniform"):
            problems.append(f"belief must be gibbs|uniform, got {self.belief!r}")
        if self.consistency not in ("observed", "consensus"):
            problems.append(f"consistency must be observed|consensus, got {self.consistency!r}")
        if self.reward_normalization not in ("pmdb", "scale"):
            problems.append(f"reward_normalization must be pmdb|scale, got {self.reward_normalization!r}")
        if not 0.0 < self.discount <= 1.0:
            problems.append(f"discount must be in (0, 1], got {self.discount}")
        if self.discount == 1.0 and self.value_clip and self.value_max is None:
            problems.append("discount = 1 with value_clip needs an explicit value_max (e.g. the horizon)")
        if self.real_target not in ("data", "robust"):
            problems.append(f"real_target must be data|robust, got {self.real_target!r}")
        if not 1 <= self.kth <= self.num_active:
            problems.append(f"kth must be in [1, num_active={self.num_active}], got {self.kth}")
        if self.num_candidates < 2:
            problems.append("num_candidates must be >= 2")
        if self.temperature <= 0 or self.trust_eta <= 0:
            problems.append("temperature and trust_eta must be > 0")
        for name in ("real_batch", "model_batch", "rollout_batch", "rollout_horizon",
                     "num_next_samples", "steps_per_chunk", "buffer_capacity", "consistency_batch",
                     "consistency_samples"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if problems:
            raise ValueError("invalid AgentConfig: " + "; ".join(problems))

    @property
    def value_bound(self) -> float:
        """Upper clip of Q values and targets: value_max, or 1/(1-gamma) by default."""
        return self.value_max if self.value_max is not None else 1.0 / (1.0 - self.discount)


# ----------------------------------------------------------------------------- state and data


@flax.struct.dataclass
class TrainData:
    """Everything constant during training, passed to the jitted functions as an argument."""

    obs: jax.Array
    act: jax.Array
    reward: jax.Array  # rewards in learning units r~ = (r - reward_shift) / reward_scale
    next_obs: jax.Array
    done: jax.Array  # float 0/1, true terminations only
    obs_mean: jax.Array
    obs_std: jax.Array
    obs_low: jax.Array  # rollout bounds
    obs_high: jax.Array
    reward_shift: jax.Array  # scalars: model rewards (raw units) are mapped the same way
    reward_scale: jax.Array
    model: dynamics.DynamicsPool  # the N active members, predicting RAW rewards


@flax.struct.dataclass
class TrainState:
    """The whole learner state: a pytree that vmaps over seeds and checkpoints with orbax."""

    critic: Any
    target_critic: Any
    critic_opt: Any
    policy: Any
    policy_opt: Any
    ref_policy: Any  # mu / pi_k: Polyak copy of the policy
    behaviour: Any  # pi_beta (PSPO; RRPI keeps its unused initial copy)
    buffer: buffer.RingBuffer
    belief: jax.Array  # PSPO posterior b over the N active members (uniform for RRPI)
    eta: jax.Array  # PSPO trust-region multiplier
    step: jax.Array
    key: jax.Array


class Networks(NamedTuple):
    policy: networks.TanhGaussianPolicy
    critic: networks.TwinCritic


class Ctx(NamedTuple):
    """What a part sees: the config, networks, constant data, current state, termination rule."""

    config: AgentConfig
    nets: Networks
    data: TrainData
    state: TrainState
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


# A part that returns the reference log-density of candidate actions and the temperature:
#   reference(ctx, obs (B,S), actions (M,B,A), dists: dict of GaussianParams at obs, q (M,B))
#     -> (log_mu (M,B), temperature broadcastable to (B,))
ReferenceFn = Callable[..., tuple[jax.Array, jax.Array]]


class Parts(NamedTuple):
    """The pieces in which PSPO and RRPI differ."""

    reference: ReferenceFn
    # model_target(ctx, key, obs, act, value_fn) -> (target (B,), extra metrics dict)
    model_target: Callable[..., tuple[jax.Array, dict]]
    # selector(ctx, value_fn) -> rollout.Selector
    selector: Callable[..., rollout.Selector]
    # belief_update(ctx, key, real batch, y_real (B,), value_fn) -> new belief (N,)
    belief_update: Callable[..., jax.Array] | None = None
    needs_behaviour: bool = False


def make_train_data(dataset, pool: dynamics.DynamicsPool, config: AgentConfig, key: chex.PRNGKey) -> TrainData:
    """Puts a `data.Dataset` on device with the N active members drawn from the pool.

    The active set is drawn without replacement from the pool's members (from its elites if
    the pool has fewer elites than members and enough of them).
    """
    num_pool = pool.num_members
    if config.num_active > num_pool:
        raise ValueError(
            f"num_active={config.num_active} members requested but the dynamics pool has only "
            f"{num_pool}; lower --agent.num_active or train a larger pool (--dynamics.num_members)"
        )
    candidates = np.asarray(pool.elites) if len(pool.elites) >= config.num_active else np.arange(num_pool)
    active = jax.random.permutation(key, jnp.asarray(candidates))[: config.num_active]
    obs = jnp.asarray(dataset.observations, jnp.float32)
    std = jnp.asarray(dataset.obs_std, jnp.float32)
    shift, scale = reward_normalizer(float(dataset.reward_min), float(dataset.reward_max),
                                     config.reward_normalization)
    return TrainData(
        obs=obs,
        act=jnp.asarray(dataset.actions, jnp.float32),
        reward=(jnp.asarray(dataset.rewards, jnp.float32) - shift) / scale,
        next_obs=jnp.asarray(dataset.next_observations, jnp.float32),
        done=jnp.asarray(dataset.terminals, jnp.float32),
        obs_mean=jnp.asarray(dataset.obs_mean, jnp.float32),
        obs_std=std,
        obs_low=obs.min(0) - config.obs_bound_std * std,
        obs_high=obs.max(0) + config.obs_bound_std * std,
        reward_shift=jnp.asarray(shift, jnp.float32),
        reward_scale=jnp.asarray(scale, jnp.float32),
        model=dynamics.select(pool, active),
    )


# ----------------------------------------------------------------------------- building blocks


def normalize_obs(data: TrainData, obs: jax.Array) -> jax.Array:
    return (obs - data.obs_mean) / data.obs_std


def policy_dist(nets: Networks, params, data: TrainData, obs: jax.Array) -> networks.GaussianParams:
    return nets.policy.apply(params, normalize_obs(data, obs))


def critic_values(nets: Networks, params, data: TrainData, obs: jax.Array, act: jax.Array, config: AgentConfig) -> jax.Array:
    """min of the twin critics at (obs, act), clipped to [0, 1/(1-gamma)] if configured.

    obs broadcasts against act's leading axes: obs (B,S) with act (M,B,A) -> (M,B).
    """
    obs = jnp.broadcast_to(normalize_obs(data, obs), act.shape[:-1] + obs.shape[-1:])
    q = nets.critic.apply(params, obs, act).min(0)
    return jnp.clip(q, 0.0, config.value_bound) if config.value_clip else q


def _sample_from(key, dist: networks.GaussianParams, count: int):
    return networks.tanh_gaussian_sample(key, dist, (count,))


def value_candidates(key, dists: dict, config: AgentConfig):
    """M candidates for the soft value: half from mu's proposal pi_ref, half from pi (PMDB)."""
    m_ref = config.num_candidates // 2
    k1, k2 = jax.random.split(key)
    a_ref, lp_ref = _sample_from(k1, dists["ref"], config.num_candidates - m_ref)
    a_pi, lp_pi = _sample_from(k2, dists["pi"], m_ref)
    return jnp.concatenate([a_pi, a_ref]), jnp.concatenate([lp_pi, lp_ref])


def make_value_fn(ctx: Ctx, parts: Parts, critic_params) -> Callable[[chex.PRNGKey, jax.Array], jax.Array]:
    """(key, states (..., S)) -> soft value V(s) under `critic_params` and the algorithm's reference.

    States are processed `config.value_chunk` at a time with `lax.map` (same estimator; each
    chunk draws its candidates with its own key).
    """
    config, nets, data = ctx.config, ctx.nets, ctx.data

    def one_batch(key, flat):
        dists = reference_dists(ctx, flat)
        actions, log_q = value_candidates(key, dists, config)
        q = critic_values(nets, critic_params, data, flat, actions, config)
        log_mu, temp = parts.reference(ctx, flat, actions, dists, q, log_q)
        return value.soft_value(q, log_mu, log_q, temp)

    return chunked_value_fn(one_batch, config.value_chunk)


def chunked_value_fn(value_fn: Callable, chunk_states: int) -> Callable:
    """Evaluates `value_fn(key, states (..., S))` `chunk_states` states at a time with lax.map.

    Same estimator, other random draws (each chunk gets its own key); the last chunk is padded
    with copies of the first state and trimmed. Keeps one chunk's critic activations
    (chunk_states * M rows) in cache instead of writing N*K*B*M rows per layer to memory.
    chunk_states = 0, or a batch no larger than one chunk, calls value_fn once.
    """

    def fn(key, states):
        batch_shape, dim = states.shape[:-1], states.shape[-1]
        flat = states.reshape(-1, dim)
        n = flat.shape[0]
        if not chunk_states or n <= chunk_states:
            return value_fn(key, flat).reshape(batch_shape)
        num = -(-n // chunk_states)
        flat = jnp.concatenate([flat, jnp.broadcast_to(flat[:1], (num * chunk_states - n, dim))])
        v = jax.lax.map(lambda kx: value_fn(*kx), (jax.random.split(key, num), flat.reshape(num, chunk_states, dim)))
        return v.reshape(-1)[:n].reshape(batch_shape)

    return fn


def reference_dists(ctx: Ctx, obs: jax.Array) -> dict:
    """Current, reference and behaviour policies at obs (XLA drops whichever is unused)."""
    nets, data, state = ctx.nets, ctx.data, ctx.state
    return {
        "pi": policy_dist(nets, state.policy, data, obs),
        "ref": policy_dist(nets, state.ref_policy, data, obs),
        "beta": policy_dist(nets, state.behaviour, data, obs),
    }


def temperature_for(config: AgentConfig, q, log_mu, log_q) -> jax.Array:
    """Fixed alpha, or PMDB's per-state KL-budget rule."""
    if config.auto_temperature:
        return value.kl_budget_temperature(q, log_mu, log_q, config.target_kl)
    return jnp.asarray(config.temperature, q.dtype)


def sample_model(data: TrainData, num_samples: int, common_noise: bool = False):
    """(key, obs, act) -> (next_obs (N,K,B,S), rewards (N,K,B)) from the active members."""

    def sample_fn(key, obs, act):
        out = dynamics.sample(data.model, key, obs, act, num_samples, common_noise=common_noise)
        return out.next_obs, (out.reward - data.reward_shift) / data.reward_scale

    return sample_fn


def all_member_targets(ctx: Ctx, key, obs, act, value_fn, num_samples: int | None = None) -> backups.ModelTargets:
    """y_m(s, a) of all N active members with K samples each (default K = num_next_samples)."""
    c = ctx.config
    return backups.model_targets(
        key, obs, act,
        sample_fn=sample_model(ctx.data, num_samples or c.num_next_samples, c.common_noise),
        value_fn=value_fn,
        termination_fn=ctx.termination_fn,
        discount=c.discount,
        reward_range=(0.0, 1.0),
        value_range=(0.0, c.value_bound) if c.value_clip else None,
    )


def sampled_member_target(ctx: Ctx, key, obs, act, value_fn, belief: jax.Array) -> backups.MemberChoice:
    """y_m(s, a) for ONE member per state drawn from `belief`: N times less critic work.

    All members' successors are sampled (cheap), but the soft value, the expensive part, is
    evaluated only on the drawn member's K successors.
    """
    c = ctx.config
    k_member, k_model, k_value = jax.random.split(key, 3)
    member = backups.sample_members(k_member, belief, obs.shape[:1])
    next_obs, rewards = sample_model(ctx.data, c.num_next_samples)(k_model, obs, act)
    # (N, K, B, ...) -> (N, B, K, ...) so take_members picks per state
    next_obs = backups.take_members(jnp.swapaxes(next_obs, 1, 2), member)  # (B, K, S)
    reward = backups.take_members(jnp.swapaxes(rewards, 1, 2), member)  # (B, K)
    done = ctx.termination_fn(obs[:, None], act[:, None], next_obs)
    next_v = value_fn(k_value, next_obs)
    # member_targets wants (N, K) + B: use N = 1 and move K to axis 1
    y = backups.member_targets(
        reward.T[None], done.T[None], next_v.T[None], c.discount, (0.0, 1.0),
        (0.0, c.value_bound) if c.value_clip else None,
    )[0]
    return backups.MemberChoice(y, member)


def strong_types(tree):
    """Drops JAX weak types from every leaf, so a state coming out of a jitted step has exactly
    the avals of the state that went in (a weak-typed leaf would force a recompilation)."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)




# ----------------------------------------------------------------------------- the trainer


class Trainer(NamedTuple):
    """Pure functions of one learner, plus jitted seed-vmapped versions compiled once."""

    config: AgentConfig
    data: TrainData
    nets: Networks
    init: Callable[[chex.PRNGKey, TrainData], TrainState]
    run_chunk: Callable[[TrainState, TrainData], tuple[TrainState, dict]]
    act: Callable[[Any, jax.Array, TrainData], jax.Array]
    init_seeds_jit: Callable
    run_chunk_seeds_jit: Callable

    def init_seeds(self, keys: jax.Array) -> TrainState:
        """Initial states of S seeds (keys of shape (S, 2)), vmapped and jitted."""
        return self.init_seeds_jit(keys, self.data)

    def run_chunk_seeds(self, states: TrainState) -> tuple[TrainState, dict]:
        """One chunk for all S seeds at once; metrics gain a leading seed axis."""
        return self.run_chunk_seeds_jit(states, self.data)

    def act_fn(self, policy_params) -> Callable[[jax.Array], jax.Array]:
        """A deterministic obs -> action function of one seed's policy (for evaluation)."""
        return functools.partial(self.act, policy_params, data=self.data)


def make_trainer(config: AgentConfig, dataset, pool: dynamics.DynamicsPool, termination_fn,
                 parts: Parts | None = None, active_key: chex.PRNGKey | None = None) -> Trainer:
    """Builds the trainer of `config.algo` (or of explicitly given `parts`).

    Args:
      config: AgentConfig.
      dataset: a `jaxrl_bayes.data.Dataset` (or any object with its fields).
      pool: the trained dynamics pool; `config.num_active` members are drawn from it.
      termination_fn: (obs, act, next_obs) -> bool.
      parts: override the algorithm's parts (research variants).
      active_key: PRNG key for drawing the active members (default PRNGKey(0)).
    """
    config.validate()
    if parts is None:
        from jaxrl_bayes.algos import parts_for

        parts = parts_for(config)
    data = make_train_data(dataset, pool, config, jax.random.PRNGKey(0) if active_key is None else active_key)
    obs_dim, act_dim = data.obs.shape[1], data.act.shape[1]
    nets = Networks(
        networks.TanhGaussianPolicy(act_dim, config.policy_hidden),
        networks.TwinCritic(config.critic_hidden),
    )
    critic_tx = optax.adam(config.critic_lr)
    policy_tx = optax.adam(config.policy_lr)
    n_active = config.num_active
    v_range = (0.0, config.value_bound) if config.value_clip else None

    # ------------------------------------------------------------ init (+ behaviour cloning)
    def behaviour_cloning(key, params, data):
        tx = optax.adam(config.bc_lr)

        def loss(p, idx):
            dist = policy_dist(nets, p, data, data.obs[idx])
            return -jnp.mean(networks.tanh_gaussian_log_prob(dist, data.act[idx]))

        def step(carry, key):
            p, opt = carry
            idx = jax.random.randint(key, (256,), 0, data.obs.shape[0])
            l, g = jax.value_and_grad(loss)(p, idx)
            upd, opt = tx.update(g, opt, p)
            return (optax.apply_updates(p, upd), opt), l

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, config.bc_steps))
        return params

    def init(key, data):
        k_pol, k_crit, k_bc, k_state = jax.random.split(key, 4)
        dummy_obs = jnp.zeros((1, obs_dim))
        policy = nets.policy.init(k_pol, dummy_obs)
        critic = nets.critic.init(k_crit, dummy_obs, jnp.zeros((1, act_dim)))
        behaviour = policy
        if parts.needs_behaviour and config.bc_steps > 0:
            behaviour = behaviour_cloning(k_bc, policy, data)
            if config.init_from_behaviour:
                policy = behaviour
        example = buffer.Transition(
            jnp.zeros((obs_dim,)), jnp.zeros((act_dim,)), jnp.zeros(()), jnp.zeros((obs_dim,)), jnp.zeros((), bool)
        )
        return strong_types(TrainState(
            critic=critic,
            target_critic=critic,
            critic_opt=critic_tx.init(critic),
            policy=policy,
            policy_opt=policy_tx.init(policy),
            ref_policy=policy,
            behaviour=behaviour,
            buffer=buffer.buffer_init(config.buffer_capacity, example),
            belief=uniform_belief(n_active),
            eta=jnp.asarray(config.trust_eta, jnp.float32),
            step=jnp.zeros((), jnp.int32),
            key=k_state,
        ))

    # ------------------------------------------------------------ one train step
    def train_step(state: TrainState, data: TrainData):
        key, k_real, k_fake, k_vreal, k_fake_t, k_belief, k_pol = jax.random.split(state.key, 7)
        ctx = Ctx(config, nets, data, state, termination_fn)
        target_value = make_value_fn(ctx, parts, state.target_critic)

        idx = jax.random.randint(k_real, (config.real_batch,), 0, data.obs.shape[0])
        real = buffer.Transition(data.obs[idx], data.act[idx], data.reward[idx], data.next_obs[idx], data.done[idx])
        fake = buffer.buffer_sample(state.buffer, k_fake, config.model_batch)

        # targets
        y_real = backups.bellman_target(real.reward, real.done, target_value(k_vreal, real.next_obs),
                                        config.discount, v_range)
        belief = state.belief
        if parts.belief_update is not None:
            belief = parts.belief_update(ctx, k_belief, real, y_real, target_value)
            ctx = ctx._replace(state=state.replace(belief=belief))
        y_fake, target_metrics = parts.model_target(ctx, k_fake_t, fake.obs, fake.act, target_value)
        if config.real_target == "robust":
            # own key (folded, so the default path's random stream is unchanged)
            y_real, _ = parts.model_target(ctx, jax.random.fold_in(k_fake_t, 1), real.obs, real.act, target_value)
        obs = jnp.concatenate([real.obs, fake.obs])
        act = jnp.concatenate([real.act, fake.act])
        y = jax.lax.stop_gradient(jnp.concatenate([y_real, y_fake]))
        w = jnp.concatenate([
            jnp.full((config.real_batch,), config.real_weight / config.real_batch),
            jnp.full((config.model_batch,), (1.0 - config.real_weight) / config.model_batch),
        ])

        # critic step (RRPI Eq. 9)
        def critic_loss(params):
            q = nets.critic.apply(params, normalize_obs(data, obs), act)  # (2, B)
            return jnp.sum(w * jnp.sum((q - y) ** 2, axis=0)), q

        (c_loss, q_pred), g = jax.value_and_grad(critic_loss, has_aux=True)(state.critic)
        upd, critic_opt = critic_tx.update(g, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, upd)

        # policy step: Boltzmann projection (RRPI Eq. 10)
        k_c1, k_c2, k_c3 = jax.random.split(k_pol, 3)
        dists = reference_dists(ctx, obs)
        m_half = config.num_candidates // 2
        a_ref, lp_ref = _sample_from(k_c1, dists["ref"], config.num_candidates - m_half)
        # proposals: a narrow tanh-Gaussian around the dataset action on real states (PMDB),
        # the current policy on model states
        data_dist = networks.GaussianParams(
            jnp.arctanh(jnp.clip(real.act, -1 + 1e-4, 1 - 1e-4)),
            jnp.full_like(real.act, jnp.log(config.data_action_std)),
        )
        a_data, lp_data = _sample_from(k_c2, data_dist, m_half)
        fake_pi = jax.tree_util.tree_map(lambda x: x[config.real_batch:], dists["pi"])
        a_pi, lp_pi = _sample_from(k_c3, fake_pi, m_half)
        a_prop = jnp.concatenate([a_data, a_pi], axis=1)
        lp_prop = jnp.concatenate([lp_data, lp_pi], axis=1)
        cand = jnp.concatenate([a_prop, a_ref])
        log_q = jnp.concatenate([lp_prop, lp_ref])
        q_cand = critic_values(nets, critic, data, obs, cand, config)
        log_mu, temp = parts.reference(ctx, obs, cand, dists, q_cand, log_q)
        weights = value.boltzmann_weights(q_cand, log_mu, log_q, temp)

        def policy_loss(params):
            dist = policy_dist(nets, params, data, obs)
            log_pi = networks.tanh_gaussian_log_prob(dist, cand)
            return jnp.sum(w * value.projection_loss(log_pi, weights))

        p_loss, g = jax.value_and_grad(policy_loss)(state.policy)
        upd, policy_opt = policy_tx.update(g, state.policy_opt, state.policy)
        policy = optax.apply_updates(state.policy, upd)

        new_state = state.replace(
            critic=critic,
            target_critic=optax.incremental_update(critic, state.target_critic, config.tau),
            critic_opt=critic_opt,
            policy=policy,
            policy_opt=policy_opt,
            ref_policy=optax.incremental_update(policy, state.ref_policy, config.ref_tau),
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
            "target_mean": jnp.mean(y_fake),
            "target_real_mean": jnp.mean(y_real),
            "temperature": jnp.mean(temp),
            "posterior_entropy": belief_entropy(belief),
            "posterior_max": jnp.max(belief),
            **target_metrics,
        }
        return new_state, metrics

    # ------------------------------------------------------------ one chunk
    def run_chunk(state: TrainState, data: TrainData):
        key, k_start, k_roll, k_kl = jax.random.split(state.key, 4)
        ctx = Ctx(config, nets, data, state, termination_fn)
        start = data.obs[jax.random.randint(k_start, (config.rollout_batch,), 0, data.obs.shape[0])]

        def policy_fn(k, o):
            return networks.tanh_gaussian_sample(k, policy_dist(nets, state.policy, data, o))[0]

        roll = rollout.rollout(
            k_roll, start,
            policy_fn=policy_fn,
            sample_fn=sample_model(data, config.rollout_samples, config.common_noise),
            termination_fn=termination_fn,
            selector=parts.selector(ctx, make_value_fn(ctx, parts, state.target_critic)),
            horizon=config.rollout_horizon,
            obs_bounds=(data.obs_low, data.obs_high),
        )
        items, valid = rollout.flatten_rollout(roll)
        model_buffer = buffer.buffer_add(state.buffer, items, valid)
        picks = jnp.sum(jax.nn.one_hot(roll.member, n_active) * roll.valid[..., None], axis=(0, 1))
        old_policy = state.policy

        state = state.replace(buffer=model_buffer, key=key)
        state, metrics = jax.lax.scan(lambda s, _: train_step(s, data), state, None, length=config.steps_per_chunk)
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)

        # KL between the policies at the start and the end of the chunk, on dataset states
        kl_obs = data.obs[jax.random.randint(k_kl, (256,), 0, data.obs.shape[0])]
        kl = jnp.mean(networks.tanh_gaussian_kl(policy_dist(nets, state.policy, data, kl_obs),
                                                policy_dist(nets, old_policy, data, kl_obs)))
        if config.trust_rate > 0:
            state = state.replace(eta=value.trust_region_multiplier_update(
                state.eta, kl, config.trust_epsilon, config.trust_rate))
        metrics.update(
            policy_kl=kl,
            member_pick_frac=picks / jnp.maximum(jnp.sum(picks), 1.0),
            rollout_valid_frac=jnp.mean(roll.valid),
            buffer_count=state.buffer.count,
            eta=state.eta,
        )
        return state, metrics

    def act(policy_params, obs, data):
        return networks.tanh_gaussian_mode(policy_dist(nets, policy_params, data, obs))

    return Trainer(
        config=config,
        data=data,
        nets=nets,
        init=init,
        run_chunk=run_chunk,
        act=act,
        init_seeds_jit=jax.jit(jax.vmap(init, in_axes=(0, None))),
        run_chunk_seeds_jit=jax.jit(jax.vmap(run_chunk, in_axes=(0, None))),
    )


def make_train(config: AgentConfig, dataset, pool, termination_fn, num_chunks: int, parts: Parts | None = None):
    """PureJaxRL-style `train(key) -> (final state, metrics stacked over chunks)`.

    The whole run is one pure function: `jax.jit(jax.vmap(train))(keys)` trains many seeds.
    Returns (train, trainer); `train(key, data)` takes the data as an argument (pass
    `trainer.data`), so nothing large is closed over: `jax.jit(jax.vmap(train, (0, None)))`.
    """
    trainer = make_trainer(config, dataset, pool, termination_fn, parts)

    def train(key, data):
        state = trainer.init(key, data)
        return jax.lax.scan(lambda s, _: trainer.run_chunk(s, data), state, None, length=num_chunks)

    return train, trainer
