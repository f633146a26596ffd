"""Learning-curve plots and the papers' reference scores (BENCHMARKS.md).

`paper_references(dataset, algo)` gives the horizontal lines a plot and the end-of-run summary
show: the normalized score the papers report for that algorithm on that dataset, and for
liquidation the project's dynamic-programming ceiling.

Sources (all normalized scores, BENCHMARKS.md):
- D4RL: the PMDB / PSPO / RRPI columns of the papers' Table 1.
- Liquidation: PSPO paper Table 2 (PSPO 102.3, PMDB 85.5); the RRPI paper has no liquidation
  result. Ceiling: the optimum by dynamic programming over a price grid, ≈ 101.8 normalized
  (BENCHMARKS.md "Optimal liquidation"; the environment module computes it exactly).

`plot_learning_curve` draws the evaluation history (per-seed thin lines, the mean with a ±std
band) beside the papers', BC's and the behaviour policy's scores, the critic against Monte
Carlo returns, and PSPO's posterior diagnostics, with matplotlib's Agg backend (no display
needed), and writes a PNG atomically (`save_png`, also the report's figures).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

from jaxrl_bayes.io import atomic_open

# (dataset stem) -> {algo: normalized score}; BENCHMARKS.md "D4RL reference results" (Table 1).
D4RL_TABLE1: dict[str, dict[str, float]] = {
    "halfcheetah-random": {"pmdb": 37.8, "pspo": 37.7, "rrpi": 35.5},
    "halfcheetah-medium": {"pmdb": 75.6, "pspo": 79.3, "rrpi": 75.2},
    "halfcheetah-expert": {"pmdb": 105.7, "pspo": 93.3, "rrpi": 90.7},
    "halfcheetah-medium-expert": {"pmdb": 108.5, "pspo": 109.7, "rrpi": 105.3},
    "halfcheetah-medium-replay": {"pmdb": 71.7, "pspo": 78.4, "rrpi": 74.4},
    "halfcheetah-full-replay": {"pmdb": 90.0, "pspo": 94.9, "rrpi": 83.7},
    "hopper-random": {"pmdb": 32.7, "pspo": 31.9, "rrpi": 35.0},
    "hopper-medium": {"pmdb": 106.8, "pspo": 108.5, "rrpi": 109.4},
    "hopper-expert": {"pmdb": 111.7, "pspo": 116.6, "rrpi": 114.8},
    "hopper-medium-expert": {"pmdb": 111.8, "pspo": 112.8, "rrpi": 111.9},
    "hopper-medium-replay": {"pmdb": 106.2, "pspo": 110.0, "rrpi": 106.6},
    "hopper-full-replay": {"pmdb": 109.1, "pspo": 112.5, "rrpi": 108.6},
    "walker2d-random": {"pmdb": 21.8, "pspo": 22.1, "rrpi": 23.7},
    "walker2d-medium": {"pmdb": 94.2, "pspo": 103.9, "rrpi": 97.5},
    "walker2d-expert": {"pmdb": 115.9, "pspo": 109.8, "rrpi": 111.2},
    "walker2d-medium-expert": {"pmdb": 111.9, "pspo": 116.1, "rrpi": 115.7},
    "walker2d-medium-replay": {"pmdb": 79.9, "pspo": 97.0, "rrpi": 96.4},
    "walker2d-full-replay": {"pmdb": 95.4, "pspo": 107.8, "rrpi": 107.3},
}
# PSPO paper Table 2 (optimal liquidation, normalized).
LIQUIDATION_TABLE2: dict[str, float] = {"pspo": 102.3, "pmdb": 85.5}
# BENCHMARKS.md: dynamic programming over a price grid, expected return ≈ 137.5 -> ≈ 101.8.
LIQUIDATION_DP_CEILING = 101.8


def paper_references(dataset: str, algo: str) -> list[tuple[str, float]]:
    """Reference normalized scores for a run, as (label, value) pairs (may be empty).

    Args:
      dataset: a dataset name, e.g. "hopper-medium-v2" or "liquidation-random-v0".
      algo: an algorithm name; only the papers' own methods ("rrpi", "pspo", "pmdb") have
        reference scores, ablations have none.
    """
    refs: list[tuple[str, float]] = []
    m = re.fullmatch(r"(halfcheetah|hopper|walker2d)-(.+)-v2", dataset)
    if m:
        score = D4RL_TABLE1.get(f"{m.group(1)}-{m.group(2)}", {}).get(algo)
        if score is not None:
            paper = "RRPI" if algo == "rrpi" else "PSPO"
            refs.append((f"{algo.upper()} ({paper} paper, Table 1)", score))
    elif dataset.startswith("liquidation"):
        if algo in LIQUIDATION_TABLE2:
            refs.append((f"{algo.upper()} (PSPO paper, Table 2)", LIQUIDATION_TABLE2[algo]))
        refs.append(("DP optimum (ceiling)", LIQUIDATION_DP_CEILING))
    return refs


POSTERIOR_KEYS = ("posterior_entropy", "posterior_max", "posterior_argmax", "target_uncertainty_spearman")


def save_png(fig: Any, path: str | os.PathLike) -> None:
    """Writes a matplotlib figure to `path` as a PNG, atomically (`jaxrl_bayes.io.atomic_open`):
    a failed or interrupted save leaves `path` as it was and no temporary file behind."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def _scalar_series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows that hold a number under `key`."""
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)]
    return (np.array([p[0] for p in pts], dtype=np.float64), np.array([p[1] for p in pts], dtype=np.float64))


def plot_learning_curve(
    evals: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    title: str,
    references: Sequence[tuple[str, float]] = (),
    history: Sequence[Mapping[str, Any]] = (),
    behaviour: Mapping[str, Any] | None = None,
    bc: tuple[str, float] | None = None,
    posterior: bool = True,
) -> None:
    """Writes a learning-curve PNG with up to three panels.

    (a) the score over training steps (per-seed thin lines, the mean with a ±std band), with
        the papers' scores, behaviour cloning and the behaviour policy as horizontal lines;
    (b) where the rows hold them: the mean Q on model states (`q_model_mean`, learning units)
        against the discounted Monte Carlo return of the evaluation episodes in the same units
        (`eval/mc_value_mean`) — the check that predicted returns stay above actual ones — and
        the critic's Q at those episodes' first states (`eval/q_start_mean`), the same states;
    (c) where present: PSPO's posterior diagnostics (`POSTERIOR_KEYS`).

    Args:
      evals: evaluation records in step order, each with "step" and per-seed scores:
        "normalized" (list over seeds, or None without reference scores) and "raw".
      path: the PNG file (written atomically).
      title: plot title.
      references: (label, normalized score) lines; drawn only when the curve is normalized.
      history: the run's metric rows (metrics.jsonl) for panels (b) and (c).
      behaviour: `evaluation.BehaviourScore._asdict()` of the dataset, drawn as a line.
      bc: (label, normalized score) of behaviour cloning on the same data, drawn as a line.
      posterior: draw panel (c) (PSPO; other algorithms report a uniform belief).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    use_norm = bool(evals) and all(
        e.get("normalized") is not None and all(v is not None for v in e["normalized"]) for e in evals
    )
    key = "normalized" if use_norm else "raw"
    steps = np.array([e["step"] for e in evals], dtype=np.float64)
    values = np.array([[np.nan if v is None else v for v in e[key]] for e in evals], dtype=np.float64)
    if values.size == 0:
        values = values.reshape(0, 1)
    q_steps, q_values = _scalar_series(history, "q_model_mean")
    mc_steps, mc_values = _scalar_series(history, "eval/mc_value_mean")
    q0_steps, q0_values = _scalar_series(history, "eval/q_start_mean")
    diagnostics = {k: _scalar_series(history, k) for k in POSTERIOR_KEYS} if posterior else {}
    diagnostics = {k: v for k, v in diagnostics.items() if v[0].size}
    panels = 1 + bool(q_steps.size or mc_steps.size) + bool(diagnostics)

    fig, axes = plt.subplots(panels, 1, figsize=(7, 3.6 * panels), dpi=110, squeeze=False)
    axes = axes[:, 0]
    try:
        ax = axes[0]
        if values.shape[1] > 1:
            for i in range(values.shape[1]):
                ax.plot(steps, values[:, i], lw=0.8, alpha=0.4, color="C0")
            mean, std = values.mean(axis=1), values.std(axis=1)
            ax.fill_between(steps, mean - std, mean + std, color="C0", alpha=0.15, lw=0)
            ax.plot(steps, mean, lw=2.0, color="C0", marker="o", ms=3, label=f"mean of {values.shape[1]} seeds")
        else:
            ax.plot(steps, values[:, 0], lw=2.0, color="C0", marker="o", ms=3, label="this run")
        lines = list(references) if use_norm else []
        if bc is not None and use_norm:
            lines.append(bc)
        if behaviour and behaviour.get("raw_return") is not None:
            b = behaviour["normalized_score"] if use_norm else behaviour["raw_return"]
            if b is not None:
                lines.append(("behaviour policy (the data)", b))
        for i, (label, value) in enumerate(lines):
            ax.axhline(value, ls="--", lw=1.2, color=f"C{i + 1}", label=f"{label}: {value:.4g}")
        ax.set_xlabel("training step")
        ax.set_ylabel("normalized score" if use_norm else "return")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        row = 1
        if q_steps.size or mc_steps.size:
            ax = axes[row]
            row += 1
            if q_steps.size:
                ax.plot(q_steps, q_values, lw=1.5, color="C0", label="mean Q on model states")
            if q0_steps.size:  # the same states as the return beside it
                ax.plot(q0_steps, q0_values, lw=1.5, color="C2", marker="s", ms=3,
                        label="Q at the evaluation episodes' first states")
            if mc_steps.size:
                ax.plot(mc_steps, mc_values, lw=1.5, color="C3", marker="o", ms=3,
                        label="discounted return of the evaluation episodes")
            ax.set_xlabel("training step")
            ax.set_ylabel("value (learning units)")
            ax.set_title("predicted against actual returns")
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        if diagnostics:
            ax = axes[row]
            for i, (k, (st, v)) in enumerate(diagnostics.items()):
                ax.plot(st, v, lw=1.5, color=f"C{i}", label=k)
            ax.set_xlabel("training step")
            ax.set_title("posterior over members")
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        save_png(fig, path)
    finally:
        plt.close(fig)
