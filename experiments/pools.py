"""The dynamics-pool cache: one trained pool per (dataset bytes, DynamicsConfig, dynamics seed).

`$JAXRL_BAYES_CACHE/dynamics/<dataset>-<hash>/pool.npz` (default `~/.cache/jaxrl_bayes`), written
atomically by `dynamics.save_pool`, so an entry exists only once complete; a second algorithm
or seed on the same data loads it instead of training.

One pool is trained once however many processes ask at the same time (two terminals, sweep
trials, nodes sharing the cache folder): the entry's `pool.lock` (`filelock`, an OS lock that
the kernel releases when its process dies, so a killed trainer never blocks the next) is held
while training; a second process says it is waiting for the pool another process is training,
and loads it once written. A failed write (a full disk, a read-only cache) leaves no partial
pool and names the cache and JAXRL_BAYES_CACHE in its error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import filelock
import jax
import numpy as np

from jaxrl_bayes import dynamics
from jaxrl_bayes.checkpoint import atomic_write_json
from jaxrl_bayes.logging import to_json_value

logger = logging.getLogger("experiments.pools")

CACHE_ENV = "JAXRL_BAYES_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxrl_bayes")


def dataset_fingerprint(dataset: Any) -> str:
    """sha256 over the transition arrays (name, size, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    h.update(str(getattr(dataset, "name", "")).encode())
    for field in ("observations", "actions", "rewards", "next_observations", "terminals"):
        arr = np.ascontiguousarray(np.asarray(getattr(dataset, field)))
        h.update(f"{field}:{arr.shape}:{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def cache_dir(dataset_name: str, dyn_json: Mapping[str, Any], fingerprint: str, dynamics_seed: int) -> Path:
    """`$JAXRL_BAYES_CACHE/dynamics/<dataset>-<hash of config, data fingerprint, seed>`."""
    # "targets": what the pool learns; bump it whenever that changes so no stale pool is reused.
    key = json.dumps({"config": dyn_json, "data": fingerprint, "seed": dynamics_seed,
                      "targets": "delta_obs+raw_reward"}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name.strip("/"))
    return cache_root() / "dynamics" / f"{safe}-{digest}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_path(pool_file: Path) -> Path:
    """The cache entry's record (dataset, dynamics config, training report) beside its pool file."""
    return pool_file.parent / "info.json"


def get_or_train_pool(dataset: Any, dataset_name: str, config: dynamics.DynamicsConfig, seed: int, *,
                      progress: bool = True) -> tuple[Any, dict]:
    """Loads the cached pool for (dataset, config, seed), or trains and caches it.

    Args:
      dataset: a `jaxrl_bayes.data.Dataset`.
      dataset_name: names the cache entry (the data's bytes are in its key).
      config: the pool's DynamicsConfig.
      seed: the key of pool training.
      progress: show a progress bar while training.
    Returns:
      (pool loaded from the cache file, info for dynamics.json); an unreadable entry is retrained.
    """
    dyn_json = json.loads(json.dumps(dataclasses.asdict(config)))
    fp = dataset_fingerprint(dataset)
    cdir = cache_dir(dataset_name, dyn_json, fp, seed)
    pool_path = cdir / "pool.npz"
    info: dict[str, Any] = {"cache_dir": str(cdir), "pool_file": str(pool_path), "dataset_fingerprint": fp}
    cached = _load_cached(pool_path, info)
    if cached is not None:
        return cached, info
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(cdir / "pool.lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            logger.warning("waiting for the dynamics pool that another process is training (cache %s); "
                           "it is reused once written", cdir)
            t_wait = time.perf_counter()
            lock.acquire()
            info["waited_s"] = time.perf_counter() - t_wait
        try:
            cached = _load_cached(pool_path, info)  # written by the process we waited for
            if cached is not None:
                return cached, info
            return _train_and_cache(dataset, dataset_name, config, seed, dyn_json, fp, cdir, info, progress)
        finally:
            lock.release()
    except OSError as e:
        e.add_note(f"the dynamics-pool cache is {cache_root()} (set {CACHE_ENV} to use another folder)")
        raise


def _load_cached(pool_path: Path, info: dict[str, Any]) -> Any:
    """The pool in `pool_path` (info updated), or None when absent or unreadable."""
    if not pool_path.is_file():
        return None
    try:
        pool = dynamics.load_pool(str(pool_path))
        info.update(reused=True, pool_sha256=file_sha256(pool_path))
        logger.info("reused cached dynamics pool %s", pool_path.parent)
        return pool
    except (ValueError, OSError) as e:
        logger.warning("cached dynamics pool %s is unreadable (%s); retraining it", pool_path, e)
        return None


def _train_and_cache(dataset: Any, dataset_name: str, config: dynamics.DynamicsConfig, seed: int,
                     dyn_json: dict, fp: str, cdir: Path, info: dict[str, Any], progress: bool) -> tuple[Any, dict]:
    pool_path = cdir / "pool.npz"
    logger.info("training dynamics pool for %s (%d members; cache %s) ...", dataset_name, config.num_members, cdir)
    t0 = time.perf_counter()
    pool, report = dynamics.train_pool(
        jax.random.PRNGKey(seed), dataset.observations, dataset.actions,
        dataset.rewards,  # raw units: each algorithm applies its own reward normalization
        dataset.next_observations, config, progress=progress)
    seconds = time.perf_counter() - t0
    summary: dict[str, Any] = {"train_seconds": seconds}
    for name in ("epochs", "stopped_early", "num_train", "num_holdout"):
        if hasattr(report, name):
            summary[name] = getattr(report, name)
    for name in ("val_mse", "val_nll"):
        if hasattr(report, name):
            summary[name] = np.asarray(getattr(report, name)).tolist()
    if hasattr(report, "val_mse_curve"):  # per epoch, mean over members: did the held-out error stop falling?
        summary["val_mse_curve"] = np.asarray(report.val_mse_curve).mean(axis=1).tolist()
    # info.json first: pool.npz, written last (atomically), is what marks the entry complete
    atomic_write_json(record_path(pool_path), to_json_value(
        {"dataset": dataset_name, "dynamics": dyn_json, "dynamics_seed": seed, "dataset_fingerprint": fp,
         "report": summary}))
    dynamics.save_pool(pool, str(pool_path))
    logger.info("trained dynamics pool in %.1f s%s", seconds,
                f" (mean validation MSE {np.mean(summary['val_mse']):.4g})" if "val_mse" in summary else "")
    pool = dynamics.load_pool(str(pool_path))  # the same bytes a later run or a resume reads
    info.update(reused=False, pool_sha256=file_sha256(pool_path), train_seconds=seconds)
    return pool, info
