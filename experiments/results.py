"""Scores of a run: evaluating every seed's policy, results.json, and the summary table.

Every number comes from the library (`DatasetSpec.evaluate` / `.normalize`); this module only
collects them per seed and writes them.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from jaxrl_bayes import evaluation
from jaxrl_bayes.checkpoint import atomic_write_json
from jaxrl_bayes.evaluation import BehaviourScore
from jaxrl_bayes.logging import to_json_value

logger = logging.getLogger("experiments.results")


NO_EVALUATION = ("dataset {dataset} has no evaluation environment: training runs, evaluation is skipped, "
                 "so no return can be given (pass --eval-env ID, a Gymnasium id, to evaluate)")
NO_REFERENCES = ("no reference scores for this dataset: only raw returns can be given "
                 "(pass --ref-min-score and --ref-max-score to normalize)")


def eval_seed(run_seed: int, seed_index: int, final: bool) -> int:
    """Evaluation episode seed: the same episodes at every periodic evaluation of a seed (common
    random numbers make the curve less noisy); other episodes for the final evaluation."""
    return ((run_seed * 100_003 + seed_index) * 2 + (2 if final else 1)) % (2**31 - 1)


def mean_std(xs: Sequence[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


def has_references(spec: Any) -> bool:
    return spec.ref_min_score is not None and spec.ref_max_score is not None


def evaluate_seeds(spec: Any, act_fn: Callable, policy_params: Any, num_seeds: int, episodes: int,
                   run_seed: int, *, final: bool, units: Optional[tuple[float, float, float]] = None) -> dict[str, Any]:
    """Evaluates every seed's deterministic policy.

    Args:
      spec: the dataset's `DatasetSpec` (its evaluator takes `params=`).
      act_fn: (one seed's policy params, obs [B, obs_dim]) -> actions; one object for the whole
        run, so every evaluation of every seed shares one compilation.
      policy_params: policy parameters with a leading seed axis [S, ...].
      num_seeds, episodes, run_seed: S, episodes per seed, the run's base seed.
      final: the final evaluation (other episodes than the periodic ones).
      units: (discount, reward shift, reward scale) of the learner: in a Gymnasium environment
        the discounted Monte Carlo return of the episodes is also given in learning units.
    Returns:
      {"raw": [S] mean returns, "raw_std": [S] std over episodes, "normalized": [S] or None (no
      reference scores), "mc_value": [S] mean discounted return in learning units or None,
      "episodes": n}.
    """
    with_mc = units is not None and spec.eval_env_spec is not None
    raw, raw_std, norm, mc = [], [], [], []
    for i in range(num_seeds):
        p_i = jax.tree_util.tree_map(lambda x: x[i], policy_params)
        seed_i = eval_seed(run_seed, i, final)
        if with_mc:  # the registry's Gymnasium evaluator, with per-episode details
            eps = evaluation.gym_episodes(spec.eval_env_spec, act_fn, episodes, seed_i, params=p_i,
                                          discount=units[0])
            returns = eps.returns
            mc.append(float(np.mean(evaluation.value_in_learning_units(eps.discounted_returns, eps.lengths,
                                                                        *units))))
        else:
            returns = np.asarray(spec.evaluate(act_fn, episodes, seed_i, params=p_i), dtype=np.float64)
        raw.append(float(returns.mean()))
        raw_std.append(float(returns.std()))
        if has_references(spec):
            norm.append(float(np.mean(spec.normalize(returns))))
    return {"raw": raw, "raw_std": raw_std, "normalized": norm if has_references(spec) else None,
            "mc_value": mc if with_mc else None, "episodes": episodes}


def device_info() -> dict[str, Any]:
    devs = jax.devices()
    return {"platform": devs[0].platform, "kind": devs[0].device_kind, "count": len(devs),
            "jax_version": jax.__version__}


def write_results(run_dir: Path, cfg: Any, spec: Any, evals: Sequence[Mapping], history: Sequence[Mapping], *,
                  wall_s: float, setup_s: float, pool_info: Mapping, total_steps: int, num_chunks: int,
                  chash: str, policy_files: Sequence[str], references: Sequence[tuple[str, float]],
                  behaviour: BehaviourScore) -> dict:
    """Writes results.json (atomically; its presence marks a finished run) and returns it.

    `behaviour` is the dataset's own score (`evaluation.behaviour_score`), beside the run's.
    """
    run = cfg.run
    final = evals[-1] if evals else {"raw": [None] * run.seeds, "raw_std": [None] * run.seeds,
                                     "normalized": None, "episodes": 0}
    per_seed = [{
        "seed_index": i,
        "raw_return": final["raw"][i],
        "raw_return_std_over_episodes": final["raw_std"][i],
        "normalized_score": None if final["normalized"] is None else final["normalized"][i],
        "policy_file": policy_files[i] if i < len(policy_files) else None,
    } for i in range(run.seeds)]
    timed = [r for r in history if r.get("chunk_time_s")]
    chunk_times = [r["chunk_time_s"] for r in timed if not r.get("includes_compile")] or [
        r["chunk_time_s"] for r in timed]
    results = {
        "dataset": run.dataset,
        "algo": run.algo,
        "preset": run.preset,
        "seeds": run.seeds,
        "total_steps": total_steps,
        "num_chunks": num_chunks,
        "eval_episodes": final["episodes"],
        "per_seed": per_seed,
        "raw_return": mean_std(final["raw"]) if evals else None,
        "normalized_score": None if final["normalized"] is None else mean_std(final["normalized"]),
        "std_note": "std over seeds (population std, ddof=0)",
        "evaluation_note": (None if evals else NO_EVALUATION.format(dataset=run.dataset)) or (
            None if final["normalized"] is not None else NO_REFERENCES),
        "ref_min_score": spec.ref_min_score,
        "ref_max_score": spec.ref_max_score,
        # the behaviour policy: mean return of the dataset's complete episodes
        "behaviour": behaviour._asdict(),
        "paper_references": [{"label": l, "normalized_score": v} for l, v in references],
        "wall_time_s": wall_s,
        "setup_time_s_last_segment": setup_s,
        # chunk time only: evaluation, checkpoints and (where possible) compilation excluded
        "train_steps_per_s": (cfg.agent.steps_per_chunk * len(chunk_times) / sum(chunk_times)) if chunk_times else None,
        "device": device_info(),
        "dynamics_pool": dict(pool_info),
        # deployable policies (jaxrl_bayes.policy), relative to the run directory
        "policy_files": list(policy_files),
        "config_hash": chash,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    results = to_json_value(results)
    atomic_write_json(run_dir / "results.json", results)
    return results


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def summary_table(results: Mapping[str, Any], run_dir: Path) -> str:
    """A readable end-of-run table: per-seed raw return and normalized score, mean ± std."""
    dev = results["device"]
    lines = [
        "",
        f"{results['algo'].upper()} on {results['dataset']}  ({results['seeds']} seed(s), "
        f"{results['total_steps']:,} steps, {results['eval_episodes']} evaluation episodes)",
        f"  {'seed':>6}  {'raw return':>12}  {'normalized':>10}",
    ]
    raw, norm = results["raw_return"], results["normalized_score"]
    if raw is not None:
        for s in results["per_seed"]:
            seed_norm = "n/a" if s["normalized_score"] is None else f"{s['normalized_score']:.1f}"
            lines.append(f"  {s['seed_index']:>6}  {s['raw_return']:>12.2f}  {seed_norm:>10}")
        norm_txt = "n/a" if norm is None else f"{norm['mean']:.1f} ± {norm['std']:.1f}"
        lines.append(f"  {'mean':>6}  {raw['mean']:>8.2f} ± {raw['std']:<.2f}  {norm_txt:>10}")
    if results.get("evaluation_note"):
        lines.append(f"  {results['evaluation_note']}")
    b = results.get("behaviour") or {}
    if b.get("raw_return") is not None:
        b_norm = "" if b["normalized_score"] is None else f", normalized {b['normalized_score']:.1f}"
        lines.append(f"  behaviour policy (the data, {b['episodes']} complete episodes): "
                     f"raw return {b['raw_return']:.2f}{b_norm}")
    for ref in results["paper_references"]:
        lines.append(f"  reference: {ref['label']} = {ref['normalized_score']:g}")
    sps = results.get("train_steps_per_s")
    lines.append(f"  wall time {_fmt_time(results['wall_time_s'])}"
                 + (f", {sps:.0f} train steps/s" if sps else "")
                 + f", device {dev['platform']} ({dev['kind']}) x{dev['count']}")
    lines.append(f"  run directory: {run_dir}")
    policies = results.get("policy_files") or []
    if policies:
        lines.append(f"  policies: {', '.join(policies)} (evaluate: python -m experiments.evaluate --policy {run_dir})")
    return "\n".join(lines)
