"""A research fork in one file: a lower-confidence-bound backup over the ensemble members.

    python examples/lcb_backup.py        # a tiny synthetic task; about a minute on 2 CPU cores

RRPI backs up the worst member's one-step target per state; PSPO a member drawn from the
posterior. Both follow one member. Here the target on model states combines all N members'
one-step targets y_m(s, a) into a lower confidence bound,

    y(s, a) = mean_m y_m(s, a) - k * std_m y_m(s, a)        (std over the N members, ddof 0)

pessimistic where the members disagree, as MOPO's penalty and the uncertainty-penalized
backups of EDAC / PBRL are. k = 0 is the members' mean. All it takes is a function of the
(N, B) member targets and one decorator; the config then names it (`targets.backup = "lcb"`, or
`--agent.targets.backup lcb` on the command line of a script that imports this file first). The rule
names no member, so the persistent rollout scheme's paths follow the configured selector's
member (the worst one under RRPI).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import dynamics, termination
from jaxrl_bayes.algos import ModelSampling, algo_config, make_trainer
from jaxrl_bayes.algos.targets import register_member_backup
from jaxrl_bayes.data.toy import stay_near_zero

LCB_K = 1.0  # k: how many member standard deviations below the members' mean
TRACES = {"lcb": 0}  # how often the rule below was traced into a compiled train step


def lcb_target(member_y: jax.Array, k: float) -> jax.Array:
    """mean_m y_m - k std_m y_m per state.

    Args:
      member_y: the N members' one-step targets, shape (N,) + B.
      k: the number of standard deviations (k = 0: the members' mean).
    Returns:
      the target, shape B.
    """
    return jnp.mean(member_y, axis=0) - k * jnp.std(member_y, axis=0)


@register_member_backup("lcb")
def lcb_backup(key, inputs, member_y: jax.Array) -> jax.Array:
    """The backup rule "lcb": `lcb_target` with k = LCB_K; it follows no single member."""
    del key, inputs
    TRACES["lcb"] += 1
    return lcb_target(member_y, LCB_K)


def main(chunks: int = 2, seed: int = 0, rollout_scheme: str = "persistent", backup: str = "lcb") -> dict:
    """Trains RRPI with the named backup rule at a tiny size; returns the trainer, the final
    states (seed axis of 1) and the last chunk's metrics of seed 0."""
    ds = stay_near_zero()
    pool, _ = dynamics.train_pool(
        jax.random.PRNGKey(seed), ds.observations, ds.actions, ds.rewards, ds.next_observations,
        dynamics.DynamicsConfig(num_members=3, hidden=(32, 32), max_epochs=5, batch_size=128))
    config = algo_config(
        "rrpi", num_active=3, critic_hidden=(32, 32), policy_hidden=(32, 32), real_batch=32, model_batch=32,
        num_candidates=4, buffer_capacity=512, steps_per_chunk=20, sampling=ModelSampling(num_next_samples=2),
        **{"targets.backup": backup, "rollout": rollout_scheme, "rollout.horizon": 20})
    trainer = make_trainer(config, ds, pool, termination.no_termination)
    states = trainer.init_seeds(jax.random.PRNGKey(seed)[None])
    metrics = {}
    for _ in range(chunks):
        states, metrics = trainer.run_chunk_seeds(states)
    return {"trainer": trainer, "states": states,
            "metrics": jax.tree_util.tree_map(lambda x: np.asarray(x[0]), metrics)}


if __name__ == "__main__":
    out = main()
    m = out["metrics"]
    print(f"backup 'lcb' (k = {LCB_K}) traced {TRACES['lcb']} time(s); model-state target mean "
          f"{float(m['target_mean']):.4g}, critic loss {float(m['critic_loss']):.4g}, member spread "
          f"{float(m['member_target_spread']):.4g}")
