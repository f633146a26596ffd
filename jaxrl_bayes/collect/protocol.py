"""The D4RL collection protocol: a resumable online SAC run, then the levels, then the writers.

The training loop follows rlkit's batch RL loop that D4RL used (collect `steps_per_epoch`
transitions, then `steps_per_epoch * utd` SAC updates fused in one `lax.scan`), with the SAC of
`jaxrl_bayes.sac`, its replay in the project's one ring buffer (`jaxrl_bayes.buffer`) and its
evaluations by `evaluation.evaluate_gym` (deterministic policy, episode k reset with seed + k).
Levels are defined in `collect.config`, recorded by `collect.runner`, regrouped by
`collect.episodes` and written by `collect.writers`.

Training is resumable and deterministic by seed: every `checkpoint_every` steps an orbax
checkpoint (`jaxrl_bayes.checkpoint`, `work_dir/checkpoints/<env steps>/`) holds the SAC state,
the PRNG key, the recorded stream and the medium snapshot, and its metadata holds the config,
the evaluation curve, the medium confirmations and the exact MuJoCo state, time-limit counter
and RNG of each sub-environment (as JSON numbers, which round-trip float64 exactly), so a
resumed run continues the interrupted episodes and equals an uninterrupted one.

The medium policy is the first whose routine evaluation reaches the threshold and whose
confirming evaluation (`confirm_episodes` other episodes, same deterministic policy) does too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import gymnasium as gym
import h5py
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import buffer as ring
from jaxrl_bayes import checkpoint, evaluation, sac
from jaxrl_bayes.collect.config import (LEVELS, NEEDS_FINAL, NEEDS_SAC, RESUME_FIELDS,
                                        CollectConfig, DatasetExistsError, GenerateError,
                                        parse_levels)
from jaxrl_bayes.collect.episodes import LevelData, concatenate, episodes_from_stream, summarize
from jaxrl_bayes.collect.runner import Stream, VecRunner, rollout
from jaxrl_bayes.collect.writers import dataset_id, hdf5_name, write_d4rl_hdf5, write_minari
from jaxrl_bayes.data import d4rl
from jaxrl_bayes.io import atomic_open

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_VERSION = 2  # 1 was a single checkpoint.npz
_OLD_CHECKPOINT = "checkpoint.npz"
_REFILL_ROWS = 100_000  # rows per buffer_add call when a resumed run refills its replay
# Evaluation seeds: routine evaluation i uses seed + 100_003 (i + 1), its confirming evaluation
# that + _CONFIRM_SEED_OFFSET; distinct evaluation seeds meet disjoint episodes
# (`evaluation.episode_seed`).
_EVAL_SEED_STRIDE = 100_003
_CONFIRM_SEED_OFFSET = 50_000


class EvalPoint(NamedTuple):
    env_steps: int
    return_mean: float
    return_std: float


class Confirmation(NamedTuple):
    """A routine evaluation that reached the medium threshold, and its confirming evaluation
    of the same deterministic policy on `confirm_episodes` other episodes.

    Attributes:
      env_steps: environment steps of the policy.
      crossing_mean, crossing_std, crossing_episodes: the routine evaluation's returns.
      confirm_mean, confirm_std, confirm_episodes: the confirming evaluation's returns.
      accepted: the confirming mean reached the threshold too (the policy is medium).
    """

    env_steps: int
    crossing_mean: float
    crossing_std: float
    crossing_episodes: int
    confirm_mean: float
    confirm_std: float
    confirm_episodes: int
    accepted: bool


class TrainResult(NamedTuple):
    """What the SAC run leaves for the levels.

    Attributes:
      stream: the recorded replay stream (`Stream.view()`), every transition of the run.
      medium_index: rows of the stream recorded when the medium policy was found, or None.
      medium_params: actor parameters of the medium policy, or None.
      medium_eval: its routine (crossing) evaluation return, or None.
      final_params: actor parameters at the end of the run.
      final_eval: evaluation return at the end.
      curve: the evaluation curve (`EvalPoint`s).
      confirmations: every `Confirmation` run (rejected ones, then the accepted one).
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
    confirmations: list
    env_steps: int
    seconds: float


def _config_key(config: CollectConfig) -> dict:
    d = config.to_json()
    return {k: d[k] for k in RESUME_FIELDS}


def _checkpointer(work_dir: str | os.PathLike) -> checkpoint.Checkpointer:
    return checkpoint.Checkpointer(Path(work_dir) / CHECKPOINT_DIR, max_to_keep=1)


def load_checkpoint_meta(work_dir: str | os.PathLike) -> Optional[dict]:
    """The metadata of the newest training checkpoint in `work_dir`, or None if there is none.

    Raises:
      GenerateError: a checkpoint exists but cannot be read.
    """
    directory = Path(work_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return None
    try:
        with _checkpointer(work_dir) as ckpt:
            return None if ckpt.latest_step() is None else ckpt.restore_meta()
    except checkpoint.CheckpointError as e:
        raise GenerateError(f"the training checkpoint in {directory} cannot be read "
                            f"({' '.join(str(e).split())}); delete it to start over") from e


def _saved_tree(state, key, stream: dict, medium_params) -> dict:
    return {"sac": state, "key": key, "stream": stream, "medium": medium_params}


def _target_tree(state, key, meta: dict, obs_dim: int, act_dim: int) -> dict:
    """The shapes a checkpoint with `meta` was saved with (the stream has `count` rows)."""
    n = int(meta["count"])
    like = Stream(1, obs_dim, act_dim).arrays
    stream = {k: jax.ShapeDtypeStruct((n,) + v.shape[1:], v.dtype) for k, v in like.items()}
    medium = state.actor_params if meta["medium_index"] is not None else None
    return _saved_tree(state, key, stream, medium)


@dataclasses.dataclass
class _Run:
    """A SAC collection run in progress: what a checkpoint holds (SAC state, PRNG key, stream,
    medium snapshot, curve, confirmations) and the live pieces (environments, jitted functions,
    replay buffer). The steps of `train_sac` read and update it in place."""

    runner: VecRunner
    fns: Any  # sac.jitted(config.sac, act_dim)
    state: Any  # the SAC state
    key: jax.Array
    stream: Stream
    curve: list = dataclasses.field(default_factory=list)  # EvalPoints
    confirmations: list = dataclasses.field(default_factory=list)
    medium_index: Optional[int] = None
    medium_params: Any = None
    medium_eval: Optional[float] = None
    last_eval: int = 0  # stream.count at the last routine evaluation
    last_ckpt: int = 0  # stream.count at the last checkpoint
    replay: Any = None  # the ring buffer of every recorded transition (`_refilled_replay`)

    @property
    def obs_dim(self) -> int:
        return self.runner.obs.shape[-1]

    @property
    def act_dim(self) -> int:
        return self.runner.low.shape[0]

    def medium_found(self) -> bool:
        return self.medium_index is not None


def _medium_threshold(config: CollectConfig, stop_at_medium: bool) -> float:
    """The medium threshold, or inf where none can be set and no medium level is wanted."""
    try:
        return config.medium_threshold()
    except GenerateError:
        if stop_at_medium:
            raise
        return float("inf")  # no medium level wanted and no reference to set one


def _start(config: CollectConfig) -> _Run:
    """A fresh run: environments, SAC state from PRNGKey(seed) (first split: the init key)."""
    runner = VecRunner(config.env_id, config.num_envs, config.max_episode_steps, config.seed)
    obs_dim, act_dim = runner.obs.shape[-1], runner.low.shape[0]
    fns = sac.jitted(config.sac, act_dim)
    key = jax.random.PRNGKey(config.seed)
    key, k_init = jax.random.split(key)
    state = sac.init(k_init, config.sac, obs_dim, act_dim)
    stream = Stream(config.sac_steps + config.num_envs, obs_dim, act_dim)
    return _Run(runner, fns, state, key, stream)


def _checkpoint_to_resume(config: CollectConfig, work_dir: Optional[str | os.PathLike],
                          resume: bool) -> Optional[dict]:
    """The metadata of the checkpoint in `work_dir` to continue, or None to start afresh.

    Raises:
      GenerateError: an old-format checkpoint; a checkpoint without `resume`; a checkpoint
        made with other settings.
    """
    if work_dir is None:
        return None
    if (Path(work_dir) / _OLD_CHECKPOINT).exists():
        raise GenerateError(
            f"{Path(work_dir) / _OLD_CHECKPOINT} is a checkpoint of the old npz format, which "
            f"this version cannot resume; finish that run with the code that started it, or "
            f"use another --work-dir")
    meta = load_checkpoint_meta(work_dir)
    ckpt_dir = Path(work_dir) / CHECKPOINT_DIR
    if meta is not None:
        if not resume:
            raise GenerateError(
                f"a training checkpoint exists in {ckpt_dir}: pass resume=True (--resume) to "
                f"continue it, or use another work directory")
        if meta.get("version") != _CHECKPOINT_VERSION or meta.get("config") != _config_key(config):
            diff = sorted(k for k in RESUME_FIELDS
                          if meta.get("config", {}).get(k) != _config_key(config)[k])
            raise GenerateError(
                f"the checkpoint in {ckpt_dir} was made with other settings "
                f"({', '.join(diff) or 'format version'} differ); use the same options or "
                f"another --work-dir")
    return meta


def _restore(run: _Run, config: CollectConfig, work_dir: str | os.PathLike, meta: dict) -> None:
    """Continues `run` from the checkpoint with `meta`: SAC state, key, stream, medium
    snapshot, environments (or, where not restorable, their interrupted episodes cut), curve."""
    ckpt_dir = Path(work_dir) / CHECKPOINT_DIR
    try:
        with _checkpointer(work_dir) as ckpt:
            tree, _ = ckpt.restore(_target_tree(run.state, run.key, meta, run.obs_dim, run.act_dim))
    except checkpoint.CheckpointError as e:
        raise GenerateError(f"the checkpoint in {ckpt_dir} cannot be restored "
                            f"({' '.join(str(e).split())}); delete it to start over") from e
    run.state, run.key = tree["sac"], tree["key"]
    stream = run.stream
    n = int(meta["count"])
    stream.grow(max(stream.capacity, n + config.num_envs))
    for k in Stream.FIELDS:
        stream.arrays[k][:n] = np.asarray(tree["stream"][k])
    stream.count = n
    if meta["medium_index"] is not None:
        run.medium_index, run.medium_eval = meta["medium_index"], meta["medium_eval"]
        run.medium_params = tree["medium"]
    env_state = meta["env_state"]
    if env_state is not None:
        run.runner.set_state({**env_state, "sims": np.asarray(env_state["sims"], np.float64),
                              "obs": np.asarray(env_state["obs"], np.float64)})
    else:  # not restorable: the interrupted episodes end here
        run.runner.obs, _ = run.runner.envs.reset(seed=config.seed + 7919 * (n + 1))
        for e in range(config.num_envs):
            rows = np.flatnonzero(stream.arrays["env_index"][:n] == e)
            if len(rows) and not (stream.arrays["terminals"][rows[-1]]
                                  or stream.arrays["truncations"][rows[-1]]):
                stream.arrays["truncations"][rows[-1]] = True
    run.curve = [EvalPoint(*p) for p in meta["curve"]]
    run.confirmations = [Confirmation(**c) for c in meta.get("confirmations", [])]
    run.last_eval, run.last_ckpt = meta["last_eval"], n
    logger.info("resumed %s at %d environment steps", ckpt_dir, n)


def _save_checkpoint(run: _Run, config: CollectConfig, work_dir: Optional[str | os.PathLike]) -> None:
    """Writes the run's checkpoint, named by its environment steps (nothing when work_dir is None)."""
    if work_dir is None:
        return
    env_state = run.runner.get_state()
    meta = {
        "version": _CHECKPOINT_VERSION, "config": _config_key(config),
        "full_config": config.to_json(), "count": run.stream.count,
        "medium_index": run.medium_index, "medium_eval": run.medium_eval,
        "curve": [list(p) for p in run.curve], "last_eval": run.last_eval,
        "confirmations": [c._asdict() for c in run.confirmations],
        "env_state": None if env_state is None else {
            "elapsed": env_state["elapsed"], "rngs": env_state["rngs"],
            "sims": env_state["sims"].tolist(), "obs": env_state["obs"].tolist()},
    }
    with _checkpointer(work_dir) as ckpt:
        ckpt.save(run.stream.count, _saved_tree(run.state, run.key, run.stream.view(), run.medium_params), meta)


def _to_transition(runner: VecRunner, view: dict) -> ring.Transition:
    """Stream rows as replay transitions, actions mapped from the env's box to [-1, 1]."""
    act = 2.0 * (view["actions"] - runner.low) / (runner.high - runner.low) - 1.0
    return ring.Transition(
        jnp.asarray(view["observations"]), jnp.asarray(act, jnp.float32),
        jnp.asarray(view["rewards"]), jnp.asarray(view["next_observations"]),
        jnp.asarray(view["terminals"], jnp.float32))


def _refilled_replay(run: _Run, config: CollectConfig) -> Any:
    """A replay buffer large enough for the whole run, holding the stream recorded so far
    (after a resume: every transition of the checkpoint)."""
    capacity = max(config.sac_steps, run.stream.count) + config.num_envs * config.epoch_vec_steps
    example = ring.Transition(jnp.zeros(run.obs_dim), jnp.zeros(run.act_dim), jnp.zeros(()),
                              jnp.zeros(run.obs_dim), jnp.zeros(()))
    replay = ring.buffer_init(capacity, example)
    for s in range(0, run.stream.count, _REFILL_ROWS):
        replay = run.fns.buffer_add(replay, _to_transition(
            run.runner, {k: v[s: s + _REFILL_ROWS] for k, v in run.stream.view().items()}))
    return replay


def _evaluator(config: CollectConfig, runner: VecRunner) -> Callable[..., EvalPoint]:
    """run_eval(params, idx, env_steps, confirm=False) -> EvalPoint: routine evaluation `idx`
    (or its confirming evaluation) of the deterministic policy, in the collection's own time
    limit, policy actions mapped to the env's box. One act function for the whole run, so the
    evaluation compiles once."""
    act_dim = runner.low.shape[0]
    eval_spec = dataclasses.replace(gym.spec(config.env_id),
                                    max_episode_steps=config.max_episode_steps)
    low, high = jnp.asarray(runner.low, jnp.float32), jnp.asarray(runner.high, jnp.float32)

    def eval_act(params, obs):
        a = sac.act(params, obs, config.sac, act_dim)
        return low + (a + 1.0) * 0.5 * (high - low)

    def run_eval(params, idx: int, env_steps: int, confirm: bool = False) -> EvalPoint:
        seed = (config.seed + _EVAL_SEED_STRIDE * (idx + 1)
                + (_CONFIRM_SEED_OFFSET if confirm else 0))
        rets = evaluation.evaluate_gym(
            eval_spec, eval_act, num_episodes=config.confirm_episodes if confirm else
            config.eval_episodes, seed=seed, params=params)
        return EvalPoint(env_steps, float(rets.mean()), float(rets.std()))

    return run_eval


def _collect_and_update(run: _Run, config: CollectConfig) -> int:
    """One epoch: `epoch_vec_steps` vector steps (uniform actions before `start_steps`, then
    the SAC actor's samples) recorded and added to the replay, then `updates_per_epoch` SAC
    updates once past `update_after`. The run's key is split into four here. Returns the
    environment steps taken."""
    run.key, k_rand, k_explore, k_update = jax.random.split(run.key, 4)
    stream, runner = run.stream, run.runner
    first = stream.count
    nv = config.epoch_vec_steps
    rand = np.asarray(jax.random.uniform(k_rand, (nv, config.num_envs, run.act_dim),
                                         minval=-1.0, maxval=1.0))
    keys = np.asarray(jax.random.split(k_explore, nv))
    for i in range(nv):
        if stream.count < config.start_steps:
            a = rand[i]
        else:
            a = np.asarray(run.fns.explore(run.state.actor_params,
                                           np.asarray(runner.obs, np.float32), keys[i]))
        stream.add(*runner.step(a))
    run.replay = run.fns.buffer_add(run.replay, _to_transition(
        runner, {k: v[first: stream.count] for k, v in stream.view().items()}))
    if stream.count >= config.update_after:
        run.state, _ = run.fns.update_many(run.state, run.replay, k_update, config.updates_per_epoch)
    return stream.count - first


def _confirms_medium(run: _Run, config: CollectConfig, run_eval: Callable[..., EvalPoint],
                     threshold: float, point: EvalPoint) -> bool:
    """Whether the policy of a routine evaluation that reached the threshold is medium: its
    confirming evaluation (recorded in `run.confirmations`) reaches the threshold too."""
    if config.confirm_episodes == 0:
        return True
    check = run_eval(run.state.actor_params, len(run.curve) - 1, run.stream.count, confirm=True)
    run.confirmations.append(Confirmation(
        point.env_steps, point.return_mean, point.return_std, config.eval_episodes,
        check.return_mean, check.return_std, config.confirm_episodes,
        check.return_mean >= threshold))
    logger.info("SAC %s: confirming evaluation %.1f +- %.1f (%d episodes): %s",
                config.env_id, check.return_mean, check.return_std,
                config.confirm_episodes, "medium" if run.confirmations[-1].accepted else
                "rejected, training on")
    return run.confirmations[-1].accepted


def _evaluate(run: _Run, config: CollectConfig, run_eval: Callable[..., EvalPoint], threshold: float,
              callback: Optional[Callable[[EvalPoint], None]], bar: Any) -> None:
    """The routine evaluation: appended to the curve; the first policy that reaches the
    threshold and is confirmed becomes the medium policy (a copy of its actor parameters)."""
    point = run_eval(run.state.actor_params, len(run.curve), run.stream.count)
    run.curve.append(point)
    run.last_eval = run.stream.count
    if callback is not None:
        callback(point)
    bar.set_postfix(ret=f"{point.return_mean:.1f}")
    logger.info("SAC %s: %d steps, eval return %.1f +- %.1f", config.env_id,
                point.env_steps, point.return_mean, point.return_std)
    if not run.medium_found() and point.return_mean >= threshold and _confirms_medium(
            run, config, run_eval, threshold, point):
        run.medium_index, run.medium_eval = run.stream.count, point.return_mean
        run.medium_params = jax.tree_util.tree_map(jnp.copy, run.state.actor_params)


def _result(run: _Run, run_eval: Callable[..., EvalPoint], stop_at_medium: bool,
            t_start: float) -> TrainResult:
    """The `TrainResult`; the final policy is evaluated unless the last routine evaluation was
    of it (or the run stopped at the medium policy)."""
    curve = run.curve
    final_eval = curve[-1].return_mean if curve and curve[-1].env_steps == run.stream.count else None
    if final_eval is None and not (stop_at_medium and run.medium_found()):
        point = run_eval(run.state.actor_params, len(curve), run.stream.count)
        final_eval = point.return_mean
    return TrainResult(run.stream.view(), run.medium_index, run.medium_params, run.medium_eval,
                       run.state.actor_params, final_eval, curve, run.confirmations,
                       run.stream.count, time.time() - t_start)


def train_sac(config: CollectConfig, work_dir: Optional[str | os.PathLike] = None,
              resume: bool = False, stop_at_medium: bool = False, progress: bool = False,
              callback: Optional[Callable[[EvalPoint], None]] = None) -> TrainResult:
    """Runs online SAC and records every transition (see the module docstring).

    Args:
      config: the collection config (env, SAC hyperparameters, budget).
      work_dir: where the orbax checkpoint (`checkpoints/`) is written every
        `checkpoint_every` steps and at the end; None = no checkpoints.
      resume: continue from the checkpoint in `work_dir` if present (a larger `sac_steps`
        extends a finished run). Without `resume`, an existing checkpoint is an error.
      stop_at_medium: stop once the medium policy is found (enough for random, medium,
        medium-replay).
      progress: tqdm bar over environment steps.
      callback: called with each `EvalPoint`.
    Returns:
      `TrainResult`.
    Raises:
      GenerateError: a checkpoint exists without `resume`, or was made with other settings.
    """
    from tqdm.auto import tqdm

    t_start = time.time()
    threshold = _medium_threshold(config, stop_at_medium)
    run = _start(config)
    meta = _checkpoint_to_resume(config, work_dir, resume)
    if meta is not None:
        _restore(run, config, work_dir, meta)
    run.replay = _refilled_replay(run, config)
    run_eval = _evaluator(config, run.runner)

    bar = tqdm(total=config.sac_steps, initial=min(run.stream.count, config.sac_steps),
               disable=not progress, unit="step", desc=f"SAC {config.env_id}")
    try:
        while run.stream.count < config.sac_steps and not (stop_at_medium and run.medium_found()):
            bar.update(_collect_and_update(run, config))
            finished = run.stream.count >= config.sac_steps
            if run.stream.count - run.last_eval >= config.eval_every or finished:
                _evaluate(run, config, run_eval, threshold, callback, bar)
            if run.stream.count - run.last_ckpt >= config.checkpoint_every:
                _save_checkpoint(run, config, work_dir)
                run.last_ckpt = run.stream.count
        if run.stream.count != run.last_ckpt:
            _save_checkpoint(run, config, work_dir)
    finally:
        bar.close()
        run.runner.close()
    return _result(run, run_eval, stop_at_medium, t_start)


def make_policy(config: CollectConfig, actor_params, act_dim: int) -> Callable:
    """A stochastic rollout policy (obs, key) -> actions sampling from the SAC actor."""
    explore = jax.jit(lambda p, o, k: sac.explore(p, o, k, config.sac, act_dim))
    return lambda obs, key: np.asarray(explore(actor_params, obs, key))





class LevelResult(NamedTuple):
    level: str
    dataset_id: str
    path: Path
    hdf5_path: Optional[Path]
    summary: dict


def _written_by(config_json: dict, kind: str, where: Any) -> bool:
    """Whether the Minari dataset id or hdf5 file `where` was written with `config_json`."""
    try:
        if kind == "minari":
            import minari

            saved = minari.load_dataset(where).storage.metadata["jaxrl_bayes"]["collect_config"]
        else:
            with h5py.File(where, "r") as f:
                saved = json.loads(f["metadata/collect_config"][()])
    except Exception:  # noqa: BLE001 - unreadable or foreign: not ours
        return False
    canon = lambda x: json.dumps(x, sort_keys=True)  # noqa: E731
    return canon(saved) == canon(json.loads(json.dumps(config_json)))


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
      resume: continue a checkpointed SAC run in `work_dir`, and rewrite (identically) the
        datasets and hdf5 files this same config wrote before it stopped (a full disk, a kill).
      overwrite: replace existing datasets with the same ids.
      progress: tqdm bars.
      callback: receives each SAC evaluation point.
    Returns:
      (one `LevelResult` per level, the `TrainResult` or None if no SAC was needed).
    Raises:
      GenerateError: bad input, or the medium threshold was never reached.
      DatasetExistsError (a GenerateError and FileExistsError): a dataset exists and
        `overwrite` is False (checked before any work).
    """
    from minari.storage import get_dataset_path

    levels = parse_levels(levels)
    family, env_id = config.family, config.env_id
    ids = {lv: dataset_id(namespace, family, lv) for lv in levels}
    # --resume continues a collection that stopped while writing (a full disk, a kill): what
    # this same config wrote before is written again, identically (the levels are
    # deterministic); anything else is only replaced with --overwrite
    mine = functools.partial(_written_by, config.to_json()) if resume else (lambda kind, where: False)
    if not overwrite:
        existing = [i for i in ids.values() if Path(get_dataset_path(i)).exists() and not mine("minari", i)]
        if existing:
            raise DatasetExistsError(
                f"Minari dataset(s) {existing} already exist; pass --overwrite to replace them "
                f"or use another --namespace")
    if hdf5_dir is not None and not overwrite:
        existing = [str(Path(hdf5_dir) / hdf5_name(family, lv)) for lv in levels
                    if (Path(hdf5_dir) / hdf5_name(family, lv)).exists()
                    and not mine("hdf5", Path(hdf5_dir) / hdf5_name(family, lv))]
        if existing:
            raise DatasetExistsError(
                f"hdf5 file(s) {existing} already exist; pass --overwrite to replace them "
                f"or use another --hdf5-dir")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    train = None
    needs_medium = bool({"medium", "medium-replay", "medium-expert"} & set(levels))
    if needs_medium:
        config.medium_threshold()  # fails early when no threshold can be set
    if NEEDS_SAC & set(levels):
        stop = not (NEEDS_FINAL & set(levels))
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
    accepted = [c._asdict() for c in train.confirmations if c.accepted] if train else []
    medium_check = {"medium_confirmation": accepted[-1] if accepted else None}

    def get(level: str) -> LevelData:
        if level in data:
            return data[level]
        seed = config.seed + 1_000_003 * (LEVELS.index(level) + 1)
        if level == "random":
            out = rollout(config, None, config.dataset_size, seed, progress, "random")
            policy_info[level] = {"behavior_policy": "uniform random"}
        elif level in ("medium", "expert"):  # sampled from the medium / the final policy
            which, params, ret, steps = (
                ("medium", train.medium_params, train.medium_eval, train.medium_index)
                if level == "medium" else
                ("final", train.final_params, train.final_eval, train.env_steps))
            out = rollout(config, make_policy(config, params, act_dim), config.dataset_size,
                          seed, progress, level)
            policy_info[level] = {"behavior_policy": f"SAC {which} (sampled)",
                                  "policy_eval_return": ret, "policy_env_steps": steps,
                                  **(medium_check if level == "medium" else {})}
        elif level == "medium-replay":
            out = episodes_from_stream({k: v[: train.medium_index] for k, v in train.stream.items()})
            policy_info[level] = {"behavior_policy": "SAC replay buffer until medium",
                                  "policy_env_steps": train.medium_index,
                                  "policy_eval_return": train.medium_eval, **medium_check}
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
            "medium_threshold": config.medium_threshold() if NEEDS_SAC & {level} else None,
            "collect_config": config.to_json(),
        }
        norm = summary["normalized_mean"]
        desc = (f"D4RL-protocol {level} data for {env_id} generated by jaxrl_bayes "
                f"({summary['transitions']} transitions, {summary['episodes']} episodes, "
                f"behaviour return {summary['return_mean']:.1f} +- {summary['return_std']:.1f}"
                + (f", D4RL-normalized {norm:.1f}" if norm is not None else "") + ").")
        path = write_minari(ids[level], level_data, env_spec, eval_spec, meta,
                            overwrite=overwrite or mine("minari", ids[level]), description=desc)
        h5 = None
        if hdf5_dir is not None:
            h5 = write_d4rl_hdf5(Path(hdf5_dir) / hdf5_name(family, level), level_data,
                                 {k: v for k, v in meta.items() if k != "collect_config"}
                                 | {"collect_config": json.dumps(config.to_json())})
        results.append(LevelResult(level, ids[level], path, h5, summary))

    summary_out = {
        "levels": {r.level: {"dataset_id": r.dataset_id, **r.summary} for r in results},
        "curve": [list(p) for p in train.curve] if train is not None else [],
        "medium_index": train.medium_index if train is not None else None,
        "confirmations": [c._asdict() for c in train.confirmations] if train is not None else [],
        "config": config.to_json(),
    }
    with atomic_open(work_dir / "summary.json", "w") as f:
        f.write(json.dumps(summary_out, indent=1))
    return results, train
