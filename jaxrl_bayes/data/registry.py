"""One registry of dataset names: what each is, how to load it and how to evaluate on it.

Names (BENCHMARKS.md, "Dataset names the CLI accepts"):

- the 18 D4RL v2 locomotion sets `{hopper,walker2d,halfcheetah}-{level}-v2`, evaluated in
  Gymnasium Hopper-v4 / Walker2d-v4 / HalfCheetah-v4 with D4RL's reference scores;
- `liquidation-random-v0`, generated from a seed and evaluated in the pure-JAX liquidation env
  (`jaxrl_bayes.envs.liquidation`, imported only when used);
- any id containing '/' is a Minari id (including the project's own
  `jaxrl_bayes/<env>/<level>-v0`), evaluated in the environment recorded in its metadata.

Reference scores of Minari datasets: D4RL's reference returns are used only when the recorded
environment is a D4RL robot at version v3 or v4 (same MDP as the D4RL data). Minari's
`mujoco/*` datasets are collected in v5 environments (different foot friction and terminal
alive bonus), where D4RL's references do not apply: for those the dataset's own
`ref_min_score`/`ref_max_score` metadata is used if present (Minari's, not comparable with
D4RL-normalised numbers in the papers), else the scores are unknown (None) and only raw
returns can be reported.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import warnings
from typing import Any, Callable, Optional

import numpy as np

from jaxrl_bayes import termination
from jaxrl_bayes.data import d4rl
from jaxrl_bayes.data.dataset import Dataset, DatasetError
from jaxrl_bayes.evaluation import evaluate_gym, normalized_score

LIQUIDATION_NAME = "liquidation-random-v0"
ROBOT_FAMILIES = {"hopper": "hopper", "walker2d": "walker2d", "halfcheetah": "halfcheetah"}
# Environment versions that share the model of D4RL's v2 data (v3 collected it; v4 = v3 on
# the new mujoco bindings).
D4RL_COMPATIBLE_VERSIONS = (3, 4)

# evaluator(act_fn, num_episodes, seed) -> returns; evaluators that take a `params` keyword
# also accept evaluator(act_fn, num_episodes, seed, params=p) with act_fn(params, obs).
EvalFn = Callable[..., np.ndarray]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the project needs to know about one dataset name.

    Attributes:
      name: the registry name.
      family: 'hopper', 'walker2d', 'halfcheetah', 'liquidation' or 'other'.
      source: 'd4rl', 'minari' or 'liquidation'.
      load: () -> Dataset (may download; see the source module).
      ref_min_score, ref_max_score: reference returns for the normalised score, or None.
      termination_fn: (obs, act, next_obs) -> bool, from `jaxrl_bayes.termination`.
      eval_env_id: Gymnasium id of the evaluation env, or None (liquidation: a JAX env).
      obs_dim, act_dim: widths where known, else None.
      evaluator: (act_fn, num_episodes, seed) -> raw returns [num_episodes]; called with a
        `params=` keyword only when `evaluate` is given params.
      eval_env_spec: what `gym.make` gets for evaluation and width checks: the id, or the
        full `EnvSpec` recorded by Minari (keeps its kwargs and time limit); None if none.
    """

    name: str
    family: str
    source: str
    load: Callable[[], Dataset] = dataclasses.field(repr=False)
    ref_min_score: Optional[float]
    ref_max_score: Optional[float]
    termination_fn: Callable = dataclasses.field(repr=False)
    eval_env_id: Optional[str]
    obs_dim: Optional[int] = None
    act_dim: Optional[int] = None
    evaluator: Optional[EvalFn] = dataclasses.field(default=None, repr=False)
    eval_env_spec: Any = dataclasses.field(default=None, repr=False, compare=False)

    def evaluate(self, act_fn: Callable[..., Any], num_episodes: int = 10,
                 seed: int = 0, params: Any = None) -> np.ndarray:
        """Raw returns [num_episodes] of the deterministic policy `act_fn`.

        Args:
          act_fn: observations [batch, obs_dim] -> actions [batch, act_dim], JAX-traceable;
            with `params`, (params, observations) -> actions.
          num_episodes: episodes (BENCHMARKS.md: >= 10 locomotion, >= 1000 liquidation).
          seed: evaluation seed.
          params: optional pytree of arrays handed to act_fn as a traced argument: evaluating
            many parameter sets with one act_fn object compiles the evaluation once.
        """
        if self.evaluator is None:
            raise ValueError(f"dataset {self.name!r} has no evaluation environment")
        if params is None:
            returns = self.evaluator(act_fn, num_episodes, seed)
        else:
            returns = self.evaluator(act_fn, num_episodes, seed, params=params)
        return np.asarray(returns, dtype=np.float64)

    def normalize(self, returns) -> np.ndarray:
        """Normalised score 100 (R - ref_min) / (ref_max - ref_min) (`normalized_score`)."""
        if self.ref_min_score is None or self.ref_max_score is None:
            raise ValueError(f"no reference scores for {self.name!r}; report raw returns")
        return normalized_score(returns, self.ref_min_score, self.ref_max_score)


def list_datasets() -> list[str]:
    """The fixed names (D4RL v2 and liquidation); any id with '/' is also accepted (Minari)."""
    return list(d4rl.NAMES) + [LIQUIDATION_NAME]


def _gym_evaluator(env: Any) -> EvalFn:
    def evaluate(act_fn, num_episodes, seed, params=None):
        return evaluate_gym(env, act_fn, num_episodes=num_episodes, seed=seed, params=params)

    return evaluate


def _env_widths(env: Any) -> tuple[int, int]:
    """(obs_dim, act_dim) of a Gymnasium id or EnvSpec, read from its spaces."""
    if isinstance(env, str):
        return _env_widths_by_id(env)
    import gymnasium as gym

    return _widths_of(gym.make(env))


@functools.lru_cache(maxsize=None)
def _env_widths_by_id(env_id: str) -> tuple[int, int]:
    import gymnasium as gym

    return _widths_of(gym.make(env_id))


def _widths_of(env: Any) -> tuple[int, int]:
    try:
        return (int(np.prod(env.observation_space.shape)),
                int(np.prod(env.action_space.shape)))
    finally:
        env.close()


def _d4rl_spec(name: str) -> DatasetSpec:
    env, _ = d4rl.parse_name(name)
    env_id = d4rl.EVAL_ENV_IDS[env]
    return DatasetSpec(
        name=name, family=env, source="d4rl", load=functools.partial(d4rl.load, name),
        ref_min_score=d4rl.REF_MIN_SCORE[env], ref_max_score=d4rl.REF_MAX_SCORE[env],
        termination_fn=termination.get_termination_fn(env), eval_env_id=env_id,
        obs_dim=d4rl.OBS_DIMS[env], act_dim=d4rl.ACT_DIMS[env],
        evaluator=_gym_evaluator(env_id), eval_env_spec=env_id)


def _liquidation_spec() -> DatasetSpec:
    from jaxrl_bayes.envs import liquidation

    def load() -> Dataset:
        raw = liquidation.generate_dataset(seed=0)
        return Dataset.from_arrays(**raw, name=LIQUIDATION_NAME)

    def evaluate(act_fn, num_episodes, seed, params=None):
        if params is None:  # the old call form (also what stand-in modules implement)
            return liquidation.evaluate_policy(act_fn, num_episodes=num_episodes, seed=seed)
        return liquidation.evaluate_policy(act_fn, num_episodes=num_episodes, seed=seed,
                                           params=params)

    return DatasetSpec(
        name=LIQUIDATION_NAME, family="liquidation", source="liquidation", load=load,
        ref_min_score=float(liquidation.REF_MIN_SCORE),
        ref_max_score=float(liquidation.REF_MAX_SCORE),
        termination_fn=termination.liquidation_termination, eval_env_id=None,
        obs_dim=int(liquidation.OBS_DIM), act_dim=int(liquidation.ACT_DIM), evaluator=evaluate)


def family_of_env(env_id: Optional[str]) -> tuple[str, Optional[int]]:
    """Guesses the robot family and version from a Gymnasium id.

    Args:
      env_id: e.g. 'Walker2d-v4', 'HalfCheetah-v5', 'AntMaze_UMaze-v4'.

    Returns:
      ('walker2d', 4), ('halfcheetah', 5), ('other', 4); version None if absent.
    """
    if not env_id:
        return "other", None
    base = env_id.split("/")[-1]
    m = re.match(r"^(.*?)-v(\d+)$", base)
    stem, version = (m.group(1), int(m.group(2))) if m else (base, None)
    key = re.sub(r"[^a-z0-9]", "", stem.lower())
    return ROBOT_FAMILIES.get(key, "other"), version


def _minari_spec(dataset_id: str) -> DatasetSpec:
    from jaxrl_bayes.data import minari_data

    mds = minari_data.open_dataset(dataset_id)
    env_spec = minari_data.eval_env_spec(mds)
    env_id = env_spec.id if env_spec is not None else None
    family, version = family_of_env(env_id)
    metadata = mds.storage.metadata
    if family in ROBOT_FAMILIES and version in D4RL_COMPATIBLE_VERSIONS:
        ref_min, ref_max = d4rl.REF_MIN_SCORE[family], d4rl.REF_MAX_SCORE[family]
    else:
        ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
        ref_min = None if ref_min is None else float(ref_min)
        ref_max = None if ref_max is None else float(ref_max)
    obs_space, act_space = mds.observation_space, mds.action_space
    obs_dim = int(np.prod(obs_space.shape)) if obs_space.shape else None
    act_dim = int(np.prod(act_space.shape)) if act_space.shape else None
    if family == "other":
        warnings.warn(
            f"no termination rule known for {env_id!r} (dataset {dataset_id!r}): model rollouts "
            "will only stop at non-finite states", stacklevel=3)
        term_fn = termination.no_termination
    else:
        term_fn = termination.get_termination_fn(family)
    return DatasetSpec(
        name=dataset_id, family=family, source="minari",
        load=functools.partial(minari_data.load, dataset_id),
        ref_min_score=ref_min, ref_max_score=ref_max, termination_fn=term_fn,
        eval_env_id=env_id, obs_dim=obs_dim, act_dim=act_dim,
        evaluator=_gym_evaluator(env_spec) if env_spec is not None else None,
        eval_env_spec=env_spec)


def get_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` of a dataset name.

    Args:
      name: a D4RL v2 name, 'liquidation-random-v0', or a Minari id (contains '/').

    Returns:
      The spec (a Minari id is opened, not loaded, to read its metadata).

    Raises:
      ValueError: unknown name; the message lists the known names and the closest match.
      MinariNotFoundError: a Minari id that is neither local nor downloadable.
    """
    if name in d4rl.NAMES:
        return _d4rl_spec(name)
    if name == LIQUIDATION_NAME:
        return _liquidation_spec()
    if "/" in name:
        return _minari_spec(name)
    known = list_datasets()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown dataset {name!r}.{hint} Known names: {', '.join(known)}; or a Minari id "
        f"containing '/', e.g. 'mujoco/walker2d/medium-v0'.")


def check_widths(dataset: Dataset, spec: DatasetSpec) -> None:
    """Checks a dataset's observation/action widths against the spec and its Gymnasium env.

    Raises:
      DatasetError: naming both widths when they differ.
    """
    expected = [(spec.obs_dim, spec.act_dim, "the registry")]
    if spec.eval_env_spec is not None:
        obs_dim, act_dim = _env_widths(spec.eval_env_spec)
        expected.append((obs_dim, act_dim, f"the evaluation environment {spec.eval_env_id}"))
    for obs_dim, act_dim, where in expected:
        if (obs_dim is not None and dataset.obs_dim != obs_dim) or (
                act_dim is not None and dataset.act_dim != act_dim):
            raise DatasetError(
                f"dataset {spec.name!r} has observations of width {dataset.obs_dim} and actions "
                f"of width {dataset.act_dim}, but {where} expects {obs_dim} and {act_dim}: the "
                f"data belongs to another environment (wrong file under this name?)")


def load_dataset(name: str) -> Dataset:
    """Loads a dataset by name and checks its widths against its evaluation environment.

    Args:
      name: see `get_spec`.

    Returns:
      The `Dataset`.
    """
    spec = get_spec(name)
    dataset = spec.load()
    check_widths(dataset, spec)
    return dataset
