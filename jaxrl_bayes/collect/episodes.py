"""Recorded streams regrouped into D4RL-schema datasets of contiguous episodes.

Episodes are stored contiguously, ordered by their start. A step that is both terminated and
truncated is a terminal (a fall at the time limit), not a timeout. An episode still running
when a dataset ends (the end of the replay buffer, or the last step of a fixed-size rollout) is
cut: its last step gets `timeouts = True`, as D4RL's data does, and `LevelData.episode_cut`
remembers it (summaries use uncut episodes).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from jaxrl_bayes.collect.config import GenerateError, normalized_score
from jaxrl_bayes.data import d4rl



class LevelData(NamedTuple):
    """One dataset in D4RL's flat schema, episodes contiguous.

    Attributes:
      arrays: observations [n, o], actions [n, a], rewards [n], next_observations [n, o]
        (float32), terminals [n], timeouts [n] (bool).
      episode_starts: int [e], first row of each episode.
      episode_cut: bool [e], True where the dataset's end (not the env) cut the episode.
    """

    arrays: dict
    episode_starts: np.ndarray
    episode_cut: np.ndarray

    @property
    def size(self) -> int:
        return int(self.arrays["rewards"].shape[0])


def episodes_from_stream(stream: dict[str, np.ndarray]) -> LevelData:
    """Regroups a vector env's step-ordered stream into contiguous episodes.

    Args:
      stream: `Stream.view()`: step-ordered rows with `env_index`, `terminals`, `truncations`.
    Returns:
      `LevelData` with episodes ordered by their first row; the unfinished last episode of each
      sub-env is cut (timeouts set on its last row, `episode_cut` True).
    """
    env_index = stream["env_index"]
    done = stream["terminals"] | stream["truncations"]
    episodes = []  # (first row, row indices, cut)
    for e in np.unique(env_index):
        rows = np.flatnonzero(env_index == e)
        ends = np.flatnonzero(done[rows])
        start = 0
        for end in ends:
            episodes.append((rows[start], rows[start: end + 1], False))
            start = end + 1
        if start < len(rows):
            episodes.append((rows[start], rows[start:], True))
    episodes.sort(key=lambda x: x[0])
    if not episodes:
        raise GenerateError("no transitions were recorded; increase the number of steps")
    order = np.concatenate([ep[1] for ep in episodes])
    lengths = np.array([len(ep[1]) for ep in episodes])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cut = np.array([ep[2] for ep in episodes], bool)
    terminals = stream["terminals"][order].copy()
    timeouts = stream["truncations"][order] & ~terminals
    timeouts[(starts + lengths - 1)[cut]] = True
    arrays = {
        "observations": stream["observations"][order],
        "actions": stream["actions"][order],
        "rewards": stream["rewards"][order],
        "next_observations": stream["next_observations"][order],
        "terminals": terminals,
        "timeouts": timeouts,
    }
    return LevelData(arrays, starts, cut)


def concatenate(parts: Sequence[LevelData]) -> LevelData:
    """Concatenates datasets (e.g. medium-expert = medium then expert)."""
    offsets = np.cumsum([0] + [p.size for p in parts[:-1]])
    return LevelData(
        {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays},
        np.concatenate([p.episode_starts + o for p, o in zip(parts, offsets)]),
        np.concatenate([p.episode_cut for p in parts]),
    )


def episode_returns(level: LevelData) -> np.ndarray:
    """Return of every episode, shape [e]."""
    return np.add.reduceat(level.arrays["rewards"].astype(np.float64), level.episode_starts)


def summarize(level: LevelData, family: str) -> dict:
    """Transitions, episodes and return statistics (uncut episodes; all if every one is cut).

    Returns:
      dict with transitions, episodes, cut_episodes, terminals, timeouts, return_mean,
      return_std, normalized_mean, normalized_std (None off D4RL robots).
    """
    rets = episode_returns(level)
    use = rets[~level.episode_cut] if (~level.episode_cut).any() else rets
    mean, std = float(use.mean()), float(use.std())
    norm = normalized_score(family, mean)
    scale = None if norm is None else 100.0 / (d4rl.REF_MAX_SCORE[family] - d4rl.REF_MIN_SCORE[family])
    return {
        "transitions": level.size,
        "episodes": int(len(rets)),
        "cut_episodes": int(level.episode_cut.sum()),
        "terminals": int(level.arrays["terminals"].sum()),
        "timeouts": int(level.arrays["timeouts"].sum()),
        "return_mean": mean,
        "return_std": std,
        "normalized_mean": norm,
        "normalized_std": None if scale is None else std * scale,
    }
