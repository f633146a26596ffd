"""Writers: the local Minari store and D4RL-schema hdf5 files, both written atomically.

Output: the local Minari store (`$MINARI_DATASETS_PATH`, default `~/.minari/datasets`) under
`<namespace>/<env>/<level>-v0`, with the collection env spec, the evaluation env spec, D4RL's
reference scores and the behaviour policy's returns in the metadata; optionally D4RL-schema
hdf5 files (with the root attribute `env_id`, which `data.registry.spec_for_path` reads). Both
are written into a temporary path next to the target and renamed into place (the hdf5 file
built in memory, then written through `jaxrl_bayes.io.atomic_open`, fsynced), so a full disk or
a killed process leaves the previous file or dataset as it was.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable

import gymnasium as gym
import h5py
import numpy as np

from jaxrl_bayes.collect.config import DatasetExistsError
from jaxrl_bayes.collect.episodes import LevelData
from jaxrl_bayes.io import atomic_open



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


def _remove_stale_temporaries(final: Path) -> None:
    """Removes the temporary directories of earlier writes of `final` whose process is gone
    (killed, or crashed: HDF5 can take the process down when the disk fills up)."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue  # not ours, or another user's live process


def _check_space(final: Path, level: LevelData) -> None:
    """Raises OSError(ENOSPC) naming `final` when its file system has clearly too little free
    space for the data: Minari writes through HDF5, which crashes the process (SIGSEGV in
    h5py 3) instead of raising when the disk fills up midway."""
    need = sum(np.asarray(v).nbytes for v in level.arrays.values()) * 2 + (1 << 20)  # + next obs, metadata
    free = shutil.disk_usage(final.parent).free
    if free < need:
        e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final))
        e.add_note(f"the dataset needs about {need / 1e6:.1f} MB there, {free / 1e6:.1f} MB are free")
        raise e


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
      overwrite: replace an existing dataset (else DatasetExistsError, a FileExistsError).
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
        raise DatasetExistsError(
            f"Minari dataset {ds_id!r} already exists at {final}; pass overwrite=True "
            f"(--overwrite) to replace it or choose another namespace/version")
    namespace = ds_id.rsplit("/", 1)[0] if "/" in ds_id else None
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final)
    _check_space(final, level)
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
            "code_permalink": "jaxrl_bayes/collect/protocol.py",
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
    (bool), plus `metadata/<key>` scalar datasets (numbers and strings; others as JSON); the
    root attribute `env_id` is `metadata["env_id"]` when given.
    """
    path = Path(path)
    # built in memory, then written by atomic_open: HDF5 itself crashes the process (SIGSEGV
    # in h5py 3 on closing) when the disk fills up under a compressed dataset, while a full
    # disk under a plain Python write is an OSError that leaves the previous file intact
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        for k, v in level.arrays.items():
            f.create_dataset(k, data=v, compression="gzip" if v.ndim > 1 else None)
        if metadata.get("env_id"):
            f.attrs["env_id"] = str(metadata["env_id"])
        g = f.create_group("metadata")
        for k, v in metadata.items():
            if isinstance(v, bool) or v is None or isinstance(v, (dict, list, tuple)):
                v = json.dumps(v)
            g.create_dataset(k, data=v)
    with atomic_open(path, "wb") as out:
        out.write(image.getbuffer())
    return path


def hdf5_name(family: str, level: str, version: int = 0) -> str:
    """D4RL-style file name: 'walker2d_medium_replay-v0.hdf5'."""
    return f"{family}_{level.replace('-', '_')}-v{version}.hdf5"
