"""`python -m experiments.evaluate`: evaluate saved policies (policy_seed<i>.npz) on their task.

    python -m experiments.evaluate --policy runs/liquidation-random-v0/rrpi-<stamp>/policy_seed0.npz
    python -m experiments.evaluate --policy runs/liquidation-random-v0/rrpi-<stamp>   # every seed
    python -m experiments.evaluate --policy RUN_DIR --dataset hopper-medium-v2 --episodes 20 --seed 7

Policies are `jaxrl_bayes.policy` files, written by `python -m experiments.run` into each
finished run directory. The evaluation goes through the dataset registry
(`jaxrl_bayes.evaluation.evaluate_on(get_spec(name), ...)` and `normalize_for`); the dataset defaults to
the one recorded in the policy file. Printed per policy: the raw return mean ± std over
episodes, the normalized score mean ± std and, on liquidation, the fraction of the exact DP
optimum's expected return; with several policies also the mean ± std over policies.
All policies of one architecture share one compiled evaluation.

Exit codes: 0 done, 2 user error (no such file, not a policy file, unknown dataset, widths
that do not fit the dataset's environment), 74 a filesystem fault (an unreadable policy or
dataset folder; experiments/cli.py), 1 the evaluation itself failed.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from experiments import cli
from jaxrl_bayes import evaluation
from jaxrl_bayes import policy as policy_lib
from jaxrl_bayes.data import registry
from jaxrl_bayes.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_EPISODES = {"liquidation": 1000}  # BENCHMARKS.md: liquidation >= 1000
DEFAULT_EPISODES_OTHER = 10  # BENCHMARKS.md: locomotion >= 10
PROG = "python -m experiments.evaluate"


class UsageError(UserError):
    """A problem the user can fix; printed as one line, exit code 2."""


@dataclasses.dataclass(frozen=True)
class Args:
    """Evaluate saved policies (policy_seed<i>.npz) through the dataset registry. Example:
    python -m experiments.evaluate --policy runs/<dataset>/<run>"""

    policy: str  # a policy_seed<i>.npz file, or a run directory (evaluates all its policy files)
    dataset: Optional[str] = None  # dataset whose environment to evaluate in (default: the one recorded in the policy)
    episodes: Optional[int] = None  # episodes per policy (default 1000 on liquidation, 10 otherwise)
    eval_env: Optional[str] = None  # Gymnasium id for a local dataset file (default: the one the policy records)
    ref_min_score: Optional[float] = None  # reference returns for a local dataset file (default: as recorded)
    ref_max_score: Optional[float] = None
    seed: int = 0  # evaluation seed
    debug: bool = False  # print the traceback of a user error too


def _load_all(target: Path) -> list[Any]:
    try:
        files = policy_lib.policy_files(target) if target.is_dir() else [target]
        return [policy_lib.load_policy(f) for f in files]
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e


def _spec_for(ns: Args, policy: Any, cache: dict) -> Any:
    """The spec of --dataset (with --eval-env and reference scores), else of the dataset, local
    evaluation environment and reference scores recorded in the policy file."""
    keys = ("eval_env", "ref_min_score", "ref_max_score")
    if ns.dataset is None:
        name = policy.meta.get("dataset")
        if not name:
            raise UsageError(f"{policy.path} records no dataset; pass --dataset NAME")
        local = {k: getattr(ns, k) if getattr(ns, k) is not None else policy.meta.get(k) for k in keys}
    else:
        name, local = ns.dataset, {k: getattr(ns, k) for k in keys}
    key = (name, *local.values())
    if key not in cache:
        cache[key] = registry.get_spec(name, **local)
    return cache[key]


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.std())


def evaluate_one(policy: Any, spec: Any, episodes: int, seed: int) -> dict[str, Any]:
    """Raw and normalized returns of one loaded policy on `spec` (population std over episodes)."""
    if evaluation.evaluator_for(spec) is None:
        raise UsageError(f"dataset {spec.name!r} has no evaluation environment; pass --eval-env ID "
                         f"(a Gymnasium id) or choose another --dataset")
    policy_lib.check_widths(policy, spec.obs_dim, spec.act_dim, f"dataset {spec.name!r}")
    returns = evaluation.evaluate_on(spec, policy_lib.act_fn_for(policy.module), episodes, seed,
                                     params=policy.bundle)
    out: dict[str, Any] = {"policy": policy.path, "dataset": spec.name, "episodes": int(returns.size), "seed": seed,
                           "raw": _mean_std(returns), "normalized": None, "fraction_of_optimum": None}
    if evaluation.has_references(spec):
        out["normalized"] = _mean_std(evaluation.normalize_for(spec, returns))
    if spec.family == "liquidation":
        from jaxrl_bayes.envs import liquidation

        s = liquidation.score_summary(returns)
        out["fraction_of_optimum"] = s["fraction_of_optimum"]
        out["optimum_return"] = s["optimum_return"]
    return out


def format_result(r: dict[str, Any], policy: Any) -> str:
    meta = policy.meta
    trained = ", ".join(f"{k} {meta[k]}" for k in ("algo", "dataset", "seed_index") if meta.get(k) is not None)
    lines = [f"{r['policy']}" + (f" ({trained})" if trained else ""),
             f"  evaluated on {r['dataset']}: {r['episodes']} episodes, seed {r['seed']}",
             f"  raw return  {r['raw'][0]:10.3f} ± {r['raw'][1]:.3f}  (std over episodes)"]
    if r["normalized"] is not None:
        lines.append(f"  normalized  {r['normalized'][0]:10.2f} ± {r['normalized'][1]:.2f}")
    else:
        lines.append("  normalized  n/a (no reference scores for this dataset)")
    if r["fraction_of_optimum"] is not None:
        lines.append(f"  fraction of the DP optimum {r['fraction_of_optimum']:.4f} "
                     f"(optimum expected return {r['optimum_return']:.3f})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 done, 1 evaluation failed, 2 user error, 74 filesystem fault)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    ns = cli.parse(Args, argv, prog=PROG)
    if ns is None:  # --help
        return EXIT_OK
    if ns.episodes is not None and ns.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {ns.episodes}")
    if ns.seed < 0:
        raise UsageError(f"--seed must be >= 0 (each evaluation seed has its own episodes), got {ns.seed}")
    policies = _load_all(Path(ns.policy))
    specs: dict[str, Any] = {}
    results = []
    for pol in policies:
        spec = _spec_for(ns, pol, specs)
        episodes = ns.episodes or DEFAULT_EPISODES.get(spec.family, DEFAULT_EPISODES_OTHER)
        try:
            r = evaluate_one(pol, spec, episodes, ns.seed)
        except UserError:
            raise
        except ValueError as e:  # e.g. the policy produced NaN actions
            print(f"error: evaluating {pol.path} on {spec.name} failed: {e}", file=sys.stderr)
            return EXIT_FAILED
        results.append(r)
        print(format_result(r, pol), flush=True)
    if len(results) > 1:
        raw = _mean_std([r["raw"][0] for r in results])
        line = f"mean over {len(results)} policies: raw return {raw[0]:.3f} ± {raw[1]:.3f}"
        if all(r["normalized"] is not None for r in results):
            norm = _mean_std([r["normalized"][0] for r in results])
            line += f", normalized {norm[0]:.2f} ± {norm[1]:.2f}"
        if all(r["fraction_of_optimum"] is not None for r in results):
            frac = _mean_std([r["fraction_of_optimum"] for r in results])
            line += f", fraction of the DP optimum {frac[0]:.4f} ± {frac[1]:.4f}"
        print(line + " (std over policies)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
