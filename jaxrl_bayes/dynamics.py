"""Ensemble dynamics pool: training, prediction, sampling, elites, save/load (ALGORITHMS.md §1).

A *pool* is P Gaussian MLP members with their parameters stacked on a leading member axis
(`networks.init_ensemble`). Member m maps the normalised input concat(s, a) to the mean and the
log-std of the target [Δs, r] (Δs = s' − s; r is whatever reward the caller trains on: every
caller in the project passes the dataset's raw rewards, and the algorithms normalise the
model's reward samples afterwards with the dataset's `reward_normalizer`). Predictions are
returned in the units the pool was trained on, with the next-state mean s + E[Δs].

Training follows MBPO's `EnsembleDynamicsModel` (Janner et al., 2019; code
`jannerm/mbpo`, `Xingyu-Lin/mbpo_pytorch`) as reused by PMDB (Guo et al., 2022,
`huawei-noah/HEBO/PMDB`):

- Inputs normalised by the data mean/std (MBPO's `StandardScaler`, std < 1e-12 -> 1: the
  project's one standardiser, `data.dataset.mean_std`).
  Targets are also standardised per dimension (`normalize_targets`, a project choice that
  balances the loss across state dimensions; MBPO does not), and un-standardised on output.
- Soft-clamped log-std with learnable per-output bounds (PETS, Chua et al., 2018, App. A.1):
      logstd = max − softplus(max − raw);  logstd = min + softplus(logstd − min)
  and a regulariser coef · (Σ max − Σ min). MBPO parameterises the log-*variance* with bounds
  initialised to 0.5 / −10; the same bounds in log-std are 0.25 / −5 (the defaults here), and
  with NLL and regulariser both written in log-std the loss is exactly half of MBPO's, so the
  coefficient 0.01 keeps its meaning. The bounds are kept per member (MBPO shares one pair
  across the ensemble) so that per-member snapshots and member subsets stay independent.
- Loss per member: mean over batch and output dims of the Gaussian NLL
  0.5·z² + logstd (+0.5·log 2π), optionally β-NLL (Seitzer et al., 2022: each element
  weighted by stop_gradient(σ^{2β})); summed over members; AdamW (optax) with decay on
  kernels only (MBPO decays weights, not biases or bounds).
- Bootstrap: each member trains on its own resample (with replacement) of the training split
  (PETS); each epoch shuffles every member's resample independently.
- Held-out split of min(holdout_ratio·n, max_holdout) transitions (at least
  `data.dataset.MIN_TRANSITIONS` transitions are required, the same minimum every dataset
  loader enforces); MBPO's early stopping:
  after every epoch a member's snapshot is replaced when its validation MSE improves by more
  than 1 %; training stops once no member improved for more than `max_epochs_since_update`
  epochs, and the best snapshots are kept. Validation MSE / NLL are per member and computed in
  the standardised target space (dimensionless: every target dimension counts equally).
- Elites (optional): the `num_elites` members with the lowest validation MSE.

One jitted function runs a whole epoch: per-member shuffles, `lax.scan` over minibatches,
members batched by `jax.vmap`, validation and the snapshot update; the Python loop only reads
one boolean per epoch for early stopping.

Files: `save_pool` writes one `.npz` (arrays + a JSON string with the config, shapes and a
format version; loaded with `allow_pickle=False`) atomically (temporary file in the same
directory, fsync, `os.replace`). `load_pool` rebuilds the exact arrays, so a loaded pool
predicts bit-identically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import zipfile
from typing import Any, Callable, NamedTuple, Optional

import chex
import flax
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxrl_bayes import networks
from jaxrl_bayes.data.dataset import DatasetError, check_enough_transitions, check_finite, mean_std
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open

logger = logging.getLogger(__name__)

FORMAT_NAME = "jaxrl_bayes.dynamics_pool"
FORMAT_VERSION = 1
# MBPO `_save_best`: a member's snapshot is replaced when its holdout loss improves by > 1 %.
IMPROVEMENT_THRESHOLD = 0.01
_LOG_2PI = float(np.log(2.0 * np.pi))


# ----------------------------------------------------------------------------- config & types


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """Hyper-parameters of the dynamics pool (hashable: used as a static field)."""

    num_members: int = 7  # pool size P (PSPO / PMDB use 100; MBPO 7; small default for CPU)
    hidden: tuple[int, ...] = (200, 200, 200, 200)  # MBPO / PMDB hopper; PSPO Table 5: 512 wide
    activation: str = "silu"  # MBPO / PMDB: Swish = SiLU
    learning_rate: float = 1e-3  # MBPO / PMDB
    weight_decay: float = 5e-5  # AdamW decoupled decay (MBPO's L2 is 2.5e-5 .. 1e-4 per layer)
    batch_size: int = 256  # MBPO / PMDB; PSPO Table 5 uses 512
    max_epochs: int = 200  # upper bound on epochs (MBPO trains until early stopping)
    max_epochs_since_update: int = 5  # early-stopping patience (MBPO)
    holdout_ratio: float = 0.1  # MBPO / PMDB: 10 % held out ...
    max_holdout: int = 1000  # ... at most 1000 transitions (MBPO `max_holdout`)
    beta_nll: float = 0.0  # 0 = Gaussian NLL; 0.5 = beta-NLL (Seitzer et al., 2022)
    logstd_bound_coef: float = 0.01  # MBPO / PETS regulariser on the learnable bounds
    num_elites: Optional[int] = None  # MBPO uses 5 of 7; None = all members
    bootstrap: bool = True  # PETS: each member trains on its own bootstrap resample
    normalize_targets: bool = True  # project choice: standardise [Δs, r] per dimension
    init_max_logstd: float = 0.25  # MBPO max log-variance 0.5, written as log-std
    init_min_logstd: float = -5.0  # MBPO min log-variance -10, written as log-std

    def __post_init__(self):
        # A list would make the config unhashable (it is a static pytree field under jit).
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def validate(self) -> None:
        """Raises UserError (a ValueError) for settings that cannot work."""
        problems = []
        if self.num_members < 1:
            problems.append(f"num_members={self.num_members} must be >= 1")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            problems.append(f"hidden={self.hidden} must be a non-empty tuple of positive widths")
        if self.activation not in networks.ACTIVATIONS:
            problems.append(
                f"activation={self.activation!r} unknown; choose one of {sorted(networks.ACTIVATIONS)}"
            )
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} must be >= 1")
        if self.max_epochs < 1:
            problems.append(f"max_epochs={self.max_epochs} must be >= 1")
        if self.max_epochs_since_update < 0:
            problems.append("max_epochs_since_update must be >= 0")
        if not 0.0 <= self.holdout_ratio < 1.0:
            problems.append(f"holdout_ratio={self.holdout_ratio} must be in [0, 1)")
        if self.max_holdout < 0:
            problems.append("max_holdout must be >= 0")
        if not 0.0 <= self.beta_nll <= 1.0:
            problems.append(f"beta_nll={self.beta_nll} must be in [0, 1]")
        if self.num_elites is not None and not 1 <= self.num_elites <= self.num_members:
            problems.append(
                f"num_elites={self.num_elites} must be None or in [1, num_members={self.num_members}]"
            )
        if not self.init_min_logstd < self.init_max_logstd:
            problems.append("init_min_logstd must be < init_max_logstd")
        if problems:
            raise UserError("invalid DynamicsConfig: " + "; ".join(problems))


@flax.struct.dataclass
class DynamicsPool:
    """A trained pool (a pytree; P = number of members, D = obs_dim + 1 outputs).

    Attributes:
      params: member MLP parameters, every leaf with leading axis P.
      max_logstd, min_logstd: [P, D] learned soft bounds of the log-std (standardised space).
      input_mean, input_std: [obs_dim + act_dim] normaliser of concat(s, a).
      target_mean, target_std: [D] standardiser of [Δs, r] (0 / 1 if `normalize_targets` off).
      elites: [E] int32 indices of the best members by validation MSE (arange(P) if
        `config.num_elites` is None).
      val_mse, val_nll: [P] validation MSE / NLL per member (standardised target space).
      config, obs_dim, act_dim: static.
    """

    params: Any
    max_logstd: jax.Array
    min_logstd: jax.Array
    input_mean: jax.Array
    input_std: jax.Array
    target_mean: jax.Array
    target_std: jax.Array
    elites: jax.Array
    val_mse: jax.Array
    val_nll: jax.Array
    config: DynamicsConfig = flax.struct.field(pytree_node=False)
    obs_dim: int = flax.struct.field(pytree_node=False)
    act_dim: int = flax.struct.field(pytree_node=False)

    @property
    def num_members(self) -> int:
        return int(self.max_logstd.shape[0])


class Prediction(NamedTuple):
    """Per-member Gaussian predictions in original units (N members, batch shape B)."""

    next_obs_mean: jax.Array  # [N, *B, obs_dim]  s + E[Δs]
    reward_mean: jax.Array  # [N, *B]
    next_obs_std: jax.Array  # [N, *B, obs_dim]
    reward_std: jax.Array  # [N, *B]


class Sample(NamedTuple):
    """Samples from every requested member (N members, K samples, batch shape B)."""

    next_obs: jax.Array  # [N, K, *B, obs_dim]
    reward: jax.Array  # [N, K, *B]


class TrainReport(NamedTuple):
    """What `train_pool` did (host numpy arrays)."""

    epochs: int  # epochs run
    train_loss: np.ndarray  # [epochs] epoch mean of the minibatch NLL, averaged over members
    val_mse_curve: np.ndarray  # [epochs, P] validation MSE per member after each epoch
    val_mse: np.ndarray  # [P] of the kept (best) snapshots
    val_nll: np.ndarray  # [P]
    elites: np.ndarray  # [E]
    stopped_early: bool  # True if early stopping ended training before max_epochs
    num_train: int
    num_holdout: int
    wall_time_s: float  # whole call, compilation included
    samples_per_second: float  # member-samples (P x minibatch rows) per second of epoch time


class DynamicsFileError(UserError):
    """A file given to `load_pool` is not a readable dynamics pool."""


class DynamicsFileNotFoundError(DynamicsFileError, FileNotFoundError):
    """No file where `load_pool` was pointed."""


# ----------------------------------------------------------------------------- pure pieces


def member_module(config: DynamicsConfig, obs_dim: int) -> networks.MLP:
    """The member network: concat(s, a) -> [mean, raw log-std] of [Δs, r] (2·(obs_dim+1))."""
    return networks.MLP(tuple(int(h) for h in config.hidden), 2 * (obs_dim + 1), config.activation)


def soft_clamp_logstd(raw: jax.Array, max_logstd: jax.Array, min_logstd: jax.Array) -> jax.Array:
    """PETS / MBPO soft clamp: max − softplus(max − raw), then min + softplus(· − min).

    Args:
      raw: unbounded log-std, any shape broadcastable with the bounds.
      max_logstd, min_logstd: bounds (broadcastable).
    Returns:
      log-std, increasing in raw, ≈ raw well inside the bounds, saturating at min below and
      at min + softplus(max − min) = max + log1p(exp(min − max)) (just above max) above.
    """
    logstd = max_logstd - jax.nn.softplus(max_logstd - raw)
    return min_logstd + jax.nn.softplus(logstd - min_logstd)


def gaussian_nll(
    mean: jax.Array, logstd: jax.Array, target: jax.Array, beta: float = 0.0
) -> jax.Array:
    """Elementwise Gaussian negative log-likelihood, optionally β-NLL weighted.

    nll = 0.5·((target − mean)/σ)² + log σ + 0.5·log 2π, times stop_gradient(σ^{2β}) when
    β > 0 (Seitzer et al., 2022). Same shape as the inputs.
    """
    z = (target - mean) * jnp.exp(-logstd)
    nll = 0.5 * z**2 + logstd + 0.5 * _LOG_2PI
    if beta:
        nll = nll * jax.lax.stop_gradient(jnp.exp(2.0 * beta * logstd))
    return nll


def _member_outputs(module, params, max_logstd, min_logstd, x, shared_inputs):
    """Member means and clamped log-stds in standardised space: two [P, R, D] arrays."""
    out = networks.apply_ensemble(module, params, x, shared_inputs=shared_inputs)
    mean, raw = jnp.split(out, 2, axis=-1)
    logstd = soft_clamp_logstd(raw, max_logstd[:, None, :], min_logstd[:, None, :])
    return mean, logstd


def _bounds_regulariser(max_logstd, min_logstd):
    return jnp.sum(max_logstd) - jnp.sum(min_logstd)


# ----------------------------------------------------------------------------- input checks


def _check_training_data(observations, actions, rewards, next_observations):
    arrays = {}
    for name, x, ndim in (
        ("observations", observations, 2),
        ("actions", actions, 2),
        ("rewards", rewards, 1),
        ("next_observations", next_observations, 2),
    ):
        a = np.asarray(x)
        if a.ndim != ndim:
            raise DatasetError(
                f"dynamics training data: {name} must be {ndim}-D ({'[n]' if ndim == 1 else '[n, dim]'}), got shape "
                f"{a.shape}; reshape it (e.g. rewards.reshape(-1)) before training"
            )
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise DatasetError(f"dynamics training data: {name} must be a real numeric array, "
                               f"got dtype {a.dtype}")
        arrays[name] = a
    n = arrays["observations"].shape[0]
    for name, a in arrays.items():
        if a.shape[0] != n:
            raise DatasetError(
                f"dynamics training data: {name} has {a.shape[0]} rows but observations has {n}; every array must "
                f"hold one row per transition"
            )
    if arrays["next_observations"].shape != arrays["observations"].shape:
        raise DatasetError(
            f"dynamics training data: next_observations has shape {arrays['next_observations'].shape} but observations "
            f"has {arrays['observations'].shape}; they must match"
        )
    check_enough_transitions(n, "the dynamics training data")
    check_finite(arrays, "dynamics training data")
    return (arrays[k].astype(np.float64) for k in ("observations", "actions", "rewards", "next_observations"))


# ----------------------------------------------------------------------------- training


class _EpochOut(NamedTuple):
    params: Any
    opt_state: Any
    best: Any
    best_val: jax.Array
    train_loss: jax.Array
    val_mse: jax.Array
    improved: jax.Array


def _make_epoch_fn(module, tx, config: DynamicsConfig, num_batches: int, batch_size: int):
    """Builds the jitted whole-epoch function (shuffle, scan over minibatches, validate)."""

    beta = float(config.beta_nll)
    coef = float(config.logstd_bound_coef)

    def total_loss(tparams, xb, yb):
        mean, logstd = _member_outputs(
            module, tparams["net"], tparams["max_logstd"], tparams["min_logstd"], xb, False
        )
        per_member = jnp.mean(gaussian_nll(mean, logstd, yb, beta), axis=(1, 2))  # [P]
        reg = coef * _bounds_regulariser(tparams["max_logstd"], tparams["min_logstd"])
        return jnp.sum(per_member) + reg, per_member

    def val_metrics(tparams, xv, yv):
        mean, logstd = _member_outputs(
            module, tparams["net"], tparams["max_logstd"], tparams["min_logstd"], xv, True
        )
        mse = jnp.mean((mean - yv) ** 2, axis=(1, 2))
        nll = jnp.mean(gaussian_nll(mean, logstd, yv), axis=(1, 2))
        return mse, nll

    def epoch(tparams, opt_state, best, best_val, key, x, y, boot_idx, xv, yv):
        num_members = boot_idx.shape[0]
        keys = jax.random.split(key, num_members)
        perm = jax.vmap(jax.random.permutation)(keys, boot_idx)  # [P, n_train]
        used = perm[:, : num_batches * batch_size]
        batches = used.reshape(num_members, num_batches, batch_size).transpose(1, 0, 2)

        def step(carry, idx):  # idx [P, batch]
            tp, os_ = carry
            (_, per_member), grads = jax.value_and_grad(total_loss, has_aux=True)(tp, x[idx], y[idx])
            updates, os_ = tx.update(grads, os_, tp)
            return (optax.apply_updates(tp, updates), os_), per_member

        (tparams, opt_state), losses = jax.lax.scan(step, (tparams, opt_state), batches)
        val_mse, _ = val_metrics(tparams, xv, yv)
        improved = val_mse < best_val * (1.0 - IMPROVEMENT_THRESHOLD)  # inf best: first epoch
        best = jax.tree_util.tree_map(
            lambda b, p: jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b), best, tparams
        )
        best_val = jnp.where(improved, val_mse, best_val)
        return _EpochOut(tparams, opt_state, best, best_val, jnp.mean(losses), val_mse, improved)

    return jax.jit(epoch), jax.jit(val_metrics)


def _decay_mask(tparams):
    """AdamW decays kernels only (not biases, not the log-std bounds)."""
    return traverse_util.path_aware_map(lambda path, _: path[-1] == "kernel", tparams)


def train_pool(
    key: chex.PRNGKey,
    observations,
    actions,
    rewards,
    next_observations,
    config: DynamicsConfig = DynamicsConfig(),
    *,
    progress: bool = False,
    log_fn: Optional[Callable[[int, dict], None]] = None,
) -> tuple[DynamicsPool, TrainReport]:
    """Trains a pool of `config.num_members` Gaussian members on (s, a) -> (Δs, r).

    Args:
      key: PRNG key (holdout split, initialisation, bootstrap, shuffles).
      observations: [n, obs_dim] states s.
      actions: [n, act_dim].
      rewards: [n] rewards as the model should predict them (the project passes raw rewards).
      next_observations: [n, obs_dim] successors s'.
      config: hyper-parameters.
      progress: show a tqdm bar over epochs.
      log_fn: optional callback `log_fn(epoch, metrics_dict)` after every epoch.
    Returns:
      (pool, report). The pool holds each member's best snapshot by validation MSE. With no
      held-out rows (holdout_ratio · n < 1) the metrics and early stopping use the training
      split. The normalisers are those of the training split.
    Raises:
      DatasetError (a UserError): inconsistent shapes, non-finite values, fewer than
        `data.dataset.MIN_TRANSITIONS` transitions.
      UserError: an invalid config.
    """
    t_start = time.perf_counter()
    config.validate()
    obs, act, rew, next_obs = _check_training_data(observations, actions, rewards, next_observations)
    n, obs_dim = obs.shape
    act_dim = act.shape[1]
    out_dim = obs_dim + 1

    inputs = np.concatenate([obs, act], axis=1)
    targets = np.concatenate([next_obs - obs, rew[:, None]], axis=1)

    k_split, k_init, k_boot, k_train = jax.random.split(key, 4)
    num_holdout = min(int(n * config.holdout_ratio), config.max_holdout)
    order = np.asarray(jax.random.permutation(k_split, n))
    hold_idx, train_idx = order[:num_holdout], order[num_holdout:]
    num_train = len(train_idx)

    # Normalisers from the training split (what the members are fitted on).
    input_mean, input_std = mean_std(inputs[train_idx])
    if config.normalize_targets:
        target_mean, target_std = mean_std(targets[train_idx])
    else:
        target_mean, target_std = np.zeros(out_dim, np.float32), np.ones(out_dim, np.float32)
    x_all = ((inputs - input_mean) / input_std).astype(np.float32)
    y_all = ((targets - target_mean) / target_std).astype(np.float32)
    x_train, y_train = jnp.asarray(x_all[train_idx]), jnp.asarray(y_all[train_idx])
    if num_holdout > 0:
        x_val, y_val = jnp.asarray(x_all[hold_idx]), jnp.asarray(y_all[hold_idx])
    else:  # no holdout: metrics (and early stopping) on the training split
        x_val, y_val = x_train, y_train

    P = config.num_members
    module = member_module(config, obs_dim)
    tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay, mask=_decay_mask)

    @jax.jit
    def init_state(k_init, k_boot):  # one compilation instead of many small eager ones
        net_params = networks.init_ensemble(module, k_init, P, jnp.zeros((1, obs_dim + act_dim)))
        tparams = {
            "net": net_params,
            "max_logstd": jnp.full((P, out_dim), config.init_max_logstd, jnp.float32),
            "min_logstd": jnp.full((P, out_dim), config.init_min_logstd, jnp.float32),
        }
        if config.bootstrap:  # PETS: per-member resample with replacement
            boot_idx = jax.random.randint(k_boot, (P, num_train), 0, num_train)
        else:
            boot_idx = jnp.broadcast_to(jnp.arange(num_train), (P, num_train))
        return tparams, tx.init(tparams), boot_idx

    tparams, opt_state, boot_idx = init_state(k_init, k_boot)
    batch_size = min(config.batch_size, num_train)
    num_batches = num_train // batch_size  # the remainder of each epoch's shuffle is skipped
    epoch_fn, val_fn = _make_epoch_fn(module, tx, config, num_batches, batch_size)

    best = tparams
    best_val = jnp.full((P,), jnp.inf, jnp.float32)
    losses, val_curve = [], []
    since_update = 0
    stopped_early = False
    epoch_time = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_epochs, desc="dynamics", unit="epoch")
    epoch_keys = jax.random.split(k_train, config.max_epochs)
    for epoch in range(config.max_epochs):
        t0 = time.perf_counter()
        out = epoch_fn(tparams, opt_state, best, best_val, epoch_keys[epoch],
                       x_train, y_train, boot_idx, x_val, y_val)
        improved = np.asarray(out.improved)  # one device sync per epoch
        if epoch > 0:  # the first epoch includes compilation
            epoch_time += time.perf_counter() - t0
        tparams, opt_state, best, best_val = out.params, out.opt_state, out.best, out.best_val
        losses.append(float(out.train_loss))
        val_curve.append(np.asarray(out.val_mse))
        since_update = 0 if improved.any() else since_update + 1
        metrics = {
            "train_loss": losses[-1],
            "val_mse_mean": float(val_curve[-1].mean()),
            "best_val_mse_mean": float(np.asarray(best_val).mean()),
            "epochs_since_update": since_update,
        }
        if log_fn is not None:
            log_fn(epoch, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", val_mse=f"{metrics['val_mse_mean']:.4f}")
        if since_update > config.max_epochs_since_update:
            stopped_early = epoch + 1 < config.max_epochs
            break
    if bar is not None:
        bar.close()
    epochs_run = len(losses)

    val_mse, val_nll = val_fn(best, x_val, y_val)
    val_mse_np = np.asarray(val_mse)
    elites = _elites(val_mse_np, config.num_elites)
    pool = DynamicsPool(
        params=best["net"],
        max_logstd=best["max_logstd"],
        min_logstd=best["min_logstd"],
        input_mean=jnp.asarray(input_mean),
        input_std=jnp.asarray(input_std),
        target_mean=jnp.asarray(target_mean),
        target_std=jnp.asarray(target_std),
        elites=jnp.asarray(elites),
        val_mse=val_mse,
        val_nll=val_nll,
        config=config,
        obs_dim=int(obs_dim),
        act_dim=int(act_dim),
    )
    timed_epochs = max(epochs_run - 1, 0)
    sps = timed_epochs * num_batches * batch_size * P / epoch_time if epoch_time > 0 else float("nan")
    report = TrainReport(
        epochs=epochs_run,
        train_loss=np.asarray(losses),
        val_mse_curve=np.stack(val_curve),
        val_mse=val_mse_np,
        val_nll=np.asarray(val_nll),
        elites=elites,
        stopped_early=stopped_early,
        num_train=num_train,
        num_holdout=num_holdout,
        wall_time_s=time.perf_counter() - t_start,
        samples_per_second=float(sps),
    )
    logger.info(
        "dynamics pool: %d members, %d epochs (early stop: %s), val mse %s, %.0f member-samples/s",
        P, epochs_run, stopped_early, np.round(val_mse_np, 4), sps,
    )
    return pool, report


def _elites(val_mse: np.ndarray, num_elites: Optional[int]) -> np.ndarray:
    if num_elites is None:
        return np.arange(len(val_mse), dtype=np.int32)
    return np.argsort(val_mse, kind="stable")[: min(num_elites, len(val_mse))].astype(np.int32)


# ----------------------------------------------------------------------------- inference


def select(pool: DynamicsPool, members: jax.Array) -> DynamicsPool:
    """The sub-pool of the members `members` (int indices, in that order).

    Elites are recomputed within the subset (the `num_elites` lowest validation MSEs, or all
    of it). `members` must have a static length; its values may be traced.

    Args:
      pool: a pool of P members.
      members: [N] int indices into [0, P).
    Returns:
      a pool of N members.
    """
    members = jnp.asarray(members, jnp.int32)
    chex.assert_rank(members, 1)
    sub_val = pool.val_mse[members]
    n = members.shape[0]
    if pool.config.num_elites is None:
        elites = jnp.arange(n, dtype=jnp.int32)
    else:
        elites = jnp.argsort(sub_val, stable=True)[: min(pool.config.num_elites, n)].astype(jnp.int32)
    return pool.replace(
        params=networks.select_members(pool.params, members),
        max_logstd=pool.max_logstd[members],
        min_logstd=pool.min_logstd[members],
        elites=elites,
        val_mse=sub_val,
        val_nll=pool.val_nll[members],
    )


def _member_gaussians(pool: DynamicsPool, x: jax.Array, shared_inputs: bool) -> tuple[jax.Array, jax.Array]:
    """Means and stds of [Δs, r] in original units, [P, R, D] each, from raw inputs concat(s, a):
    x [R, in] seen by every member, or [P, R, in] one batch per member (`shared_inputs` False)."""
    x = (x - pool.input_mean) / pool.input_std
    module = member_module(pool.config, pool.obs_dim)
    mean, logstd = _member_outputs(module, pool.params, pool.max_logstd, pool.min_logstd, x, shared_inputs)
    return mean * pool.target_std + pool.target_mean, jnp.exp(logstd) * pool.target_std


def predict(pool: DynamicsPool, obs: jax.Array, act: jax.Array, members: Optional[jax.Array] = None) -> Prediction:
    """Gaussian predictions of every requested member, in original units.

    Args:
      pool: the pool.
      obs: [*B, obs_dim] states.
      act: [*B, act_dim] actions.
      members: optional [N] int indices; None = all P members.
    Returns:
      Prediction with next_obs_mean/std [N, *B, obs_dim] and reward_mean/std [N, *B].
    """
    if members is not None:
        pool = select(pool, members)
    chex.assert_shape(obs, (..., pool.obs_dim))
    chex.assert_shape(act, (..., pool.act_dim))
    chex.assert_equal_shape_prefix((obs, act), obs.ndim - 1)
    batch_shape = obs.shape[:-1]
    x = jnp.concatenate([obs, act], axis=-1).reshape(-1, pool.obs_dim + pool.act_dim)
    mean, std = _member_gaussians(pool, x, shared_inputs=True)
    n = mean.shape[0]
    mean = mean.reshape((n,) + batch_shape + (pool.obs_dim + 1,))
    std = std.reshape((n,) + batch_shape + (pool.obs_dim + 1,))
    return Prediction(
        next_obs_mean=obs + mean[..., :-1],
        reward_mean=mean[..., -1],
        next_obs_std=std[..., :-1],
        reward_std=std[..., -1],
    )


def sample(
    pool: DynamicsPool,
    key: chex.PRNGKey,
    obs: jax.Array,
    act: jax.Array,
    num_samples: int = 1,
    members: Optional[jax.Array] = None,
    common_noise: bool = False,
    mean_reward: bool = False,
    mean_next_obs: bool = False,
) -> Sample:
    """Draws next states and rewards from every requested member (no clipping: callers clip).

    s' = s + μ_Δs + σ_Δs·ε, r = μ_r + σ_r·ε', ε ~ N(0, I). Pure, jittable, vmappable.

    Args:
      pool: the pool.
      key: PRNG key.
      obs: [*B, obs_dim]; act: [*B, act_dim].
      num_samples: K samples per member and input (static).
      members: optional [N] int indices; None = all members.
      common_noise: share the standard-normal noise across members (common random numbers):
        a min or a spread over members then measures model disagreement, not sampling noise.
      mean_reward: give each member's mean reward mu_r instead of a draw (PMDB's targets use
        the mean: a min over members then compares expected rewards, not reward noise).
      mean_next_obs: give each member's mean successor mu_s' instead of a draw (a deterministic
        member: in a deterministic environment its noise is fit error, and a draw across a
        termination threshold is a fall the member does not predict).
    Returns:
      Sample with next_obs [N, K, *B, obs_dim] and reward [N, K, *B].
    """
    pred = predict(pool, obs, act, members)
    mean = jnp.concatenate([pred.next_obs_mean, pred.reward_mean[..., None]], axis=-1)[:, None]
    std = jnp.concatenate([pred.next_obs_std, pred.reward_std[..., None]], axis=-1)[:, None]
    # common_noise: one standard-normal draw per (sample, input) shared by every member, so
    # member differences reflect their means and stds only (common random numbers), not noise.
    shape = (1 if common_noise else mean.shape[0], num_samples) + mean.shape[2:]
    draw = mean + std * jax.random.normal(key, shape, mean.dtype)
    reward = jnp.broadcast_to(mean[..., -1], draw.shape[:-1]) if mean_reward else draw[..., -1]
    next_obs = jnp.broadcast_to(mean[..., :-1], draw[..., :-1].shape) if mean_next_obs else draw[..., :-1]
    return Sample(next_obs=next_obs, reward=reward)


class TerminationRates(NamedTuple):
    """How often each member's successors end an episode (N members, batch shape B)."""

    sampled: jax.Array  # [N, *B] fraction of K drawn successors s' ~ N(mu, sigma) that terminate
    at_mean: jax.Array  # [N, *B] bool: the member's mean successor mu terminates


def termination_rates(pool: DynamicsPool, key: chex.PRNGKey, obs: jax.Array, act: jax.Array,
                      termination_fn, num_samples: int = 32, common_noise: bool = False) -> TerminationRates:
    """Each member's probability of a terminal successor at (s, a), estimated from K draws, and
    whether its mean successor is terminal.

    On logged transitions of a deterministic environment (MuJoCo) the two answer different
    questions: the draws count the falls the member's noise model produces near a termination
    threshold; the mean is the member's single best guess of the successor. Set beside the
    logged `terminals` they measure how far the model's terminations are calibrated.

    Args:
      pool: the pool; key: PRNG key; obs [*B, obs_dim], act [*B, act_dim].
      termination_fn: (obs, act, next_obs) -> bool, any leading shape.
      num_samples: K draws per member and input (static).
      common_noise: share the draws across members, as `sample` does.
    Returns:
      TerminationRates with sampled [N, *B] in [0, 1] and at_mean [N, *B].
    """
    draws = sample(pool, key, obs, act, num_samples, common_noise=common_noise).next_obs  # [N, K, *B, S]
    sampled = jnp.mean(termination_fn(obs[None, None], act[None, None], draws).astype(jnp.float32), axis=1)
    at_mean = termination_fn(obs[None], act[None], predict(pool, obs, act).next_obs_mean)
    return TerminationRates(sampled, at_mean)


class OpenLoopError(NamedTuple):
    """Per-member errors of open-loop model rollouts along logged action sequences (H steps)."""

    obs_rmse: jax.Array  # [P, H] RMS over segments and dimensions of (s_hat_h - s_h) / obs_scale
    reward_mae: jax.Array  # [P, H] mean |r_hat_h - r_h| over segments, raw reward units


def open_loop_error(pool: DynamicsPool, obs0: jax.Array, actions: jax.Array, next_obs: jax.Array,
                    rewards: jax.Array, obs_scale: jax.Array) -> OpenLoopError:
    """How far each member's own rollout drifts from logged trajectories (compounding error).

    Every member starts at the logged s_0 and feeds its own mean prediction back in
    (s_hat_{h+1} = s_hat_h + E_m[Δs | s_hat_h, a_h], the logged actions a_h; no sampling noise),
    with `lax.scan` over the H steps. Step h compares s_hat_{h+1} and r_hat_h with the logged
    s_{h+1} and r_h. Step 0 is the one-step error of `predict`; later steps show how the error
    compounds over a rollout horizon. Pure and jittable.

    Args:
      pool: a pool of P members.
      obs0: [B, obs_dim] logged start states.
      actions: [B, H, act_dim] logged actions.
      next_obs: [B, H, obs_dim] logged next states (s_1 .. s_H).
      rewards: [B, H] logged raw rewards.
      obs_scale: [obs_dim] per-dimension scale of the state error (e.g. the data's state std).
    Returns:
      OpenLoopError with [P, H] arrays.
    """
    num = pool.val_mse.shape[0]

    def step(s_hat, logged):
        a, s_true, r_true = logged  # [B, A], [B, S], [B]
        x = jnp.concatenate([s_hat, jnp.broadcast_to(a, s_hat.shape[:-1] + a.shape[-1:])], axis=-1)
        mean, _ = _member_gaussians(pool, x, shared_inputs=False)
        s_next = s_hat + mean[..., :-1]
        err = (s_next - s_true) / obs_scale
        return s_next, (jnp.sqrt(jnp.mean(err**2, axis=(1, 2))), jnp.mean(jnp.abs(mean[..., -1] - r_true), axis=1))

    s0 = jnp.broadcast_to(obs0, (num,) + obs0.shape)
    logged = (jnp.swapaxes(actions, 0, 1), jnp.swapaxes(next_obs, 0, 1), jnp.swapaxes(rewards, 0, 1))
    _, (obs_rmse, reward_mae) = jax.lax.scan(step, s0, logged)
    return OpenLoopError(obs_rmse=obs_rmse.T, reward_mae=reward_mae.T)


# ----------------------------------------------------------------------------- files


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
