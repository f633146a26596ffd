"""Optimal liquidation benchmark: environments, behaviour data, evaluation and its exact optimum.

Sources: BENCHMARKS.md "Optimal liquidation" (the specification used here); PSPO paper §5.2
and §12.1.2 (whose equations were lost in extraction); the environment follows the 1R2R code
of Rigter, Lacerda and Hawes, "One Risk to Rule Them All" (2023).

MDP. State (t, m, p): step t (starts at 0), money m of currency A left (starts at 100),
exchange rate p. Observation: float32 [t, m, p], raw. Action a in [-1, 1]; the fraction
converted is f = clip(a, 0, 1) (a <= 0 holds). m' = m (1 - f); reward (m - m') p with the rate
before the update; p' = clip(p + theta (mu - p) + sigma eps sqrt(dt), 0, 5), eps ~ N(0, 1);
p_0 ~ N(1, 0.05^2) (clipped to [0, 5] as every later rate is; this changes the law with
probability < 1e-80 and keeps observations inside the observation space). The episode
terminates (a true termination, never a time-out) when t' = 20 or m' < 0.1; money still held
then is lost. The horizon and money threshold come from `jaxrl_bayes.termination`.

This module holds

- `LiquidationEnv`: a numpy Gymnasium environment (id `Liquidation-v0`, registered by
  `jaxrl_bayes.envs`);
- a pure-JAX functional environment `reset(key)`, `step(state, action, key)` (jit/vmap
  friendly, `LiquidationState` pytree);
- the behaviour policy and `generate_dataset` (D4RL schema);
- `evaluate_policy` (vmap over episodes, lax.scan over the 20 steps, jit; optional traced
  `params` so one compilation serves many parameter sets), `score_summary`, and
  `optimum_returns` (the DP policy on the same price paths: a per-path gap to the optimum);
- the exact optimum `dp_optimum` (dynamic programming, see `liquidation_dp`), the threshold
  policy `make_dp_policy`, fixed schedules, their closed-form values and `reference_table`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import chex
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes.envs import liquidation_dp
from jaxrl_bayes.scores import normalized_score
from jaxrl_bayes.termination import LIQUIDATION_HORIZON, LIQUIDATION_MIN_MONEY

# D4RL-style normalisation (BENCHMARKS.md table; PSPO Table 7 "Offline optimal liquidation").
REF_MIN_SCORE = 0.0
REF_MAX_SCORE = 135.0
OBS_DIM = 3
ACT_DIM = 1


@dataclasses.dataclass(frozen=True)
class LiquidationConfig:
    """Constants of the liquidation MDP (all from BENCHMARKS.md, "Optimal liquidation")."""

    horizon: int = LIQUIDATION_HORIZON  # episode ends at t' = 20 (termination.py)
    min_money: float = LIQUIDATION_MIN_MONEY  # episode ends when m' < 0.1 (termination.py)
    initial_money: float = 100.0  # "starts at 100"
    theta: float = 0.05  # OU mean-reversion rate
    mu: float = 1.5  # OU long-run mean
    sigma: float = 0.2  # OU volatility
    dt: float = 1.0  # OU time step
    p0_mean: float = 1.0  # p_0 ~ N(1.0, 0.05^2)
    p0_std: float = 0.05
    price_low: float = 0.0  # rate clipped to [0, 5]
    price_high: float = 5.0
    behaviour_hold_prob: float = 0.8  # behaviour: hold w.p. 0.8 (a ~ U[-1, 0]), else U(0, 1]


CONFIG = LiquidationConfig()
DP_NUM_GRID = 2001  # price step 0.0025; the optimum moves < 2e-4 from 2001 to 4001 nodes
DATASET_CHUNK_EPISODES = 4096  # episodes simulated per jitted call in generate_dataset

PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]  # (obs [n, 3], key) -> actions [n, 1]
ActFn = Callable[[jax.Array], jax.Array]  # obs [n, 3] -> actions [n, 1]
ParamPolicyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]  # (params, obs, key) -> actions
ParamActFn = Callable[[Any, jax.Array], jax.Array]  # (params, obs [n, 3]) -> actions [n, 1]


class LiquidationActionError(ValueError):
    """An action outside [-1, 1] or not finite was given to the environment or evaluation."""


# --------------------------------------------------------------------------------------------
# Gymnasium environment (numpy)
# --------------------------------------------------------------------------------------------


class LiquidationEnv(gymnasium.Env):
    """Optimal liquidation as a Gymnasium environment (numpy; see the module docstring).

    Observation: float32 [t, m, p]. Action: float32 [1] in [-1, 1]; anything else (wrong size,
    NaN, outside the interval) raises `LiquidationActionError`, it is never clipped silently.
    `step` returns (obs, reward, terminated, truncated=False, info); `info` has the amount
    converted ("sold") and the rate it was converted at ("price").
    """

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(
                f"LiquidationEnv has no rendering; got render_mode={render_mode!r}, pass None"
            )
        self.render_mode = None
        cfg = CONFIG
        self.observation_space = gymnasium.spaces.Box(
            low=np.array([0.0, 0.0, cfg.price_low], dtype=np.float32),
            high=np.array([cfg.horizon, cfg.initial_money, cfg.price_high], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)
        self._t: int | None = None
        self._money = 0.0
        self._price = 0.0
        self._done = True

    def _obs(self) -> np.ndarray:
        return np.array([self._t, self._money, self._price], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        cfg = CONFIG
        self._t = 0
        self._money = cfg.initial_money
        p0 = cfg.p0_mean + cfg.p0_std * self.np_random.standard_normal()
        self._price = min(max(p0, cfg.price_low), cfg.price_high)
        self._done = False
        return self._obs(), {}

    def step(self, action):
        if self._t is None or self._done:
            raise RuntimeError(
                "LiquidationEnv.step called "
                + ("before reset()" if self._t is None else "after the episode terminated")
                + "; call reset() first"
            )
        a = np.asarray(action, dtype=np.float64)
        if a.size != 1:
            raise LiquidationActionError(
                f"action must hold exactly one number (shape (1,)), got shape {a.shape}"
            )
        a = float(a.reshape(()))
        if not math.isfinite(a):
            raise LiquidationActionError(
                f"action is {a}; the policy produced a non-finite action - check it for NaN"
            )
        if not -1.0 <= a <= 1.0:
            raise LiquidationActionError(
                f"action {a!r} is outside [-1, 1]; squash (tanh) or clip the policy output "
                "before stepping (the environment never clips silently)"
            )
        cfg = CONFIG
        frac = min(max(a, 0.0), 1.0)
        money_next = self._money * (1.0 - frac)
        sold = self._money - money_next
        reward = sold * self._price
        eps = self.np_random.standard_normal()
        price_next = self._price + cfg.theta * (cfg.mu - self._price) + cfg.sigma * eps * math.sqrt(
            cfg.dt
        )
        info = {"sold": sold, "price": self._price}
        self._price = min(max(price_next, cfg.price_low), cfg.price_high)
        self._money = money_next
        self._t += 1
        terminated = bool(self._t >= cfg.horizon or money_next < cfg.min_money)
        self._done = terminated
        return self._obs(), float(reward), terminated, False, info


# --------------------------------------------------------------------------------------------
# Functional JAX environment
# --------------------------------------------------------------------------------------------


class LiquidationState(NamedTuple):
    """Environment state (a pytree; add a leading axis for a batch)."""

    t: jax.Array  # int32 [] step
    money: jax.Array  # float32 [] money of currency A left
    price: jax.Array  # float32 [] exchange rate


def observation(state: LiquidationState) -> jax.Array:
    """float32 [..., 3] observation [t, m, p] of a (batched) state."""
    return jnp.stack(
        [state.t.astype(jnp.float32), state.money.astype(jnp.float32), state.price], axis=-1
    )


def reset(key: jax.Array) -> tuple[LiquidationState, jax.Array]:
    """Start an episode.

    Args:
      key: PRNG key.

    Returns:
      (state, obs) with obs float32 [3]. vmap over keys for a batch.
    """
    cfg = CONFIG
    p0 = cfg.p0_mean + cfg.p0_std * jax.random.normal(key, (), dtype=jnp.float32)
    state = LiquidationState(
        t=jnp.asarray(0, jnp.int32),
        money=jnp.asarray(cfg.initial_money, jnp.float32),
        price=jnp.clip(p0, cfg.price_low, cfg.price_high),
    )
    return state, observation(state)


def step(
    state: LiquidationState, action: jax.Array, key: jax.Array
) -> tuple[LiquidationState, jax.Array, jax.Array, jax.Array]:
    """One transition (pure; vmap over state/action/key for a batch).

    The action is clipped to the fraction clip(a, 0, 1) as the MDP defines; whether the policy
    stayed inside [-1, 1] is checked outside jit (see `evaluate_policy`). Stepping a done state
    is allowed and meaningless: callers mask it out.

    Args:
      state: LiquidationState with scalar fields.
      action: [] or [1] float action.
      key: PRNG key for the rate noise.

    Returns:
      (next_state, next_obs [3], reward [], done [] bool); done is a true termination.
    """
    cfg = CONFIG
    a = jnp.reshape(jnp.asarray(action, jnp.float32), ())
    frac = jnp.clip(a, 0.0, 1.0)
    money_next = state.money * (1.0 - frac)
    reward = (state.money - money_next) * state.price
    eps = jax.random.normal(key, (), dtype=jnp.float32)
    price_next = jnp.clip(
        state.price + cfg.theta * (cfg.mu - state.price) + cfg.sigma * eps * math.sqrt(cfg.dt),
        cfg.price_low,
        cfg.price_high,
    )
    t_next = state.t + 1
    done = (t_next >= cfg.horizon) | (money_next < cfg.min_money)
    next_state = LiquidationState(t=t_next, money=money_next, price=price_next)
    return next_state, observation(next_state), reward, done


class Trajectory(NamedTuple):
    """Time-major batch of transitions from `rollout` ([H, n, ...])."""

    observations: jax.Array  # [H, n, 3]
    actions: jax.Array  # [H, n, 1] as the policy produced them
    rewards: jax.Array  # [H, n] (0 where not alive)
    next_observations: jax.Array  # [H, n, 3]
    dones: jax.Array  # [H, n] bool, termination of this transition
    alive: jax.Array  # [H, n] bool, this transition happened (episode not over before it)


@functools.partial(jax.jit, static_argnames=("policy_fn", "num_episodes"))
def rollout(policy_fn: PolicyFn, key: jax.Array, num_episodes: int) -> Trajectory:
    """Run `num_episodes` whole episodes in parallel for the full horizon.

    Args:
      policy_fn: (obs [n, 3], key) -> actions [n, 1]; JAX-traceable; hashable (it is a static
        argument of jit, so passing the same object again reuses the compiled rollout).
      key: PRNG key.
      num_episodes: n.

    Returns:
      Trajectory, time-major [H, n, ...] with H = 20; returns are rewards.sum(0).
    """
    return _simulate(policy_fn, key, num_episodes)


@functools.partial(jax.jit, static_argnames=("policy_fn", "num_episodes"))
def rollout_with_params(policy_fn: ParamPolicyFn, params: Any, key: jax.Array,
                        num_episodes: int) -> Trajectory:
    """`rollout` of policy_fn(params, obs, key), with `params` a traced argument.

    One compilation serves every `params` of the same structure, shapes and dtypes: the
    jit cache is keyed by `policy_fn` (static, hashable), the shapes of `params` and
    `num_episodes`, never by the parameter values.

    Args:
      policy_fn: (params, obs [n, 3], key) -> actions [n, 1]; JAX-traceable and hashable.
      params: a pytree of arrays (e.g. one seed's policy parameters).
      key: PRNG key.
      num_episodes: n.

    Returns:
      Trajectory, time-major [H, n, ...] (see `rollout`).
    """
    return _simulate(lambda obs, k: policy_fn(params, obs, k), key, num_episodes)


def _simulate(policy_fn: PolicyFn, key: jax.Array, num_episodes: int) -> Trajectory:
    """The body of `rollout` (traced inside its callers' jit)."""
    n = num_episodes
    k_reset, k_steps = jax.random.split(key)
    state, obs = jax.vmap(reset)(jax.random.split(k_reset, n))

    def body(carry, key_t):
        state, obs, alive = carry
        k_pol, k_env = jax.random.split(key_t)
        act = policy_fn(obs, k_pol)
        if act.shape != (n, ACT_DIM):
            raise ValueError(
                f"the policy must map observations [{n}, {OBS_DIM}] to actions "
                f"[{n}, {ACT_DIM}], got actions of shape {act.shape}"
            )
        next_state, next_obs, reward, done = jax.vmap(step)(state, act, jax.random.split(k_env, n))
        out = Trajectory(obs, act, jnp.where(alive, reward, 0.0), next_obs, done, alive)
        return (next_state, next_obs, alive & ~done), out

    init = (state, obs, jnp.ones((n,), bool))
    _, traj = jax.lax.scan(body, init, jax.random.split(k_steps, CONFIG.horizon))
    chex.assert_shape(traj.rewards, (CONFIG.horizon, n))
    return traj


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


def behaviour_policy(obs: jax.Array, key: jax.Array) -> jax.Array:
    """Behaviour policy of the dataset: hold w.p. 0.8 (a ~ U(-1, 0]) else a ~ U(0, 1].

    Args:
      obs: [n, 3] observations (unused: the behaviour policy ignores the state).
      key: PRNG key.

    Returns:
      [n, 1] float32 actions.
    """
    n = obs.shape[0]
    k_hold, k_u = jax.random.split(key)
    hold = jax.random.uniform(k_hold, (n, 1)) < CONFIG.behaviour_hold_prob
    u = jax.random.uniform(k_u, (n, 1))  # [0, 1)
    return jnp.where(hold, -u, 1.0 - u)


def all_at_once_policy(obs: jax.Array) -> jax.Array:
    """Convert everything at t = 0 (action 1). obs [n, 3] -> actions [n, 1]."""
    return jnp.ones((obs.shape[0], ACT_DIM), jnp.float32)


def equal_shares_policy(obs: jax.Array) -> jax.Array:
    """TWAP: at step t convert 1/(20 - t) of what is left (5 units per step from 100)."""
    t = jnp.clip(jnp.round(obs[:, 0]), 0, CONFIG.horizon - 1)
    return (1.0 / (CONFIG.horizon - t))[:, None].astype(jnp.float32)


def last_step_policy(obs: jax.Array) -> jax.Array:
    """Hold until the last step t = 19, then convert everything."""
    t = jnp.round(obs[:, 0])
    return jnp.where(t >= CONFIG.horizon - 1, 1.0, -1.0)[:, None].astype(jnp.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class ThresholdPolicy:
    """Sell everything iff p >= thresholds[t], else hold: the optimal-stopping policy.

    Hashable by identity, so jit reuses the compiled rollout for the same object.
    """

    thresholds: np.ndarray  # [20] float

    def __call__(self, obs: jax.Array) -> jax.Array:
        thr = jnp.asarray(self.thresholds, jnp.float32)
        t = jnp.clip(jnp.round(obs[:, 0]).astype(jnp.int32), 0, CONFIG.horizon - 1)
        return jnp.where(obs[:, 2] >= thr[t], 1.0, -1.0)[:, None].astype(jnp.float32)


def make_dp_policy(thresholds: np.ndarray | None = None) -> ThresholdPolicy:
    """The DP-optimal policy as an act_fn (obs [n, 3] -> actions [n, 1]).

    Args:
      thresholds: [20] price thresholds per step; default `dp_optimum().thresholds`.
    """
    if thresholds is None:
        thresholds = dp_optimum().thresholds
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (CONFIG.horizon,):
        raise ValueError(f"thresholds must have shape ({CONFIG.horizon},), got {thresholds.shape}")
    return ThresholdPolicy(thresholds)


@dataclasses.dataclass(frozen=True, eq=False)
class _Deterministic:
    """Adapts act_fn(obs) to policy_fn(obs, key); hash/eq follow act_fn (jit cache reuse).

    An unhashable act_fn is compared by identity instead, so it still works as a static
    argument of jit.
    """

    act_fn: ActFn

    def __hash__(self) -> int:
        try:
            return hash(self.act_fn)
        except TypeError:
            return id(self.act_fn)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Deterministic):
            return NotImplemented
        if self.act_fn is other.act_fn:
            return True
        try:
            return bool(self.act_fn == other.act_fn)
        except Exception:  # e.g. array-valued ==
            return False

    def __call__(self, obs: jax.Array, key: jax.Array) -> jax.Array:
        del key
        return jnp.asarray(self.act_fn(obs), jnp.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class _DeterministicWithParams(_Deterministic):
    """Adapts act_fn(params, obs) to policy_fn(params, obs, key) (same hash/eq as the parent)."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return super().__eq__(other)

    __hash__ = _Deterministic.__hash__

    def __call__(self, params: Any, obs: jax.Array, key: jax.Array) -> jax.Array:  # type: ignore[override]
        del key
        return jnp.asarray(self.act_fn(params, obs), jnp.float32)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def generate_dataset(seed: int = 0, num_transitions: int = 200_000) -> dict[str, np.ndarray]:
    """Behaviour-policy data in the D4RL schema, deterministic from the seed.

    Whole episodes are simulated in the JAX environment (chunks of 4096 episodes, chunk i with
    key fold_in(PRNGKey(seed), i)) and laid out episode after episode; the last episode is cut
    to reach exactly `num_transitions`, and the cut row, unless it is a true termination, is
    marked as a time-out as D4RL would. A smaller dataset of a seed is a prefix of a larger one.

    Args:
      seed: integer seed.
      num_transitions: N > 0 rows.

    Returns:
      dict with observations [N, 3] f32, actions [N, 1] f32, rewards [N] f32,
      next_observations [N, 3] f32, terminals [N] bool (true at every episode end: the
      episode ends are always true terminations here), timeouts [N] bool (false except
      possibly the last row).
    """
    if isinstance(num_transitions, bool) or not isinstance(num_transitions, (int, np.integer)):
        raise ValueError(f"num_transitions must be a positive int, got {num_transitions!r}")
    if num_transitions <= 0:
        raise ValueError(f"num_transitions must be positive, got {num_transitions}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    base = jax.random.PRNGKey(int(seed))
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals")
    }
    total, chunk = 0, 0
    while total < num_transitions:
        traj = jax.device_get(
            rollout(behaviour_policy, jax.random.fold_in(base, chunk), DATASET_CHUNK_EPISODES)
        )
        # episode-major [n, H, ...]; boolean indexing keeps episodes whole and in time order
        alive = np.swapaxes(traj.alive, 0, 1)
        parts["observations"].append(np.swapaxes(traj.observations, 0, 1)[alive])
        parts["actions"].append(np.swapaxes(traj.actions, 0, 1)[alive])
        parts["rewards"].append(np.swapaxes(traj.rewards, 0, 1)[alive])
        parts["next_observations"].append(np.swapaxes(traj.next_observations, 0, 1)[alive])
        parts["terminals"].append(np.swapaxes(traj.dones, 0, 1)[alive])
        total += int(alive.sum())
        chunk += 1
    n = num_transitions
    data = {k: np.concatenate(v)[:n] for k, v in parts.items()}
    data["observations"] = data["observations"].astype(np.float32)
    data["actions"] = data["actions"].astype(np.float32)
    data["rewards"] = data["rewards"].astype(np.float32)
    data["next_observations"] = data["next_observations"].astype(np.float32)
    data["terminals"] = data["terminals"].astype(bool)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[-1] = not data["terminals"][-1]
    data["timeouts"] = timeouts
    return data


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _check_actions(traj: Trajectory) -> None:
    acts = np.asarray(traj.actions)[..., 0][np.asarray(traj.alive)]
    n_nan = int(np.sum(~np.isfinite(acts)))
    n_out = int(np.sum(np.abs(acts[np.isfinite(acts)]) > 1.0))
    if n_nan or n_out:
        raise LiquidationActionError(
            f"the policy produced {n_nan} non-finite and {n_out} out-of-range (|a| > 1) actions "
            f"out of {acts.size} taken; actions must lie in [-1, 1]: squash the output with "
            "tanh or clip it inside act_fn, and check the policy parameters for NaN"
        )


def monte_carlo_returns(policy_fn: PolicyFn | ParamPolicyFn, num_episodes: int, seed: int = 0,
                        params: Any = None) -> np.ndarray:
    """Returns of a (possibly stochastic) policy_fn(obs, key) over `num_episodes` episodes.

    Args:
      policy_fn: (obs [n, 3], key) -> actions [n, 1], JAX-traceable and hashable; with
        `params`, (params, obs [n, 3], key) -> actions [n, 1] (see `rollout_with_params`).
      num_episodes: number of episodes n.
      seed: integer seed.
      params: optional pytree handed to policy_fn as a traced argument (no recompilation
        for new values of the same shapes).

    Returns:
      [n] float64 raw returns. Raises LiquidationActionError if an action taken was not
      finite or outside [-1, 1].
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)):
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    if num_episodes <= 0:
        raise ValueError(f"num_episodes must be positive, got {num_episodes}")
    key = jax.random.PRNGKey(int(seed))
    if params is None:
        traj = rollout(policy_fn, key, int(num_episodes))
    else:
        traj = rollout_with_params(policy_fn, params, key, int(num_episodes))
    traj = jax.device_get(traj)
    _check_actions(traj)
    return np.asarray(traj.rewards, dtype=np.float64).sum(axis=0)


def evaluate_policy(act_fn: ActFn | ParamActFn, num_episodes: int = 1000, seed: int = 0,
                    params: Any = None) -> np.ndarray:
    """Raw returns of a deterministic policy, all episodes in one jitted vmap/scan rollout.

    Two call forms:

    - `evaluate_policy(act_fn, n, seed)`: act_fn(obs). The compiled rollout is cached per
      act_fn object, so a new closure (e.g. over another seed's parameters) recompiles.
    - `evaluate_policy(act_fn, n, seed, params=p)`: act_fn(params, obs) with `params` a traced
      argument of ONE jitted rollout, cached per act_fn object and the shapes of `params`:
      evaluating many parameter sets with the same act_fn compiles once.

    Args:
      act_fn: obs [n, 3] float32 -> actions [n, 1] in [-1, 1] (or (params, obs) -> actions
        when `params` is given); must be JAX-traceable.
      num_episodes: number of episodes n (BENCHMARKS.md asks for at least 1000).
      seed: integer seed (episodes are common random numbers across policies).
      params: optional pytree of arrays passed to act_fn as its first argument.

    Returns:
      [n] float64 raw returns (normalise with `score_summary`). Raises
      LiquidationActionError (a ValueError) if any action taken was NaN or |a| > 1.
    """
    if params is None:
        return monte_carlo_returns(_Deterministic(act_fn), num_episodes, seed)
    return monte_carlo_returns(_DeterministicWithParams(act_fn), num_episodes, seed, params=params)


@functools.lru_cache(maxsize=1)
def _dp_act_fn() -> ThresholdPolicy:
    return make_dp_policy()  # one object: the rollout compiles once per episode count


def optimum_returns(num_episodes: int = 1000, seed: int = 0) -> np.ndarray:
    """Returns of the DP-optimal policy on the very episodes `evaluate_policy(., num_episodes, seed)`
    draws for any other policy.

    The rate path of an episode does not depend on the actions (p' uses only p and the noise,
    and the noise keys come from `seed` alone), so every deterministic policy evaluated with the
    same (num_episodes, seed) meets the same price paths; this gives the optimum's return on
    each of them, and optimum_returns - returns is a per-path gap to the optimum whose mean
    estimates the expected gap with the price noise common to both largely cancelled.

    Returns:
      [num_episodes] float64 raw returns of `make_dp_policy()`.
    """
    return evaluate_policy(_dp_act_fn(), num_episodes, seed)


def best_schedule_returns(num_episodes: int = 1000, seed: int = 0) -> tuple[str, np.ndarray]:
    """The best of the fixed schedules (`SCHEDULES`: all at once, equal shares, all at the last
    step) on the very episodes of `evaluate_policy(., num_episodes, seed)`: the bar a learned
    policy must clear before learning paid.

    Returns:
      (its name, [num_episodes] float64 raw returns).
    """
    runs = {name: monte_carlo_returns(fn, num_episodes, seed) for name, fn in SCHEDULES.items()}
    name = max(runs, key=lambda k: runs[k].mean())
    return name, runs[name]


def normalize_score(raw_return: Any) -> Any:
    """D4RL-normalised score 100 (R - 0) / (135 - 0) (`jaxrl_bayes.scores.normalized_score`)."""
    return normalized_score(raw_return, REF_MIN_SCORE, REF_MAX_SCORE)


def score_summary(returns: np.ndarray) -> dict[str, float]:
    """Summary of raw returns.

    Args:
      returns: [n] raw episode returns.

    Returns:
      dict with num_episodes, return_mean, return_std, return_se (standard error of the mean),
      normalized_mean, normalized_std (100 R / 135), fraction_of_optimum (mean return over the
      DP optimum's expected return) and optimum_return.
    """
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if r.size == 0:
        raise ValueError("score_summary needs at least one return")
    opt = dp_optimum().expected_return
    std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    return {
        "num_episodes": int(r.size),
        "return_mean": float(r.mean()),
        "return_std": std,
        "return_se": std / math.sqrt(r.size),
        "normalized_mean": float(normalize_score(r.mean())),
        "normalized_std": float(100.0 * std / (REF_MAX_SCORE - REF_MIN_SCORE)),
        "fraction_of_optimum": float(r.mean() / opt),
        "optimum_return": float(opt),
    }


# --------------------------------------------------------------------------------------------
# Exact optimum and reference values
# --------------------------------------------------------------------------------------------


class DPResult(NamedTuple):
    """The exact optimum of the liquidation MDP (dynamic programming on a price grid)."""

    expected_return: float  # 100 E[v(0, p_0)]
    normalized: float  # 100 expected_return / 135
    value_table: np.ndarray  # [20, n] v(t, p): value per unit of money
    price_grid: np.ndarray  # [n] on [0, 5]
    thresholds: np.ndarray  # [20] sell everything iff p >= thresholds[t]


def _price_model_kwargs() -> dict[str, Any]:
    cfg = CONFIG
    return dict(
        horizon=cfg.horizon,
        theta=cfg.theta,
        mu=cfg.mu,
        sigma=cfg.sigma,
        dt=cfg.dt,
        p0_mean=cfg.p0_mean,
        p0_std=cfg.p0_std,
        lo=cfg.price_low,
        hi=cfg.price_high,
    )


@functools.lru_cache(maxsize=4)
def dp_optimum(num_grid: int = DP_NUM_GRID) -> DPResult:
    """Optimal expected return by dynamic programming (cached).

    Reward linear in the fraction sold makes V(t, m, p) = m v(t, p) with v(19, p) = p and
    v(t, p) = max(p, E[v(t + 1, p') | p]): an all-or-nothing stopping rule, for which the
    m' < 0.1 cut never binds. Expectations are exact for the piecewise-linear interpolant on
    the grid, including the clip of p' to [0, 5] and the Gaussian p_0 (see liquidation_dp).

    Args:
      num_grid: price-grid nodes on [0, 5].

    Returns:
      DPResult (arrays are read-only).
    """
    sol = liquidation_dp.solve_optimal_stopping(num_grid=num_grid, **_price_model_kwargs())
    value = CONFIG.initial_money * sol.expected_unit_value
    for arr in (sol.value_table, sol.price_grid, sol.thresholds):
        arr.setflags(write=False)
    return DPResult(
        expected_return=float(value),
        normalized=float(normalize_score(value)),
        value_table=sol.value_table,
        price_grid=sol.price_grid,
        thresholds=sol.thresholds,
    )


@functools.lru_cache(maxsize=1)
def expected_prices() -> np.ndarray:
    """[20] E[p_t] of the clipped rate (forward propagation on the DP grid; read-only)."""
    out = liquidation_dp.expected_prices(num_grid=DP_NUM_GRID, **_price_model_kwargs())
    out.setflags(write=False)
    return out


def behaviour_expected_sales() -> np.ndarray:
    """[20] E[amount converted at step t] under the behaviour policy, exact with the m' < 0.1 cut.

    Money and behaviour actions are independent of the rate. Writing m_t = 100 exp(-G_t), each
    step multiplies by 1 - f with f = 0 w.p. 0.8, U(0, 1] w.p. 0.2, and -log(1 - U) ~ Exp(1), so
    G_t ~ Gamma(K, 1) with K ~ Binomial(t, 0.2). The episode is still running at step t iff
    m_t >= 0.1, i.e. G_t <= c = log(1000), and the expected sale is E[f] m_t = 0.1 m_t. Hence
    E[sale_t] = 0.1 * 100 * sum_k Bin(k; t, 0.2) 2^-k P(k, 2c) with P the regularised lower
    incomplete gamma function (P(0, x) = 1).
    """
    cfg = CONFIG
    q = 1.0 - cfg.behaviour_hold_prob
    mean_frac = q * 0.5
    c = math.log(cfg.initial_money / cfg.min_money)

    def lower_gamma_p(k: int, x: float) -> float:  # integer k: 1 - e^-x sum_{i<k} x^i / i!
        if k == 0:
            return 1.0
        return 1.0 - math.exp(-x) * sum(x**i / math.factorial(i) for i in range(k))

    out = np.zeros(cfg.horizon)
    for t in range(cfg.horizon):
        alive_money = sum(
            math.comb(t, k) * q**k * (1 - q) ** (t - k) * 2.0**-k * lower_gamma_p(k, 2 * c)
            for k in range(t + 1)
        )
        out[t] = mean_frac * cfg.initial_money * alive_money
    return out


def fixed_policy_values_analytic() -> dict[str, float]:
    """Expected returns of the fixed schedules from E[p_t] (`expected_prices`).

    all_at_once = 100 E[p_0]; equal_shares = 5 sum_t E[p_t]; last_step = 100 E[p_19];
    behaviour = sum_t E[sale_t] E[p_t] (`behaviour_expected_sales`: the behaviour policy and
    the money path are independent of the rate).
    """
    cfg = CONFIG
    ep = expected_prices()
    return {
        "all_at_once": float(cfg.initial_money * ep[0]),
        "equal_shares": float(cfg.initial_money / cfg.horizon * ep.sum()),
        "last_step": float(cfg.initial_money * ep[-1]),
        "behaviour": float(behaviour_expected_sales() @ ep),
    }


# the one-line schedules that ignore the price
SCHEDULES: dict[str, PolicyFn] = {
    "all_at_once": _Deterministic(all_at_once_policy),
    "equal_shares": _Deterministic(equal_shares_policy),
    "last_step": _Deterministic(last_step_policy),
}
FIXED_POLICIES: dict[str, PolicyFn] = {**SCHEDULES, "behaviour": behaviour_policy}


def reference_table(num_episodes: int = 200_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Reference values: the DP optimum, the DP policy and the fixed schedules.

    Args:
      num_episodes: Monte Carlo episodes per policy (JAX environment).
      seed: integer seed; policy i uses seed + i.

    Returns:
      {name: {return_mean, return_std, return_se, normalized, fraction_of_optimum, analytic}}
      for names dp_optimum (exact; std/se are nan), dp_policy, all_at_once, equal_shares,
      last_step, behaviour. `analytic` is the closed-form value (nan where none).
    """
    dp = dp_optimum()
    analytic = fixed_policy_values_analytic()
    table: dict[str, dict[str, float]] = {
        "dp_optimum": {
            "return_mean": dp.expected_return,
            "return_std": math.nan,
            "return_se": math.nan,
            "normalized": dp.normalized,
            "fraction_of_optimum": 1.0,
            "analytic": dp.expected_return,
        }
    }
    policies: dict[str, PolicyFn] = {"dp_policy": _Deterministic(make_dp_policy(dp.thresholds))}
    policies.update(FIXED_POLICIES)
    for i, (name, fn) in enumerate(policies.items()):
        s = score_summary(monte_carlo_returns(fn, num_episodes, seed + i))
        table[name] = {
            "return_mean": s["return_mean"],
            "return_std": s["return_std"],
            "return_se": s["return_se"],
            "normalized": s["normalized_mean"],
            "fraction_of_optimum": s["fraction_of_optimum"],
            "analytic": analytic.get(name, dp.expected_return if name == "dp_policy" else math.nan),
        }
    return table
