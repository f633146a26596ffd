"""Scores of a run: evaluating every seed's policy, results.json, and the summary table.

Every number comes from the library (`evaluation.evaluate_on` / `.normalize_for`, `jaxrl_bayes.stats`);
this module only collects them per seed and writes them.

Paired evaluation: the evaluation seed is fixed (`eval_seed`), so every algorithm and training
seed evaluated on a dataset meets the same episodes (Gymnasium: episode k reset with seed + k;
liquidation: the same price paths), and the final evaluation keeps every episode's return. On
liquidation the DP-optimal policy is evaluated on those same paths, so each seed also has a
per-path gap to the optimum. results.json records the provenance (`provenance`: git commit and
dirty flag, package versions, device) that `experiments.report` checks before pooling seeds.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from jaxrl_bayes import evaluation, stats
from jaxrl_bayes.checkpoint import atomic_write_json
from jaxrl_bayes.evaluation import BehaviourScore, has_references
from jaxrl_bayes.logging import to_json_value

logger = logging.getLogger("experiments.results")


NO_EVALUATION = ("dataset {dataset} has no evaluation environment: training runs, evaluation is skipped, "
                 "so no return can be given (pass --eval-env ID, a Gymnasium id, to evaluate)")
NO_REFERENCES = ("no reference scores for this dataset: only raw returns can be given "
                 "(pass --ref-min-score and --ref-max-score to normalize)")


# Paired evaluation: every algorithm, run seed and seed index evaluated on a dataset meets the
# same episodes (Gymnasium: episode k reset with seed + k; liquidation: the same price paths).
PERIODIC_EVAL_SEED = 1_000_003
FINAL_EVAL_SEED = 2_000_003


def eval_seed(final: bool) -> int:
    """Evaluation episode seed. Fixed, so every run on a dataset meets the same episodes (paired
    evaluation: differences between methods are not differences between episode draws); the
    periodic evaluations reuse theirs (a less noisy curve), the final one has others."""
    return FINAL_EVAL_SEED if final else PERIODIC_EVAL_SEED


def mean_std(xs: Sequence[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


def optimum_returns(spec: Any, episodes: int, seed: int) -> Optional[np.ndarray]:
    """Raw returns of the task's known optimal policy on the same episodes (None where none is
    known): liquidation's DP policy on the same price paths (`liquidation.optimum_returns`)."""
    if spec.family != "liquidation":
        return None
    from jaxrl_bayes.envs import liquidation

    return liquidation.optimum_returns(episodes, seed)


def best_schedule_returns(spec: Any, episodes: int, seed: int) -> Optional[tuple[str, np.ndarray]]:
    """(name, raw returns) of the task's best one-line schedule on the same episodes (None where
    the task has none): liquidation's best fixed schedule (`liquidation.best_schedule_returns`)."""
    if spec.family != "liquidation":
        return None
    from jaxrl_bayes.envs import liquidation

    return liquidation.best_schedule_returns(episodes, seed)


def evaluate_seeds(spec: Any, act_fn: Callable, policy_params: Any, num_seeds: int, episodes: int, *,
                   final: bool, units: Optional[tuple[float, float, float]] = None,
                   start_q: Optional[Callable[[np.ndarray], Any]] = None) -> dict[str, Any]:
    """Evaluates every seed's deterministic policy on the same episodes (`eval_seed(final)`).

    Args:
      spec: the dataset's `DatasetSpec` (`evaluation.evaluate_on` evaluates on it with `params=`).
      act_fn: (one seed's policy params, obs [B, obs_dim]) -> actions; one object for the whole
        run, so every evaluation of every seed shares one compilation.
      policy_params: policy parameters with a leading seed axis [S, ...].
      num_seeds, episodes: S, episodes per seed.
      final: the final evaluation (other episodes than the periodic ones; per-episode returns
        and, where an optimum is known, its returns on the same episodes are kept).
      units: (discount, reward shift, reward scale) of the learner: in a Gymnasium environment
        the discounted Monte Carlo return of the episodes is also given in learning units.
      start_q: with `units` in a Gymnasium environment, called once after the episodes with the
        first observations they recorded (`Episodes.first_obs`), float32 [S, n, obs_dim], each
        seed's own; gives [S] the critic's Q there (learning units). The liquidation evaluator
        records returns only: there it is not called and the record has no "q_start".
    Returns:
      {"raw": [S] mean returns, "raw_std": [S] std over episodes, "normalized": [S] or None (no
      reference scores), "mc_value": [S] mean discounted return in learning units or None,
      "episodes": n, "eval_seed": seed}; "q_start": [S] where start_q was called; when final
      also "returns": [S][n] per-episode raw returns, "optimum_returns": [n] or None, and
      "optimality_gap": [S] mean per-episode gap
      (optimum - policy; normalized where references exist, else raw) or None, and
      "best_schedule": (name, [n] returns) of the best one-line schedule on the same episodes, or None.
    """
    with_mc = units is not None and spec.eval_env_spec is not None
    seed = eval_seed(final)
    raw, raw_std, norm, mc, per_episode, first_obs = [], [], [], [], [], []
    for i in range(num_seeds):
        p_i = jax.tree_util.tree_map(lambda x: x[i], policy_params)
        if with_mc:  # the registry's Gymnasium evaluator, with per-episode details
            eps = evaluation.gym_episodes(spec.eval_env_spec, act_fn, episodes, seed, params=p_i,
                                          discount=units[0])
            returns = eps.returns
            first_obs.append(eps.first_obs)
            mc.append(float(np.mean(evaluation.value_in_learning_units(eps.discounted_returns, eps.lengths,
                                                                        *units))))
        else:
            returns = np.asarray(evaluation.evaluate_on(spec, act_fn, episodes, seed, params=p_i), dtype=np.float64)
        per_episode.append(returns)
        raw.append(float(returns.mean()))
        raw_std.append(float(returns.std()))
        if has_references(spec):
            norm.append(float(np.mean(evaluation.normalize_for(spec, returns))))
    out = {"raw": raw, "raw_std": raw_std, "normalized": norm if has_references(spec) else None,
           "mc_value": mc if with_mc else None, "episodes": episodes, "eval_seed": seed}
    if with_mc and start_q is not None:
        out["q_start"] = [float(q) for q in np.asarray(jax.device_get(start_q(np.stack(first_obs))))]
    if final:
        best = optimum_returns(spec, episodes, seed)
        gaps = None
        if best is not None:
            to_units = ((lambda r: evaluation.normalize_for(spec, r)) if has_references(spec)
                        else (lambda r: np.asarray(r, np.float64)))
            gaps = [float(np.mean(to_units(best) - to_units(r))) for r in per_episode]
        schedule = best_schedule_returns(spec, episodes, seed)
        out.update(returns=[r.tolist() for r in per_episode],
                   optimum_returns=None if best is None else best.tolist(), optimality_gap=gaps,
                   best_schedule=None if schedule is None else (schedule[0], schedule[1].tolist()))
    return out


def device_info() -> dict[str, Any]:
    devs = jax.devices()
    return {"platform": devs[0].platform, "kind": devs[0].device_kind, "count": len(devs),
            "jax_version": jax.__version__}


PROVENANCE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "mujoco", "gymnasium", "jaxrl_bayes")


def git_state(path: Path) -> dict[str, Any]:
    """{"commit": HEAD of the git checkout holding `path`, "dirty": whether tracked files differ
    from it}; both None outside a git checkout (an installed package) or without git."""
    import subprocess

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions() -> dict[str, Optional[str]]:
    """Installed versions of the packages whose change could change a result (None: not installed)."""
    import importlib.metadata

    out: dict[str, Optional[str]] = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict[str, Any]:
    """What produced a result: the code's git commit and dirty flag (of the checkout the running
    `jaxrl_bayes` is imported from), package versions and the device."""
    import jaxrl_bayes

    git = git_state(Path(jaxrl_bayes.__file__).resolve().parent)
    return {"git_commit": git["commit"], "git_dirty": git["dirty"], "versions": package_versions(),
            "device": device_info()}


def interval_json(iv: Any) -> dict[str, Any]:
    """A `stats.Interval` as {"point", "low", "high"}."""
    return {"point": iv.point, "low": iv.low, "high": iv.high}


def seed_summary(values: Optional[Sequence[float]]) -> Optional[dict[str, Any]]:
    """Mean and IQM over seeds with their 95 % bootstrap intervals (`stats.run_intervals`)."""
    if values is None or any(v is None for v in values) or not len(values):
        return None
    s = stats.run_intervals(values)
    return {"seeds": s["runs"], "mean": interval_json(s["mean"]), "iqm": interval_json(s["iqm"])}


def curve_spread(evals: Sequence[Mapping], total_steps: int, num_seeds: int,
                 deployment: Optional[str] = None) -> Optional[dict[str, Any]]:
    """The last half of every seed's learning curve (`stats.last_half_spread` of the periodic
    evaluations, normalized where the dataset has references, else raw), beside the final score:
    {"per_seed": [...], "score": which score, "mean_range": the seeds' mean max - min,
    "final_within": how many seeds' final score lies inside their own last half's range}.
    `deployment`: the curve of another deployment evaluated on the same episodes
    (--run.eval_deployments) instead of the deployed policy's."""
    def of(e: Mapping) -> Optional[Mapping]:
        return e if deployment is None else (e.get("deployments") or {}).get(deployment)

    periodic = [of(e) | {"step": e["step"]} for e in evals if not e.get("final") and of(e) is not None]
    finals = [of(e) for e in evals if e.get("final") and of(e) is not None]
    if not periodic:
        return None
    key = "normalized" if periodic[-1].get("normalized") is not None else "raw"
    final = finals[-1][key] if finals and finals[-1].get(key) is not None else [None] * num_seeds
    per_seed = [stats.last_half_spread([e["step"] for e in periodic], [e[key][i] for e in periodic], total_steps,
                                       final[i]) for i in range(num_seeds)]
    have = [s for s in per_seed if s is not None]
    if not have:
        return None
    return {"per_seed": per_seed, "score": key, "points": have[0]["points"], "first_step": have[0]["first_step"],
            "mean_range": float(np.mean([s["range"] for s in have])),
            "final_within": sum(bool(s.get("final_within")) for s in have), "seeds": len(have)}


def write_results(run_dir: Path, cfg: Any, spec: Any, evals: Sequence[Mapping], history: Sequence[Mapping], *,
                  wall_s: float, setup_s: float, pool_info: Mapping, total_steps: int, num_chunks: int,
                  chash: str, policy_files: Sequence[str], references: Sequence[tuple[str, float]],
                  behaviour: BehaviourScore, code: Optional[Mapping[str, Any]] = None) -> dict:
    """Writes results.json (atomically; its presence marks a finished run) and returns it.

    `behaviour` is the dataset's own score (`evaluation.behaviour_score`), beside the run's.
    `code`: the `provenance()` taken when the (last segment of the) run started, so a checkout
    that moved while it trained does not name code that did not run; now where not given.
    """
    run = cfg.run
    final = evals[-1] if evals else {"raw": [None] * run.seeds, "raw_std": [None] * run.seeds,
                                     "normalized": None, "episodes": 0}
    returns = final.get("returns") or [None] * run.seeds
    gaps = final.get("optimality_gap")
    per_seed = [{
        "seed_index": i,
        "raw_return": final["raw"][i],
        "raw_return_std_over_episodes": final["raw_std"][i],
        "normalized_score": None if final["normalized"] is None else final["normalized"][i],
        "optimality_gap": None if gaps is None else gaps[i],
        "episode_returns": returns[i],  # raw, in episode order: episode k of every run is the same episode
        "policy_file": policy_files[i] if i < len(policy_files) else None,
        # the critic's Q at the final episodes' first states (learning units; `eval/q_start_mean`)
        "q_start": None if final.get("q_start") is None else final["q_start"][i],
        "mc_value": None if final.get("mc_value") is None else final["mc_value"][i],
        # --run.eval_deployments: the other deployments on the same episodes
        "deployments": {name: {"raw_return": d["raw"][i],
                               "normalized_score": None if d["normalized"] is None else d["normalized"][i]}
                        for name, d in (final.get("deployments") or {}).items()},
    } for i in range(run.seeds)]
    curve = curve_spread(evals, total_steps, run.seeds)
    for row, spread in zip(per_seed, curve["per_seed"] if curve else [None] * run.seeds):
        row["last_half_curve"] = spread
    other_curves = {}  # --run.eval_deployments: the same spread for every other deployment
    for name in (final.get("deployments") or {}):
        other = curve_spread(evals, total_steps, run.seeds, deployment=name)
        if other is not None:
            other_curves[name] = {k: v for k, v in other.items() if k != "per_seed"}
            for row, spread in zip(per_seed, other["per_seed"]):
                row["deployments"][name]["last_half_curve"] = spread
    optimum = final.get("optimum_returns")
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
        "eval_seed": final.get("eval_seed"),
        "paired_evaluation_note": (f"episode k of every run on this dataset is the same episode: "
                                   f"{'the same price path' if spec.family == 'liquidation' else 'reset seed'} "
                                   f"from evaluation seed {final.get('eval_seed')} (experiments.results.eval_seed), "
                                   f"whatever the algorithm or training seed"),
        "per_seed": per_seed,
        "raw_return": mean_std(final["raw"]) if evals else None,
        "normalized_score": None if final["normalized"] is None else mean_std(final["normalized"]),
        "std_note": "std over seeds (population std, ddof=0)",
        # mean and IQM over seeds with 95 % stratified-bootstrap intervals (jaxrl_bayes.stats)
        "intervals": {
            "normalized_score": seed_summary(final["normalized"]),
            "raw_return": seed_summary(final["raw"]) if evals else None,
            "optimality_gap": seed_summary(gaps),
        },
        # how much each seed's curve moves in the last half of the run (per_seed[i].last_half_curve:
        # periodic evaluations at step >= total_steps / 2, jaxrl_bayes.stats.last_half_spread)
        "last_half_curve": None if curve is None else {k: v for k, v in curve.items() if k != "per_seed"},
        "last_half_curve_by_deployment": other_curves or None,  # the other deployments' (--run.eval_deployments)
        # the task's optimal policy on the same episodes (liquidation: the DP policy), or None;
        # optimality_gap per seed = mean over episodes of its return minus the policy's
        "optimum": None if optimum is None else {
            "policy": "liquidation DP threshold policy (jaxrl_bayes.envs.liquidation.optimum_returns)",
            "raw_return": float(np.mean(optimum)),
            "normalized_score": float(np.mean(evaluation.normalize_for(spec, optimum))) if has_references(spec) else None,
            "gap_units": "normalized" if has_references(spec) else "raw",
            "episode_returns": optimum,
        },
        # the best one-line schedule on the same episodes (liquidation: all at once, equal shares
        # or all at the last step), or None: what a learned policy must beat for learning to pay
        "best_schedule": None if not final.get("best_schedule") else {
            "policy": final["best_schedule"][0],
            "raw_return": float(np.mean(final["best_schedule"][1])),
            "normalized_score": (float(np.mean(evaluation.normalize_for(spec, final["best_schedule"][1])))
                                 if has_references(spec) else None),
        },
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
        "provenance": dict(code) if code is not None else provenance(),
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


def format_interval(iv: Mapping[str, Any], digits: int = 2) -> str:
    """"x [lo, hi]" ("x" alone without an interval, e.g. one seed)."""
    text = f"{iv['point']:.{digits}f}"
    return text if iv.get("low") is None else text + f" [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"


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
    ivs = results.get("intervals") or {}
    score_key = "normalized_score" if ivs.get("normalized_score") is not None else "raw_return"
    for label, key in ((score_key.replace("_", " "), score_key), ("gap to the optimum", "optimality_gap")):
        iv = ivs.get(key)
        if iv is not None:
            lines.append(f"  {label}: mean {format_interval(iv['mean'])}, IQM {format_interval(iv['iqm'])} "
                         f"over {iv['seeds']} seed(s) (95 % bootstrap intervals)")
    curve = results.get("last_half_curve")
    if curve is not None:
        ranges = ", ".join(f"[{s['last_half_curve']['min']:.1f}, {s['last_half_curve']['max']:.1f}]"
                           for s in results["per_seed"] if s.get("last_half_curve"))
        lines.append(f"  last half of the curve ({curve['points']} evaluations from step {curve['first_step']:,}, "
                     f"{curve['score']}): per seed {ranges}; final score inside it for {curve['final_within']} of "
                     f"{curve['seeds']} seed(s)")
    for name, other in (results.get("last_half_curve_by_deployment") or {}).items():  # --run.eval_deployments
        finals = ", ".join(f"{s['deployments'][name]['normalized_score' if other['score'] == 'normalized' else 'raw_return']:.1f}"
                           for s in results["per_seed"])
        ranges = ", ".join(f"[{s['deployments'][name]['last_half_curve']['min']:.1f}, "
                           f"{s['deployments'][name]['last_half_curve']['max']:.1f}]"
                           for s in results["per_seed"] if s["deployments"][name].get("last_half_curve"))
        lines.append(f"  deploying {name} instead: final {finals}; last half per seed {ranges}, inside it for "
                     f"{other['final_within']} of {other['seeds']} seed(s)")
    opt = results.get("optimum")
    if opt is not None:
        value = opt["normalized_score"] if opt["normalized_score"] is not None else opt["raw_return"]
        lines.append(f"  optimum on the same {results['eval_episodes']} episodes: {value:.2f} "
                     f"({opt['gap_units']}); gap = optimum - policy, episode by episode")
    sched = results.get("best_schedule")
    if sched is not None:
        value = sched["normalized_score"] if sched["normalized_score"] is not None else sched["raw_return"]
        lines.append(f"  best one-line schedule on the same episodes ({sched['policy'].replace('_', ' ')}): "
                     f"{value:.2f}")
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
