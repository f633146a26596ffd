"""One registry of dataset names: what each is, how to load it and what it is evaluated in.

Names (BENCHMARKS.md, "Dataset names the CLI accepts"):

- the 18 D4RL v2 locomotion sets `{hopper,walker2d,halfcheetah}-{level}-v2`, evaluated in
  Gymnasium Hopper-v4 / Walker2d-v4 / HalfCheetah-v4 with D4RL's reference scores;
- `liquidation-random-v0`, generated from a seed and evaluated in the pure-JAX liquidation env
  (`jaxrl_bayes.envs.liquidation`, imported only when used);
- any id containing '/' is a Minari id (including the project's own
  `jaxrl_bayes/<env>/<level>-v0`), evaluated in the environment recorded in its metadata;
- a local path (`spec_for_path`, also reached through `get_spec`): a D4RL-schema `.hdf5`/`.h5`
  file or a Minari dataset directory (the one holding `data/`). `get_spec` treats its argument
  as a path when it ends in .hdf5/.h5, starts with '/', '.', or '~', or exists on disk
  (the 19 fixed names above always mean themselves).

Every spec's `load()` validates the data once (`dataset.validate_raw`: keys, dtypes, ranks,
lengths, finite values, at least `dataset.MIN_TRANSITIONS` transitions) and checks its widths
against the evaluation environment (or, without one, the registry's widths), so a file under a
wrong name is refused before any training.

A local file's evaluation environment is the `eval_env` argument (any Gymnasium id), else the
one the file records (an hdf5 root attribute `env_id` or dataset `metadata/env_id`; Minari's
eval_env_spec / env_spec), else none: then `evaluation.evaluator_for(spec)` is None and
`evaluation.evaluate_on` raises (training works; only the caller can say that no returns can be
measured). Its reference scores are the `ref_min_score`/`ref_max_score` arguments (both or
neither), else D4RL's when the environment is a D4RL robot at v3/v4, else a Minari directory's
own metadata, else None (raw returns only). Its termination function is the robot's (hopper, walker2d, halfcheetah) when
the environment is one of them, else `termination.no_termination`: model rollouts never
terminate (they only stop at non-finite states), with a warning.

Reference scores of Minari datasets: D4RL's reference returns are used only when the recorded
environment is a D4RL robot at version v3 or v4 (same MDP as the D4RL data). Minari's
`mujoco/*` datasets are collected in v5 environments (different foot friction and terminal
alive bonus), where D4RL's references do not apply: for those the dataset's own
`ref_min_score`/`ref_max_score` metadata is used if present (Minari's, not comparable with
D4RL-normalised numbers in the papers), else the scores are unknown (None) and only raw
returns can be reported.

A spec holds facts only (environment, reference scores, widths): `jaxrl_bayes.evaluation` builds
the evaluator (`evaluator_for`, `evaluate_on`) and the normalised score (`normalize_for`) from
them, so this package never imports the evaluation code.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import warnings
from typing import Any, Callable, Optional

import numpy as np

from jaxrl_bayes import termination
from jaxrl_bayes.data import d4rl
from jaxrl_bayes.data.dataset import Dataset, Widths
from jaxrl_bayes.errors import UserError

LIQUIDATION_NAME = "liquidation-random-v0"
ROBOT_FAMILIES = {"hopper": "hopper", "walker2d": "walker2d", "halfcheetah": "halfcheetah"}
# Environment versions that share the model of D4RL's v2 data (v3 collected it; v4 = v3 on
# the new mujoco bindings).
D4RL_COMPATIBLE_VERSIONS = (3, 4)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the project needs to know about one dataset name.

    Attributes:
      name: the registry name.
      family: 'hopper', 'walker2d', 'halfcheetah', 'liquidation' or 'other'.
      source: 'd4rl', 'minari', 'liquidation', 'hdf5' (a local file) or 'minari-dir'.
      loader: (widths=...) -> Dataset, validated (may download; see the source module);
        call `load()`, which passes the widths to check.
      ref_min_score, ref_max_score: reference returns for the normalised score, or None.
      termination_fn: (obs, act, next_obs) -> bool, from `jaxrl_bayes.termination`.
      eval_env_id: Gymnasium id of the evaluation env, or None (liquidation: a JAX env).
      obs_dim, act_dim: widths where known, else None.
      eval_env_spec: what `gym.make` gets for evaluation and width checks: the id, or the
        full `EnvSpec` recorded by Minari (keeps its kwargs and time limit); None if none.
    """

    name: str
    family: str
    source: str
    loader: Callable[..., Dataset] = dataclasses.field(repr=False)
    ref_min_score: Optional[float]
    ref_max_score: Optional[float]
    termination_fn: Callable = dataclasses.field(repr=False)
    eval_env_id: Optional[str]
    obs_dim: Optional[int] = None
    act_dim: Optional[int] = None
    eval_env_spec: Any = dataclasses.field(default=None, repr=False, compare=False)

    def expected_widths(self) -> Optional[Widths]:
        """(obs_dim, act_dim, who expects them): the evaluation environment's widths, else the
        registry's, else None (nothing to check against)."""
        if self.eval_env_spec is not None:
            obs_dim, act_dim = _env_widths(self.eval_env_spec)
            return obs_dim, act_dim, f"the evaluation environment {self.eval_env_id}"
        if self.obs_dim is not None or self.act_dim is not None:
            return self.obs_dim, self.act_dim, "the registry"
        return None

    def load(self) -> Dataset:
        """The validated `Dataset`: `dataset.validate_raw`'s checks plus the widths of
        `expected_widths()`.

        Raises:
          DatasetError (a UserError): one line naming the dataset, file, key and what to do.
        """
        return self.loader(widths=self.expected_widths())


def list_datasets() -> list[str]:
    """The fixed names (D4RL v2 and liquidation); any id with '/' is also accepted (Minari)."""
    return list(d4rl.NAMES) + [LIQUIDATION_NAME]


def _env_widths(env: Any) -> tuple[int, int]:
    """(obs_dim, act_dim) of a Gymnasium id or EnvSpec, read from its spaces.

    Raises:
      UserError: the environment cannot be made here.
    """
    try:
        if isinstance(env, str):
            return _env_widths_by_id(env)
        import gymnasium as gym

        return _widths_of(_quiet_make(gym, env))
    except Exception as e:  # noqa: BLE001 - gymnasium raises many types for a missing env
        env_id = env if isinstance(env, str) else getattr(env, "id", env)
        raise UserError(f"cannot make the evaluation environment {env_id!r} "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); install it, or "
                        f"give another Gymnasium id") from e


@functools.lru_cache(maxsize=None)
def _env_widths_by_id(env_id: str) -> tuple[int, int]:
    import gymnasium as gym

    return _widths_of(_quiet_make(gym, env_id))


def _quiet_make(gym: Any, env: Any) -> Any:
    """gym.make without the v4 'out of date' notice (D4RL's data is v3/v4 on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        return gym.make(env)


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
        name=name, family=env, source="d4rl", loader=functools.partial(d4rl.load, name),
        ref_min_score=d4rl.REF_MIN_SCORE[env], ref_max_score=d4rl.REF_MAX_SCORE[env],
        termination_fn=termination.get_termination_fn(env), eval_env_id=env_id,
        obs_dim=d4rl.OBS_DIMS[env], act_dim=d4rl.ACT_DIMS[env], eval_env_spec=env_id)


def _liquidation_spec() -> DatasetSpec:
    from jaxrl_bayes.envs import liquidation

    def load(widths=None) -> Dataset:
        raw = liquidation.generate_dataset(seed=0)
        return Dataset.from_arrays(**raw, name=LIQUIDATION_NAME, widths=widths)

    return DatasetSpec(
        name=LIQUIDATION_NAME, family="liquidation", source="liquidation", loader=load,
        ref_min_score=float(liquidation.REF_MIN_SCORE),
        ref_max_score=float(liquidation.REF_MAX_SCORE),
        termination_fn=termination.liquidation_termination, eval_env_id=None,
        obs_dim=int(liquidation.OBS_DIM), act_dim=int(liquidation.ACT_DIM))


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


def _termination_for(family: str, env_id: Optional[str], name: str) -> Callable:
    if family in ROBOT_FAMILIES:
        return termination.get_termination_fn(family)
    what = f"environment {env_id!r}" if env_id else "a dataset without an environment"
    warnings.warn(
        f"no termination rule known for {what} (dataset {name!r}): model rollouts never "
        "terminate (they stop only at non-finite states)", stacklevel=4)
    return termination.no_termination


def _reference_scores(family: str, version: Optional[int], metadata: dict,
                      given: tuple[Optional[float], Optional[float]] = (None, None)
                      ) -> tuple[Optional[float], Optional[float]]:
    """Given scores, else D4RL's for a D4RL robot at v3/v4, else the metadata's, else None."""
    if given != (None, None):
        return given
    if family in ROBOT_FAMILIES and version in D4RL_COMPATIBLE_VERSIONS:
        return d4rl.REF_MIN_SCORE[family], d4rl.REF_MAX_SCORE[family]
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if ref_min is None or ref_max is None:
        return None, None
    return float(ref_min), float(ref_max)


def _minari_spec(dataset_id: str) -> DatasetSpec:
    from jaxrl_bayes.data import minari_data

    mds = minari_data.open_dataset(dataset_id)
    return _spec_of_minari(mds, dataset_id, "minari",
                           functools.partial(minari_data.load, dataset_id))


def _spec_of_minari(mds: Any, name: str, source: str, loader: Callable[..., Dataset],
                    eval_env: Any = None, refs: tuple = (None, None)) -> DatasetSpec:
    from jaxrl_bayes.data import minari_data

    env_spec = eval_env if eval_env is not None else minari_data.eval_env_spec(mds)
    env_id = env_spec.id if env_spec is not None else None
    family, version = family_of_env(env_id)
    ref_min, ref_max = _reference_scores(family, version, mds.storage.metadata, refs)
    obs_space, act_space = mds.observation_space, mds.action_space
    obs_dim = int(np.prod(obs_space.shape)) if obs_space.shape else None
    act_dim = int(np.prod(act_space.shape)) if act_space.shape else None
    return DatasetSpec(
        name=name, family=family, source=source, loader=loader,
        ref_min_score=ref_min, ref_max_score=ref_max,
        termination_fn=_termination_for(family, env_id, name),
        eval_env_id=env_id, obs_dim=obs_dim, act_dim=act_dim, eval_env_spec=env_spec)


def _gym_spec(env_id: str, where: str) -> Any:
    """The registered Gymnasium `EnvSpec` of `env_id`, or a one-line UserError."""
    import gymnasium as gym

    try:
        return gym.spec(env_id)
    except Exception as e:  # noqa: BLE001 - NameNotFound, VersionNotFound, ...
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"{where}: {env_id!r} is not a registered Gymnasium environment."
                        f"{hint} Give an id such as 'Hopper-v4'") from e


def looks_like_path(name: str) -> bool:
    """True when `get_spec` reads `name` as a local path rather than a registry name."""
    return (name.lower().endswith((".hdf5", ".h5")) or name.startswith(("/", ".", "~"))
            or os.path.exists(name))


def spec_for_path(path: str | os.PathLike, eval_env: Optional[str] = None,
                  ref_min_score: Optional[float] = None,
                  ref_max_score: Optional[float] = None) -> DatasetSpec:
    """The `DatasetSpec` of a local D4RL-schema hdf5 file or Minari dataset directory.

    Args:
      path: a `.hdf5`/`.h5` file in the D4RL schema (observations, actions, rewards,
        terminals; optional timeouts, next_observations), or a Minari dataset directory.
      eval_env: Gymnasium id to evaluate in (and check widths against); default: the one the
        file records (see the module docstring), else none.
      ref_min_score, ref_max_score: reference returns for normalised scores (both or
        neither); default: D4RL's for a D4RL robot at v3/v4, else a Minari directory's own,
        else None.

    Returns:
      The spec; `name` is the path as given, `source` 'hdf5' or 'minari-dir'; obs_dim and
      act_dim those of the evaluation environment (hdf5) or of the recorded spaces (Minari),
      None when unknown; without an evaluation environment `eval_env_spec` is None. The data
      is read (validated) by `load()`.

    Raises:
      UserError: no such path, not a dataset, an unregistered `eval_env`, only one reference
        score, or reference scores without an evaluation environment.
    """
    name = os.fspath(path)
    where = f"dataset {name!r}"
    full = os.path.expanduser(name)
    if not os.path.exists(full):
        raise d4rl.DatasetFileNotFoundError(
            f"{where}: no file or directory at {os.path.abspath(full)}; give a D4RL-schema "
            f".hdf5 file or a Minari dataset directory")
    if (ref_min_score is None) != (ref_max_score is None):
        raise UserError(f"{where}: give both ref_min_score and ref_max_score, or neither")
    if ref_min_score is not None and float(ref_min_score) == float(ref_max_score):
        raise UserError(f"{where}: ref_min_score and ref_max_score are equal "
                        f"({ref_min_score}); they must differ")
    refs = ((None, None) if ref_min_score is None
            else (float(ref_min_score), float(ref_max_score)))
    env_spec = _gym_spec(eval_env, where) if eval_env else None
    if os.path.isdir(full):
        from jaxrl_bayes.data import minari_data

        mds = minari_data.open_path(full)
        loader = functools.partial(minari_data.from_minari, mds, name, source=full)
        spec = _spec_of_minari(mds, name, "minari-dir", loader, env_spec, refs)
    else:
        recorded = d4rl.recorded_env_id(full)  # fails early on an unreadable file
        if env_spec is None and recorded:
            env_spec = _gym_spec(recorded, f"{where} (its recorded env_id)")
        env_id = env_spec.id if env_spec is not None else None
        family, version = family_of_env(env_id)
        ref_min, ref_max = _reference_scores(family, version, {}, refs)
        obs_dim, act_dim = _env_widths(env_id) if env_id else (None, None)
        spec = DatasetSpec(
            name=name, family=family, source="hdf5",
            loader=functools.partial(d4rl.load_file, full, name),
            ref_min_score=ref_min, ref_max_score=ref_max,
            termination_fn=_termination_for(family, env_id, name), eval_env_id=env_id,
            obs_dim=obs_dim, act_dim=act_dim, eval_env_spec=env_spec)
    if spec.eval_env_spec is None and refs != (None, None):
        raise UserError(f"{where}: reference scores need an evaluation environment to measure "
                        f"returns in; give eval_env (a Gymnasium id) as well")
    return spec


def get_spec(name: str, eval_env: Optional[str] = None, ref_min_score: Optional[float] = None,
             ref_max_score: Optional[float] = None) -> DatasetSpec:
    """The `DatasetSpec` of a dataset name or local path.

    Args:
      name: a D4RL v2 name, 'liquidation-random-v0', a Minari id (contains '/'), or a local
        path (see `looks_like_path`, `spec_for_path`).
      eval_env, ref_min_score, ref_max_score: only for a local path (`spec_for_path`);
        registry names have their own and refuse these.

    Returns:
      The spec (a Minari id is opened, not loaded, to read its metadata).

    Raises:
      UserError: unknown name (the message gives the closest match and the known names),
        or eval_env / reference scores given with a registry name.
      MinariNotFoundError: a Minari id that is neither local nor downloadable.
    """
    name = os.fspath(name)
    if name not in d4rl.NAMES and name != LIQUIDATION_NAME and looks_like_path(name):
        return spec_for_path(name, eval_env, ref_min_score, ref_max_score)
    given = [k for k, v in (("eval_env", eval_env), ("ref_min_score", ref_min_score),
                            ("ref_max_score", ref_max_score)) if v is not None]
    if given:
        raise UserError(f"dataset {name!r} is a registry name with its own evaluation "
                        f"environment and reference scores; {', '.join(given)} apply only to "
                        f"a local file path")
    if name in d4rl.NAMES:
        return _d4rl_spec(name)
    if name == LIQUIDATION_NAME:
        return _liquidation_spec()
    if "/" in name:
        return _minari_spec(name)
    known = list_datasets()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UserError(
        f"unknown dataset {name!r}.{hint} Known names: {', '.join(known)}; or a Minari id "
        f"containing '/', e.g. 'mujoco/walker2d/medium-v0', or a path to a D4RL-schema .hdf5 "
        f"file or Minari dataset directory.")


def load_dataset(name: str, **kwargs) -> Dataset:
    """Loads a dataset by name or path, validated (widths against its evaluation environment).

    Args:
      name: see `get_spec`.
      **kwargs: eval_env, ref_min_score, ref_max_score for a local path (`get_spec`).

    Returns:
      The `Dataset`.
    """
    return get_spec(name, **kwargs).load()
