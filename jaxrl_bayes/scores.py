"""The normalised score: D4RL's score (Fu et al., 2020, `d4rl.get_normalized_score`) times 100,
100 (R - R_random) / (R_expert - R_random). It is the only implementation in the project.

A leaf module (numpy only): the evaluation harness (`jaxrl_bayes.evaluation`, which re-exports
it) and the environments that score their own returns (`jaxrl_bayes.envs.liquidation`) both
import it, so neither has to import the other.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def normalized_score(returns, ref_min: Optional[float], ref_max: Optional[float]) -> np.ndarray:
    """100 (R - ref_min) / (ref_max - ref_min), D4RL's normalised score in percent.

    Args:
      returns: raw returns, any shape.
      ref_min: the random policy's reference return.
      ref_max: the expert's reference return.

    Returns:
      float64 array of the shape of `returns`.

    Raises:
      ValueError: a reference is unknown (None) or ref_max == ref_min.
    """
    if ref_min is None or ref_max is None:
        raise ValueError("no reference scores known for this task: report raw returns only")
    if ref_max == ref_min:
        raise ValueError(f"reference scores are equal ({ref_min}); cannot normalise")
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
