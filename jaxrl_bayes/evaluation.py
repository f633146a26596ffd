"""Policy evaluation in Gymnasium environments, and the normalised score.

`evaluate_gym` runs a deterministic policy for exactly `num_episodes` episodes in a Gymnasium
1.x `SyncVectorEnv` and returns each episode's raw return. Episode k (k = 0 .. num_episodes-1)
starts from `reset(seed=episode_seed(seed, k))`, whichever sub-environment runs it, so the
returns do not depend on `num_envs` and equal stepping one environment by hand with the same
seeds. `episode_seed` gives two evaluation seeds disjoint sets of episodes (seed + k would
give seeds 0 and 1 all but one episode in common).
`gym_episodes` gives per episode also the discounted return, the length and the observation it
started from (`Episodes`).

Gymnasium 1.x vector envs autoreset on the step *after* an episode ends (`NEXT_STEP`), which
would add a dummy step with reward 0 and an unseeded reset. We use `AutoresetMode.DISABLED`
instead and reset the finished sub-environments ourselves with `reset_mask`, each with its
next episode's seed; sub-environments with no episode left keep running but are not counted.

`normalized_score` is D4RL's score (Fu et al., 2020, `d4rl.get_normalized_score`) times 100:
100 (R - R_random) / (R_expert - R_random). It lives in the leaf module `jaxrl_bayes.scores`
(the only implementation in the project) and is re-exported here; the liquidation environment
imports it from there, so that module and this one do not import each other.

A dataset's task: `jaxrl_bayes.data.registry.DatasetSpec` holds facts only (evaluation
environment, reference scores, widths); `evaluator_for(spec)`, `evaluate_on(spec, ...)` and
`normalize_for(spec, returns)` (where `has_references(spec)`) build the evaluation and the
normalised score from them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from jaxrl_bayes.data.dataset import episode_breaks
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.scores import normalized_score  # re-exported: evaluation.normalized_score

ActFn = Callable[[Any], Any]
# evaluator(act_fn, num_episodes, seed) -> returns; evaluators that take a `params` keyword
# also accept evaluator(act_fn, num_episodes, seed, params=p) with act_fn(params, obs).
EvalFn = Callable[..., np.ndarray]
# At most this many sub-environments unless asked (BENCHMARKS.md: >= 10 locomotion episodes).
DEFAULT_NUM_ENVS = 10


class Episodes(NamedTuple):
    """Per-episode records of an evaluation, in episode order (episode k = 0 .. num_episodes-1)."""

    returns: np.ndarray  # float64 [num_episodes]: undiscounted raw returns
    discounted_returns: np.ndarray  # float64 [num_episodes]: sum_t discount^t r_t (raw units) from the first state
    lengths: np.ndarray  # float64 [num_episodes]: steps per episode
    # float32 [num_episodes, obs_dim]: the observation episode k started from (its reset with
    # seed + k), as the policy saw it; where a critic's value is set beside the episode's return
    first_obs: np.ndarray


# episodes one evaluation seed may hold: episode k of seed s resets with s * EPISODES_PER_SEED + k
EPISODES_PER_SEED = 2**20


def episode_seed(seed: int, k: int) -> int:
    """The reset seed of episode k of evaluation seed `seed`: s * 2^20 + k, so the episodes of two
    different non-negative evaluation seeds never coincide (for k < 2^20)."""
    if seed < 0 or not 0 <= k < EPISODES_PER_SEED:
        raise ValueError(f"evaluation seed must be >= 0 and episode index in [0, {EPISODES_PER_SEED}), "
                         f"got seed {seed}, episode {k}")
    return int(seed) * EPISODES_PER_SEED + int(k)


def evaluate_gym(env_id: Any, act_fn: ActFn, num_episodes: int = 10, seed: int = 0,
                 num_envs: Optional[int] = None, jit: bool = True, params: Any = None) -> np.ndarray:
    """Raw returns [num_episodes] of a deterministic policy in a Gymnasium environment
    (`gym_episodes(...).returns`; arguments as there)."""
    return gym_episodes(env_id, act_fn, num_episodes, seed, num_envs, jit, params).returns


def gym_episodes(env_id: Any, act_fn: ActFn, num_episodes: int = 10, seed: int = 0,
                 num_envs: Optional[int] = None, jit: bool = True, params: Any = None,
                 discount: float = 1.0, on_transition: Optional[Callable[..., None]] = None) -> Episodes:
    """Returns, discounted returns and lengths of a deterministic policy's episodes.

    Args:
      env_id: a Gymnasium id ('Hopper-v4') or `EnvSpec` (e.g. one recorded by Minari).
      act_fn: maps observations [num_envs, obs_dim] (float32) to actions
        [num_envs, act_dim]; JAX-traceable unless `jit=False`. Actions are clipped to the
        action space's bounds. With `params`: act_fn(params, obs) -> actions.
      num_episodes: episodes to complete (>= 1).
      seed: episode k is reset with `episode_seed(seed, k)`.
      num_envs: sub-environments (default min(num_episodes, 10)).
      jit: wrap `act_fn` in `jax.jit` (compiled once: the batch shape is fixed).
      params: optional pytree of arrays passed to act_fn as its first argument. It is an
        argument of the jitted act_fn, not a constant in it, so evaluating many parameter sets
        with the same act_fn object compiles once (the jit cache is keyed by act_fn and shapes).
      discount: gamma of `discounted_returns`.
      on_transition: optional; called after every step with (obs, actions, next_obs, terminated)
        of the sub-environments that ran one of the episodes (float32 / clipped actions / bool
        arrays with a leading sub-env axis): the policy's own real transitions, for example to
        measure a model along them.

    Returns:
      Episodes, in episode order, with each episode's first observation.

    Raises:
      ValueError: num_episodes or num_envs < 1, or act_fn returns a wrong shape or NaN.
    """
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    n = min(num_episodes, DEFAULT_NUM_ENVS if num_envs is None else num_envs)
    if n < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if jit:
        import jax

        # jax.jit's caches are keyed by the function object: the same act_fn compiles once
        act_fn = jax.jit(act_fn)
    if params is not None:
        act_fn = functools.partial(act_fn, params)
    envs = gym.vector.SyncVectorEnv([functools.partial(gym.make, env_id) for _ in range(n)],
                                    autoreset_mode=AutoresetMode.DISABLED)
    try:
        space = envs.single_action_space
        out = Episodes(*(np.zeros(num_episodes, dtype=np.float64) for _ in range(3)),
                       first_obs=np.zeros((num_episodes,) + envs.single_observation_space.shape, np.float32))
        running, running_disc, steps = (np.zeros(n, dtype=np.float64) for _ in range(3))
        episode_of = np.arange(n)  # episode each sub-env is running; -1 when idle
        next_episode, completed = n, 0
        obs, _ = envs.reset(seed=[episode_seed(seed, k) for k in range(n)])
        out.first_obs[:n] = obs
        while completed < num_episodes:
            actions = np.asarray(act_fn(np.asarray(obs, dtype=np.float32)), dtype=np.float64)
            if actions.shape != (n,) + space.shape:
                raise ValueError(f"act_fn returned shape {actions.shape}, expected "
                                 f"{(n,) + space.shape} for {env_id}")
            if not np.all(np.isfinite(actions)):
                raise ValueError("act_fn returned non-finite actions")
            actions = np.clip(actions, space.low, space.high).astype(space.dtype)
            before, running_env = obs, episode_of >= 0
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            if on_transition is not None and running_env.any():
                on_transition(np.asarray(before[running_env], np.float32), actions[running_env],
                              np.asarray(obs[running_env], np.float32), np.asarray(terminated[running_env], bool))
            running += rewards
            running_disc += discount ** steps * rewards
            steps += 1
            ended = np.logical_or(terminated, truncated)
            if not ended.any():
                continue
            seeds: list[Optional[int]] = [None] * n
            for i in np.flatnonzero(ended):
                if episode_of[i] >= 0:
                    k = episode_of[i]
                    out.returns[k], out.discounted_returns[k], out.lengths[k] = running[i], running_disc[i], steps[i]
                    completed += 1
                running[i] = running_disc[i] = steps[i] = 0.0
                if next_episode < num_episodes:
                    episode_of[i], seeds[i] = next_episode, episode_seed(seed, next_episode)
                    next_episode += 1
                else:
                    episode_of[i] = -1
            obs, _ = envs.reset(seed=seeds, options={"reset_mask": ended})
            for i in np.flatnonzero(ended):
                if seeds[i] is not None:  # episode episode_of[i] starts here
                    out.first_obs[episode_of[i]] = obs[i]
    finally:
        envs.close()
    return out


def value_in_learning_units(discounted_returns, lengths, discount: float, shift: float, scale: float) -> np.ndarray:
    """Discounted raw returns in a learner's reward units r~ = (r - shift) / scale.

    sum_t g^t (r_t - shift) / scale = (G - shift sum_{t<T} g^t) / scale, with
    sum_{t<T} g^t = (1 - g^T) / (1 - g) (= T when g = 1): the Monte Carlo value a critic
    trained on r~ should predict for the episode's first state.

    Args:
      discounted_returns: [E] raw discounted returns G.
      lengths: [E] episode lengths T.
      discount: g.
      shift, scale: the learner's reward units (`data.dataset.reward_normalizer`).

    Returns:
      float64 [E].
    """
    g, t = float(discount), np.asarray(lengths, dtype=np.float64)
    horizon = t if g == 1.0 else (1.0 - g ** t) / (1.0 - g)
    return (np.asarray(discounted_returns, dtype=np.float64) - shift * horizon) / scale


def episode_returns(observations, next_observations, rewards, terminals) -> np.ndarray:
    """Undiscounted returns of the complete episodes in flat transitions (the behaviour policy's).

    An episode ends at a terminal row, or where the data jump: row i's next observation is not
    row i+1's observation (a timeout, whose row D4RL's Q-learning view drops). A final stretch
    that ends in neither is incomplete and left out. Where a timeout row was dropped, its one
    reward is missing from its episode's return.

    Args:
      observations: [n, obs_dim].
      next_observations: [n, obs_dim].
      rewards: [n] raw rewards.
      terminals: [n], nonzero where the episode terminated.

    Returns:
      float64 array [num_complete_episodes] in data order (may be empty).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    ends = np.flatnonzero(episode_breaks(observations, next_observations, terminals))
    if ends.size == 0:
        return np.zeros(0, dtype=np.float64)
    sums = np.cumsum(rewards)[ends]
    return np.diff(sums, prepend=0.0)


class BehaviourScore(NamedTuple):
    """The dataset's behaviour policy: mean return of its complete episodes."""

    episodes: int  # complete episodes found
    raw_return: Optional[float]  # mean undiscounted return (None without complete episodes)
    raw_return_std: Optional[float]  # population std over episodes
    normalized_score: Optional[float]  # `normalized_score` of the mean (None without references)


def behaviour_score(dataset: Any, ref_min: Optional[float], ref_max: Optional[float]) -> BehaviourScore:
    """`episode_returns` of a `jaxrl_bayes.data.Dataset`, summarized and normalized.

    Args:
      dataset: any object with observations, next_observations, rewards, terminals arrays.
      ref_min, ref_max: reference returns, or None (then only the raw return is given).

    Returns:
      BehaviourScore.
    """
    returns = episode_returns(dataset.observations, dataset.next_observations, dataset.rewards,
                              dataset.terminals)
    if returns.size == 0:
        return BehaviourScore(0, None, None, None)
    mean = float(returns.mean())
    norm = None if ref_min is None or ref_max is None else float(normalized_score(mean, ref_min, ref_max))
    return BehaviourScore(int(returns.size), mean, float(returns.std()), norm)


# ----------------------------------------------------------------------------- a dataset's task


def evaluator_for(spec: Any) -> Optional[EvalFn]:
    """The evaluator of a dataset's task, built from its `DatasetSpec`'s facts.

    Args:
      spec: a `jaxrl_bayes.data.registry.DatasetSpec` (family, eval_env_spec are read).

    Returns:
      (act_fn, num_episodes, seed, params=None) -> raw returns [num_episodes]: the pure-JAX
      liquidation environment (`jaxrl_bayes.envs.liquidation`, imported when called) for the
      liquidation family, `evaluate_gym` in `spec.eval_env_spec` where there is one, else None
      (no evaluation environment: returns cannot be measured).
    """
    if spec.family == "liquidation":
        return _liquidation_evaluate
    if spec.eval_env_spec is not None:
        return functools.partial(_gym_evaluate, spec.eval_env_spec)
    return None


def _gym_evaluate(env: Any, act_fn, num_episodes, seed, params=None):
    return evaluate_gym(env, act_fn, num_episodes=num_episodes, seed=seed, params=params)


def _liquidation_evaluate(act_fn, num_episodes, seed, params=None):
    from jaxrl_bayes.envs import liquidation

    return _call_evaluator(liquidation.evaluate_policy, act_fn, num_episodes, seed, params)


def _call_evaluator(evaluator: EvalFn, act_fn, num_episodes, seed, params):
    """evaluator(act_fn, num_episodes, seed), with a `params=` keyword only when params are given:
    evaluators without one (the old call form, also what stand-in modules implement) still work."""
    if params is None:
        return evaluator(act_fn, num_episodes, seed)
    return evaluator(act_fn, num_episodes, seed, params=params)


def evaluate_on(spec: Any, act_fn: Callable[..., Any], num_episodes: int = 10, seed: int = 0,
                params: Any = None) -> np.ndarray:
    """Raw returns [num_episodes] of the deterministic policy `act_fn` on a dataset's task.

    Args:
      spec: the dataset's `DatasetSpec` (`evaluator_for`).
      act_fn: observations [batch, obs_dim] -> actions [batch, act_dim], JAX-traceable;
        with `params`, (params, observations) -> actions.
      num_episodes: episodes (BENCHMARKS.md: >= 10 locomotion, >= 1000 liquidation).
      seed: evaluation seed.
      params: optional pytree of arrays handed to act_fn as a traced argument: evaluating
        many parameter sets with one act_fn object compiles the evaluation once. The
        evaluator is called with a `params=` keyword only when params are given.

    Raises:
      UserError: the dataset has no evaluation environment.
    """
    evaluator = evaluator_for(spec)
    if evaluator is None:
        raise UserError(f"dataset {spec.name!r} has no evaluation environment, so returns "
                        f"cannot be measured; give one (a Gymnasium id) with eval_env")
    return np.asarray(_call_evaluator(evaluator, act_fn, num_episodes, seed, params), dtype=np.float64)


def has_references(spec: Any) -> bool:
    """Whether a `DatasetSpec` has both reference scores, so that `normalize_for` can normalise."""
    return spec.ref_min_score is not None and spec.ref_max_score is not None


def normalize_for(spec: Any, returns) -> np.ndarray:
    """`normalized_score` of raw returns with a dataset's reference scores.

    Raises:
      UserError: the `DatasetSpec` has no reference scores (`has_references`).
    """
    if not has_references(spec):
        raise UserError(f"no reference scores for {spec.name!r}; report raw returns, or give "
                        f"ref_min_score and ref_max_score")
    return normalized_score(returns, spec.ref_min_score, spec.ref_max_score)
