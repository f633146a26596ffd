"""Why `target_uncertainty_spearman` is positive on liquidation (docs/liquidation.md).

The diagnostic (`jaxrl_bayes.algos.diagnostics.target_uncertainty`) ranks, across model-buffer
states, the selected member's target y(s, a) against the std over the members' targets. This
script recomputes both on 4,096 buffer states of the final checkpoint of every seed of a
finished run, and splits the correlation: against the money held (the value is m v(t, p), so
both scale with m), per unit of money, within money deciles, and the selected target's
deviation from the members' mean (the part that would show pessimism where members disagree).

    python docs/liquidation_spearman_probe.py RUN_DIR     # same JAXRL_BAYES_CACHE as the run
"""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from experiments import config, pools
from experiments.run import seed_keys
from jaxrl_bayes import algos, backups, buffer, rollout
from jaxrl_bayes.algos import targets, train
from jaxrl_bayes.checkpoint import Checkpointer

run_dir = Path(sys.argv[1])
cfg = config.from_json(json.loads((run_dir / "config.json").read_text()), str(run_dir))
spec = config.get_spec(cfg.run)
dataset = spec.load()
pool, _ = pools.get_or_train_pool(dataset, cfg.run.dataset, cfg.dynamics, cfg.run.dynamics_seed, progress=False)
trainer = algos.make_trainer(cfg.agent, dataset, pool, spec.termination_fn)
ckpt = Checkpointer(run_dir / "checkpoints", 3)
states, _ = ckpt.restore(jax.eval_shape(trainer.init_seeds, seed_keys(cfg.run.seed, cfg.run.seeds)), ckpt.latest_step())
learner, data = trainer.learner, trainer.data


def rho(a, b):
    return float(scipy.stats.spearmanr(a, b).statistic)


rows = []
for i in range(cfg.run.seeds):
    st = jax.tree_util.tree_map(lambda x: x[i], states)
    ctx = train.context(learner, st, data)
    vf = train.make_value_fn(ctx, learner.parts, st.target_critic)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(i), 3)
    pairs = buffer.buffer_sample(st.buffer, k1, 4096)
    y = np.asarray(targets.model_target(ctx, k2, pairs.obs, pairs.act, vf)[0])
    my = np.asarray(targets.all_member_targets(ctx, k3, pairs.obs, pairs.act, vf).member_y)
    spread = my.std(axis=0)
    # the selector applied to these very member targets: its deviation from their mean is the
    # pessimism (or not) where members disagree, free of the sampling noise of a second draw
    selector = rollout.SELECTORS[cfg.agent.targets.selector]
    picked = selector.select(jax.random.PRNGKey(100 + i), targets.selector_inputs(ctx),
                             jnp.asarray(my) if selector.needs_targets else None, (my.shape[1],))
    y_same = np.asarray(backups.take_members(jnp.asarray(my), picked))
    obs = np.asarray(pairs.obs)
    money, t, price = obs[:, 1], obs[:, 0], obs[:, 2]
    # within money deciles: the correlation with the money level taken out
    edges = np.quantile(money, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(edges, money, side="right") - 1, 0, 9)
    within = [rho(y[idx == k], spread[idx == k]) for k in range(10) if (idx == k).sum() > 20]
    rows.append(dict(
        seed=i, n=len(y), money_range=(float(money.min()), float(money.max())),
        rho_y_spread=rho(y, spread),
        rho_y_money=rho(y, money), rho_spread_money=rho(spread, money),
        rho_per_unit=rho(y / np.maximum(money, 1e-3), spread / np.maximum(money, 1e-3)),
        rho_within_money_deciles=float(np.mean(within)),
        rho_selected_minus_member_mean_vs_spread=rho(y_same - my.mean(axis=0), spread),
    ))
    print(json.dumps(rows[-1]), flush=True)
keys = [k for k in rows[0] if k.startswith("rho")]
print("mean over seeds:", json.dumps({k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}))
