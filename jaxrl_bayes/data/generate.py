"""D4RL-protocol dataset generation: online SAC on a Gymnasium vector env, levels, writers.

D4RL (Fu et al., 2020, §5; BENCHMARKS.md "Dataset generation with the D4RL protocol") trained
SAC online and recorded, per robot:

- **random**: `dataset_size` steps of the uniform random policy;
- **medium**: `dataset_size` steps of the first SAC policy whose evaluation return reaches
  `medium_fraction` (1/3) of D4RL's expert reference return, sampled from the policy;
- **medium-replay**: the whole replay buffer up to the moment that policy was found;
- **expert**: `dataset_size` steps of the final SAC policy, sampled from the policy;
- **full-replay**: the whole replay buffer of the run;
- **medium-expert**: medium followed by expert.

The training loop follows rlkit's batch RL loop that D4RL used (collect `steps_per_epoch`
transitions, then `steps_per_epoch * utd` SAC updates fused in one `lax.scan`), with the SAC of
`jaxrl_bayes.sac`. Every transition of every sub-environment of the Gymnasium vector env is
recorded with `terminals` (the environment's `terminated`: a fall) and `timeouts` (its
`truncated`: the time limit) kept apart. The vector env runs in `SAME_STEP` autoreset mode, so
the true final observation of an episode (`info["final_obs"]`) is its `next_observation` and
no transition crosses a reset. Episodes are stored contiguously, ordered by their start.
A step that is both terminated and truncated is a terminal (a fall at the time limit), not a
timeout. An episode still running when a dataset ends (the end of the replay buffer, or the
last step of a fixed-size rollout) is cut: its last step gets `timeouts = True`, as D4RL's
data does, and `LevelData.episode_cut` remembers it (summaries use uncut episodes).

Training is resumable: `work_dir/checkpoint.npz` (written atomically) holds the SAC state, the
recorded stream, the evaluation curve, the medium snapshot, the PRNG key and the exact MuJoCo
state (`mj_getState`, integration state) and time-limit counter of each sub-environment, so a
resumed run continues the interrupted episodes instead of cutting them.

Output: the local Minari store (`$MINARI_DATASETS_PATH`, default `~/.minari/datasets`) under
`<namespace>/<env>/<level>-v0`, with the collection env spec, the evaluation env spec, D4RL's
reference scores and the behaviour policy's returns in the metadata; optionally D4RL-schema
hdf5 files. Both are written into a temporary path next to the target and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional, Sequence

import gymnasium as gym
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import sac
from jaxrl_bayes import evaluation
from jaxrl_bayes.data import d4rl
from jaxrl_bayes.io import atomic_open

logger = logging.getLogger(__name__)

LEVELS = ("random", "medium", "medium-replay", "expert", "full-replay", "medium-expert")
# Levels that need the SAC run, and the levels satisfied by stopping at the medium policy.
_NEEDS_SAC = {"medium", "medium-replay", "expert", "full-replay", "medium-expert"}
_NEEDS_FINAL = {"expert", "full-replay", "medium-expert"}
CHECKPOINT_NAME = "checkpoint.npz"
_CHECKPOINT_VERSION = 1
# Config fields a resumed run must share with its checkpoint (the rest may change: more SAC
# steps, other evaluation or checkpoint intervals, other dataset sizes).
_RESUME_FIELDS = ("env", "num_envs", "max_episode_steps", "seed", "start_steps",
                  "update_after", "steps_per_epoch", "utd", "sac")


class GenerateError(ValueError):
    """A problem with the generator's input or state; the message says what to do."""


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What to generate. Defaults reproduce D4RL's full-size protocol."""

    env: str = "walker2d"  # a D4RL robot (hopper, walker2d, halfcheetah) or a Gymnasium id
    sac: sac.SACConfig = sac.SACConfig()
    num_envs: int = 1  # rlkit (D4RL) explores with one environment
    sac_steps: int = 1_000_000  # D4RL: expert trained ~1M steps; full-replay = that buffer
    start_steps: int = 10_000  # uniform random actions first (Spinning Up SAC start_steps)
    update_after: int = 1_000  # first updates (Spinning Up update_after; rlkit min steps 1000)
    steps_per_epoch: int = 1_000  # rlkit num_expl_steps_per_train_loop = num_trains (UTD 1)
    utd: float = 1.0  # updates per environment step (rlkit 1000 trains / 1000 steps)
    eval_every: int = 5_000  # measured choice: 10 eval episodes cost ~2 epochs of stepping
    eval_episodes: int = 10  # BENCHMARKS.md evaluation protocol: at least 10 episodes
    medium_fraction: float = 1.0 / 3.0  # D4RL §5: medium at ~1/3 of the expert's return
    medium_return: Optional[float] = None  # absolute threshold; overrides medium_fraction
    dataset_size: int = 1_000_000  # D4RL random / medium / expert sizes
    max_episode_steps: int = 1000  # D4RL episodes are 1000 steps
    checkpoint_every: int = 50_000  # measured choice: a 1M-step checkpoint takes ~1 s
    seed: int = 0

    def __post_init__(self):
        for f in ("num_envs", "sac_steps", "steps_per_epoch", "eval_every", "eval_episodes",
                  "dataset_size", "max_episode_steps", "checkpoint_every"):
            if getattr(self, f) < 1:
                raise GenerateError(f"{f} must be >= 1, got {getattr(self, f)}")
        if self.start_steps < 0 or self.update_after < 0:
            raise GenerateError("start_steps and update_after must be >= 0")
        if self.utd <= 0:
            raise GenerateError(f"utd must be > 0, got {self.utd}")
        if not 0.0 <= self.medium_fraction <= 1.0:
            raise GenerateError(f"medium_fraction must be in [0, 1], got {self.medium_fraction}")

    @property
    def env_id(self) -> str:
        return resolve_env(self.env)[1]

    @property
    def family(self) -> str:
        return resolve_env(self.env)[0]

    @property
    def epoch_vec_steps(self) -> int:
        """Vector steps per epoch (each collects `num_envs` transitions)."""
        return max(1, self.steps_per_epoch // self.num_envs)

    @property
    def updates_per_epoch(self) -> int:
        return max(1, int(round(self.epoch_vec_steps * self.num_envs * self.utd)))

    def medium_threshold(self) -> float:
        """The evaluation return at which the medium policy is taken."""
        if self.medium_return is not None:
            return float(self.medium_return)
        if self.family not in d4rl.REF_MAX_SCORE:
            raise GenerateError(
                f"environment {self.env!r} has no D4RL expert reference, so medium_fraction "
                f"cannot set the medium threshold; pass an absolute --medium-return")
        return self.medium_fraction * d4rl.REF_MAX_SCORE[self.family]

    def to_json(self) -> dict:
        """The config as plain JSON types (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def resolve_env(name: str) -> tuple[str, str]:
    """(family, Gymnasium id) for a robot name ('walker2d') or a Gymnasium id ('Pendulum-v1')."""
    if name in d4rl.EVAL_ENV_IDS:
        return name, d4rl.EVAL_ENV_IDS[name]
    if name in gym.registry:
        base = name.split("/")[-1].split("-v")[0].lower()
        return base, name
    raise GenerateError(
        f"unknown environment {name!r}: use one of {sorted(d4rl.EVAL_ENV_IDS)} or a registered "
        f"Gymnasium id such as 'Hopper-v4' or 'Pendulum-v1'")


def parse_levels(levels: str | Sequence[str]) -> tuple[str, ...]:
    """Validates a comma-separated string or a list of level names (order kept, no repeats)."""
    items = [x.strip() for x in levels.split(",")] if isinstance(levels, str) else list(levels)
    items = [x for x in items if x]
    bad = [x for x in items if x not in LEVELS]
    if bad or not items:
        raise GenerateError(f"unknown level(s) {bad or items}; choose from {', '.join(LEVELS)}")
    return tuple(dict.fromkeys(items))


def normalized_score(family: str, ret: float) -> Optional[float]:
    """100 (ret - random) / (expert - random) with D4RL's references, None off D4RL robots."""
    if family not in d4rl.REF_MAX_SCORE:
        return None
    return float(evaluation.normalized_score(ret, d4rl.REF_MIN_SCORE[family], d4rl.REF_MAX_SCORE[family]))


# ----------------------------------------------------------------------------- environments


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


def evaluate(env_id: str, act_fn: Callable[[np.ndarray], np.ndarray], num_episodes: int,
             seed: int, max_episode_steps: int) -> np.ndarray:
    """Returns of `num_episodes` episodes of the deterministic `act_fn`, one per sub-env.

    Args:
      env_id: Gymnasium id.
      act_fn: [num_episodes, obs_dim] observations -> [num_episodes, act_dim] actions in [-1, 1].
      num_episodes: number of parallel episodes.
      seed: reset seed of the first sub-env (the others get seed + i).
      max_episode_steps: time limit.
    Returns:
      raw returns, shape [num_episodes].
    """
    runner = VecRunner(env_id, num_episodes, max_episode_steps, seed)
    returns = np.zeros(num_episodes)
    running = np.ones(num_episodes, bool)
    try:
        while running.any():
            _, _, rew, _, term, trunc = runner.step(act_fn(np.asarray(runner.obs, np.float32)))
            returns += np.where(running, rew, 0.0)
            running &= ~(term | trunc)
    finally:
        runner.close()
    return returns


# ----------------------------------------------------------------------------- level data


class LevelData(NamedTuple):
    """One dataset in D4RL's flat schema, episodes contiguous.

    Attributes:
      arrays: observations [n, o], actions [n, a], rewards [n], next_observations [n, o]
        (float32), terminals [n], timeouts [n] (bool).
      episode_starts: int [e], first row of each episode.
      episode_cut: bool [e], True where the dataset's end (not the env) cut the episode.
    """

    arrays: dict
    episode_starts: np.ndarray
    episode_cut: np.ndarray

    @property
    def size(self) -> int:
        return int(self.arrays["rewards"].shape[0])


def episodes_from_stream(stream: dict[str, np.ndarray]) -> LevelData:
    """Regroups a vector env's step-ordered stream into contiguous episodes.

    Args:
      stream: `Stream.view()`: step-ordered rows with `env_index`, `terminals`, `truncations`.
    Returns:
      `LevelData` with episodes ordered by their first row; the unfinished last episode of each
      sub-env is cut (timeouts set on its last row, `episode_cut` True).
    """
    env_index = stream["env_index"]
    done = stream["terminals"] | stream["truncations"]
    episodes = []  # (first row, row indices, cut)
    for e in np.unique(env_index):
        rows = np.flatnonzero(env_index == e)
        ends = np.flatnonzero(done[rows])
        start = 0
        for end in ends:
            episodes.append((rows[start], rows[start: end + 1], False))
            start = end + 1
        if start < len(rows):
            episodes.append((rows[start], rows[start:], True))
    episodes.sort(key=lambda x: x[0])
    if not episodes:
        raise GenerateError("no transitions were recorded; increase the number of steps")
    order = np.concatenate([ep[1] for ep in episodes])
    lengths = np.array([len(ep[1]) for ep in episodes])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cut = np.array([ep[2] for ep in episodes], bool)
    terminals = stream["terminals"][order].copy()
    timeouts = stream["truncations"][order] & ~terminals
    timeouts[(starts + lengths - 1)[cut]] = True
    arrays = {
        "observations": stream["observations"][order],
        "actions": stream["actions"][order],
        "rewards": stream["rewards"][order],
        "next_observations": stream["next_observations"][order],
        "terminals": terminals,
        "timeouts": timeouts,
    }
    return LevelData(arrays, starts, cut)


def concatenate(parts: Sequence[LevelData]) -> LevelData:
    """Concatenates datasets (e.g. medium-expert = medium then expert)."""
    offsets = np.cumsum([0] + [p.size for p in parts[:-1]])
    return LevelData(
        {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays},
        np.concatenate([p.episode_starts + o for p, o in zip(parts, offsets)]),
        np.concatenate([p.episode_cut for p in parts]),
    )


def episode_returns(level: LevelData) -> np.ndarray:
    """Return of every episode, shape [e]."""
    return np.add.reduceat(level.arrays["rewards"].astype(np.float64), level.episode_starts)


def summarize(level: LevelData, family: str) -> dict:
    """Transitions, episodes and return statistics (uncut episodes; all if every one is cut).

    Returns:
      dict with transitions, episodes, cut_episodes, terminals, timeouts, return_mean,
      return_std, normalized_mean, normalized_std (None off D4RL robots).
    """
    rets = episode_returns(level)
    use = rets[~level.episode_cut] if (~level.episode_cut).any() else rets
    mean, std = float(use.mean()), float(use.std())
    norm = normalized_score(family, mean)
    scale = None if norm is None else 100.0 / (d4rl.REF_MAX_SCORE[family] - d4rl.REF_MIN_SCORE[family])
    return {
        "transitions": level.size,
        "episodes": int(len(rets)),
        "cut_episodes": int(level.episode_cut.sum()),
        "terminals": int(level.arrays["terminals"].sum()),
        "timeouts": int(level.arrays["timeouts"].sum()),
        "return_mean": mean,
        "return_std": std,
        "normalized_mean": norm,
        "normalized_std": None if scale is None else std * scale,
    }


# ----------------------------------------------------------------------------- rollouts


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


# ----------------------------------------------------------------------------- SAC training


class EvalPoint(NamedTuple):
    env_steps: int
    return_mean: float
    return_std: float


class TrainResult(NamedTuple):
    """What the SAC run leaves for the levels.

    Attributes:
      stream: the recorded replay stream (`Stream.view()`), every transition of the run.
      medium_index: rows of the stream recorded when the medium policy was found, or None.
      medium_params: actor parameters of the medium policy, or None.
      medium_eval: its evaluation return, or None.
      final_params: actor parameters at the end of the run.
      final_eval: evaluation return at the end.
      curve: the evaluation curve (`EvalPoint`s).
      env_steps: environment steps taken.
      seconds: wall time of training in this process (excluding resumed parts).
    """

    stream: dict
    medium_index: Optional[int]
    medium_params: Any
    medium_eval: Optional[float]
    final_params: Any
    final_eval: Optional[float]
    curve: list
    env_steps: int
    seconds: float


def _atomic_savez(path: Path, arrays: dict) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def _tree_to_arrays(prefix: str, tree) -> dict:
    return {f"{prefix}{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def _tree_from_arrays(prefix: str, like, data, path: Path):
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out = []
    for i, ref in enumerate(leaves):
        k = f"{prefix}{i}"
        if k not in data or data[k].shape != np.shape(ref):
            raise GenerateError(
                f"checkpoint {path} does not match this configuration ({k} missing or of another "
                f"shape); use the options it was made with or another --work-dir")
        out.append(jnp.asarray(data[k], dtype=np.asarray(ref).dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def _config_key(config: CollectConfig) -> dict:
    d = config.to_json()
    return {k: d[k] for k in _RESUME_FIELDS}


def load_checkpoint_meta(work_dir: str | os.PathLike) -> Optional[dict]:
    """The JSON metadata of a training checkpoint, or None if there is none."""
    path = Path(work_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except Exception as e:  # noqa: BLE001 - any read failure means a corrupt file
        raise GenerateError(f"checkpoint {path} cannot be read ({e}); delete it to start over") from e


def train_sac(config: CollectConfig, work_dir: Optional[str | os.PathLike] = None,
              resume: bool = False, stop_at_medium: bool = False, progress: bool = False,
              callback: Optional[Callable[[EvalPoint], None]] = None) -> TrainResult:
    """Runs online SAC and records every transition (see the module docstring).

    Args:
      config: the collection config (env, SAC hyperparameters, budget).
      work_dir: where `checkpoint.npz` is written every `checkpoint_every` steps and at the end;
        None = no checkpoints.
      resume: continue from `work_dir/checkpoint.npz` if present (a larger `sac_steps` extends
        a finished run). Without `resume`, an existing checkpoint is an error.
      stop_at_medium: stop once the medium policy is found (enough for random, medium,
        medium-replay).
      progress: tqdm bar over environment steps.
      callback: called with each `EvalPoint`.
    Returns:
      `TrainResult`.
    """
    from tqdm.auto import tqdm

    t_start = time.time()
    try:
        threshold = config.medium_threshold()
    except GenerateError:
        if stop_at_medium:
            raise
        threshold = float("inf")  # no medium level wanted and no reference to set one
    runner = VecRunner(config.env_id, config.num_envs, config.max_episode_steps, config.seed)
    obs_dim, act_dim = runner.obs.shape[-1], runner.low.shape[0]
    fns = sac.jitted(config.sac, act_dim)
    key = jax.random.PRNGKey(config.seed)
    key, k_init = jax.random.split(key)
    state = sac.init(k_init, config.sac, obs_dim, act_dim)
    stream = Stream(config.sac_steps + config.num_envs, obs_dim, act_dim)
    curve: list[EvalPoint] = []
    medium_index = medium_params = medium_eval = None
    last_eval = last_ckpt = 0
    ckpt_path = Path(work_dir) / CHECKPOINT_NAME if work_dir is not None else None

    if ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise GenerateError(
                f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or use another "
                f"work directory")
        meta = load_checkpoint_meta(work_dir)
        if meta.get("version") != _CHECKPOINT_VERSION or meta["config"] != _config_key(config):
            diff = sorted(k for k in _RESUME_FIELDS
                          if meta.get("config", {}).get(k) != _config_key(config)[k])
            raise GenerateError(
                f"checkpoint {ckpt_path} was made with other settings ({', '.join(diff)} differ); "
                f"use the same options or another --work-dir")
        with np.load(ckpt_path, allow_pickle=False) as data:
            state = _tree_from_arrays("sac_", state, data, ckpt_path)
            key = jnp.asarray(data["key"])
            n = int(meta["count"])
            stream.grow(max(stream.capacity, n + config.num_envs))
            for k in Stream.FIELDS:
                stream.arrays[k][:n] = data[f"stream_{k}"]
            stream.count = n
            if meta["medium_index"] is not None:
                medium_index, medium_eval = meta["medium_index"], meta["medium_eval"]
                medium_params = _tree_from_arrays("medium_", state.actor_params, data, ckpt_path)
            env_state = meta["env_state"]
            if env_state is not None:
                env_state["sims"] = data["env_sims"]
                env_state["obs"] = data["env_obs"]
                runner.set_state(env_state)
            else:  # not restorable: the interrupted episodes end here
                runner.obs, _ = runner.envs.reset(seed=config.seed + 7919 * (n + 1))
                for e in range(config.num_envs):
                    rows = np.flatnonzero(stream.arrays["env_index"][:n] == e)
                    if len(rows) and not (stream.arrays["terminals"][rows[-1]]
                                          or stream.arrays["truncations"][rows[-1]]):
                        stream.arrays["truncations"][rows[-1]] = True
        curve = [EvalPoint(*p) for p in meta["curve"]]
        last_eval, last_ckpt = meta["last_eval"], n
        logger.info("resumed %s at %d environment steps", ckpt_path, n)

    def save():
        if ckpt_path is None:
            return
        env_state = runner.get_state()
        meta = {
            "version": _CHECKPOINT_VERSION, "config": _config_key(config),
            "full_config": config.to_json(), "count": stream.count,
            "medium_index": medium_index, "medium_eval": medium_eval,
            "curve": [list(p) for p in curve], "last_eval": last_eval,
            "env_state": None if env_state is None else {
                "elapsed": env_state["elapsed"], "rngs": env_state["rngs"]},
        }
        arrays = {"meta": np.asarray(json.dumps(meta)), "key": np.asarray(key)}
        arrays.update(_tree_to_arrays("sac_", state))
        if medium_params is not None:
            arrays.update(_tree_to_arrays("medium_", medium_params))
        if env_state is not None:
            arrays["env_sims"], arrays["env_obs"] = env_state["sims"], env_state["obs"]
        for k, v in stream.view().items():
            arrays[f"stream_{k}"] = v
        _atomic_savez(ckpt_path, arrays)

    def to_transition(view: dict) -> sac.Transition:
        act = 2.0 * (view["actions"] - runner.low) / (runner.high - runner.low) - 1.0
        return sac.Transition(
            jnp.asarray(view["observations"]), jnp.asarray(act, jnp.float32),
            jnp.asarray(view["rewards"]), jnp.asarray(view["next_observations"]),
            jnp.asarray(view["terminals"], jnp.float32))

    capacity = max(config.sac_steps, stream.count) + config.num_envs * config.epoch_vec_steps
    buffer = sac.buffer_init(capacity, obs_dim, act_dim)
    for s in range(0, stream.count, 100_000):  # refill after a resume
        buffer = fns.buffer_add(buffer, to_transition(
            {k: v[s: s + 100_000] for k, v in stream.view().items()}))

    def run_eval(params, idx):
        act = lambda o: np.asarray(fns.act(params, o))  # noqa: E731
        rets = evaluate(config.env_id, act, config.eval_episodes,
                        config.seed + 100_003 * (idx + 1), config.max_episode_steps)
        return EvalPoint(stream.count, float(rets.mean()), float(rets.std()))

    bar = tqdm(total=config.sac_steps, initial=min(stream.count, config.sac_steps),
               disable=not progress, unit="step", desc=f"SAC {config.env_id}")
    try:
        while stream.count < config.sac_steps and not (stop_at_medium and medium_index is not None):
            key, k_rand, k_explore, k_update = jax.random.split(key, 4)
            first = stream.count
            nv = config.epoch_vec_steps
            rand = np.asarray(jax.random.uniform(k_rand, (nv, config.num_envs, act_dim),
                                                 minval=-1.0, maxval=1.0))
            keys = np.asarray(jax.random.split(k_explore, nv))
            for i in range(nv):
                if stream.count < config.start_steps:
                    a = rand[i]
                else:
                    a = np.asarray(fns.explore(state.actor_params,
                                               np.asarray(runner.obs, np.float32), keys[i]))
                stream.add(*runner.step(a))
            buffer = fns.buffer_add(buffer, to_transition(
                {k: v[first: stream.count] for k, v in stream.view().items()}))
            if stream.count >= config.update_after:
                state, _ = fns.update_many(state, buffer, k_update, config.updates_per_epoch)
            bar.update(stream.count - first)
            finished = stream.count >= config.sac_steps
            if stream.count - last_eval >= config.eval_every or finished:
                point = run_eval(state.actor_params, len(curve))
                curve.append(point)
                last_eval = stream.count
                if callback is not None:
                    callback(point)
                bar.set_postfix(ret=f"{point.return_mean:.1f}")
                logger.info("SAC %s: %d steps, eval return %.1f +- %.1f", config.env_id,
                            point.env_steps, point.return_mean, point.return_std)
                if medium_index is None and point.return_mean >= threshold:
                    medium_index, medium_eval = stream.count, point.return_mean
                    medium_params = jax.tree_util.tree_map(jnp.copy, state.actor_params)
            if stream.count - last_ckpt >= config.checkpoint_every:
                save()
                last_ckpt = stream.count
        if stream.count != last_ckpt:
            save()
    finally:
        bar.close()
        runner.close()
    final_eval = curve[-1].return_mean if curve and curve[-1].env_steps == stream.count else None
    if final_eval is None and not (stop_at_medium and medium_index is not None):
        point = run_eval(state.actor_params, len(curve))
        final_eval = point.return_mean
    return TrainResult(stream.view(), medium_index, medium_params, medium_eval,
                       state.actor_params, final_eval, curve, stream.count,
                       time.time() - t_start)


def make_policy(config: CollectConfig, actor_params, act_dim: int) -> Callable:
    """A stochastic rollout policy (obs, key) -> actions sampling from the SAC actor."""
    explore = jax.jit(lambda p, o, k: sac.explore(p, o, k, config.sac, act_dim))
    return lambda obs, key: np.asarray(explore(actor_params, obs, key))


# ----------------------------------------------------------------------------- writers


def dataset_id(namespace: str, family: str, level: str, version: int = 0) -> str:
    """'<namespace>/<env>/<level>-v<version>', e.g. 'jaxrl_bayes/walker2d/medium-replay-v0'."""
    return f"{namespace}/{family}/{level}-v{version}"


def _episode_buffers(level: LevelData) -> Iterable:
    from minari.data_collector import EpisodeBuffer

    a = level.arrays
    ends = np.append(level.episode_starts[1:], level.size)
    for i, (s, e) in enumerate(zip(level.episode_starts, ends)):
        yield EpisodeBuffer(
            id=i,
            observations=np.concatenate([a["observations"][s:e], a["next_observations"][e - 1: e]]),
            actions=a["actions"][s:e],
            rewards=a["rewards"][s:e],
            terminations=a["terminals"][s:e],
            truncations=a["timeouts"][s:e],
            infos={},
        )


def write_minari(ds_id: str, level: LevelData, env_spec: gym.envs.registration.EnvSpec,
                 eval_env_spec: gym.envs.registration.EnvSpec, metadata: dict,
                 overwrite: bool = False, description: str = "") -> Path:
    """Writes `level` to the local Minari store under `ds_id`, atomically.

    Args:
      ds_id: the Minari dataset id ('namespace/env/level-v0').
      level: the data.
      env_spec: spec of the collecting env (with its time limit).
      eval_env_spec: spec of the evaluation env.
      metadata: extra JSON-serializable metadata (stored under the key 'jaxrl_bayes', plus
        ref_min_score / ref_max_score if present in it).
      overwrite: replace an existing dataset (else FileExistsError).
      description: human-readable description.
    Returns:
      the dataset's directory.
    """
    import minari
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage import get_dataset_path

    final = Path(get_dataset_path(ds_id))
    if final.exists() and not overwrite:
        raise FileExistsError(
            f"Minari dataset {ds_id!r} already exists at {final}; pass overwrite=True "
            f"(--overwrite) to replace it or choose another namespace/version")
    namespace = ds_id.rsplit("/", 1)[0] if "/" in ds_id else None
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        env = gym.make(env_spec)
        storage = MinariStorage.new(tmp / "data", observation_space=env.observation_space,
                                    action_space=env.action_space, env_spec=env_spec)
        env.close()
        meta = {
            "dataset_id": ds_id,
            "algorithm_name": "SAC (jaxrl_bayes.sac, rlkit defaults as used by D4RL)",
            "author": {"jaxrl_bayes"},
            "code_permalink": "jaxrl_bayes/data/generate.py",
            "description": description,
            "minari_version": minari.__version__,
            "eval_env_spec": eval_env_spec.to_json(),
            "jaxrl_bayes": metadata,
        }
        for k in ("ref_min_score", "ref_max_score"):
            if metadata.get(k) is not None:
                meta[k] = float(metadata[k])
        storage.update_metadata(meta)
        storage.update_episodes(_episode_buffers(level))
        if final.exists():
            old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_d4rl_hdf5(path: str | os.PathLike, level: LevelData, metadata: dict) -> Path:
    """Writes `level` in D4RL's hdf5 schema (atomically).

    Keys: observations, actions, rewards, next_observations (float32), terminals, timeouts
    (bool), plus `metadata/<key>` scalar datasets (numbers and strings; others as JSON).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in level.arrays.items():
                f.create_dataset(k, data=v, compression="gzip" if v.ndim > 1 else None)
            g = f.create_group("metadata")
            for k, v in metadata.items():
                if isinstance(v, bool) or v is None or isinstance(v, (dict, list, tuple)):
                    v = json.dumps(v)
                g.create_dataset(k, data=v)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def hdf5_name(family: str, level: str, version: int = 0) -> str:
    """D4RL-style file name: 'walker2d_medium_replay-v0.hdf5'."""
    return f"{family}_{level.replace('-', '_')}-v{version}.hdf5"


# ----------------------------------------------------------------------------- the pipeline


class LevelResult(NamedTuple):
    level: str
    dataset_id: str
    path: Path
    hdf5_path: Optional[Path]
    summary: dict


def generate(config: CollectConfig, levels: str | Sequence[str], work_dir: str | os.PathLike,
             namespace: str = "jaxrl_bayes", hdf5_dir: Optional[str | os.PathLike] = None,
             resume: bool = False, overwrite: bool = False, progress: bool = False,
             callback: Optional[Callable[[EvalPoint], None]] = None,
             ) -> tuple[list[LevelResult], Optional[TrainResult]]:
    """Generates the requested levels and writes them to the Minari store (and hdf5).

    Args:
      config: what to generate.
      levels: names from `LEVELS` (list or comma-separated string).
      work_dir: checkpoints of the SAC run (and a summary.json).
      namespace: first part of the Minari ids.
      hdf5_dir: also export D4RL-schema hdf5 files here (None = no export).
      resume: continue a checkpointed SAC run in `work_dir`.
      overwrite: replace existing datasets with the same ids.
      progress: tqdm bars.
      callback: receives each SAC evaluation point.
    Returns:
      (one `LevelResult` per level, the `TrainResult` or None if no SAC was needed).
    Raises:
      GenerateError: bad input, or the medium threshold was never reached.
      FileExistsError: a dataset exists and `overwrite` is False (checked before any work).
    """
    from minari.storage import get_dataset_path

    levels = parse_levels(levels)
    family, env_id = config.family, config.env_id
    ids = {lv: dataset_id(namespace, family, lv) for lv in levels}
    if not overwrite:
        existing = [i for i in ids.values() if Path(get_dataset_path(i)).exists()]
        if existing:
            raise FileExistsError(
                f"Minari dataset(s) {existing} already exist; pass --overwrite to replace them "
                f"or use another --namespace")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    train = None
    needs_medium = bool({"medium", "medium-replay", "medium-expert"} & set(levels))
    if needs_medium:
        config.medium_threshold()  # fails early when no threshold can be set
    if _NEEDS_SAC & set(levels):
        stop = not (_NEEDS_FINAL & set(levels))
        train = train_sac(config, work_dir, resume=resume, stop_at_medium=stop,
                          progress=progress, callback=callback)
        if needs_medium and train.medium_index is None:
            best = max((p.return_mean for p in train.curve), default=float("nan"))
            raise GenerateError(
                f"no SAC policy reached the medium threshold {config.medium_threshold():.1f} "
                f"(best evaluation return {best:.1f} in {train.env_steps} steps); rerun with "
                f"--resume and a larger --sac-steps, or lower --medium-fraction/--medium-return. "
                f"The training checkpoint in {work_dir} is kept")

    spec_env = gym.make(env_id, max_episode_steps=config.max_episode_steps)
    env_spec, act_dim = spec_env.spec, spec_env.action_space.shape[0]
    spec_env.close()
    eval_spec = gym.spec(env_id)
    data: dict[str, LevelData] = {}
    policy_info: dict[str, dict] = {}

    def get(level: str) -> LevelData:
        if level in data:
            return data[level]
        seed = config.seed + 1_000_003 * (LEVELS.index(level) + 1)
        if level == "random":
            out = rollout(config, None, config.dataset_size, seed, progress, "random")
            policy_info[level] = {"behavior_policy": "uniform random"}
        elif level == "medium":
            out = rollout(config, make_policy(config, train.medium_params, act_dim),
                          config.dataset_size, seed, progress, "medium")
            policy_info[level] = {"behavior_policy": "SAC medium (sampled)",
                                  "policy_eval_return": train.medium_eval,
                                  "policy_env_steps": train.medium_index}
        elif level == "expert":
            out = rollout(config, make_policy(config, train.final_params, act_dim),
                          config.dataset_size, seed, progress, "expert")
            policy_info[level] = {"behavior_policy": "SAC final (sampled)",
                                  "policy_eval_return": train.final_eval,
                                  "policy_env_steps": train.env_steps}
        elif level == "medium-replay":
            out = episodes_from_stream({k: v[: train.medium_index] for k, v in train.stream.items()})
            policy_info[level] = {"behavior_policy": "SAC replay buffer until medium",
                                  "policy_env_steps": train.medium_index}
        elif level == "full-replay":
            out = episodes_from_stream(train.stream)
            policy_info[level] = {"behavior_policy": "SAC replay buffer, whole run",
                                  "policy_env_steps": train.env_steps}
        else:  # medium-expert
            out = concatenate([get("medium"), get("expert")])
            policy_info[level] = {"behavior_policy": "medium then expert",
                                  "policy_eval_return": [train.medium_eval, train.final_eval]}
        data[level] = out
        return out

    results = []
    for level in levels:
        level_data = get(level)
        summary = summarize(level_data, family)
        meta = {
            "level": level, "env": family, "env_id": env_id, **policy_info[level],
            "behavior_return_mean": summary["return_mean"],
            "behavior_return_std": summary["return_std"],
            "behavior_normalized_score": summary["normalized_mean"],
            "transitions": summary["transitions"], "episodes": summary["episodes"],
            "cut_episodes": summary["cut_episodes"],
            "ref_min_score": d4rl.REF_MIN_SCORE.get(family),
            "ref_max_score": d4rl.REF_MAX_SCORE.get(family),
            "medium_threshold": config.medium_threshold() if _NEEDS_SAC & {level} else None,
            "collect_config": config.to_json(),
        }
        norm = summary["normalized_mean"]
        desc = (f"D4RL-protocol {level} data for {env_id} generated by jaxrl_bayes "
                f"({summary['transitions']} transitions, {summary['episodes']} episodes, "
                f"behaviour return {summary['return_mean']:.1f} +- {summary['return_std']:.1f}"
                + (f", D4RL-normalized {norm:.1f}" if norm is not None else "") + ").")
        path = write_minari(ids[level], level_data, env_spec, eval_spec, meta,
                            overwrite=overwrite, description=desc)
        h5 = None
        if hdf5_dir is not None:
            h5 = write_d4rl_hdf5(Path(hdf5_dir) / hdf5_name(family, level), level_data,
                                 {k: v for k, v in meta.items() if k != "collect_config"}
                                 | {"collect_config": json.dumps(config.to_json())})
        results.append(LevelResult(level, ids[level], path, h5, summary))

    summary_out = {
        "levels": {r.level: {"dataset_id": r.dataset_id, **r.summary} for r in results},
        "curve": [list(p) for p in train.curve] if train is not None else [],
        "config": config.to_json(),
    }
    tmp = work_dir / f".summary.json.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(summary_out, indent=1))
    os.replace(tmp, work_dir / "summary.json")
    return results, train
