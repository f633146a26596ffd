"""D4RL-protocol dataset collection: online SAC, levels, vector-env runner, writers.

- `config`: `CollectConfig`, the levels (`LEVELS`), environment names, `GenerateError`.
- `runner`: `VecRunner` (SAME_STEP vector env with exact MuJoCo state), `Stream`, `rollout`.
- `episodes`: `LevelData` (D4RL schema, contiguous episodes), regrouping and summaries.
- `protocol`: the resumable SAC run (`train_sac`, orbax checkpoints) and `generate`.
- `writers`: the local Minari store and D4RL-schema hdf5 files.

Reading datasets is `jaxrl_bayes.data`'s job; this package only writes them.
"""

from jaxrl_bayes.collect.config import (LEVELS, CollectConfig, DatasetExistsError, GenerateError,
                                        normalized_score, parse_levels, resolve_env)
from jaxrl_bayes.collect.episodes import LevelData, concatenate, episodes_from_stream, summarize
from jaxrl_bayes.collect.protocol import (Confirmation, EvalPoint, LevelResult, TrainResult,
                                          generate, load_checkpoint_meta, make_policy, train_sac)
from jaxrl_bayes.collect.runner import Stream, VecRunner, make_vec_env, rollout
from jaxrl_bayes.collect.writers import dataset_id, hdf5_name, write_d4rl_hdf5, write_minari

__all__ = [
    "LEVELS", "CollectConfig", "DatasetExistsError", "GenerateError", "normalized_score",
    "parse_levels", "resolve_env", "LevelData", "concatenate", "episodes_from_stream",
    "summarize", "Confirmation", "EvalPoint", "LevelResult", "TrainResult", "generate",
    "load_checkpoint_meta", "make_policy", "train_sac", "Stream", "VecRunner", "make_vec_env",
    "rollout", "dataset_id", "hdf5_name", "write_d4rl_hdf5", "write_minari",
]
