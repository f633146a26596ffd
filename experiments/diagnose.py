"""`python -m experiments.diagnose --run-dir RUN_DIR`: why a run scores what it scores.

    python -m experiments.diagnose --run-dir runs/<dataset>/<run>
    python -m experiments.diagnose --run-dir runs/<dataset>/<run> --horizon 10 --segments 2000

Reads a run directory written by `python -m experiments.run` (config.json, dynamics.json,
metrics.jsonl) and reports, as a table on the terminal and in `diagnosis.json` (written
atomically; nothing else in the run directory changes):

- how the pool was trained: epochs against the cap, early stop, held-out MSE and NLL, and how
  much the held-out MSE still fell over the last epochs (a pool stopped at its cap while still
  improving had not converged);
- model error along rollouts: each member of the run's pool rolled open loop along logged
  action sequences of the dataset (`dynamics.open_loop_error`), state RMSE in data-std units
  and reward error against the data's reward std, per step h = 1 .. --horizon, marking the
  run's rollout horizon;
- the value against reality: Q at the evaluation episodes' first states under the deployed action
  (`eval/q_start_mean`, the critic's prediction for those very episodes) next to their discounted
  Monte Carlo return (`eval/mc_value_mean`), with mean Q on model and real states beside them, all in
  learning units, at every evaluation (PSPO Figure 2 / RRPI: predicted above actual is the
  healthy sign; far below means the value has not propagated), and the greedy gain (`greedy_gain`:
  the Q a greedy pick among 32 policy samples adds above the deployed action on dataset states;
  near 0 while the score is flat, the critic rather than the policy step is the limit);
- the model's falls against the logged ones (`dynamics.termination_rates`): on logged
  transitions, how often each member's drawn successors and its mean successor terminate,
  separately where the data did not end and where it did (false falls against caught falls),
  for the average member and for the member that falls most (the one a worst case picks);
- the model along the deployed policy's own real episodes (`--episodes`, seed 0's policy file,
  in the dataset's evaluation environment): each member's one-step state error and the members'
  spread there, and the same termination shares on the real steps; this tells model error
  where the policy goes from model error on the data;
- the temperature of the KL-regularized backup, the score, the fraction of rollouts that stay
  valid, the real/model ratio (`agent.targets.real_weight`, batches) and the rollout horizon.

The math lives in the library (`jaxrl_bayes.dynamics.open_loop_error`,
`jaxrl_bayes.data.dataset.consecutive_segments`); this module only reads files and prints.
Exit codes: 0 done, 2 user error (not a run directory, missing pool file), 74 a filesystem
fault (diagnosis.json cannot be written: read-only run directory, full disk; experiments/cli.py).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import numpy as np

from experiments import cli, config, pools, results, rundir
from jaxrl_bayes import dynamics
from jaxrl_bayes.checkpoint import atomic_write_json
from jaxrl_bayes.data.dataset import consecutive_segments
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.logging import read_jsonl

PROG = "python -m experiments.diagnose"


@dataclasses.dataclass(frozen=True)
class Args:
    """Diagnose a run: model error along rollouts, Q against Monte Carlo returns, temperature,
    rollout horizon and real/model ratio. Example: python -m experiments.diagnose --run-dir runs/<dataset>/<run>"""

    run_dir: str  # a run directory written by python -m experiments.run
    horizon: int = 10  # open-loop steps to measure (at least the run's rollout horizon is useful)
    segments: int = 1000  # logged stretches of `horizon` consecutive transitions to roll along
    seed: int = 0  # which stretches
    episodes: int = 10  # real episodes of the deployed policy to measure the model along (0: none)
    debug: bool = False  # print the traceback of a user error too


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    args = cli.parse(Args, argv, prog=PROG, description=Args.__doc__)
    if args is None:
        return 0
    if args.horizon < 1 or args.segments < 1:
        raise UserError("--horizon and --segments must be >= 1")
    if args.episodes < 0:
        raise UserError("--episodes must be >= 0")
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.json); pass the directory "
                        "python -m experiments.run wrote")
    cfg = config.read_run_config(run_dir)
    report = diagnose(run_dir, cfg, args.horizon, args.segments, args.seed, args.episodes)
    atomic_write_json(run_dir / "diagnosis.json", report)
    print(markdown(report))
    print(f"\nwritten: {run_dir / 'diagnosis.json'}")
    return 0


def diagnose(run_dir: Path, cfg: Any, horizon: int, segments: int, seed: int, episodes: int = 10) -> dict:
    """The report as a JSON-ready dict (see the module docstring)."""
    out: dict[str, Any] = {"run_dir": str(run_dir), "dataset": cfg.run.dataset, "algo": cfg.run.algo,
                           "rollout_horizon": cfg.agent.rollout.horizon, "real_weight": cfg.agent.targets.real_weight,
                           "real_batch": cfg.agent.real_batch, "model_batch": cfg.agent.model_batch,
                           "discount": cfg.agent.discount}
    out["model_error"] = out["terminations"] = out["on_policy"] = None
    pool_file = _pool_file(run_dir)
    pool = None if pool_file is None else dynamics.load_pool(pool_file)
    out["pool_training"] = None if pool_file is None else pool_training(pool_file)
    if pool is not None:  # bc: no model
        spec = config.get_spec(cfg.run)
        dataset = spec.load()  # validated as in experiments.run; loaded once for every section
        out["model_error"] = model_error(pool, dataset, horizon, segments, seed)
        out["terminations"] = termination_calibration(pool, spec, dataset, cfg.agent.sampling.common_noise, seed)
        if episodes:
            out["on_policy"] = on_policy_model(run_dir, pool, spec, dataset, cfg.agent.sampling.common_noise, episodes)
    out["value_vs_return"], out["training"] = from_metrics(run_dir)
    return out


def _pool_file(run_dir: Path) -> Optional[Path]:
    """The run's dynamics pool file, or None for a run without a model (bc)."""
    dyn_file = run_dir / "dynamics.json"
    if not dyn_file.is_file():
        return None  # bc: no model
    info = rundir.read_json(dyn_file, "dynamics record")
    if not info.get("pool_file"):
        return None  # bc writes a record without a pool ("bc trains without a dynamics pool")
    pool_file = Path(info["pool_file"])
    if not pool_file.is_file():
        raise UserError(f"the run's pool file {pool_file} is gone (cache cleared?); rerun the run's command "
                        "to retrain it, or set JAXRL_BAYES_CACHE to where it is")
    return pool_file


# The pool's own early-stopping rule (`dynamics.train_pool`): a pool that ran to its cap had not
# converged if its held-out MSE still improved by more than dynamics.IMPROVEMENT_THRESHOLD over its
# last `max_epochs_since_update` epochs (the patience; MBPO's 5 where the record predates the field).
CONVERGENCE_EPOCHS = dynamics.DynamicsConfig.max_epochs_since_update


def pool_training(pool_file: Path) -> Optional[dict]:
    """How a pool was trained, from its cache entry's record (`pools.record_path`): epochs run against the
    cap, early stop, the kept members' held-out MSE and NLL, and how much the held-out MSE (mean
    over members) still fell over the last CONVERGENCE_EPOCHS epochs, relative to its best before
    them (None: a pool cached before the curve was recorded). A pool that stopped at the cap with
    its held-out error still falling had not converged (held-out likelihood, not
    evaluation returns, sets the presets' epochs). None when the record is missing."""
    info_file = pools.record_path(pool_file)
    if not info_file.is_file():
        return None
    info = rundir.read_json(info_file, "pool record")
    rep = info.get("report", {})
    curve = rep.get("val_mse_curve")
    patience = int(info.get("dynamics", {}).get("max_epochs_since_update", CONVERGENCE_EPOCHS))
    still_falling = None
    if curve and len(curve) > patience:
        before, last = min(curve[:-patience]), min(curve[-patience:])
        still_falling = max(0.0, (before - last) / before) if before > 0 else 0.0
    return {"epochs": rep.get("epochs"), "max_epochs": info.get("dynamics", {}).get("max_epochs"),
            "patience": patience,
            "stopped_early": rep.get("stopped_early"),
            "val_mse_mean": float(np.mean(rep["val_mse"])) if rep.get("val_mse") else None,
            "val_nll_mean": float(np.mean(rep["val_nll"])) if rep.get("val_nll") else None,
            "val_mse_curve": curve, "last_epochs_drop": still_falling}


TERMINATION_TRANSITIONS = 20_000  # logged transitions (all terminal ones among them, up to this many)
TERMINATION_DRAWS = 32  # successors drawn per member and transition


def termination_calibration(pool: dynamics.DynamicsPool, spec: Any, dataset: Any, common_noise: bool,
                            seed: int) -> Optional[dict]:
    """The pool's terminations on logged transitions against the logged `terminals`, or None
    (a dataset without terminations)."""
    terminals = np.asarray(dataset.terminals).astype(bool)
    if not terminals.any():
        return None  # nothing to calibrate against (halfcheetah, or a file without terminal flags)
    rng = np.random.default_rng(seed)
    ends = np.flatnonzero(terminals)
    ends = rng.choice(ends, min(len(ends), TERMINATION_TRANSITIONS // 2), replace=False)
    rest = rng.choice(np.flatnonzero(~terminals), min(int((~terminals).sum()), TERMINATION_TRANSITIONS - len(ends)),
                      replace=False)
    rows = np.concatenate([ends, rest])
    obs, act = np.asarray(dataset.observations)[rows], np.asarray(dataset.actions)[rows]
    sampled, at_mean = _termination_rates(pool, spec, common_noise, obs, act, seed)
    logged = terminals[rows]
    return {"draws": TERMINATION_DRAWS, "common_noise": bool(common_noise), "members": int(sampled.shape[0]),
            "logged_terminal_rate": float(terminals.mean()),
            "logged_nonterminal": _termination_shares(sampled, at_mean, ~logged),
            "logged_terminal": _termination_shares(sampled, at_mean, logged)}


def _termination_rates(pool: dynamics.DynamicsPool, spec: Any, common_noise: bool, obs: np.ndarray,
                       act: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`dynamics.termination_rates` under the dataset's rule, 2,048 rows at a time: (the share of
    `TERMINATION_DRAWS` drawn successors that terminate, 1.0 where the mean successor does), [N, rows]."""
    rates = jax.jit(functools.partial(dynamics.termination_rates, termination_fn=spec.termination_fn,
                                      num_samples=TERMINATION_DRAWS, common_noise=common_noise))
    sampled, at_mean = [], []
    for i, start in enumerate(range(0, len(obs), 2048)):
        r = rates(pool, jax.random.PRNGKey(seed * 7919 + i), obs[start:start + 2048], act[start:start + 2048])
        sampled.append(np.asarray(r.sampled))
        at_mean.append(np.asarray(r.at_mean, np.float64))
    return np.concatenate(sampled, 1), np.concatenate(at_mean, 1)


def _termination_shares(sampled: np.ndarray, at_mean: np.ndarray, mask: np.ndarray) -> dict:
    """Shares of terminal successors on the rows in `mask` (`dynamics.termination_rates` [N, rows])."""
    return {"transitions": int(mask.sum()),
            "drawn_mean_member": float(sampled[:, mask].mean()) if mask.any() else None,
            "drawn_worst_member": float(sampled[:, mask].max(0).mean()) if mask.any() else None,
            "mean_successor_mean_member": float(at_mean[:, mask].mean()) if mask.any() else None,
            "mean_successor_worst_member": float(at_mean[:, mask].max(0).mean()) if mask.any() else None}


def on_policy_model(run_dir: Path, pool: dynamics.DynamicsPool, spec: Any, dataset: Any, common_noise: bool,
                    episodes: int) -> Optional[dict]:
    """The pool along seed 0's deployed policy's real episodes (`evaluation.gym_episodes` with
    its transitions recorded; the final evaluation's first episodes), or None (no policy file yet,
    or no evaluation env)."""
    from jaxrl_bayes import evaluation
    from jaxrl_bayes import policy as policy_lib

    policy_file = run_dir / "policy_seed0.npz"
    if not policy_file.is_file() or spec.eval_env_spec is None:
        return None
    policy = policy_lib.load_policy(policy_file)
    steps: list[tuple[np.ndarray, ...]] = []
    eps = evaluation.gym_episodes(spec.eval_env_spec, policy_lib.act_fn_for(policy.module), episodes,
                                  seed=results.eval_seed(final=True), params=policy.bundle, on_transition=lambda *t: steps.append(t))
    obs, act, nxt, done = (np.concatenate(x) for x in zip(*steps))
    data_std = np.asarray(dataset.obs_std)
    pred = dynamics.predict(pool, obs, act)
    means = np.asarray(pred.next_obs_mean)  # [N, rows, S]
    err = np.sqrt((((means - nxt[None]) / data_std) ** 2).mean(-1))  # [N, rows] in data-std units
    spread = np.sqrt(((means.std(0) / data_std) ** 2).mean(-1))  # [rows]
    sampled, at_mean = _termination_rates(pool, spec, common_noise, obs, act, seed=0)
    return {"episodes": episodes, "steps": int(len(obs)), "lengths": eps.lengths.tolist(),
            "returns": eps.returns.tolist(), "real_terminal_rate": float(done.mean()),
            "state_error_median": float(np.median(err.mean(0))), "state_error_mean": float(err.mean()),
            "member_spread_median": float(np.median(spread)),
            "real_nonterminal": _termination_shares(sampled, at_mean, ~done),
            "real_terminal": _termination_shares(sampled, at_mean, done)}


def model_error(pool: dynamics.DynamicsPool, dataset: Any, horizon: int, segments: int, seed: int) -> dict:
    """Open-loop error per step of every pool member along logged stretches."""
    obs, nxt = np.asarray(dataset.observations), np.asarray(dataset.next_observations)
    rows = consecutive_segments(obs, nxt, np.asarray(dataset.terminals), horizon, segments, seed)
    err = jax.jit(dynamics.open_loop_error)(
        pool, obs[rows[:, 0]], np.asarray(dataset.actions)[rows], nxt[rows], np.asarray(dataset.rewards)[rows],
        np.asarray(dataset.obs_std))
    obs_rmse, reward_mae = np.asarray(err.obs_rmse), np.asarray(err.reward_mae)
    reward_std = float(np.std(np.asarray(dataset.rewards)))
    return {
        "members": int(obs_rmse.shape[0]),
        "segments": int(segments),
        "obs_rmse_in_data_std": {"median": np.median(obs_rmse, 0).tolist(), "min": obs_rmse.min(0).tolist(),
                                 "max": obs_rmse.max(0).tolist()},
        "reward_mae_raw": {"median": np.median(reward_mae, 0).tolist(), "min": reward_mae.min(0).tolist(),
                           "max": reward_mae.max(0).tolist()},
        "reward_std_raw": reward_std,
        "member_spread_at_horizon": float(obs_rmse[:, -1].max() / max(obs_rmse[:, -1].min(), 1e-12)),
    }


def from_metrics(run_dir: Path) -> tuple[list[dict], dict]:
    """(Q against the Monte Carlo return at each evaluation, last-chunk training figures)."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    evals = [{"step": r["step"], "q_model_mean": r.get("q_model_mean"), "q_real_mean": r.get("q_real_mean"),
              "mc_value_mean": r["eval/mc_value_mean"], "q_start_mean": r.get("eval/q_start_mean"),
              "normalized_mean": r.get("eval/normalized_mean"),
              "raw_mean": r.get("eval/raw_mean"), "temperature": r.get("temperature"),
              "ref_kl": r.get("ref_kl"), "greedy_gain": r.get("greedy_gain"),
              "picked_done_frac": r.get("picked_done_frac"),
              "member_done_frac": r.get("member_done_frac"),
              "deployments": {k.split("/")[1]: v for k, v in r.items()
                              if k.startswith("eval/") and k.endswith("/normalized_mean") and k.count("/") == 2}}
             for r in rows if r.get("eval/mc_value_mean") is not None]
    last = rows[-1] if rows else {}
    keys = ("step", "temperature", "q_model_mean", "q_real_mean", "target_mean", "rollout_valid_frac",
            "rollout_path_len", "rollout_restart_frac", "policy_kl", "ref_kl", "greedy_gain", "picked_done_frac", "member_done_frac", "critic_loss",
            "steps_per_s", "wall_time_s")
    return evals, {k: last.get(k) for k in keys if k in last}


def _f(x: Any, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
    lines = [f"# Diagnosis of {report['run_dir']} ({report['algo']} on {report['dataset']})", ""]
    pt = report.get("pool_training")
    if pt is not None:
        how = "stopped early (held-out MSE no longer improving)" if pt["stopped_early"] else "ran to the cap"
        lines.append(f"Pool training: {pt['epochs']} of at most {pt['max_epochs']} epochs, {how}; kept members' "
                     f"held-out MSE {_f(pt['val_mse_mean'], '.4g')}, NLL {_f(pt['val_nll_mean'], '.4g')} "
                     "(normalized targets).")
        if pt["last_epochs_drop"] is not None:
            lines[-1] += (f" Over its last {pt['patience']} epochs the held-out MSE fell "
                          f"{100 * pt['last_epochs_drop']:.1f} %")
            if not pt["stopped_early"] and pt["last_epochs_drop"] > dynamics.IMPROVEMENT_THRESHOLD:
                lines[-1] += ": the model had not converged (raise --dynamics.max_epochs)"
            lines[-1] += "."
        lines.append("")
    me = report["model_error"]
    if me is not None:
        h = report["rollout_horizon"]
        lines += [f"Model error along {me['segments']} logged stretches, {me['members']} members rolled open loop "
                  f"(state RMSE in data-std units; reward |error| against the data's reward std "
                  f"{me['reward_std_raw']:.3g}); the run's rollout horizon is {h}:", "",
                  "| step h | state RMSE median (min-max) | reward error median (min-max) |", "|---|---|---|"]
        o, r = me["obs_rmse_in_data_std"], me["reward_mae_raw"]
        for i in range(len(o["median"])):
            mark = " ←H" if i + 1 == h else ""
            lines.append(f"| {i + 1}{mark} | {o['median'][i]:.3g} ({o['min'][i]:.3g}-{o['max'][i]:.3g}) | "
                         f"{r['median'][i]:.3g} ({r['min'][i]:.3g}-{r['max'][i]:.3g}) |")
        lines.append("")
    tc, op = report.get("terminations"), report.get("on_policy")
    if tc is not None:
        lines += [f"Terminations of the pool on logged transitions and on the deployed policy's real steps (logged terminal rate {tc['logged_terminal_rate']:.4f}; "
                  f"{tc['draws']} drawn successors per member{', common noise' if tc['common_noise'] else ''}): "
                  "the share that the model ends, for the average member and the member that ends most:", "",
                  "| transitions | n | drawn: average member | drawn: worst member | "
                  "mean successor: average member | mean successor: worst member |", "|---|---|---|---|---|---|"]
        rows = [(tc[k], f"logged, {label}") for k, label in (("logged_nonterminal", "not terminal (false falls)"),
                                                             ("logged_terminal", "terminal (caught falls)"))]
        if op is not None:
            rows += [(op[k], f"the policy's real steps, {label}") for k, label in (("real_nonterminal", "not terminal"),
                                                                                ("real_terminal", "terminal"))]
        for r, label in rows:
            lines.append(f"| {label} | {r['transitions']} | {_f(r['drawn_mean_member'], '.4f')} | "
                         f"{_f(r['drawn_worst_member'], '.4f')} | {_f(r['mean_successor_mean_member'], '.4f')} | "
                         f"{_f(r['mean_successor_worst_member'], '.4f')} |")
        lines.append("")
    if op is not None:
        lines += [f"Along the deployed policy's own {op['episodes']} real episodes (seed 0; lengths "
                  f"{min(op['lengths']):.0f}-{max(op['lengths']):.0f}, real terminal rate {op['real_terminal_rate']:.4f}): "
                  f"one-step state error of the members' means, median {op['state_error_median']:.3g} data std "
                  f"(mean {op['state_error_mean']:.3g}); the members' spread, median {op['member_spread_median']:.3g} data std."]
        hazard = report["training"].get("rollout_restart_frac")
        if hazard is not None:  # logged by the persistent scheme only
            # how often the paths the critic learns on end, against the real episodes
            ratio = f", {hazard / op['real_terminal_rate']:.1f} times" if op["real_terminal_rate"] > 0 else ""
            # the persistent scheme logs the share of successors inside the box as rollout_valid_frac:
            # a path that diverges out of the model's support ends there, not by a fall
            outside = 1.0 - report["training"].get("rollout_valid_frac", 1.0)
            lines.append(f"The model's paths ended on {hazard:.4f} of their steps in the last chunk ({outside:.4f} "
                         f"outside the data's box, the rest terminal or at the horizon) against "
                         f"{op['real_terminal_rate']:.4f} of the policy's real steps{ratio}.")
        lines.append("")
    if report["value_vs_return"]:
        others = sorted({k for e in report["value_vs_return"] for k in e.get("deployments", {})})
        lines += ["Value against reality (learning units; Q should sit at or above the Monte Carlo return), "
                  "KL(pi || mu), and how often the selected member's successor terminates against all members':", "",
                  "| step | Q model states | Q real states | Q eval first states | MC return of eval episodes | "
                  "Q first states / MC | temperature | "
                  "KL(pi‖mu) | greedy gain | picked / all terminal | score |"
                  + "".join(f" score, {o} |" for o in others),
                  "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(others)]
        for e in report["value_vs_return"]:
            # the same states on both sides: Q at the evaluation episodes' first states against their return
            q0 = e.get("q_start_mean")
            ratio = (q0 / e["mc_value_mean"]) if q0 is not None and e["mc_value_mean"] else None
            done = (f"{e['picked_done_frac']:.3f} / {e['member_done_frac']:.3f}"
                    if e.get("picked_done_frac") is not None and e.get("member_done_frac") is not None else "-")
            lines.append(f"| {e['step']} | {_f(e['q_model_mean'])} | {_f(e['q_real_mean'])} | {_f(q0)} | "
                         f"{_f(e['mc_value_mean'])} | "
                         f"{_f(ratio, '.2f')} | {_f(e['temperature'])} | {_f(e.get('ref_kl'))} | {_f(e.get('greedy_gain'))} | {done} | "
                         f"{_f(e['normalized_mean'], '.1f')} |"
                         + "".join(f" {_f(e.get('deployments', {}).get(o), '.1f')} |" for o in others))
        lines.append("")
    t = report["training"]
    lines.append(f"Real/model: weight {report['real_weight']} on {report['real_batch']} real + "
                 f"{report['model_batch']} model pairs per step; discount {report['discount']}; "
                 f"last chunk: rollouts valid {_f(t.get('rollout_valid_frac'))}, policy KL per chunk "
                 f"{_f(t.get('policy_kl'))}, {_f(t.get('steps_per_s'))} steps/s.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
