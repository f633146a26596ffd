"""jaxrl_bayes.logging.summarize_chunk_metrics: how one chunk's per-seed metrics become a row."""

from __future__ import annotations

import numpy as np

from jaxrl_bayes.logging import summarize_chunk_metrics


def test_real_metrics_are_seed_means_with_the_seeds_beside():
    row = summarize_chunk_metrics({"q": np.array([1.0, 2.0, 6.0], np.float32),
                                   "frac": np.array([[0.5, 0.5], [1.0, 0.0]], np.float32)})
    assert row["q"] == 3.0 and row["q/seeds"] == [1.0, 2.0, 6.0]
    assert row["frac"] == [0.75, 0.25]


def test_an_index_metric_is_the_mode_over_seeds_not_a_mean():
    # seeds pick members 3, 3 and 0: the mean 2.0 would name member 2, which no seed picked
    row = summarize_chunk_metrics({"posterior_argmax": np.array([3, 3, 0], np.int32)})
    assert row["posterior_argmax"] == 3 and row["posterior_argmax/seeds"] == [3, 3, 0]
    tie = summarize_chunk_metrics({"posterior_argmax": np.array([4, 1], np.int32)})
    assert tie["posterior_argmax"] == 1  # a tie: the smallest index
    per_col = summarize_chunk_metrics({"idx": np.array([[0, 5], [2, 5], [2, 1]], np.int32)})
    assert per_col["idx"] == [2, 5]
    assert summarize_chunk_metrics({"posterior_argmax": np.array([2], np.int32)})["posterior_argmax"] == 2
