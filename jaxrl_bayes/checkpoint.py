"""Checkpoints of arbitrary pytrees with orbax, plus atomic small-file writes.

A checkpoint is one orbax step directory `<directory>/<step>/` holding

- `state`: the leaves of the pytree (any JAX/numpy arrays: the vmapped `TrainState` of a run),
  saved by orbax's `StandardSave` under flat names `leaf_00000 ...`, and
- `meta`: a small JSON dict (chunk index, config hash, the metric history so far, ...), plus
  the tree's structure and every leaf's shape/dtype so a mismatching target is refused with a
  clear message instead of a silent reshape.

Restoring takes a *target* tree (concrete arrays or `jax.ShapeDtypeStruct`s, e.g. from
`jax.eval_shape(init, key)`); leaves come back with exactly the target's shapes and dtypes, so a
CPU round trip is bit-exact. Typed PRNG keys (`jax.random.key`) are stored as their raw key data
and re-wrapped with the target's key implementation; raw uint32 keys (`jax.random.PRNGKey`) are
plain arrays.

Atomicity: orbax writes every step into a temporary directory (`<step>.orbax-checkpoint-tmp-*`)
and renames it into place once complete (with a `commit_success.txt` marker), so a crash or a
kill during a save leaves at most an unfinished temporary directory that `latest_step` and
`restore` ignore. Rotation keeps the newest `max_to_keep` steps (`ocp.CheckpointManager`).
Saves are synchronous, so a checkpoint that `save` returned from is on disk. A save that fails
(a full disk, a quota, a read-only folder) removes its unfinished temporary directory, keeps
every earlier checkpoint, and raises an `OSError` (errno and the step directory as filename;
orbax reports such faults as `ValueError("... [os_error_code='28']")`), so the run can be
resumed from the previous checkpoint once the disk is fixed.

`atomic_write_text` / `atomic_write_json` write small files (configs, results) the same way:
a temporary file in the same directory, fsync, `os.replace`.

Sources: orbax-checkpoint `CheckpointManager` / `args.StandardSave` / `args.JsonSave` API
(orbax-checkpoint 0.12 documentation).
"""

from __future__ import annotations

import contextlib
import errno as errno_lib
import glob
import json
import logging
import os
import re
import shutil
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open

logger = logging.getLogger(__name__)

_FORMAT = "jaxrl_bayes.checkpoint"
_FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, or does not match the structure it is restored into."""


# ----------------------------------------------------------------------------- small files


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically (temporary file in the same directory, fsync, rename).

    An interrupted write leaves the previous file (if any) intact and no partial file under
    `path`.
    """
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """`atomic_write_text` of `json.dumps(obj, indent=2, sort_keys=True)` (strict JSON: no NaN)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- pytree <-> leaves


def _is_typed_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _leaf_spec(x: Any) -> tuple[tuple[int, ...], str]:
    """(shape, dtype name) of a leaf as stored (typed keys as their key data)."""
    if _is_typed_key(x):
        x = jax.eval_shape(jax.random.key_data, x)
    return tuple(int(d) for d in np.shape(x)), str(np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype)


def _to_storable(x: Any) -> Any:
    if _is_typed_key(x):
        return jax.random.key_data(x)
    if isinstance(x, (jax.Array, np.ndarray)):
        return x
    return np.asarray(x)


# ----------------------------------------------------------------------------- checkpointer


class Checkpointer:
    """Saves and restores pytrees under `directory`, keeping the newest `max_to_keep` steps.

    Args:
      directory: folder that holds one sub-folder per step (created if missing).
      max_to_keep: how many finished checkpoints to keep (older ones are deleted after a save);
        None keeps all.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: Optional[int] = 3):
        import orbax.checkpoint as ocp  # heavy import: only when checkpoints are used

        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep={max_to_keep} must be >= 1 or None")
        self._ocp = ocp
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,
            create=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    # -- queries
    def all_steps(self) -> list[int]:
        """Finished checkpoint steps, ascending (unfinished temporary directories excluded)."""
        self._manager.reload()
        return sorted(int(s) for s in self._manager.all_steps())

    def latest_step(self) -> Optional[int]:
        """The newest finished step, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    # -- save
    def save(self, step: int, tree: Any, meta: Optional[dict] = None) -> None:
        """Saves `tree` (any pytree of arrays) and the JSON-serialisable `meta` as `step`.

        Blocks until the checkpoint is complete on disk, then deletes checkpoints beyond
        `max_to_keep`. Saving a step that already exists raises CheckpointError.

        Args:
          step: non-negative integer (e.g. the number of chunks completed).
          tree: pytree whose leaves are arrays (jax, numpy, python scalars; typed PRNG keys ok).
          meta: small dict of JSON values (no NaN); stored next to the arrays.
        """
        step = int(step)
        if step < 0:
            raise ValueError(f"step={step} must be >= 0")
        if step in self.all_steps():
            raise CheckpointError(f"checkpoint step {step} already exists in {self.directory}")
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        specs = [_leaf_spec(x) for x in leaves]
        # orbax refuses zero-size arrays; their content is fully given by shape and dtype
        stored = {
            f"leaf_{i:05d}": _to_storable(x) for i, x in enumerate(leaves) if int(np.prod(specs[i][0])) > 0
        }
        stored["_placeholder"] = np.zeros((1,), np.int8)  # never an empty dict (orbax needs an array)
        full_meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "treedef": str(treedef),
            "leaves": [[list(shape), dtype] for shape, dtype in specs],
            "user": meta if meta is not None else {},
        }
        json.dumps(full_meta, allow_nan=False)  # fail before writing anything if not JSON
        ocp = self._ocp
        try:
            with _quiet_orbax():
                self._manager.save(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardSave(stored), meta=ocp.args.JsonSave(full_meta)),
                    force=True,
                )
                self._manager.wait_until_finished()
        except Exception as e:
            self._remove_unfinished(step)
            raise _as_os_error(e, os.path.join(self.directory, str(step))) from e

    # -- restore
    def restore_meta(self, step: Optional[int] = None) -> dict:
        """The user `meta` dict of `step` (default: the latest) without reading the arrays."""
        step = self._resolve_step(step)
        return self._read_meta(step)["user"]

    def restore(self, target: Any, step: Optional[int] = None) -> tuple[Any, dict]:
        """Restores the tree saved as `step` (default: the latest) into `target`'s structure.

        Args:
          target: a pytree with the saved structure; leaves are arrays or
            `jax.ShapeDtypeStruct`s (typed PRNG key leaves are re-wrapped with their impl).
        Returns:
          (tree, meta): `tree` has `target`'s structure with jax arrays of exactly the target
          leaves' shapes and dtypes; `meta` is the dict given to `save`.
        Raises:
          CheckpointError: no checkpoint, an unreadable one, or a structure/shape/dtype mismatch
            (the message lists the first differences).
        """
        return self._restore(target, self._resolve_step(step), check_treedef=True)

    def _restore(self, target: Any, step: int, check_treedef: bool) -> tuple[Any, dict]:
        full_meta = self._read_meta(step)
        leaves, treedef = jax.tree_util.tree_flatten(target)
        specs = [_leaf_spec(x) for x in leaves]
        saved = [(tuple(shape), dtype) for shape, dtype in full_meta["leaves"]]
        where = f"checkpoint {os.path.join(self.directory, str(step))}"
        if len(saved) != len(specs):
            raise CheckpointError(
                f"{where} holds {len(saved)} arrays but the target has {len(specs)}: it was written "
                f"by a different configuration or by an earlier version of jaxrl_bayes whose learner state "
                f"differs, and cannot be resumed; start the run again (another --out)"
            )
        diffs = [
            f"leaf {i}: saved {s[0]} {s[1]}, target {t[0]} {t[1]}"
            for i, (s, t) in enumerate(zip(saved, specs))
            if s != t
        ]
        if diffs:
            raise CheckpointError(
                f"{where} does not match the target ({len(diffs)} differing arrays; "
                + "; ".join(diffs[:5])
                + "): it was written by a different configuration or by an earlier version of jaxrl_bayes, "
                "and cannot be resumed; start the run again (another --out)"
            )
        if check_treedef and full_meta.get("treedef") != str(treedef):
            logger.warning("%s: tree structure text differs from the target's; restoring by leaf order", where)
        ocp = self._ocp
        abstract = {
            f"leaf_{i:05d}": jax.ShapeDtypeStruct(shape, np.dtype(dtype))
            for i, (shape, dtype) in enumerate(specs)
            if int(np.prod(shape)) > 0
        }
        abstract["_placeholder"] = jax.ShapeDtypeStruct((1,), np.int8)
        try:
            out = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except Exception as e:  # orbax raises a variety of errors for damaged files
            raise CheckpointError(
                f"{where} cannot be read ({type(e).__name__}: {e}); delete that step directory to "
                f"fall back to an older checkpoint, or start a new run"
            ) from e
        restored = []
        for i, x in enumerate(leaves):
            name = f"leaf_{i:05d}"
            shape, dtype = specs[i]
            # Through host numpy: orbax returns arrays *committed* to a device, which jit treats
            # as a different signature (a full recompilation of a resumed run's chunk).
            host = np.asarray(out["state"][name]) if name in abstract else np.zeros(shape, dtype)
            arr = jnp.asarray(host, dtype=np.dtype(dtype))
            if _is_typed_key(x):
                arr = jax.random.wrap_key_data(arr, impl=jax.random.key_impl(x))
            restored.append(arr)
        return jax.tree_util.tree_unflatten(treedef, restored), full_meta["user"]

    def restore_leaves(self, step: Optional[int] = None) -> tuple[list, dict]:
        """The saved leaves in flattening order, without a target (for inspection / comparison).

        Returns:
          (leaves, meta): jax arrays with the recorded shapes and dtypes (typed PRNG keys as
          their raw key data), and the user meta.
        """
        step = self._resolve_step(step)
        specs = self._read_meta(step)["leaves"]
        target = [jax.ShapeDtypeStruct(tuple(shape), np.dtype(dtype)) for shape, dtype in specs]
        return self._restore(target, step, check_treedef=False)

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals
    def _remove_unfinished(self, step: int) -> None:
        """Removes what a failed save of `step` left (its temporary directory), nothing else."""
        for tmp in glob.glob(os.path.join(glob.escape(self.directory), f"{step}.orbax-checkpoint-tmp*")):
            shutil.rmtree(tmp, ignore_errors=True)

    def _resolve_step(self, step: Optional[int]) -> int:
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no finished checkpoint in {self.directory}")
            return steps[-1]
        if int(step) not in steps:
            raise CheckpointError(f"no finished checkpoint step {step} in {self.directory} (have {steps})")
        return int(step)

    def _read_meta(self, step: int) -> dict:
        ocp = self._ocp
        where = f"checkpoint {os.path.join(self.directory, str(step))}"
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = out["meta"]
        except Exception as e:
            raise CheckpointError(f"{where} has no readable meta ({type(e).__name__}: {e}); delete it or start a new run") from e
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise CheckpointError(f"{where} was not written by jaxrl_bayes.checkpoint")
        if meta.get("version") != _FORMAT_VERSION:
            raise CheckpointError(f"{where} has format version {meta.get('version')}; this code reads {_FORMAT_VERSION}")
        return meta


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def _as_os_error(e: Exception, path: str) -> Exception:
    """`e` as an OSError naming `path` when it is a filesystem fault (orbax wraps tensorstore's
    in a ValueError that only quotes the errno), else `e` itself."""
    if isinstance(e, OSError):
        if e.filename is None:
            e.filename = path
        return e
    m = _OS_ERROR_CODE.search(str(e))
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), path)
    if "No space left on device" in str(e):
        return OSError(errno_lib.ENOSPC, os.strerror(errno_lib.ENOSPC), path)
    return e


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Keeps orbax's worker threads from logging a failed save's traceback on the terminal
    (the error is raised to the caller, which reports it)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        absl.setLevel(level)


def save_checkpoint(directory: str | os.PathLike, step: int, tree: Any, meta: Optional[dict] = None,
                    max_to_keep: Optional[int] = 3) -> None:
    """One-shot `Checkpointer(directory, max_to_keep).save(step, tree, meta)`."""
    with Checkpointer(directory, max_to_keep) as ckpt:
        ckpt.save(step, tree, meta)


def restore_checkpoint(directory: str | os.PathLike, target: Any, step: Optional[int] = None) -> tuple[Any, dict]:
    """One-shot `Checkpointer(directory).restore(target, step)` -> (tree, meta)."""
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint directory {os.fspath(directory)!r}")
    with Checkpointer(directory, None) as ckpt:
        return ckpt.restore(target, step)


def latest_step(directory: str | os.PathLike) -> Optional[int]:
    """The newest finished step under `directory` (None if none or no such directory)."""
    if not os.path.isdir(directory):
        return None
    with Checkpointer(directory, None) as ckpt:
        return ckpt.latest_step()
