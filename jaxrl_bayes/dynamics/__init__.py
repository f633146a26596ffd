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

Modules, by job (every public name is re-exported here, so `dynamics.X` keeps working):

- `config`: `DynamicsConfig`.
- `model`: the member network, `DynamicsPool`, `predict`, `sample`, `select`.
- `training`: `train_pool`, `TrainReport`, the loss `gaussian_nll`, `IMPROVEMENT_THRESHOLD`.
- `diagnostics`: `termination_rates`, `open_loop_error`.
- `files`: `save_pool` / `load_pool` (one `.npz`, no pickle, atomic).
"""

from __future__ import annotations

from jaxrl_bayes.dynamics.config import DynamicsConfig
from jaxrl_bayes.dynamics.diagnostics import OpenLoopError, TerminationRates, open_loop_error, termination_rates
from jaxrl_bayes.dynamics.files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    DynamicsFileError,
    DynamicsFileNotFoundError,
    _pool_arrays,  # tests compare pools array by array
    load_pool,
    save_pool,
)
from jaxrl_bayes.dynamics.model import (
    DynamicsPool,
    Prediction,
    Sample,
    member_module,
    predict,
    sample,
    select,
    soft_clamp_logstd,
)
from jaxrl_bayes.dynamics.training import (
    IMPROVEMENT_THRESHOLD,
    TrainReport,
    gaussian_nll,
    train_pool,
)

__all__ = [
    "DynamicsConfig",
    "DynamicsFileError",
    "DynamicsFileNotFoundError",
    "DynamicsPool",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMPROVEMENT_THRESHOLD",
    "OpenLoopError",
    "Prediction",
    "Sample",
    "TerminationRates",
    "TrainReport",
    "gaussian_nll",
    "load_pool",
    "member_module",
    "open_loop_error",
    "predict",
    "sample",
    "save_pool",
    "select",
    "soft_clamp_logstd",
    "termination_rates",
    "train_pool",
]
