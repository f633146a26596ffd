"""Synthetic locomotion-shaped transitions for the benchmarks (what the numbers mean is irrelevant
to throughput; only the shapes and a mostly healthy robot matter).

- `synthetic_arrays(num, family)`: D4RL-schema arrays (observations, actions, rewards,
  next_observations, terminals, timeouts) of a walker2d- or hopper-shaped robot whose height and
  angle stay inside the healthy range, so the robot's termination rule rarely fires.
- `synthetic_dataset(num)`: the walker2d-shaped arrays as a `Dataset` (benchmarks.throughput,
  benchmarks.devices).

Shared here so that benchmarks.throughput and benchmarks.devices need not import each other.
"""

from __future__ import annotations

import numpy as np

from jaxrl_bayes.data.dataset import Dataset

# family -> (obs_dim, act_dim, healthy height range, healthy angle range); see jaxrl_bayes.termination
SHAPES = {
    "walker2d": (17, 6, (1.0, 1.6), (-0.3, 0.3)),
    "hopper": (11, 3, (1.1, 1.4), (-0.1, 0.1)),
}
OBS_DIM, ACT_DIM = SHAPES["walker2d"][:2]
EPISODE_LEN = 1000


def synthetic_arrays(num: int, family: str = "walker2d", seed: int = 0) -> dict[str, np.ndarray]:
    """Random `family`-shaped transitions that mostly stay healthy, in D4RL's flat schema.

    Height (obs[0]) and angle (obs[1]) are drawn inside the healthy range; next states are small
    random steps; episodes of 1000 steps end in a timeout (never a terminal).

    Returns:
      observations [num, o], actions [num, a], rewards [num], next_observations [num, o]
      (float32), terminals and timeouts [num] (float32 0/1).
    """
    if family not in SHAPES:
        raise ValueError(f"unknown family {family!r} (choose from {sorted(SHAPES)})")
    obs_dim, act_dim, height, angle = SHAPES[family]
    rng = np.random.default_rng(seed)
    obs = rng.normal(0.0, 1.0, (num, obs_dim)).astype(np.float32)
    obs[:, 0] = rng.uniform(*height, num)
    obs[:, 1] = rng.uniform(*angle, num)
    act = rng.uniform(-1.0, 1.0, (num, act_dim)).astype(np.float32)
    nxt = obs + 0.05 * rng.normal(0.0, 1.0, obs.shape).astype(np.float32)
    rew = rng.normal(1.0, 1.0, num).astype(np.float32)
    terminals = np.zeros(num, np.float32)
    timeouts = np.zeros(num, np.float32)
    timeouts[EPISODE_LEN - 1::EPISODE_LEN] = 1.0
    return {"observations": obs, "actions": act, "rewards": rew, "next_observations": nxt,
            "terminals": terminals, "timeouts": timeouts}


def synthetic_dataset(num: int, seed: int = 0) -> Dataset:
    """Random walker2d-shaped transitions (obs 17, act 6) that mostly stay healthy, as a `Dataset`."""
    a = synthetic_arrays(num, "walker2d", seed)
    return Dataset.from_arrays(a["observations"], a["actions"], a["rewards"], a["terminals"],
                               timeouts=a["timeouts"], next_observations=a["next_observations"],
                               name="synthetic-walker2d", drop_timeouts=False)
