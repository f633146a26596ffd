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

from typing import Any, Mapping, Optional

import flax.struct
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes.errors import UserError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations")
# Standard deviations below this are replaced by 1 so a constant feature normalises to 0
# instead of dividing by zero (MBPO's `StandardScaler` uses the same guard).
MIN_STD = 1e-12
# PMDB's reward normalisation constants (ALGORITHMS.md "Reward normalization").
REWARD_MARGIN = 0.05
REWARD_SPAN = 1.1
# The fewest transitions a dataset may hold: the dynamics pool holds out
# int(holdout_ratio * n) transitions for early stopping, and at MBPO's holdout_ratio 0.1
# (`dynamics.DynamicsConfig`) 10 is the smallest n that leaves one held-out transition.
# `validate_raw` (every loader) and `dynamics.train_pool` both refuse fewer.
MIN_TRANSITIONS = 10


# (obs_dim, act_dim, who expects them), e.g. (17, 6, "the evaluation environment Walker2d-v4");
# a None width is not checked.
Widths = tuple[Optional[int], Optional[int], str]


class DatasetError(UserError):
    """A dataset (or a file holding one) is malformed; the one-line message says what and what to do."""


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
        widths: Optional[Widths] = None,
        source: str = "",
        min_transitions: int = MIN_TRANSITIONS,
    ) -> "Dataset":
        """Builds a `Dataset` from raw rows in the D4RL schema, validated by `validate_raw`.

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
          widths: the (obs_dim, act_dim, who expects them) the data must have, e.g. from the
            evaluation environment; None = not checked.
          source: where the data came from (a file), named in error messages.
          min_transitions: the fewest transitions accepted (hand-sized examples lower it).

        Returns:
          A `Dataset` of float32 device arrays.

        Raises:
          DatasetError: see `validate_raw`.
        """
        raw = {"observations": observations, "actions": actions, "rewards": rewards,
               "terminals": terminals, "timeouts": timeouts,
               "next_observations": next_observations, "start_observations": start_observations}
        view = qlearning_view({k: v for k, v in raw.items() if v is not None},
                              drop_timeouts=drop_timeouts, name=name, widths=widths,
                              source=source, min_transitions=min_transitions)
        return cls.from_transitions(view, name=name)

    @classmethod
    def from_transitions(cls, view: Mapping[str, np.ndarray], name: str = "") -> "Dataset":
        """Builds a `Dataset` from an already flat, validated view (the output of `qlearning_view`).

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
        obs_mean, obs_std = mean_std(obs)
        act_mean, act_std = mean_std(act)
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


def episode_breaks(observations, next_observations, terminals) -> np.ndarray:
    """[n] bool, True at each row that ends its stretch of consecutive transitions: a terminal,
    or a jump (row i's next observation is not row i+1's observation, e.g. at a timeout). The
    last row is not marked (its stretch may go on beyond the data)."""
    obs, next_obs = np.asarray(observations), np.asarray(next_observations)
    breaks = np.asarray(terminals).astype(bool).copy()
    breaks[:-1] |= np.any(next_obs[:-1] != obs[1:], axis=-1)
    return breaks


def episode_ids(observations, next_observations, terminals) -> np.ndarray:
    """[n] int: the index of the episode (stretch between `episode_breaks`) each row belongs to."""
    breaks = episode_breaks(observations, next_observations, terminals)
    return np.concatenate([[0], np.cumsum(breaks[:-1])]).astype(np.int64)


def top_episode_rows(observations, next_observations, rewards, terminals, fraction: float) -> np.ndarray:
    """[n] bool: the rows of the best `fraction` of the complete episodes by undiscounted return
    (%BC, Chen et al. 2021, Decision Transformer §5: behaviour cloning on the top X % of episodes).

    An episode is complete when it ends at a terminal or a jump (`episode_breaks`); a final
    stretch that ends in neither is left out. At least one episode is kept; ties at the cut keep
    the earlier episodes.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    breaks = episode_breaks(observations, next_observations, terminals)
    ids = episode_ids(observations, next_observations, terminals)
    ends = np.flatnonzero(breaks)
    if ends.size == 0:
        raise DatasetError("the data hold no complete episode (no terminal and no jump): nothing to rank")
    returns = np.diff(np.cumsum(np.asarray(rewards, np.float64))[ends], prepend=0.0)
    keep = max(1, int(round(fraction * ends.size)))
    best = np.argsort(-returns, kind="stable")[:keep]
    return np.isin(ids, best)


def consecutive_segments(observations, next_observations, terminals, horizon: int, num: int,
                         seed: int = 0) -> np.ndarray:
    """Row indices [num, horizon] of random stretches of `horizon` consecutive transitions.

    Rows t .. t+horizon-1 qualify when none of t .. t+horizon-2 ends its stretch
    (`episode_breaks`); the last row may terminate. Starts are drawn uniformly with replacement.

    Raises:
      DatasetError: no stretch of `horizon` consecutive transitions exists.
    """
    breaks = episode_breaks(observations, next_observations, terminals)
    n = breaks.shape[0]
    if horizon < 1 or n < horizon:
        raise DatasetError(f"no {horizon} consecutive transitions in {n} rows; use a shorter horizon")
    count = np.concatenate([[0], np.cumsum(breaks)])  # count[i] = breaks in rows < i
    starts = np.arange(n - horizon + 1)
    ok = count[starts + horizon - 1] - count[starts] == 0
    if not ok.any():
        raise DatasetError(f"no episode stretch has {horizon} consecutive transitions; use a shorter horizon")
    picks = np.random.default_rng(seed).choice(starts[ok], size=num)
    return picks[:, None] + np.arange(horizon)[None, :]


def reward_normalizer(r_min: float, r_max: float, mode: str = "pmdb") -> tuple[float, float]:
    """The (shift, scale) of the learning reward units r~ = (r - shift) / scale.

    Args:
      r_min, r_max: the smallest and largest reward in the data.
      mode: "pmdb" (PMDB's shift and scale), "scale" (no shift; for tasks where a constant
        per-step shift changes the optimal policy, such as liquidation, whose episodes end on a
        sale) or "signed" (no shift, for rewards of either sign: locomotion, whose episodes end
        on a fall).

    Returns:
      "pmdb": shift = r_min - 0.05 (r_max - r_min), scale = 1.1 (r_max - r_min); when all
      rewards are equal (scale 0) the scale is 1 and shift = r_min - 0.05, so every normalised
      reward is 0.05 rather than a division by zero.
      "scale": shift = 0, scale = 1.1 r_max (1 when r_max <= 0); needs r_min >= 0.
      "signed": shift = 0, scale = 1.1 max(|r_min|, |r_max|) (1 when every reward is 0), so
      r~ lies in (-1/1.1, 1/1.1) and its sign is the reward's.

    Only a positive scale leaves the optimal policy of an episodic task unchanged: PMDB's shift
    adds -shift / scale to every step, a bonus for staying alive that the task does not pay
    (on the walker2d look-alike, r_min -3.58 and r_max 8.45: 4.18 per step in the data's
    units, beside the environment's own alive bonus of 1).
    """
    if mode == "signed":
        bound = max(abs(r_min), abs(r_max))
        return 0.0, REWARD_SPAN * bound if bound > 0 else 1.0
    if mode == "scale":
        if r_min < 0:
            raise UserError(
                f"reward_normalization='scale' needs non-negative rewards, but the dataset's minimum is "
                f"{r_min:g}; use reward_normalization='pmdb'")
        return 0.0, REWARD_SPAN * r_max if r_max > 0 else 1.0
    if mode != "pmdb":
        raise UserError(f"unknown reward normalization {mode!r}; choose 'pmdb', 'scale' or 'signed'")
    span = r_max - r_min
    if span <= 0.0:
        return r_min - REWARD_MARGIN, 1.0
    return r_min - REWARD_MARGIN * span, REWARD_SPAN * span


def mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation, the one standardiser of the project.

    Computed in float64; a standard deviation below `MIN_STD` becomes 1 (MBPO's
    `StandardScaler`), so a constant column standardises to 0 instead of dividing by zero.

    Args:
      x: [n, d] (or [n]).

    Returns:
      (mean, std), float32 arrays of shape x.shape[1:].
    """
    x64 = np.asarray(x, np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    std = np.where(std < MIN_STD, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def check_finite(arrays: Mapping[str, np.ndarray], where: str) -> None:
    """The one finite-value check: raises on the first key holding NaN or inf.

    Args:
      arrays: key -> array with a leading row axis; non-float arrays are skipped.
      where: what holds them, for the message (e.g. "dataset 'hopper-medium-v2'").

    Raises:
      DatasetError: naming the key, how many NaN and inf values it holds, and the first rows.
    """
    for key, value in arrays.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):
            continue
        bad = ~np.isfinite(value)
        count = int(bad.sum())
        if not count:
            continue
        n_nan = int(np.isnan(value).sum())
        rows = np.unique(np.nonzero(bad.reshape(bad.shape[0], -1))[0]) if value.ndim else np.zeros(1, int)
        more = f" (and {len(rows) - 10} more rows)" if len(rows) > 10 else ""
        raise DatasetError(
            f"{where}: key {key!r} has {count} non-finite values ({n_nan} NaN, {count - n_nan} "
            f"inf) at rows {rows[:10].tolist()}{more}; repair or drop those rows, or "
            f"re-download/regenerate the data")


def check_enough_transitions(n: int, where: str, minimum: int = MIN_TRANSITIONS) -> None:
    """Refuses fewer than `minimum` (default `MIN_TRANSITIONS`) transitions.

    Raises:
      DatasetError: naming the count and the minimum.
    """
    if n < minimum:
        raise DatasetError(
            f"{where} has {n} transition(s), fewer than the {minimum} that training "
            f"needs (the dynamics pool holds out 10% for early stopping); use a larger dataset")


def _label(name: str, source: str) -> str:
    return f"dataset {name!r}" + (f" ({source})" if source and source != name else "")


_RANKS = {"observations": 2, "next_observations": 2, "actions": 2, "rewards": 1,
          "terminals": 1, "timeouts": 1, "start_observations": 2}


def validate_raw(raw: Mapping[str, Any], name: str = "", *, widths: Optional[Widths] = None,
                 source: str = "") -> dict[str, np.ndarray]:
    """Checks raw rows in the D4RL schema: the one validation every loader goes through.

    Checks, in order: required keys present; every value a real numeric (or boolean) array;
    ranks ([N, dim] or [N]; actions [N] and rewards [N, 1] are reshaped); equal lengths;
    non-empty, non-zero widths; next_observations as wide as observations; widths against
    `widths`; finite values per key. `qlearning_view` then checks that at least
    `MIN_TRANSITIONS` complete transitions remain.

    Args:
      raw: observations [N, o], actions [N, a] or [N], rewards [N] or [N, 1], terminals [N],
        optional timeouts [N], next_observations [N, o], start_observations [e, o]; other
        keys are ignored.
      name: the dataset name used in error messages.
      widths: optional (obs_dim, act_dim, who expects them); None entries are not checked.
      source: the file the rows came from, named in error messages.

    Returns:
      A dict of numpy arrays with actions as [N, a], rewards/terminals/timeouts as [N].

    Raises:
      DatasetError: one line naming the dataset (and file), the key and what is wrong.
    """
    where = _label(name, source)
    missing = [k for k in REQUIRED_KEYS if k not in raw or raw[k] is None]
    if missing:
        raise DatasetError(
            f"{where} lacks required key(s) {missing}; a D4RL-schema dataset needs "
            f"{list(REQUIRED_KEYS)} (plus optional 'timeouts', 'next_observations')")
    out = {}
    for key in REQUIRED_KEYS + OPTIONAL_KEYS + ("start_observations",):
        if raw.get(key) is None:
            continue
        try:
            value = np.asarray(raw[key])
        except Exception as e:  # noqa: BLE001 - ragged or exotic input
            raise DatasetError(f"{where}: key {key!r} is not an array ({e}); store it as one "
                               f"numeric array with a row per step") from e
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool) or np.iscomplexobj(value):
            raise DatasetError(f"{where}: key {key!r} has dtype {value.dtype}, expected real "
                               f"numbers; the file is not a D4RL-schema dataset or it is damaged")
        if key == "actions" and value.ndim == 1:
            value = value[:, None]
        if key in ("rewards", "terminals", "timeouts") and value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.ndim != _RANKS[key]:
            raise DatasetError(
                f"{where}: key {key!r} has shape {value.shape}, expected {_RANKS[key]} "
                f"dimension(s) ({'[N, dim]' if _RANKS[key] == 2 else '[N]'})")
        out[key] = value
    lengths = {k: v.shape[0] for k, v in out.items() if k != "start_observations"}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{where}: keys have unequal lengths {lengths}; every key needs one "
                           f"row per step")
    if lengths["observations"] == 0:
        raise DatasetError(f"{where} is empty (0 rows); use a file that holds data")
    obs_dim, act_dim = out["observations"].shape[1], out["actions"].shape[1]
    if obs_dim == 0 or act_dim == 0:
        raise DatasetError(f"{where}: zero-width observations {out['observations'].shape} or "
                           f"actions {out['actions'].shape}; each row needs at least one value")
    for key in ("next_observations", "start_observations"):
        if key in out and out[key].shape[1] != obs_dim:
            raise DatasetError(f"{where}: {key} width {out[key].shape[1]} != observations "
                               f"width {obs_dim}; both must hold the same state features")
    if widths is not None:
        want_obs, want_act, who = widths
        if (want_obs is not None and obs_dim != want_obs) or (
                want_act is not None and act_dim != want_act):
            raise DatasetError(
                f"{where} has observations of width {obs_dim} and actions of width {act_dim}, "
                f"but {who} expects {want_obs} and {want_act}: the data belongs to another "
                f"environment; use the right file or evaluation environment")
    check_finite(out, where)
    return out


def qlearning_view(raw: Mapping[str, np.ndarray], *, drop_timeouts: bool = True,
                   name: str = "", widths: Optional[Widths] = None,
                   source: str = "", min_transitions: int = MIN_TRANSITIONS
                   ) -> dict[str, np.ndarray]:
    """D4RL's Q-learning view of raw rows (see the module docstring for the one difference).

    For each row i (i < N - 1 without `next_observations`, i < N with it): the next
    observation is next_observations[i] if present, else observations[i + 1]; the row is
    dropped if timeouts[i] is set (and `drop_timeouts`); terminals[i] is kept as is.

    Args:
      raw: D4RL-schema rows, checked by `validate_raw` (optional start_observations [e, o]).
      drop_timeouts: drop rows flagged as timeouts (D4RL's behaviour).
      name, widths, source: as in `validate_raw`.
      min_transitions: the fewest transitions accepted (default `MIN_TRANSITIONS`).

    Returns:
      float32 observations [n, o], actions [n, a], rewards [n], next_observations [n, o],
      terminals [n] (0/1), and start_observations [e, o]: the given ones, else row 0 and
      every row after a terminal or timeout row.

    Raises:
      DatasetError: as `validate_raw`, no transition, or fewer than `min_transitions` left.
    """
    data = validate_raw(raw, name, widths=widths, source=source)
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
    where = _label(name, source)
    if not keep.any():
        raise DatasetError(
            f"{where}: no transition left after D4RL's Q-learning view ({n_rows} rows, all "
            f"timeouts or a single row without next_observations); use a file with complete "
            f"transitions")
    check_enough_transitions(int(keep.sum()), where, min_transitions)
    if "start_observations" in data:
        starts = data["start_observations"].astype(np.float32)
    else:
        ends = np.flatnonzero(terminals | timeouts)
        start_rows = np.concatenate([[0], ends + 1])
        starts = obs[start_rows[start_rows < n_rows]]
    return {
        "observations": obs[keep],
        "actions": data["actions"].astype(np.float32)[keep],
        "rewards": data["rewards"].astype(np.float32)[keep],
        "next_observations": next_obs[keep],
        "terminals": terminals[keep].astype(np.float32),
        "start_observations": starts,
    }
