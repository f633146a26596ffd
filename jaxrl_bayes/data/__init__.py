"""Offline datasets: the `Dataset` pytree, D4RL v2 files, Minari datasets, one name registry.

- `dataset`: `Dataset` (float32 device arrays + normalisers) and D4RL's Q-learning view.
- `d4rl`: D4RL v2 locomotion files (cache, verified download, hdf5 reader).
- `minari_data`: Minari datasets from the local store (download only when possible).
- `registry`: `get_spec(name or path)`, `spec_for_path(path, eval_env, ...)`,
  `load_dataset(name)`, `list_datasets()`.
"""

from jaxrl_bayes.data.dataset import Dataset, DatasetError, qlearning_view
from jaxrl_bayes.data.registry import (DatasetSpec, get_spec, list_datasets, load_dataset,
                                      spec_for_path)

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "qlearning_view",
    "spec_for_path",
]
