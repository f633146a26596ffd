"""Training a pool: `train_pool` (MBPO's ensemble training: bootstrap, held-out split, early
stopping on the validation MSE, elites) and its loss, `gaussian_nll`.

One jitted function runs a whole epoch: per-member shuffles, `lax.scan` over minibatches,
members batched by `jax.vmap`, validation and the snapshot update; the Python loop only reads
one boolean per epoch for early stopping.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxrl_bayes import networks
from jaxrl_bayes.data.dataset import DatasetError, check_enough_transitions, check_finite, mean_std
from jaxrl_bayes.dynamics.config import DynamicsConfig
from jaxrl_bayes.dynamics.model import DynamicsPool, _member_outputs, member_module

# The package's name, as before it was split into modules: log filters and formats see the same name.
logger = logging.getLogger("jaxrl_bayes.dynamics")

# MBPO `_save_best`: a member's snapshot is replaced when its holdout loss improves by > 1 %.
IMPROVEMENT_THRESHOLD = 0.01
_LOG_2PI = float(np.log(2.0 * np.pi))


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


# ----------------------------------------------------------------------------- loss


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


def stopping_score(module, tparams, xv, yv) -> jax.Array:
    """[P] geometric mean over target dimensions of each member's held-out MSE."""
    mean, _ = _member_outputs(module, tparams["net"], tparams["max_logstd"], tparams["min_logstd"], xv, True)
    per_dim = jnp.mean((mean - yv) ** 2, axis=1)  # [P, D]
    return jnp.exp(jnp.mean(jnp.log(per_dim + 1e-12), axis=-1))


def _make_epoch_fn(module, tx, config: DynamicsConfig, num_batches: int, batch_size: int):
    """Builds the jitted whole-epoch function (shuffle, scan over minibatches, validate)."""

    beta = float(config.beta_nll)
    coef = float(config.logstd_bound_coef)
    geometric = config.early_stopping == "geometric_mse"

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
        score = stopping_score(module, tparams, xv, yv) if geometric else val_mse
        improved = score < best_val * (1.0 - IMPROVEMENT_THRESHOLD)  # inf best: first epoch
        best = jax.tree_util.tree_map(
            lambda b, p: jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b), best, tparams
        )
        best_val = jnp.where(improved, score, best_val)
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
