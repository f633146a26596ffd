"""Where a learned liquidation policy loses against the DP optimum, one cause at a time.

Every policy file of the given run directories is rolled out on the 10,000 price paths of the
final evaluation (`experiments.results.FINAL_EVAL_SEED`), beside the DP policy on the same paths,
and so are three counterfactual versions of it, each removing one cause:

- **all or nothing**: wherever the policy sells a fraction f > 0, sell all if f >= 1/2 and hold
  otherwise (removes partial sales, keeps the timing of the policy's large sales);
- **... and all at the end**: the above, and sell everything left at t = 19 (removes the money
  left unsold when the episode ends, which the MDP drops);

so the gap to the DP policy (normalized, path by path) splits into
(c) partial sales = gap(policy) - gap(all or nothing),
(a) money left unsold = gap(all or nothing) - gap(all or nothing, all at the end),
(b) timing against the DP's thresholds = gap(all or nothing, all at the end).

With --critic, each seed's final critic is also set against the exact values on a grid of
states (t = 0..19, p = 0.8..2.2, m = 100): selling everything is worth m p (the episode ends),
holding m E[v(t + 1, p') | p] (the DP's continuation; 0 at t = 19, where the money is lost);
and the critic's own bang-bang policy (sell all where Q(sell) >= Q(hold)) is rolled out on the
same paths, which tells whether the critic or the policy's fit to it loses the points; so is the
critic's best of the policy's own candidates at fixed quantiles (tanh(mean + std z), z in
-2, -1.5, .., 2, z = 0 being the deployed action), a deployment that needs no bang-bang structure.
Printed: the critic's mean absolute error on each action (raw units), the price at which the
critic starts to prefer selling (where the DP's threshold is), and the share of grid states
where the deployed action's sale decision (f >= 1/2) differs from the DP's.

With --model, the run's dynamics pool is set against the true one-step dynamics on the same
grid of states under three actions (hold, sell half, sell all): the members' mean error of the
money left m' (m (1 - f)), of the reward ((m - m') p) and of the price's mean (p + theta (mu - p))
and std (sigma), and the spread of the members' means.

    python docs/liquidation_gap.py [--critic] [--model] RUN_DIR [RUN_DIR ...]   # same JAXRL_BAYES_CACHE as the runs
"""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.results import FINAL_EVAL_SEED
from jaxrl_bayes import networks, policy as policy_lib
from jaxrl_bayes.envs import liquidation as L
from jaxrl_bayes.envs import liquidation_dp

N = 10_000
KEY = jax.random.PRNGKey(FINAL_EVAL_SEED)  # the key evaluate_policy(., N, FINAL_EVAL_SEED) uses
LAST = L.CONFIG.horizon - 1


def returns(traj) -> np.ndarray:
    return np.asarray(jax.device_get(traj.rewards), np.float64).sum(0)


def gap(r, r_dp) -> float:
    return float(100 * (r_dp - r).mean() / L.REF_MAX_SCORE)


def counterfactuals(act_fn):
    """(params, obs) -> action variants of a deterministic policy's act_fn."""

    def all_or_nothing(params, obs):
        f = jnp.clip(act_fn(params, obs), 0.0, 1.0)
        return jnp.where(f >= 0.5, 1.0, -1.0)

    def all_at_end(params, obs):
        a = all_or_nothing(params, obs)
        return jnp.where(jnp.round(obs[:, :1]) >= LAST, 1.0, a)

    return all_or_nothing, all_at_end


QUANTILES = jnp.linspace(-2.0, 2.0, 9)
PRICES = np.round(np.arange(0.8, 2.2001, 0.02), 4)
MONEY = 100.0


def grid_states() -> tuple[np.ndarray, np.ndarray, jax.Array]:
    """t [20, P], p [20, P] and the observations [20 P, 3] at m = MONEY."""
    t, p = np.meshgrid(np.arange(L.CONFIG.horizon), PRICES, indexing="ij")
    obs = jnp.asarray(np.stack([t, np.full_like(p, MONEY), p], -1).reshape(-1, 3), jnp.float32)
    return t, p, obs


def run_pool(run_dir: str):
    from experiments import config, pools

    cfg = config.from_json(json.loads((Path(run_dir) / "config.json").read_text()), run_dir)
    spec = config.get_spec(cfg.run)
    dataset = spec.load()
    pool, _ = pools.get_or_train_pool(dataset, cfg.run.dataset, cfg.dynamics, cfg.run.dynamics_seed, progress=False)
    return cfg, spec, dataset, pool


def model_check(run_dir: str) -> None:
    from jaxrl_bayes import dynamics

    _, _, p, obs = (None,) + grid_states()
    pool = run_pool(run_dir)[3]
    cfg = L.CONFIG
    for f in (0.0, 0.5, 1.0):
        act = jnp.full((obs.shape[0], 1), f if f > 0 else -1.0, jnp.float32)
        pred = jax.device_get(dynamics.predict(pool, obs, act))
        p_flat = p.reshape(-1)
        true_m, true_r = MONEY * (1 - f), MONEY * f * p_flat
        true_p = p_flat + cfg.theta * (cfg.mu - p_flat)
        err = lambda x, y: float(np.abs(x - y).mean())  # noqa: E731
        print(f"  model, sell {f:.0%}: |m' error| {err(pred.next_obs_mean[..., 1], true_m):.3f}, "
              f"|r error| {err(pred.reward_mean, true_r):.3f} (r = {true_r.mean():.1f} on average), "
              f"|E p' error| {err(pred.next_obs_mean[..., 2], true_p):.4f}, "
              f"std p' {pred.next_obs_std[..., 2].mean():.4f} (true {cfg.sigma}), "
              f"members' spread of E r {pred.reward_mean.std(0).mean():.3f}")


def critic_check(run_dir: str) -> None:
    from experiments.run import seed_keys
    from jaxrl_bayes import algos
    from jaxrl_bayes.algos import common, train
    from jaxrl_bayes.checkpoint import Checkpointer

    cfg, spec, dataset, pool = run_pool(run_dir)
    trainer = algos.make_trainer(cfg.agent, dataset, pool, spec.termination_fn)
    ckpt = Checkpointer(Path(run_dir) / "checkpoints", 3)
    states, _ = ckpt.restore(jax.eval_shape(trainer.init_seeds, seed_keys(cfg.run.seed, cfg.run.seeds)),
                             ckpt.latest_step())
    data, nets, c = trainer.data, trainer.learner.nets, cfg.agent
    sol = liquidation_dp.solve_optimal_stopping(num_grid=L.DP_NUM_GRID, **L._price_model_kwargs())
    prices, m = PRICES, MONEY
    t, p, obs = grid_states()
    exact_sell = m * p
    cont = np.stack([np.interp(prices, sol.price_grid, sol.continuation[i]) for i in range(L.CONFIG.horizon)])
    exact_hold = np.where(t < L.CONFIG.horizon - 1, m * cont, 0.0)
    dp_sells = exact_sell >= exact_hold
    scale = float(data.reward_scale)
    for i in range(cfg.run.seeds):
        st = jax.tree_util.tree_map(lambda x: x[i], states)

        def q_at(env_action):
            a = networks.from_env_action(jnp.full((obs.shape[0], 1), env_action, jnp.float32), c.action_scale)
            return scale * np.asarray(common.critic_values(nets, st.critic, data, obs, a, c)).reshape(t.shape)

        q_sell, q_hold = q_at(1.0), q_at(-1.0)
        sells = np.asarray(train.act(nets, st.policy, obs, data))[:, 0].reshape(t.shape) >= 0.5
        thr = [prices[np.argmax(q_sell[k] >= q_hold[k])] if (q_sell[k] >= q_hold[k]).any() else np.inf
               for k in range(L.CONFIG.horizon)]
        print(f"  seed {i} critic: |Q(sell) - m p| {np.abs(q_sell - exact_sell).mean():.2f} (bias "
              f"{(q_sell - exact_sell).mean():+.2f}), |Q(hold) - m E v'| {np.abs(q_hold - exact_hold).mean():.2f} "
              f"(bias {(q_hold - exact_hold).mean():+.2f}; raw units, m p ~ 80-220); "
              f"deployed sale decision differs from the DP's on {np.mean(sells != dp_sells):.1%} of the grid")
        print("    critic's sell threshold by t: " + " ".join(f"{x:.2f}" for x in thr))

        def greedy(critic, o):
            """Sell all where the critic prefers it to holding, else hold."""
            sell, hold = (networks.from_env_action(jnp.full((o.shape[0], 1), v, jnp.float32), c.action_scale)
                          for v in (1.0, -1.0))
            better = common.critic_values(nets, critic, data, o, sell, c) >= common.critic_values(
                nets, critic, data, o, hold, c)
            return jnp.where(better, 1.0, -1.0).reshape(-1, 1)

        r_greedy = returns(L.rollout_with_params(L._DeterministicWithParams(greedy), st.critic, KEY, N))
        print(f"    the critic's own sell-or-hold policy on the same paths: {100 * r_greedy.mean() / L.REF_MAX_SCORE:.2f}")

        def best_candidate(params, o):
            """The critic's best of the policy's candidates at fixed quantiles of its Gaussian."""
            pol, critic = params
            d = train.policy_dist(nets, pol, data, o)
            a = jnp.tanh(d.mean[None] + jnp.exp(d.log_std)[None] * QUANTILES[:, None, None])  # (Z, B, A)
            best = jnp.argmax(common.critic_values(nets, critic, data, o, a, c), axis=0)
            return networks.to_env_action(jnp.take_along_axis(a, best[None, :, None], 0)[0], c.action_scale)

        r_best = returns(L.rollout_with_params(L._DeterministicWithParams(best_candidate), (st.policy, st.critic),
                                               KEY, N))
        print(f"    the critic's best of {len(QUANTILES)} quantile candidates of the policy: "
              f"{100 * r_best.mean() / L.REF_MAX_SCORE:.2f}")
        print("    DP's threshold by t:          " + " ".join(f"{x:.2f}" for x in sol.thresholds))


args = [a for a in sys.argv[1:] if a not in ("--critic", "--model")]
r_dp = returns(L.rollout(L._Deterministic(L.make_dp_policy()), KEY, N))
print(f"DP policy on the {N} paths: {100 * r_dp.mean() / L.REF_MAX_SCORE:.2f} normalized")
for run_dir in args:
    rows = []
    for path in policy_lib.policy_files(run_dir):
        pol = policy_lib.load_policy(path)
        act = policy_lib.act_fn_for(pol.module)
        variants = (act,) + counterfactuals(act)
        r = [returns(L.rollout_with_params(L._DeterministicWithParams(v), pol.bundle, KEY, N)) for v in variants]
        g = [gap(x, r_dp) for x in r]
        rows.append((100 * r[0].mean() / L.REF_MAX_SCORE, g[0], g[0] - g[1], g[1] - g[2], g[2]))
    m = np.mean(rows, axis=0)
    print(f"{run_dir}: {len(rows)} policies, score {m[0]:.2f}, gap {m[1]:.2f} = partial sales {m[2]:.2f} "
          f"+ money left unsold {m[3]:.2f} + timing {m[4]:.2f}")
    for i, row in enumerate(rows):
        print(f"  seed {i}: score {row[0]:.2f}, gap {row[1]:.2f} = {row[2]:.2f} + {row[3]:.2f} + {row[4]:.2f}")
    if "--critic" in sys.argv:
        critic_check(run_dir)
    if "--model" in sys.argv:
        model_check(run_dir)
