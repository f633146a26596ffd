"""The offline `Dataset` pytree and D4RL's Q-learning view of raw episode data.

`Dataset` holds one flat set of transitions (s, a, r, s', terminal) as float32 device arrays,
with the statistics the algorithms normalise by: observation and action mean/std, and the
reward shift/scale of PMDB (Guo et al., 2022, "Model-Based Offline Reinforcement Learning
with Pessimism-Modulated Dynamics Belief"; ALGORITHMS.md "Reward normalization"):
r' = (r - shift) / scale with
shift = r_min - 0.05 (r_max - r_min), scale = 1.1 (r_max - r_min), which maps the data's
rewards into [0.05/1.1, 1.05/1.1] = [1/22, 21/22], a margin on both sides of [0, 1].

`qlearning_view` turns raw rows in the D4RL schema (observations, actions, rewards, terminals,
timeouts, optional next_observations) into transitions the way D4RL's `qlearning_dataset`
(Fu et al., 2020; `d4rl/__init__.py`) does: a row whose `timeouts` flag is set is dropped,
`terminals` are true terminations (falls) only, and the next observation of row i is
`observations[i + 1]`. One deliberate difference: where the file has `next_observations`
(all D4RL v2 locomotion files do) we use `next_observations[i]`, and then keep the last row.
D4RL's own loop ignores that key and always drops the last row; with `observations[i + 1]` the
next observation of a *terminal* row is the first observation of the next episode, which is
harmless for a Q-target (masked by the terminal) but wrong for a dynamics model.
"""

from __future__ import annotations

from typing import Mapping

import flax.struct
import jax.numpy as jnp
import numpy as np

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
# Standard deviations below this are replaced by 1 so a constant feature normalises to 0
# instead of dividing by zero (MBPO's `StandardScaler` uses the same guard).
MIN_STD = 1e-12
# PMDB's reward normalisation constants (ALGORITHMS.md "Reward normalization").
REWARD_MARGIN = 0.05
REWARD_SPAN = 1.1


class DatasetError(ValueError):
    """A dataset (or a file holding one) is malformed; the message says what and what to do."""


@flax.struct.dataclass
class Dataset:
    """Flat offline transitions and their statistics, all float32 device arrays.

    Attributes:
      observations: [n, obs_dim].
      actions: [n, act_dim].
      rewards: [n], raw environment units.
      next_observations: [n, obs_dim].
      terminals: [n], 1.0 where `next_observations` is a true termination (never a timeout).
      obs_mean, obs_std: [obs_dim] (std entries below 1e-12 replaced by 1).
      act_mean, act_std: [act_dim] (same guard).
      reward_min, reward_max: scalars over the kept transitions.
      reward_shift, reward_scale: scalars, PMDB's r' = (r - shift) / scale.
      start_observations: [num_episodes, obs_dim], the first observation of each episode.
      name: static (not a pytree leaf), the dataset's name.
    """

    observations: jnp.ndarray
    actions: jnp.ndarray
    rewards: jnp.ndarray
    next_observations: jnp.ndarray
    terminals: jnp.ndarray
    obs_mean: jnp.ndarray
    obs_std: jnp.ndarray
    act_mean: jnp.ndarray
    act_std: jnp.ndarray
    reward_min: jnp.ndarray
    reward_max: jnp.ndarray
    reward_shift: jnp.ndarray
    reward_scale: jnp.ndarray
    start_observations: jnp.ndarray
    name: str = flax.struct.field(pytree_node=False, default="")

    @property
    def size(self) -> int:
        """Number of transitions n."""
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[-1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[-1])

    @property
    def num_episodes(self) -> int:
        return int(self.start_observations.shape[0])

    def normalized_rewards(self) -> jnp.ndarray:
        """PMDB-normalised rewards (r - shift) / scale, shape [n], in [1/22, 21/22]."""
        return (self.rewards - self.reward_shift) / self.reward_scale

    @classmethod
    def from_arrays(
        cls,
        observations,
        actions,
        rewards,
        terminals,
        timeouts=None,
        next_observations=None,
        name: str = "",
        *,
        drop_timeouts: bool = True,
        start_observations=None,
    ) -> "Dataset":
        """Builds a `Dataset` from raw rows in the D4RL schema (see `qlearning_view`).

        Args:
          observations: [N, obs_dim] raw rows.
          actions: [N, act_dim] (or [N] for one action dimension).
          rewards: [N] (or [N, 1]).
          terminals: [N], nonzero where the step ended in a true termination.
          timeouts: optional [N], nonzero where the episode was truncated after this step.
          next_observations: optional [N, obs_dim]; without it row i's next observation is
            observations[i + 1] and the last row is dropped.
          name: the dataset's name, used in error messages.
          drop_timeouts: D4RL drops rows flagged as timeouts (True, the default); sources whose
            truncated rows carry a true next observation (Minari) may keep them.
          start_observations: optional [num_episodes, obs_dim]; by default the first row and
            every row following a terminal or timeout row.

        Returns:
          A `Dataset` of float32 device arrays.

        Raises:
          DatasetError: missing keys, unequal lengths, non-finite values, bad shapes, or no
            transitions left.
        """
        raw = {"observations": observations, "actions": actions, "rewards": rewards,
               "terminals": terminals}
        if timeouts is not None:
            raw["timeouts"] = timeouts
        if next_observations is not None:
            raw["next_observations"] = next_observations
        view = qlearning_view(raw, drop_timeouts=drop_timeouts, name=name)
        if start_observations is not None:
            starts = np.asarray(start_observations, dtype=np.float32)
            if starts.ndim != 2 or starts.shape[1] != view["observations"].shape[1]:
                raise DatasetError(
                    f"dataset {name!r}: start_observations has shape {starts.shape}, expected "
                    f"[num_episodes, {view['observations'].shape[1]}]")
            _check_finite({"start_observations": starts}, name)
            view["start_observations"] = starts
        return cls.from_transitions(view, name=name)

    @classmethod
    def from_transitions(cls, view: Mapping[str, np.ndarray], name: str = "") -> "Dataset":
        """Builds a `Dataset` from an already flat view (the output of `qlearning_view`).

        Args:
          view: observations [n, o], actions [n, a], rewards [n], next_observations [n, o],
            terminals [n], start_observations [e, o].
          name: the dataset's name.

        Returns:
          A `Dataset`, with statistics computed over the n transitions.
        """
        obs = np.asarray(view["observations"], np.float32)
        act = np.asarray(view["actions"], np.float32)
        rew = np.asarray(view["rewards"], np.float32)
        obs_mean, obs_std = _mean_std(obs)
        act_mean, act_std = _mean_std(act)
        r_min, r_max = float(rew.min()), float(rew.max())
        shift, scale = reward_normalizer(r_min, r_max)
        f32 = lambda x: jnp.asarray(x, dtype=jnp.float32)  # noqa: E731
        return cls(
            observations=f32(obs),
            actions=f32(act),
            rewards=f32(rew),
            next_observations=f32(view["next_observations"]),
            terminals=f32(view["terminals"]),
            obs_mean=f32(obs_mean),
            obs_std=f32(obs_std),
            act_mean=f32(act_mean),
            act_std=f32(act_std),
            reward_min=f32(r_min),
            reward_max=f32(r_max),
            reward_shift=f32(shift),
            reward_scale=f32(scale),
            start_observations=f32(view["start_observations"]),
            name=name,
        )


def reward_normalizer(r_min: float, r_max: float, mode: str = "pmdb") -> tuple[float, float]:
    """The (shift, scale) of the learning reward units r~ = (r - shift) / scale.

    Args:
      r_min, r_max: the smallest and largest reward in the data.
      mode: "pmdb" (PMDB's shift and scale) or "scale" (no shift; for tasks where a constant
        per-step shift changes the optimal policy, such as liquidation, whose episodes end on a
        sale).

    Returns:
      "pmdb": shift = r_min - 0.05 (r_max - r_min), scale = 1.1 (r_max - r_min); when all
      rewards are equal (scale 0) the scale is 1 and shift = r_min - 0.05, so every normalised
      reward is 0.05 rather than a division by zero.
      "scale": shift = 0, scale = 1.1 r_max (1 when r_max <= 0); needs r_min >= 0.
    """
    if mode == "scale":
        if r_min < 0:
            raise ValueError(
                f"reward_normalization='scale' needs non-negative rewards, but the dataset's minimum is "
                f"{r_min:g}; use reward_normalization='pmdb'")
        return 0.0, REWARD_SPAN * r_max if r_max > 0 else 1.0
    if mode != "pmdb":
        raise ValueError(f"unknown reward normalization {mode!r}; choose 'pmdb' or 'scale'")
    span = r_max - r_min
    if span <= 0.0:
        return r_min - REWARD_MARGIN, 1.0
    return r_min - REWARD_MARGIN * span, REWARD_SPAN * span


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    std = np.where(std < MIN_STD, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def _check_finite(arrays: Mapping[str, np.ndarray], name: str) -> None:
    for key, value in arrays.items():
        if np.issubdtype(value.dtype, np.floating):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            if bad:
                n_nan = int(np.count_nonzero(np.isnan(value)))
                raise DatasetError(
                    f"dataset {name!r}: key {key!r} has {bad} non-finite values "
                    f"({n_nan} NaN, {bad - n_nan} inf); the data is corrupt: re-download or "
                    "regenerate it, or remove those rows before loading")


def validate_raw(raw: Mapping[str, np.ndarray], name: str = "") -> dict[str, np.ndarray]:
    """Checks raw rows in the D4RL schema and returns them as numpy arrays.

    Args:
      raw: observations [N, o], actions [N, a] or [N], rewards [N] or [N, 1], terminals [N],
        optional timeouts [N] and next_observations [N, o].
      name: the dataset (or file) name used in error messages.

    Returns:
      A dict of numpy arrays with actions as [N, a], rewards/terminals/timeouts as [N].

    Raises:
      DatasetError: naming the missing key, the mismatched length or shape, or the key that
        holds NaN/inf values and how many.
    """
    missing = [k for k in REQUIRED_KEYS if k not in raw or raw[k] is None]
    if missing:
        raise DatasetError(
            f"dataset {name!r} lacks required key(s) {missing}; a D4RL-schema dataset needs "
            f"{list(REQUIRED_KEYS)} (plus optional 'timeouts', 'next_observations')")
    out = {k: np.asarray(v) for k, v in raw.items()
           if v is not None and k in REQUIRED_KEYS + ("timeouts", "next_observations")}
    for key in ("actions",):
        if out[key].ndim == 1:
            out[key] = out[key][:, None]
    for key in ("rewards", "terminals", "timeouts"):
        if key in out and out[key].ndim == 2 and out[key].shape[1] == 1:
            out[key] = out[key][:, 0]
    expected_ndim = {"observations": 2, "next_observations": 2, "actions": 2, "rewards": 1,
                     "terminals": 1, "timeouts": 1}
    for key, value in out.items():
        if value.ndim != expected_ndim[key]:
            raise DatasetError(
                f"dataset {name!r}: key {key!r} has shape {value.shape}, expected "
                f"{expected_ndim[key]} dimension(s) ([N, dim] or [N])")
    lengths = {k: v.shape[0] for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"dataset {name!r}: keys have unequal lengths {lengths}")
    if lengths["observations"] == 0:
        raise DatasetError(f"dataset {name!r} is empty")
    if out["observations"].shape[1] == 0 or out["actions"].shape[1] == 0:
        raise DatasetError(
            f"dataset {name!r}: zero-width observations {out['observations'].shape} or "
            f"actions {out['actions'].shape}")
    if "next_observations" in out and out["next_observations"].shape[1] != out[
            "observations"].shape[1]:
        raise DatasetError(
            f"dataset {name!r}: next_observations width {out['next_observations'].shape[1]} "
            f"!= observations width {out['observations'].shape[1]}")
    for key in ("observations", "next_observations", "actions", "rewards"):
        if key in out and not np.issubdtype(out[key].dtype, np.number):
            raise DatasetError(f"dataset {name!r}: key {key!r} is not numeric "
                               f"(dtype {out[key].dtype})")
    _check_finite(out, name)
    return out


def qlearning_view(raw: Mapping[str, np.ndarray], *, drop_timeouts: bool = True,
                   name: str = "") -> dict[str, np.ndarray]:
    """D4RL's Q-learning view of raw rows (see the module docstring for the one difference).

    For each row i (i < N - 1 without `next_observations`, i < N with it): the next
    observation is next_observations[i] if present, else observations[i + 1]; the row is
    dropped if timeouts[i] is set (and `drop_timeouts`); terminals[i] is kept as is.

    Args:
      raw: D4RL-schema rows, checked by `validate_raw`.
      drop_timeouts: drop rows flagged as timeouts (D4RL's behaviour).
      name: used in error messages.

    Returns:
      float32 observations [n, o], actions [n, a], rewards [n], next_observations [n, o],
      terminals [n] (0/1), and start_observations [e, o]: row 0 and every row after a
      terminal or timeout row.

    Raises:
      DatasetError: as `validate_raw`, or when no transition is left.
    """
    data = validate_raw(raw, name)
    obs = data["observations"].astype(np.float32)
    n_rows = obs.shape[0]
    terminals = data["terminals"].astype(bool)
    timeouts = (data["timeouts"].astype(bool) if "timeouts" in data
                else np.zeros(n_rows, dtype=bool))
    if "next_observations" in data:
        next_obs = data["next_observations"].astype(np.float32)
        keep = np.ones(n_rows, dtype=bool)
    else:
        next_obs = np.concatenate([obs[1:], np.zeros_like(obs[:1])], axis=0)
        keep = np.arange(n_rows) < n_rows - 1
    if drop_timeouts:
        keep &= ~timeouts
    if not keep.any():
        raise DatasetError(
            f"dataset {name!r}: no transition left after D4RL's Q-learning view "
            f"({n_rows} rows, all timeouts or a single row without next_observations)")
    ends = np.flatnonzero(terminals | timeouts)
    start_rows = np.concatenate([[0], ends + 1])
    start_rows = start_rows[start_rows < n_rows]
    return {
        "observations": obs[keep],
        "actions": data["actions"].astype(np.float32)[keep],
        "rewards": data["rewards"].astype(np.float32)[keep],
        "next_observations": next_obs[keep],
        "terminals": terminals[keep].astype(np.float32),
        "start_observations": obs[start_rows],
    }
