"""What to collect: the collection config, the D4RL levels, environment names.

D4RL (Fu et al., 2020, §5; BENCHMARKS.md "Dataset generation with the D4RL protocol") trained
SAC online and recorded, per robot:

- **random**: `dataset_size` steps of the uniform random policy;
- **medium**: `dataset_size` steps of the first SAC policy whose evaluation return reaches
  `medium_fraction` (1/3) of D4RL's expert reference return, sampled from the policy (here
  the crossing is confirmed by a larger evaluation on other episodes, `confirm_episodes`);
- **medium-replay**: the whole replay buffer up to the moment that policy was found;
- **expert**: `dataset_size` steps of the final SAC policy, sampled from the policy;
- **full-replay**: the whole replay buffer of the run;
- **medium-expert**: medium followed by expert.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence

import gymnasium as gym

from jaxrl_bayes import evaluation, sac
from jaxrl_bayes.data import d4rl
from jaxrl_bayes.errors import UserError

LEVELS = ("random", "medium", "medium-replay", "expert", "full-replay", "medium-expert")
# Levels that need the SAC run, and the levels satisfied by stopping at the medium policy.
NEEDS_SAC = {"medium", "medium-replay", "expert", "full-replay", "medium-expert"}
NEEDS_FINAL = {"expert", "full-replay", "medium-expert"}
# Config fields a resumed run must share with its checkpoint (the rest may change: more SAC
# steps, other evaluation or checkpoint intervals, other dataset sizes).
RESUME_FIELDS = ("env", "num_envs", "max_episode_steps", "seed", "start_steps",
                 "update_after", "steps_per_epoch", "utd", "sac")


class GenerateError(UserError):
    """A problem with the generator's input or state; the one-line message says what to do."""


class DatasetExistsError(GenerateError, FileExistsError):
    """A dataset to be written already exists and overwriting was not asked for."""


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What to generate. Defaults reproduce D4RL's full-size protocol."""

    env: str = "walker2d"  # a D4RL robot (hopper, walker2d, halfcheetah) or a Gymnasium id
    sac: sac.SACConfig = sac.SACConfig()
    num_envs: int = 1  # rlkit (D4RL) explores with one environment
    sac_steps: int = 1_000_000  # D4RL: expert trained ~1M steps; full-replay = that buffer
    start_steps: int = 10_000  # uniform random actions first (Spinning Up SAC start_steps)
    update_after: int = 1_000  # first updates (Spinning Up update_after; rlkit min steps 1000)
    steps_per_epoch: int = 1_000  # rlkit num_expl_steps_per_train_loop = num_trains (UTD 1)
    utd: float = 1.0  # updates per environment step (rlkit 1000 trains / 1000 steps)
    eval_every: int = 5_000  # measured choice: 10 eval episodes cost ~2 epochs of stepping
    eval_episodes: int = 10  # BENCHMARKS.md evaluation protocol: at least 10 episodes
    # A policy whose routine evaluation reaches the medium threshold is accepted only if a
    # confirming evaluation on `confirm_episodes` other episodes also reaches it (0 = the
    # routine evaluation alone decides). Reason: near medium, hopper's returns have a std of
    # ~500, so a 10-episode mean has a standard error of ~160 and one lucky draw decided
    # (measured here: accepted at 1972 +- 572 after 300-600 just before); 50 episodes: ~70.
    confirm_episodes: int = 50
    medium_fraction: float = 1.0 / 3.0  # D4RL §5: medium at ~1/3 of the expert's return
    medium_return: Optional[float] = None  # absolute threshold; overrides medium_fraction
    dataset_size: int = 1_000_000  # D4RL random / medium / expert sizes
    max_episode_steps: int = 1000  # D4RL episodes are 1000 steps
    checkpoint_every: int = 50_000  # measured choice: a 1M-step checkpoint takes ~1 s
    seed: int = 0

    def __post_init__(self):
        for f in ("num_envs", "sac_steps", "steps_per_epoch", "eval_every", "eval_episodes",
                  "dataset_size", "max_episode_steps", "checkpoint_every"):
            if getattr(self, f) < 1:
                raise GenerateError(f"{f} must be >= 1, got {getattr(self, f)}")
        if not isinstance(self.sac, sac.SACConfig):
            raise GenerateError(f"sac must be a SACConfig, got {type(self.sac).__name__}")
        if self.confirm_episodes < 0:
            raise GenerateError(f"confirm_episodes must be >= 0 (0 = no confirming evaluation), "
                                f"got {self.confirm_episodes}")
        if self.start_steps < 0 or self.update_after < 0:
            raise GenerateError("start_steps and update_after must be >= 0")
        if self.utd <= 0:
            raise GenerateError(f"utd must be > 0, got {self.utd}")
        if not 0.0 <= self.medium_fraction <= 1.0:
            raise GenerateError(f"medium_fraction must be in [0, 1], got {self.medium_fraction}")

    @property
    def env_id(self) -> str:
        return resolve_env(self.env)[1]

    @property
    def family(self) -> str:
        return resolve_env(self.env)[0]

    @property
    def epoch_vec_steps(self) -> int:
        """Vector steps per epoch (each collects `num_envs` transitions)."""
        return max(1, self.steps_per_epoch // self.num_envs)

    @property
    def updates_per_epoch(self) -> int:
        return max(1, int(round(self.epoch_vec_steps * self.num_envs * self.utd)))

    def medium_threshold(self) -> float:
        """The evaluation return at which the medium policy is taken."""
        if self.medium_return is not None:
            return float(self.medium_return)
        if self.family not in d4rl.REF_MAX_SCORE:
            raise GenerateError(
                f"environment {self.env!r} has no D4RL expert reference, so medium_fraction "
                f"cannot set the medium threshold; pass an absolute --medium-return")
        return self.medium_fraction * d4rl.REF_MAX_SCORE[self.family]

    def to_json(self) -> dict:
        """The config as plain JSON types (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def resolve_env(name: str) -> tuple[str, str]:
    """(family, Gymnasium id) for a robot name ('walker2d') or a Gymnasium id ('Pendulum-v1')."""
    if name in d4rl.EVAL_ENV_IDS:
        return name, d4rl.EVAL_ENV_IDS[name]
    if name in gym.registry:
        base = name.split("/")[-1].split("-v")[0].lower()
        return base, name
    raise GenerateError(
        f"unknown environment {name!r}: use one of {sorted(d4rl.EVAL_ENV_IDS)} or a registered "
        f"Gymnasium id such as 'Hopper-v4' or 'Pendulum-v1'")


def parse_levels(levels: str | Sequence[str]) -> tuple[str, ...]:
    """Validates a comma-separated string or a list of level names (order kept, no repeats)."""
    items = [x.strip() for x in levels.split(",")] if isinstance(levels, str) else list(levels)
    items = [x for x in items if x]
    bad = [x for x in items if x not in LEVELS]
    if bad or not items:
        raise GenerateError(f"unknown level(s) {bad or items}; choose from {', '.join(LEVELS)}")
    return tuple(dict.fromkeys(items))


def normalized_score(family: str, ret: float) -> Optional[float]:
    """100 (ret - random) / (expert - random) with D4RL's references, None off D4RL robots."""
    if family not in d4rl.REF_MAX_SCORE:
        return None
    return float(evaluation.normalized_score(ret, d4rl.REF_MIN_SCORE[family], d4rl.REF_MAX_SCORE[family]))
