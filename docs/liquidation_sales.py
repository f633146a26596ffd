"""Where the learned liquidation policies lose against the DP optimum (docs/liquidation.md).

The DP policy, the fixed schedules, the behaviour policy and every policy file of the given run
directories are rolled out on the 10,000 price paths of the final evaluation (`experiments.results.FINAL_EVAL_SEED`, the paths its score was measured on),
beside the DP policy on the same paths. Printed per run directory, averaged over its seeds:
the money sold per step, the money still held when the episode ends (lost: the MDP drops it),
the value of that money at the last price (normalized, 100 * m p / 135), the share of actions
that sell a fraction strictly between 2 % and 98 % (the DP policy sells all or nothing), the
volume-weighted sale price, and the gap to the DP policy (normalized, path by path).

    python docs/liquidation_sales.py RUN_DIR [RUN_DIR ...]
"""
import sys

import jax
import numpy as np

from experiments.results import FINAL_EVAL_SEED
from jaxrl_bayes import policy as policy_lib
from jaxrl_bayes.envs import liquidation as L

N = 10_000
KEY = jax.random.PRNGKey(FINAL_EVAL_SEED)  # the key evaluate_policy(., N, FINAL_EVAL_SEED) uses


def summary(traj, r_dp=None):
    t = jax.device_get(traj)
    sold = (t.observations[..., 1] - t.next_observations[..., 1]) * t.alive  # [H, n]
    last = t.alive.sum(0) - 1  # index of each episode's last step
    cols = np.arange(sold.shape[1])
    left = t.next_observations[last, cols, 1]  # money held after the last step: lost
    left_value = 100.0 * left * t.next_observations[last, cols, 2] / L.REF_MAX_SCORE
    frac = np.clip(t.actions[..., 0], 0.0, 1.0)
    partial = ((frac > 0.02) & (frac < 0.98) & t.alive).sum() / t.alive.sum()
    returns = np.asarray(t.rewards, np.float64).sum(0)
    return dict(sold=sold.mean(1), left=float(left.mean()), left_value=float(left_value.mean()),
                partial=float(partial), price=float((sold * t.observations[..., 2]).sum() / sold.sum()),
                score=float(100 * returns.mean() / L.REF_MAX_SCORE), returns=returns,
                gap=None if r_dp is None else float(100 * (r_dp - returns).mean() / L.REF_MAX_SCORE))


def show(name, rows):
    m = {k: np.mean([r[k] for r in rows], axis=0) for k in ("sold", "left", "left_value", "partial", "price", "score")}
    gap = "" if rows[0]["gap"] is None else f", gap {np.mean([r['gap'] for r in rows]):.2f}"
    print(f"{name}: {len(rows)} policies, score {m['score']:.2f}{gap}, money left unsold {m['left']:.2f} "
          f"(worth {m['left_value']:.2f} normalized), partial sales {m['partial']:.1%} of actions, "
          f"sale price {m['price']:.4f}\n  sold per step {np.round(m['sold'].astype(np.float64), 1).tolist()}")


dp = summary(L.rollout(L._Deterministic(L.make_dp_policy()), KEY, N))
show("DP policy", [dp])
for name, fn in L.FIXED_POLICIES.items():  # the fixed schedules and the data's behaviour policy
    show(name, [summary(L.rollout(fn, KEY, N), dp["returns"])])
for run_dir in sys.argv[1:]:
    rows = []
    for path in policy_lib.policy_files(run_dir):
        pol = policy_lib.load_policy(path)
        act = L._DeterministicWithParams(policy_lib.act_fn_for(pol.module))
        rows.append(summary(L.rollout_with_params(act, pol.bundle, KEY, N), dp["returns"]))
    show(run_dir, rows)
