"""A tiny built-in offline task for examples and smoke tests: trains in seconds on a CPU.

`stay_near_zero(num, seed)`: a 1-D task, s' = clip(s + 0.2 a, -1, 1) and r = 1 - s'^2 (the best
policy steers the state to 0), logged by uniformly random actions in episodes of 50 steps that
end in a time-out. The optimal return per step is 1, so a learner's progress is easy to read.
"""

from __future__ import annotations

import numpy as np

from jaxrl_bayes.data.dataset import Dataset


def stay_near_zero(num: int = 2000, seed: int = 0) -> Dataset:
    """`num` transitions of the task from `seed` (D4RL schema: no terminals, a time-out every 50 steps)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (num, 1)).astype(np.float32)
    act = rng.uniform(-1, 1, (num, 1)).astype(np.float32)
    nxt = np.clip(obs + 0.2 * act, -1, 1).astype(np.float32)
    rew = (1.0 - nxt[:, 0] ** 2).astype(np.float32)
    timeouts = np.zeros(num, np.float32)
    timeouts[49::50] = 1.0  # episodes of 50 steps
    return Dataset.from_arrays(obs, act, rew, np.zeros(num, np.float32), timeouts=timeouts,
                               next_observations=nxt, name="tiny-1d", drop_timeouts=False)
