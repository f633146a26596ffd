"""The vector-env runner: SAME_STEP autoreset, true final observations, exact MuJoCo state.

Every transition of every sub-environment of a Gymnasium vector env is recorded with
`terminals` (the environment's `terminated`: a fall) and `timeouts` (its `truncated`: the time
limit) kept apart. The vector env runs in `SAME_STEP` autoreset mode, so the true final
observation of an episode (`info["final_obs"]`) is its `next_observation` and no transition
crosses a reset. `VecRunner.get_state` / `set_state` save and restore each sub-environment's
exact MuJoCo integration state (`mj_getState`), time-limit counter and RNG, so a resumed
collection continues the interrupted episodes instead of cutting them.
"""

from __future__ import annotations

from typing import Callable, Optional

import gymnasium as gym
import jax
import numpy as np

from jaxrl_bayes.collect.config import CollectConfig, GenerateError
from jaxrl_bayes.collect.episodes import LevelData, episodes_from_stream



def make_vec_env(env_id: str, num_envs: int, max_episode_steps: int) -> gym.vector.SyncVectorEnv:
    """A synchronous vector env in SAME_STEP autoreset mode (final obs in info)."""
    return gym.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        max_episode_steps=max_episode_steps,
    )


def _time_limit(env: gym.Env):
    w = env
    while isinstance(w, gym.Wrapper):
        if isinstance(w, gym.wrappers.TimeLimit):
            return w
        w = w.env
    return None


def _get_sim_state(env: gym.Env) -> Optional[np.ndarray]:
    u = env.unwrapped
    if hasattr(u, "model") and hasattr(u, "data"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(u.model, spec), np.float64)
        mujoco.mj_getState(u.model, u.data, state, spec)
        return state
    if hasattr(u, "state") and u.state is not None:  # classic control
        return np.array(u.state, np.float64)
    return None


def _set_sim_state(env: gym.Env, state: np.ndarray) -> None:
    u = env.unwrapped
    if hasattr(u, "model") and hasattr(u, "data"):
        import mujoco

        mujoco.mj_setState(u.model, u.data, np.asarray(state, np.float64),
                           mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(u.model, u.data)
    else:
        u.state = np.array(state, dtype=np.asarray(u.state).dtype)


class Stream:
    """Host recording of every transition of a vector env, in step order.

    Rows are appended `num_envs` at a time; `env_index` says which sub-env made each row.
    """

    FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals",
              "truncations", "env_index")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity = capacity
        self.count = 0
        self.arrays = {
            "observations": np.zeros((capacity, obs_dim), np.float32),
            "actions": np.zeros((capacity, act_dim), np.float32),
            "rewards": np.zeros((capacity,), np.float32),
            "next_observations": np.zeros((capacity, obs_dim), np.float32),
            "terminals": np.zeros((capacity,), bool),
            "truncations": np.zeros((capacity,), bool),
            "env_index": np.zeros((capacity,), np.int32),
        }

    def add(self, obs, act, rew, next_obs, term, trunc) -> None:
        n = len(rew)
        if self.count + n > self.capacity:
            self.grow(max(self.capacity * 2, self.count + n))
        s = slice(self.count, self.count + n)
        a = self.arrays
        a["observations"][s], a["actions"][s], a["rewards"][s] = obs, act, rew
        a["next_observations"][s], a["terminals"][s], a["truncations"][s] = next_obs, term, trunc
        a["env_index"][s] = np.arange(n)
        self.count += n

    def grow(self, capacity: int) -> None:
        for k, v in self.arrays.items():
            new = np.zeros((capacity,) + v.shape[1:], v.dtype)
            new[: self.count] = v[: self.count]
            self.arrays[k] = new
        self.capacity = capacity

    def view(self, n: Optional[int] = None) -> dict[str, np.ndarray]:
        n = self.count if n is None else min(n, self.count)
        return {k: v[:n] for k, v in self.arrays.items()}


class VecRunner:
    """Steps a SAME_STEP vector env and yields transitions with correct next observations."""

    def __init__(self, env_id: str, num_envs: int, max_episode_steps: int, seed: int):
        self.envs = make_vec_env(env_id, num_envs, max_episode_steps)
        self.num_envs = num_envs
        self.obs, _ = self.envs.reset(seed=seed)
        space = self.envs.single_action_space
        if not isinstance(space, gym.spaces.Box):
            raise GenerateError(f"{env_id} has a {type(space).__name__} action space; SAC "
                                f"needs a continuous Box action space")
        self.low = np.asarray(space.low, np.float64)
        self.high = np.asarray(space.high, np.float64)

    def to_env_action(self, a: np.ndarray) -> np.ndarray:
        """Maps policy actions in [-1, 1] to the env's action box."""
        return self.low + (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)

    def step(self, policy_action: np.ndarray):
        """One vector step; returns (obs, env_action, reward, next_obs, terminated, truncated)."""
        act = self.to_env_action(np.asarray(policy_action, np.float64))
        obs = self.obs
        new_obs, rew, term, trunc, info = self.envs.step(act)
        next_obs = np.array(new_obs, np.float64, copy=True)
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                next_obs[i] = info["final_obs"][i]
        self.obs = new_obs
        return obs, act, rew, next_obs, term, trunc

    def get_state(self) -> Optional[dict]:
        """Sub-env states (sim state, time-limit counter, RNG) or None if not restorable."""
        sims, elapsed, rngs = [], [], []
        for e in self.envs.envs:
            s, tl = _get_sim_state(e), _time_limit(e)
            if s is None:
                return None
            sims.append(s)
            elapsed.append(tl._elapsed_steps if tl is not None else 0)
            rngs.append(e.unwrapped.np_random.bit_generator.state)
        return {"sims": np.stack(sims), "elapsed": elapsed, "rngs": rngs,
                "obs": np.asarray(self.obs, np.float64)}

    def set_state(self, state: dict) -> None:
        for i, e in enumerate(self.envs.envs):
            _set_sim_state(e, state["sims"][i])
            tl = _time_limit(e)
            if tl is not None:
                tl._elapsed_steps = int(state["elapsed"][i])
            e.unwrapped.np_random.bit_generator.state = state["rngs"][i]
        self.obs = np.asarray(state["obs"], self.obs.dtype)

    def close(self):
        self.envs.close()





def rollout(config: CollectConfig, policy: Optional[Callable], num_transitions: int,
            seed: int, progress: bool = False, desc: str = "rollout") -> LevelData:
    """Records `num_transitions` steps of a policy in `config.num_envs` parallel envs.

    Args:
      config: environment settings (env, num_envs, max_episode_steps).
      policy: (obs [E, o] float32, key) -> actions [E, a] in [-1, 1]; None = uniform random.
      num_transitions: rows to record (the last vector step may be partly kept).
      seed: reset seed and PRNG seed.
      progress: show a tqdm bar.
    Returns:
      the `LevelData`.
    """
    from tqdm.auto import tqdm

    runner = VecRunner(config.env_id, config.num_envs, config.max_episode_steps, seed)
    act_dim = runner.low.shape[0]
    stream = Stream(num_transitions + config.num_envs, runner.obs.shape[-1], act_dim)
    key = jax.random.PRNGKey(seed)
    chunk = 1000
    bar = tqdm(total=num_transitions, desc=desc, disable=not progress, unit="step")
    try:
        while stream.count < num_transitions:
            key, k = jax.random.split(key)
            if policy is None:
                acts = np.asarray(jax.random.uniform(k, (chunk, config.num_envs, act_dim),
                                                     minval=-1.0, maxval=1.0))
                keys = [None] * chunk
            else:
                acts, keys = None, np.asarray(jax.random.split(k, chunk))
            for i in range(chunk):
                if stream.count >= num_transitions:
                    break
                a = acts[i] if policy is None else policy(np.asarray(runner.obs, np.float32), keys[i])
                stream.add(*runner.step(np.asarray(a)))
                bar.update(config.num_envs)
    finally:
        bar.close()
        runner.close()
    return episodes_from_stream(stream.view(num_transitions))
