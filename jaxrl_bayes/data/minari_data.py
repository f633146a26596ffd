"""Minari datasets: the local store, an honest download attempt, and flattening to transitions.

Minari (Farama; minari 0.5.x) stores each dataset as `<root>/<id>/data/` (HDF5 + metadata.json)
under `$MINARI_DATASETS_PATH` (default `~/.minari/datasets`). Per episode, observations have
one more row than actions: observation t+1 is the next observation of step t, so every step,
including the last one of a truncated episode, has a true next observation.

Flattening keeps terminations (true ends: `terminals`) and truncations (time limits:
`timeouts`) apart, and keeps truncated steps (unlike D4RL's view, which drops them because its
files lacked a trustworthy next observation there).

A dataset missing locally is downloaded with `minari.download_dataset` only when that can work:
Minari's remote needs the `minari[hf]` extra (huggingface_hub), and offline it retries for
about 24 s before failing. So we first check `HF_HUB_OFFLINE`, the extra, and a 3-second TCP
probe of the remote host, and otherwise fail at once with a message saying what to do.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Any, Optional

import numpy as np

from jaxrl_bayes.data.dataset import Dataset, DatasetError, Widths
from jaxrl_bayes.errors import UserError

HF_HOST = "huggingface.co"
_PROBE_TIMEOUT_S = 3.0
_TRUTHY = ("1", "true", "yes", "on")


class MinariNotFoundError(UserError, FileNotFoundError):
    """A Minari dataset is not in the local store and cannot be downloaded."""


def datasets_root() -> Path:
    """The local Minari store: `$MINARI_DATASETS_PATH`, default `~/.minari/datasets`."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root).expanduser() if root else Path.home() / ".minari" / "datasets"


def local_path(dataset_id: str) -> Path:
    """Directory of `dataset_id` in the local store (it holds `data/` when present)."""
    return datasets_root() / dataset_id


def is_local(dataset_id: str) -> bool:
    """True when `dataset_id` is in the local store."""
    return (local_path(dataset_id) / "data").is_dir()


def download_blocker() -> Optional[str]:
    """Why a Minari download cannot work right now, or None if it may.

    Returns:
      A sentence naming the cause (HF_HUB_OFFLINE set, huggingface_hub missing, remote host
      unreachable), or None.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY:
        return "HF_HUB_OFFLINE is set, so downloads are switched off"
    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")
    if remote.startswith("hf://"):
        if importlib.util.find_spec("huggingface_hub") is None:
            return ("Minari downloads need the huggingface_hub package: "
                    "pip install -e '.[download]' (or pip install 'minari[hf]')")
        try:
            with socket.create_connection((HF_HOST, 443), timeout=_PROBE_TIMEOUT_S):
                pass
        except OSError as e:
            return f"{HF_HOST} is unreachable from this machine ({e})"
    return None


def _not_found_message(dataset_id: str, reason: str) -> str:
    reason = " ".join(reason.split())
    msg = (f"Minari dataset {dataset_id!r} is not in the local store at {local_path(dataset_id)} "
           f"($MINARI_DATASETS_PATH = {datasets_root()}) and cannot be downloaded: {reason}; "
           f"on a machine with network access run `pip install 'minari[hf]' && minari download "
           f"{dataset_id}` and copy the directory there, or set MINARI_DATASETS_PATH to a store "
           f"that has it")
    parts = dataset_id.split("/")
    if parts[0] == "jaxrl_bayes" and len(parts) == 3:
        env, level = parts[1], parts[2].rsplit("-v", 1)[0]
        msg += (f"; this id is written by the project's generator: "
                f"python -m experiments.collect --env {env} --levels {level}")
    return msg


def open_dataset(dataset_id: str, download: bool = True) -> Any:
    """Opens a Minari dataset, from the local store or (if allowed and possible) downloaded.

    Args:
      dataset_id: e.g. 'mujoco/walker2d/medium-v0'.
      download: try Minari's download when the dataset is not local.

    Returns:
      A `minari.MinariDataset`.

    Raises:
      MinariNotFoundError: not local, and download off, impossible or failed.
    """
    import minari

    if not is_local(dataset_id):
        reason = "download=False" if not download else download_blocker()
        if reason is not None:
            raise MinariNotFoundError(_not_found_message(dataset_id, reason))
        try:
            minari.download_dataset(dataset_id)
        except Exception as e:  # Minari raises ValueError/ImportError/HTTP errors alike
            raise MinariNotFoundError(
                _not_found_message(dataset_id, f"the download failed ({e})")) from e
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError as e:
        raise MinariNotFoundError(_not_found_message(dataset_id, str(e))) from e


def eval_env_spec(mds: Any) -> Any:
    """The Gymnasium `EnvSpec` to evaluate a Minari dataset in, or None if not recorded.

    The dataset's evaluation environment if it records one (`eval_env` at creation), else the
    environment that collected it (`dataset.spec.env_spec`), as `recover_environment` does.
    """
    return getattr(mds, "_eval_env_spec", None) or mds.spec.env_spec


def to_arrays(mds: Any) -> dict[str, np.ndarray]:
    """Flattens a Minari dataset's episodes into transitions.

    Args:
      mds: a `minari.MinariDataset` with Box observation and action spaces.

    Returns:
      observations [n, o], actions [n, a], rewards [n], next_observations [n, o],
      terminals [n] (terminations), timeouts [n] (truncations), start_observations [e, o],
      as numpy arrays; n is the total number of steps, e the number of episodes.

    Raises:
      DatasetError: non-Box spaces, or an episode whose array lengths are inconsistent.
    """
    import gymnasium as gym

    name = mds.spec.dataset_id
    for what, space in (("observation", mds.observation_space), ("action", mds.action_space)):
        if not isinstance(space, gym.spaces.Box):
            raise DatasetError(
                f"Minari dataset {name!r} has a {type(space).__name__} {what} space; only "
                f"flat Box spaces are supported: use a dataset with continuous Box spaces")
    cols: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards",
                                             "next_observations", "terminals", "timeouts",
                                             "start_observations")}
    for ep in mds.iterate_episodes():
        obs = np.asarray(ep.observations).reshape(len(ep.observations), -1)
        act = np.asarray(ep.actions).reshape(len(ep.actions), -1)
        steps = len(act)
        if obs.shape[0] != steps + 1 or len(ep.rewards) != steps:
            raise DatasetError(
                f"Minari dataset {name!r}, episode {ep.id}: {obs.shape[0]} observations, "
                f"{steps} actions, {len(ep.rewards)} rewards (expected steps + 1, steps, steps); "
                f"the dataset is damaged: rewrite or re-download it")
        cols["observations"].append(obs[:-1])
        cols["next_observations"].append(obs[1:])
        cols["actions"].append(act)
        cols["rewards"].append(np.asarray(ep.rewards))
        cols["terminals"].append(np.asarray(ep.terminations))
        cols["timeouts"].append(np.asarray(ep.truncations))
        cols["start_observations"].append(obs[:1])
    if not cols["actions"]:
        raise DatasetError(f"Minari dataset {name!r} has no episodes; use a dataset with data")
    return {k: np.concatenate(v, axis=0) for k, v in cols.items()}


def open_path(path: str | os.PathLike) -> Any:
    """Opens a Minari dataset directory given by path (`<dir>/data/metadata.json` or `<dir>/metadata.json`).

    Raises:
      DatasetError: the directory is not a readable Minari dataset.
    """
    from minari.dataset.minari_dataset import MinariDataset

    path = Path(path)
    data = path / "data" if (path / "data").is_dir() else path
    if not (data / "metadata.json").is_file():
        raise DatasetError(
            f"{path} is not a Minari dataset directory (no data/metadata.json in it); give the "
            f"directory that holds data/, or a D4RL-schema .hdf5 file")
    try:
        return MinariDataset(data)
    except Exception as e:  # noqa: BLE001 - Minari reports damage in many types
        raise DatasetError(f"cannot read the Minari dataset at {path} ({type(e).__name__}: "
                           f"{' '.join(str(e).split())[:200]}): it is damaged; rewrite it") from e


def from_minari(mds: Any, name: str, widths: Optional[Widths] = None, source: str = "") -> Dataset:
    """A validated `Dataset` of an opened Minari dataset (truncated steps kept).

    Args:
      mds: a `minari.MinariDataset`.
      name: the dataset's name.
      widths: optional (obs_dim, act_dim, who expects them) to check the data against.
      source: where it lives, for error messages.
    """
    try:
        arrays = to_arrays(mds)
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable episode files
        raise DatasetError(f"cannot read the episodes of Minari dataset {name!r} "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:200]}): it is "
                           f"damaged; rewrite or re-download it") from e
    return Dataset.from_arrays(
        observations=arrays["observations"], actions=arrays["actions"],
        rewards=arrays["rewards"], terminals=arrays["terminals"], timeouts=arrays["timeouts"],
        next_observations=arrays["next_observations"], name=name, drop_timeouts=False,
        start_observations=arrays["start_observations"], widths=widths, source=source)


def load(dataset_id: str, download: bool = True, widths: Optional[Widths] = None) -> Dataset:
    """Loads a Minari dataset as a `Dataset` (truncated steps kept, terminals = terminations).

    Args:
      dataset_id: a Minari id.
      download: allow Minari's download when the dataset is not local.
      widths: optional (obs_dim, act_dim, who expects them) to check the data against.

    Returns:
      The validated `Dataset`.
    """
    return from_minari(open_dataset(dataset_id, download=download), dataset_id, widths)
