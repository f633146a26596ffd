"""D4RL v2 locomotion files: names, cache, verified download and the hdf5 reader.

Facts from D4RL (Fu et al., 2020; `d4rl/infos.py`, `d4rl/offline_env.py`), collected in
/work/shared/design/BENCHMARKS.md:

- dataset `walker2d-medium-replay-v2` is the file `walker2d_medium_replay-v2.hdf5` at
  `http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/<file>`;
- the cache directory is `$D4RL_DATASET_DIR` (default `~/.d4rl/datasets`), as in D4RL;
- the hdf5 keys are observations, actions, rewards, terminals, timeouts, usually
  next_observations, plus infos/* and metadata/* (ignored here);
- reference returns for the normalised score (`REF_MIN_SCORE`, `REF_MAX_SCORE`).

A missing file is downloaded (urllib, tqdm bar) into a temporary file in the cache directory,
checked against the known size and SHA-256 where known, and renamed into place, so a file under
its final name is always complete. The base URL can be replaced with `$JAXRL_BAYES_D4RL_URL`
(a mirror) or the `base_url` argument.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from jaxrl_bayes.data.dataset import REQUIRED_KEYS, Dataset, DatasetError, Widths
from jaxrl_bayes.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
BASE_URL_ENV = "JAXRL_BAYES_D4RL_URL"
DATASET_DIR_ENV = "D4RL_DATASET_DIR"

ENVS = ("hopper", "walker2d", "halfcheetah")
LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
NAMES = tuple(f"{env}-{level}-v2" for env in ENVS for level in LEVELS)

# Gymnasium evaluation environments: the v4 robots share the v3 model the data came from.
EVAL_ENV_IDS = {"hopper": "Hopper-v4", "walker2d": "Walker2d-v4", "halfcheetah": "HalfCheetah-v4"}
OBS_DIMS = {"hopper": 11, "walker2d": 17, "halfcheetah": 17}
ACT_DIMS = {"hopper": 3, "walker2d": 6, "halfcheetah": 6}

# D4RL `infos.py` REF_MIN_SCORE / REF_MAX_SCORE (the same for every v2 level of a robot).
REF_MIN_SCORE = {"halfcheetah": -280.178953, "hopper": -20.272305, "walker2d": 1.629008}
REF_MAX_SCORE = {"halfcheetah": 12135.0, "hopper": 3234.3, "walker2d": 4592.3}

# file name -> (size in bytes, SHA-256). Second-hand figures (BENCHMARKS.md); files without an
# entry are accepted with a warning that prints their hash so it can be added here.
KNOWN_FILES: dict[str, tuple[int, str]] = {
    "walker2d_medium_replay-v2.hdf5": (
        86_323_963, "e75de96a4f77acf7d4e0d6fdf0d7ccb177c26c44bb4388e4fd99f543ccfa18db"),
    "hopper_medium_replay-v2.hdf5": (
        75_854_457, "e121c5f7c9857a307baa9edc6a2c3b48e85fedb9ac316ecddd0f48ca7ef4e39b"),
}

# D4RL v2 files all hold `timeouts`; a user's own D4RL-schema file may lack it (no truncations).
REQUIRED_HDF5_KEYS = REQUIRED_KEYS
OPTIONAL_HDF5_KEYS = ("timeouts", "next_observations")
# Where a D4RL-schema file may name its Gymnasium environment: a root attribute, or a scalar
# dataset under metadata/ (what `jaxrl_bayes.collect` writes).
ENV_ID_ATTRS = ("env_id", "env_name", "gym_env", "metadata/env_id")
_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


class D4RLDownloadError(UserError, FileNotFoundError):
    """A D4RL file is not in the cache and could not be downloaded."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """No file at the path given for a dataset."""


class ChecksumError(DatasetError):
    """A downloaded file does not have the expected size or SHA-256."""


def parse_name(name: str) -> tuple[str, str]:
    """Splits a D4RL v2 locomotion name into (env, level).

    Args:
      name: e.g. 'walker2d-medium-replay-v2'.

    Returns:
      ('walker2d', 'medium-replay').

    Raises:
      UserError: for a name outside the 18 v2 locomotion datasets.
    """
    if name not in NAMES:
        raise UserError(f"{name!r} is not a D4RL v2 locomotion dataset; known: {', '.join(NAMES)}")
    env, rest = name.split("-", 1)
    return env, rest[: -len("-v2")]


def file_name(name: str) -> str:
    """'walker2d-medium-replay-v2' -> 'walker2d_medium_replay-v2.hdf5' (D4RL's file naming)."""
    env, level = parse_name(name)
    return f"{env}_{level.replace('-', '_')}-v2.hdf5"


def dataset_dir() -> Path:
    """The D4RL cache directory: `$D4RL_DATASET_DIR`, default `~/.d4rl/datasets`."""
    return Path(os.environ.get(DATASET_DIR_ENV) or Path.home() / ".d4rl" / "datasets").expanduser()


def file_path(name: str) -> Path:
    """Where the file of dataset `name` lives in the cache."""
    return dataset_dir() / file_name(name)


def base_url(override: Optional[str] = None) -> str:
    """The download base URL: `override`, else `$JAXRL_BAYES_D4RL_URL`, else D4RL's server."""
    return (override or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def file_url(name: str, base: Optional[str] = None) -> str:
    """Download URL of dataset `name`."""
    return f"{base_url(base)}/{file_name(name)}"


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: Path, expected_size: Optional[int] = None,
                  expected_sha256: Optional[str] = None, progress: bool = True,
                  timeout: float = _TIMEOUT_S) -> Path:
    """Downloads `url` to `dest` atomically, verifying size and hash where given.

    The bytes go to a temporary file in `dest`'s directory, which is renamed to `dest` only
    after every check passed; on any failure it is deleted, so `dest` never holds a partial
    or unverified file.

    Args:
      url: http(s) URL.
      dest: final path.
      expected_size: bytes, or None if unknown.
      expected_sha256: hex digest, or None if unknown (a warning then prints the digest).
      progress: show a tqdm progress bar.
      timeout: socket timeout in seconds.

    Returns:
      `dest`.

    Raises:
      urllib.error.URLError, http.client.HTTPException, OSError: the transfer failed (a
        dropped connection gives IncompleteRead or OSError).
      ChecksumError: the bytes received are not the expected ones.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            length = int(length) if length is not None else None
            with tqdm(total=length or expected_size, unit="B", unit_scale=True,
                      unit_divisor=1024, desc=dest.name, disable=not progress) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if length is not None and received != length:
            raise OSError(f"connection closed after {received} of {length} bytes")
        if expected_size is not None and received != expected_size:
            raise ChecksumError(
                f"{url} gave {received} bytes, expected {expected_size}; the file was not "
                f"kept. The server or a proxy sent something else: retry, or download it "
                f"yourself and check it before putting it at {dest} (files already in the "
                f"cache are only size-checked)")
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256:
            raise ChecksumError(
                f"{url}: SHA-256 {actual} differs from the expected {expected_sha256}; the "
                f"file was not kept. Retry, or download it yourself and check it before "
                f"putting it at {dest} (files already in the cache are only size-checked, so "
                f"a file you verified by other means is used as is)")
        if expected_sha256 is None:
            warnings.warn(
                f"no known SHA-256 for {dest.name}; downloaded {received} bytes with SHA-256 "
                f"{actual} (add it to jaxrl_bayes.data.d4rl.KNOWN_FILES once verified)",
                stacklevel=2)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _unavailable_message(name: str, path: Path, url: str, reason: str) -> str:
    env, level = parse_name(name)
    return (
        f"D4RL dataset {name!r} is not in the cache and could not be downloaded from {url} "
        f"({reason}); download that URL elsewhere and put the file at {path} (or set "
        f"${DATASET_DIR_ENV} to its directory, or ${BASE_URL_ENV} to a mirror), or generate "
        f"a look-alike with `python -m experiments.collect --env {env} --levels {level}` and "
        f"use the dataset 'jaxrl_bayes/{env}/{level}-v0'")


def ensure_file(name: str, base: Optional[str] = None, progress: bool = True) -> Path:
    """Returns the cached file of D4RL dataset `name`, downloading it if absent.

    A cached file whose size differs from the known size is reported as truncated (it is
    never deleted here: the message says to delete it and run again).

    Args:
      name: a D4RL v2 locomotion name, e.g. 'walker2d-medium-replay-v2'.
      base: download base URL (default: `$JAXRL_BAYES_D4RL_URL`, else D4RL's server).
      progress: show a progress bar while downloading.

    Returns:
      The path of the verified file.

    Raises:
      D4RLDownloadError: absent and the download failed (offline, HTTP error, dropped
        connection); the message names the file, URL, where to put it and how to generate
        a look-alike dataset.
      ChecksumError: the download or the cached file has the wrong size or hash.
    """
    path = file_path(name)
    known = KNOWN_FILES.get(path.name)
    if path.exists():
        if known is not None and path.stat().st_size != known[0]:
            raise ChecksumError(
                f"{path} has {path.stat().st_size} bytes, expected {known[0]}: the file is "
                f"truncated or not the D4RL file. Delete it and run again to re-download it.")
        return path
    url = file_url(name, base)
    logger.info("downloading %s from %s", path.name, url)
    try:
        return download_file(url, path, *(known or (None, None)), progress=progress)
    except ChecksumError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise D4RLDownloadError(_unavailable_message(name, path, url, " ".join(str(e).split()))) from e


def _env_id_of(f: Any) -> Optional[str]:
    for key in ENV_ID_ATTRS:
        value = f.attrs.get(key) if "/" not in key else None
        if value is None and key in f:
            node = f[key]
            value = node[()] if getattr(node, "shape", None) == () else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


_LOCAL_FIX = "replace it with a complete copy"
_CACHE_FIX = "delete it and run again to re-download it"


def _read(path: str | os.PathLike, arrays: bool,
          fix: str = _LOCAL_FIX) -> tuple[dict[str, np.ndarray], Optional[str]]:
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(
            f"no D4RL-schema file at {path}" + (" (it is a directory)" if path.is_dir() else "")
            + "; check the path")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_HDF5_KEYS if k not in f]
            if missing:
                raise DatasetError(
                    f"{path} lacks the D4RL key(s) {missing} (has {sorted(f.keys())}); it is not "
                    f"a D4RL-schema file or it is damaged: {fix}")
            raw = ({k: f[k][()] for k in REQUIRED_HDF5_KEYS + OPTIONAL_HDF5_KEYS if k in f}
                   if arrays else {})
            env_id = _env_id_of(f)
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py reports damage as OSError, KeyError, ...
        reason = " ".join(str(e).split())[:200]
        raise DatasetError(
            f"cannot read {path} ({type(e).__name__}: {reason}): the file is truncated or "
            f"corrupt; {fix}") from e
    return raw, env_id


def read_hdf5(path: str | os.PathLike,
              fix: str = _LOCAL_FIX) -> tuple[dict[str, np.ndarray], Optional[str]]:
    """Reads the arrays of a D4RL-schema hdf5 file, unvalidated, and its recorded env id.

    Args:
      path: the file.
      fix: what the error messages tell the user to do about a damaged file.

    Returns:
      (raw, env_id): observations [N, o], actions [N, a], rewards [N], terminals [N] and, if
      present, timeouts [N] and next_observations [N, o] as numpy arrays (infos/* and other
      metadata ignored); env_id from a root attribute `env_id` (or `env_name`, `gym_env`) or a
      scalar dataset `metadata/env_id`, else None.

    Raises:
      DatasetFileNotFoundError (a FileNotFoundError): no such file.
      DatasetError: unreadable (truncated or corrupt) or a required key missing.
    """
    return _read(path, arrays=True, fix=fix)


def recorded_env_id(path: str | os.PathLike) -> Optional[str]:
    """The Gymnasium id a D4RL-schema file records (see `read_hdf5`), reading no arrays.

    Raises:
      As `read_hdf5`.
    """
    return _read(path, arrays=False)[1]


def load_hdf5(path: str | os.PathLike, fix: str = _LOCAL_FIX) -> dict[str, np.ndarray]:
    """The raw arrays of a D4RL-schema hdf5 file (`read_hdf5` without the env id), unvalidated.

    Pass them to `Dataset.from_arrays`, which validates them.
    """
    return read_hdf5(path, fix)[0]


def load_file(path: str | os.PathLike, name: Optional[str] = None,
              widths: Optional[Widths] = None, fix: str = _LOCAL_FIX) -> Dataset:
    """Loads a D4RL-schema hdf5 file as a validated `Dataset` (D4RL's Q-learning view).

    Args:
      path: the file.
      name: the dataset's name (default: the path).
      widths: optional (obs_dim, act_dim, who expects them) to check the data against.
      fix: what to do about a damaged file (a cache file: delete and re-download).

    Returns:
      The `Dataset`.

    Raises:
      DatasetError: unreadable file or invalid data (see `dataset.validate_raw`).
    """
    raw, _ = read_hdf5(path, fix)
    return Dataset.from_arrays(**raw, name=str(path) if name is None else name, widths=widths,
                               source=str(path))


def load(name: str, base: Optional[str] = None, progress: bool = True,
         widths: Optional[Widths] = None) -> Dataset:
    """Loads D4RL dataset `name` (downloading it if needed) as a validated `Dataset`.

    Args:
      name: e.g. 'hopper-medium-v2'.
      base: download base URL override.
      progress: progress bar while downloading.
      widths: optional (obs_dim, act_dim, who expects them) to check the data against.

    Returns:
      The Q-learning view (`Dataset.from_arrays`) of the file.
    """
    return load_file(ensure_file(name, base, progress), name=name, widths=widths, fix=_CACHE_FIX)
