"""Deployable policy files: one `.npz` holding a trained deterministic policy and its normalizers.

A trained agent acts with tanh(mean) of its tanh-Gaussian policy (`networks.TanhGaussianPolicy`)
applied to normalized observations (obs - obs_mean) / obs_std, which is exactly
`algos.train.act` (what `Trainer.act_fn(policy_params)` calls) (ALGORITHMS.md §6, "the deployed policy").
`save_policy` writes those parameters and normalizers to one NumPy `.npz` file (no pickle:
plain float32 arrays plus a JSON header stored as UTF-8 bytes), atomically
(`jaxrl_bayes.io.atomic_open`); `load_policy` reads it back as a `DeployedPolicy` whose
`act(obs)` computes the same actions without the training code, data set or dynamics pool.

File layout (format "jaxrl_bayes.policy", version 1):

    header_json          uint8 [n]    UTF-8 JSON: format, version, kind, obs_dim, action_dim,
                                      hidden, activation, log_std_bounds, action, meta
    obs_mean, obs_std    float32 [obs_dim]
    layer{k}_kernel      float32 [in_k, out_k]   k = 0 .. len(hidden) (the last is the output
    layer{k}_bias        float32 [out_k]          layer of width 2 * action_dim: mean, log-std)

`experiments.run` writes `policy_seed{i}.npz` into every finished run directory;
`python -m experiments.evaluate --policy FILE_OR_RUN_DIR` evaluates them.
"""

from __future__ import annotations

import functools
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import networks
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open

FORMAT_NAME = "jaxrl_bayes.policy"
FORMAT_VERSION = 1
KIND = "tanh_gaussian_mlp"
HEADER_KEY = "header_json"
POLICY_FILE_TEMPLATE = "policy_seed{}.npz"  # the name experiments.run gives seed i's policy
_WHERE = ("a finished run directory of `python -m experiments.run` holds policy_seed<i>.npz "
          "(one per seed) next to results.json")


class PolicyFileError(UserError):
    """A policy file that cannot be used: not an npz, another format or version, missing or
    malformed arrays. The message names the file and the problem."""


class PolicyMismatchError(UserError):
    """A policy whose observation/action widths do not fit the environment it is evaluated in."""


class DeployedPolicy(NamedTuple):
    """A loaded policy: parameters, normalizers and the file's header.

    Attributes:
      params: flax parameters of `networks.TanhGaussianPolicy(action_dim, hidden, activation)`.
      obs_mean: float32 [obs_dim].
      obs_std: float32 [obs_dim].
      header: the JSON header (format, version, widths, hidden, activation, meta).
      path: the file it was loaded from ("" if built in memory).
    """

    params: Any
    obs_mean: jax.Array
    obs_std: jax.Array
    header: Mapping[str, Any]
    path: str = ""

    @property
    def obs_dim(self) -> int:
        return int(self.header["obs_dim"])

    @property
    def action_dim(self) -> int:
        return int(self.header["action_dim"])

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.header.get("meta", {})

    @property
    def module(self) -> networks.TanhGaussianPolicy:
        """The flax module the parameters belong to."""
        return policy_module(self.action_dim, self.header["hidden"], self.header["activation"],
                             self.header.get("action_scale", 1.0))

    @property
    def bundle(self) -> tuple[Any, jax.Array, jax.Array]:
        """(params, obs_mean, obs_std): the `params` argument of `act_fn_for(self.module)`."""
        return self.params, self.obs_mean, self.obs_std

    def act(self, obs: jax.Array) -> jax.Array:
        """Deterministic actions tanh(mean) at observations.

        Args:
          obs: [..., obs_dim] observations (raw, un-normalized).

        Returns:
          float32 [..., action_dim] actions in (-1, 1) (jitted; traceable inside jit too).
        """
        obs = jnp.asarray(obs, jnp.float32)
        if obs.ndim < 1 or obs.shape[-1] != self.obs_dim:
            raise PolicyMismatchError(
                f"the policy{' in ' + self.path if self.path else ''} takes observations of width "
                f"{self.obs_dim}, got an array of shape {obs.shape}")
        return _act_jit(self.module, self.bundle, obs)


def policy_module(action_dim: int, hidden: Sequence[int], activation: str = "relu",
                  action_scale: float = 1.0) -> networks.TanhGaussianPolicy:
    """The `TanhGaussianPolicy` of the given sizes (hidden as a tuple, so modules compare equal)."""
    return networks.TanhGaussianPolicy(int(action_dim), tuple(int(h) for h in hidden), activation,
                                       float(action_scale))


def deployed_action(module: networks.TanhGaussianPolicy, bundle, obs: jax.Array) -> jax.Array:
    """clip(c tanh(mean), -1, 1) of `module` at (obs - obs_mean) / obs_std, as `Trainer.act` computes
    it (c = `module.action_scale`, 1 for a plain tanh-Gaussian).

    Args:
      module: the policy module.
      bundle: (params, obs_mean [obs_dim], obs_std [obs_dim]).
      obs: [..., obs_dim].

    Returns:
      [..., action_dim] actions.
    """
    params, mean, std = bundle
    return networks.deployed_action(module, module.apply(params, (obs - mean) / std))


_act_jit = jax.jit(deployed_action, static_argnums=0)


@functools.lru_cache(maxsize=None)
def act_fn_for(module: networks.TanhGaussianPolicy) -> Callable[[Any, jax.Array], jax.Array]:
    """A stable (bundle, obs) -> actions function for `module` (the same object per module).

    Hand it with `params=policy.bundle` to the evaluators (`evaluation.evaluate_on`,
    `envs.liquidation.evaluate_policy`, `evaluate_gym`): policies of one architecture then
    share one compiled evaluation.
    """
    return functools.partial(deployed_action, module)


# ----------------------------------------------------------------------------- save


def _params_to_layers(params, module: networks.TanhGaussianPolicy, obs_dim: int) -> dict[str, np.ndarray]:
    expected = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, obs_dim), jnp.float32))
    got_struct = jax.tree_util.tree_structure(params)
    if got_struct != jax.tree_util.tree_structure(expected):
        raise ValueError(
            f"policy_params do not have the structure of TanhGaussianPolicy(action_dim="
            f"{module.action_dim}, hidden={module.hidden}) on observations of width {obs_dim}: "
            f"got {got_struct}; pass ONE seed's policy parameters (no seed axis)")
    for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(expected)):
        if tuple(np.shape(got)) != tuple(want.shape):
            raise ValueError(
                f"policy_params have a leaf of shape {np.shape(got)} where TanhGaussianPolicy("
                f"action_dim={module.action_dim}, hidden={module.hidden}) on width {obs_dim} has "
                f"{want.shape}; pass ONE seed's policy parameters (no seed axis)")
    dense = params["params"]["MLP_0"]
    out = {}
    for k in range(len(module.hidden) + 1):
        layer = dense[f"Dense_{k}"]
        out[f"layer{k}_kernel"] = np.asarray(layer["kernel"], np.float32)
        out[f"layer{k}_bias"] = np.asarray(layer["bias"], np.float32)
    return out


def _layers_to_params(layers: Mapping[str, np.ndarray], num_layers: int) -> dict:
    return {"params": {"MLP_0": {f"Dense_{k}": {"kernel": jnp.asarray(layers[f"layer{k}_kernel"]),
                                                  "bias": jnp.asarray(layers[f"layer{k}_bias"])}
                                 for k in range(num_layers)}}}


def _json_value(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_value(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return _json_value(np.asarray(x).tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise ValueError(f"meta value {x!r} of type {type(x).__name__} is not JSON-serializable")


def save_policy(path: str | os.PathLike, policy_params, *, obs_mean, obs_std, action_dim: int,
                hidden: Sequence[int], activation: str = "relu", action_scale: float = 1.0,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Writes one deployable policy file (atomically: a temporary file renamed into place).

    Args:
      path: the `.npz` file to write (parent directories are created).
      policy_params: ONE seed's flax parameters of
        `TanhGaussianPolicy(action_dim, hidden, activation)`.
      obs_mean: [obs_dim] observation mean of the normalizer.
      obs_std: [obs_dim] observation std of the normalizer (> 0).
      action_dim: width of the action.
      hidden: hidden widths of the policy MLP.
      activation: hidden activation name (`networks.ACTIVATIONS`).
      action_scale: c >= 1 of `networks.to_env_action` (the file records it; files without it
        read as 1).
      meta: JSON-serializable facts to keep with it (algo, dataset, seed, score, ...).

    Returns:
      the path written.

    Raises:
      ValueError: parameters that do not fit the stated architecture, bad normalizers, or a
        meta value that is not JSON-serializable.
    """
    networks.get_activation(activation)  # unknown names raise here
    mean = np.asarray(obs_mean, np.float32).reshape(-1)
    std = np.asarray(obs_std, np.float32).reshape(-1)
    if mean.shape != std.shape or mean.size == 0:
        raise ValueError(f"obs_mean {np.shape(obs_mean)} and obs_std {np.shape(obs_std)} must be "
                         "vectors of the same width (the observation width)")
    if not (np.all(np.isfinite(mean)) and np.all(std > 0) and np.all(np.isfinite(std))):
        raise ValueError("obs_mean must be finite and obs_std finite and > 0")
    if not 1.0 <= float(action_scale) < float("inf"):
        raise ValueError(f"action_scale must be a finite number >= 1, got {action_scale}")
    module = policy_module(action_dim, hidden, activation, action_scale)
    layers = _params_to_layers(policy_params, module, mean.size)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": KIND,
        "obs_dim": int(mean.size),
        "action_dim": int(action_dim),
        "hidden": list(module.hidden),
        "activation": activation,
        "log_std_bounds": [networks.LOG_STD_MIN, networks.LOG_STD_MAX],
        "action": "clip(action_scale * tanh(mean), -1, 1) of the tanh-Gaussian MLP at (obs - obs_mean) / obs_std",
        "action_scale": float(action_scale),
        "meta": _json_value(dict(meta or {})),
    }
    header_bytes = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), np.uint8)
    path = Path(path)
    with atomic_open(path, "wb") as f:
        np.savez(f, **{HEADER_KEY: header_bytes, "obs_mean": mean, "obs_std": std}, **layers)
    return path


# ----------------------------------------------------------------------------- load


def _bad(path: Path, problem: str) -> PolicyFileError:
    return PolicyFileError(f"{path}: {problem}")


def load_policy(path: str | os.PathLike) -> DeployedPolicy:
    """Reads a policy file written by `save_policy`.

    Args:
      path: the `.npz` file.

    Returns:
      DeployedPolicy.

    Raises:
      FileNotFoundError: no such file (the message says where run directories keep policies).
      PolicyFileError: not an npz file, another format, an unsupported version, missing or
        malformed arrays.
    """
    path = Path(path)
    if path.is_dir():
        raise _bad(path, f"is a directory, not a policy file; {_WHERE}")
    if not path.exists():
        raise FileNotFoundError(f"policy file {path} does not exist; {_WHERE}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise _bad(path, "is a single .npy array, not a policy .npz file")
        with data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except PolicyFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise _bad(path, f"is not a readable .npz policy file ({e}); {_WHERE}") from e
    if HEADER_KEY not in arrays:
        raise _bad(path, f"has no '{HEADER_KEY}' entry: not a {FORMAT_NAME} file "
                         f"(entries: {', '.join(sorted(arrays)) or 'none'})")
    try:
        header = json.loads(arrays[HEADER_KEY].astype(np.uint8).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _bad(path, f"has an unreadable header ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        fmt = header.get("format") if isinstance(header, dict) else None
        raise _bad(path, f"has format {fmt!r}, expected {FORMAT_NAME!r}")
    version = header.get("version")
    if version != FORMAT_VERSION:
        hint = ("written by a newer jaxrl_bayes: upgrade this installation"
                if isinstance(version, int) and version > FORMAT_VERSION else "not a version this code writes")
        raise _bad(path, f"has format version {version!r}; this code reads version {FORMAT_VERSION} ({hint})")
    if header.get("kind", KIND) != KIND:
        raise _bad(path, f"holds a policy of kind {header.get('kind')!r}; only {KIND!r} is supported")
    try:
        obs_dim, action_dim = int(header["obs_dim"]), int(header["action_dim"])
        hidden = [int(h) for h in header["hidden"]]
        activation = str(header["activation"])
        action_scale = float(header.get("action_scale", 1.0))
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"has an incomplete header (needs obs_dim, action_dim, hidden, activation): {e!r}") from e
    try:
        networks.get_activation(activation)
    except ValueError as e:
        raise _bad(path, str(e)) from e
    if not 1.0 <= action_scale < float("inf"):
        raise _bad(path, f"has action_scale {action_scale}; it must be a finite number >= 1")
    widths = [obs_dim, *hidden, 2 * action_dim]
    expected = {"obs_mean": (obs_dim,), "obs_std": (obs_dim,)}
    for k in range(len(widths) - 1):
        expected[f"layer{k}_kernel"] = (widths[k], widths[k + 1])
        expected[f"layer{k}_bias"] = (widths[k + 1],)
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise _bad(path, f"is missing the array(s) {', '.join(missing)} (hidden={hidden}, "
                         f"obs_dim={obs_dim}, action_dim={action_dim})")
    for k, shape in expected.items():
        a = arrays[k]
        if a.shape != shape or a.dtype.kind != "f":
            raise _bad(path, f"array {k} has shape {a.shape} and dtype {a.dtype}; expected float {shape}")
    if not np.all(arrays["obs_std"] > 0):
        raise _bad(path, "obs_std has entries <= 0")
    header = {**header, "hidden": hidden}
    params = _layers_to_params({k: arrays[k].astype(np.float32) for k in expected}, len(widths) - 1)
    return DeployedPolicy(params, jnp.asarray(arrays["obs_mean"], jnp.float32),
                          jnp.asarray(arrays["obs_std"], jnp.float32), header, str(path))


def policy_files(run_dir: str | os.PathLike) -> list[Path]:
    """The `policy_seed<i>.npz` files of a run directory, in seed order.

    Raises:
      FileNotFoundError: the directory does not exist or holds no policy file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; {_WHERE}")
    found = []
    for p in run_dir.glob("policy_seed*.npz"):
        idx = p.name[len("policy_seed"):-len(".npz")]
        if idx.isdigit():
            found.append((int(idx), p))
    if not found:
        hint = (" (results.json is missing too: the run has not finished; resume it with "
                f"`python -m experiments.run --resume {run_dir}`)" if not (run_dir / "results.json").exists()
                else " (it finished before policy files were written; re-run it to get them)")
        raise FileNotFoundError(f"{run_dir} holds no policy_seed<i>.npz file{hint}")
    return [p for _, p in sorted(found)]


def check_widths(policy: DeployedPolicy, obs_dim: int | None, action_dim: int | None, where: str) -> None:
    """Raises PolicyMismatchError when the policy's widths differ from an environment's.

    Args:
      policy: the loaded policy.
      obs_dim, action_dim: the environment's widths (None = unknown, not checked).
      where: what the widths belong to, for the message (e.g. "dataset 'hopper-medium-v2'").
    """
    bad_obs = obs_dim is not None and int(obs_dim) != policy.obs_dim
    bad_act = action_dim is not None and int(action_dim) != policy.action_dim
    if bad_obs or bad_act:
        trained = policy.meta.get("dataset")
        raise PolicyMismatchError(
            f"{policy.path or 'the policy'} maps observations of width {policy.obs_dim} to actions of "
            f"width {policy.action_dim}, but {where} has observations of width {obs_dim} and actions of "
            f"width {action_dim}"
            + (f"; it was trained on {trained!r}: evaluate it there (drop --dataset)" if trained else ""))
