"""Pool files: `save_pool` writes one `.npz` (arrays + a JSON string with the config, shapes and a
format version; loaded with `allow_pickle=False`) atomically (temporary file in the same
directory, fsync, `os.replace`). `load_pool` rebuilds the exact arrays, so a loaded pool
predicts bit-identically.

A file records no Python module or class path (only `FORMAT_NAME`, a fixed string, and the
config's fields), so files written before the pool code became a package still load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrl_bayes import networks
from jaxrl_bayes.dynamics.config import DynamicsConfig
from jaxrl_bayes.dynamics.model import DynamicsPool, member_module
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open

FORMAT_NAME = "jaxrl_bayes.dynamics_pool"
FORMAT_VERSION = 1


class DynamicsFileError(UserError):
    """A file given to `load_pool` is not a readable dynamics pool."""


class DynamicsFileNotFoundError(DynamicsFileError, FileNotFoundError):
    """No file where `load_pool` was pointed."""


def _pool_arrays(pool: DynamicsPool) -> dict[str, np.ndarray]:
    arrays = {
        f"params/{k}": np.asarray(v)
        for k, v in traverse_util.flatten_dict(flax.core.unfreeze(pool.params), sep="/").items()
    }
    for name in ("max_logstd", "min_logstd", "input_mean", "input_std", "target_mean",
                 "target_std", "elites", "val_mse", "val_nll"):
        arrays[name] = np.asarray(getattr(pool, name))
    return arrays


def save_pool(pool: DynamicsPool, path: str | os.PathLike) -> None:
    """Writes `pool` to one `.npz` file at `path` (exactly that name), atomically, no pickle.

    The file holds every array plus a JSON header (format, version, obs/act dims, config).
    It is written to a temporary file in the same directory and renamed into place, so an
    interrupted save leaves any previous file intact.
    """
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "obs_dim": pool.obs_dim,
        "act_dim": pool.act_dim,
        "config": dataclasses.asdict(pool.config),
    }
    arrays = _pool_arrays(pool)
    arrays["__header__"] = np.array(json.dumps(header))
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_pool(path: str | os.PathLike) -> DynamicsPool:
    """Reads a pool written by `save_pool`; it predicts bit-identically to the saved one.

    Raises:
      DynamicsFileNotFoundError (a FileNotFoundError and a DynamicsFileError): no file at `path`.
      DynamicsFileError (a UserError): the file is not a readable pool of this format.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DynamicsFileNotFoundError(
            f"no dynamics pool file at {path!r}; train one with dynamics.train_pool and save it "
            f"with dynamics.save_pool, or fix the path"
        )
    fix = "delete it and retrain the pool (dynamics.train_pool + save_pool)"
    try:
        with np.load(path, allow_pickle=False) as data:
            files = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise DynamicsFileError(
            f"{path!r} is not a readable dynamics pool file ({' '.join(str(e).split())}); {fix}") from e
    try:
        header = json.loads(str(files.pop("__header__")))
        if header.get("format") != FORMAT_NAME:
            raise DynamicsFileError(f"{path!r} is not a dynamics pool file (format {header.get('format')!r}); {fix}")
        if header.get("version") != FORMAT_VERSION:
            raise DynamicsFileError(
                f"{path!r} has dynamics pool format version {header.get('version')}, this code reads "
                f"{FORMAT_VERSION}; {fix}"
            )
        cfg = dict(header["config"])
        cfg["hidden"] = tuple(int(h) for h in cfg["hidden"])
        config = DynamicsConfig(**cfg)
        obs_dim, act_dim = int(header["obs_dim"]), int(header["act_dim"])
        flat = {k[len("params/"):]: jnp.asarray(v) for k, v in files.items() if k.startswith("params/")}
        params = traverse_util.unflatten_dict(flat, sep="/")
        fields = {name: jnp.asarray(files[name]) for name in (
            "max_logstd", "min_logstd", "input_mean", "input_std", "target_mean", "target_std",
            "elites", "val_mse", "val_nll")}
    except DynamicsFileError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise DynamicsFileError(f"{path!r} is an incomplete or corrupt dynamics pool file ({e!r}); {fix}") from e
    # Check parameter shapes against the architecture the config describes.
    P = int(fields["max_logstd"].shape[0]) if fields["max_logstd"].ndim == 2 else -1
    module = member_module(config, obs_dim)
    expected = jax.eval_shape(
        lambda: networks.init_ensemble(module, jax.random.PRNGKey(0), max(P, 1), jnp.zeros((1, obs_dim + act_dim)))
    )
    want = {k: v.shape for k, v in traverse_util.flatten_dict(flax.core.unfreeze(expected), sep="/").items()}
    got = {k: v.shape for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    if P < 1 or want != got or fields["max_logstd"].shape != (P, obs_dim + 1):
        raise DynamicsFileError(
            f"{path!r}: parameter shapes do not match its own config (hidden={config.hidden}, "
            f"obs_dim={obs_dim}, act_dim={act_dim}); {fix}"
        )
    return DynamicsPool(params=params, config=config, obs_dim=obs_dim, act_dim=act_dim, **fields)
