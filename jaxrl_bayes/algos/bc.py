"""BC and %BC: behaviour cloning, the baselines every offline-RL score is read against.

Maximum likelihood of the dataset's actions under the same tanh-Gaussian policy as the other
algorithms (`config.policy_hidden`, standardized observations): `losses.behaviour_cloning_loss`,
the loss PSPO's pi_beta is fitted with; or, with `algo.loss = "mse"`, the squared error of the
deployed action tanh(mean) (`losses.deterministic_cloning_loss`, CORL's BC). One Adam step
(`behaviour.lr`) on `behaviour.batch` pairs at a time through `train.behaviour_cloning_step`,
`steps_per_chunk` of them per jitted chunk in `lax.scan`, seeds by vmap. The deployed policy is tanh(mean), as for every algorithm.

- Early stopping on the held-out loss: `algo.holdout` of the episodes never enter training; at
  every chunk's end the training loss on their actions is measured (mean negative
  log-likelihood, or the deployed action's squared error), and the best policy so far
  (`BCState.best_policy`) is the one evaluated and saved. So the budget is chosen on unseen
  episodes, never by returns.
- %BC (`algo.top_fraction` < 1, a field of `common.Bc`; the named algorithm `bc-top10` clones
  the top 10 % of complete episodes by return, Decision Transformer's baseline):
  `data.dataset.top_episode_rows`.

BC needs no dynamics pool (`Parts.needs_model = False`, `algos.algo_needs_model("bc")` is
False): `make_trainer(config, dataset, pool=None)` works, and the CLI skips pool training.
Chunk metrics: `bc_loss` (the chunk's mean loss), `policy_loss` (the same number, under the name
every algorithm reports), `holdout_nll` and `best_holdout_nll` (`holdout_mse` and
`best_holdout_mse` with `algo.loss = "mse"`).
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_bayes import networks
from jaxrl_bayes.algos import losses, train
from jaxrl_bayes.algos.common import (
    PARTS, AgentConfig, Networks, Parts, TrainData, make_networks, make_train_data, register_algorithm, strong_types,
)
from jaxrl_bayes.data.dataset import episode_ids, top_episode_rows
from jaxrl_bayes.errors import UserError

# held-out pairs whose likelihood is measured at a chunk's end (a fixed subset when there are more)
MAX_HOLDOUT_PAIRS = 20_000


@flax.struct.dataclass
class BCState:
    """The learner state of BC: a pytree that vmaps over seeds and checkpoints with orbax."""

    policy: Any
    policy_opt: Any
    best_policy: Any  # the policy with the best held-out loss so far (deployed)
    best_nll: jax.Array  # its held-out loss, the negative log-likelihood or squared error (inf before the first chunk)
    step: jax.Array
    key: jax.Array


def init_state(nets: Networks, tx: optax.GradientTransformation, key: chex.PRNGKey, data: TrainData) -> BCState:
    """A fresh policy and optimizer."""
    k_pol, k_state = jax.random.split(key)
    policy = nets.policy.init(k_pol, jnp.zeros((1, data.obs.shape[1])))
    return strong_types(BCState(policy, tx.init(policy), policy, jnp.asarray(jnp.inf, jnp.float32),
                                jnp.zeros((), jnp.int32), k_state))


def run_chunk(config: AgentConfig, nets: Networks, tx: optax.GradientTransformation, state: BCState,
              data: TrainData) -> tuple[BCState, dict]:
    """`steps_per_chunk` behaviour-cloning steps in lax.scan, then the held-out check."""
    key, k_steps = jax.random.split(state.key)
    loss_fn, loss_name = losses.CLONING_LOSSES[config.algo.loss]

    def step(carry, k):
        params, opt = carry
        params, opt, loss = train.behaviour_cloning_step(params, opt, k, data, nets, tx, config.behaviour.batch,
                                                         loss_fn)
        return (params, opt), loss

    (policy, policy_opt), loss = jax.lax.scan(step, (state.policy, state.policy_opt),
                                              jax.random.split(k_steps, config.steps_per_chunk))
    metrics = {"bc_loss": jnp.mean(loss), "policy_loss": jnp.mean(loss)}
    best_policy, best_nll = policy, state.best_nll
    if data.holdout_obs is not None:
        held = loss_fn(policy, nets, data, data.holdout_obs, data.holdout_act)
        better = held < state.best_nll
        best_policy = jax.tree_util.tree_map(lambda new, old: jnp.where(better, new, old), policy, state.best_policy)
        best_nll = jnp.minimum(held, state.best_nll)
        metrics.update({f"holdout_{loss_name}": held, f"best_holdout_{loss_name}": best_nll})
    state = BCState(policy, policy_opt, best_policy, best_nll, state.step + config.steps_per_chunk, key)
    return state, metrics


def split_rows(dataset, config: AgentConfig, key: chex.PRNGKey) -> tuple[np.ndarray, np.ndarray | None]:
    """(training rows, held-out rows or None) of `dataset`: the top `algo.top_fraction` of its
    complete episodes (all rows at 1), and `algo.holdout` of those episodes held out."""
    obs, nxt = np.asarray(dataset.observations), np.asarray(dataset.next_observations)
    done = np.asarray(dataset.terminals)
    rows = np.arange(obs.shape[0])
    if config.algo.top_fraction < 1.0:
        rows = rows[top_episode_rows(obs, nxt, np.asarray(dataset.rewards), done, config.algo.top_fraction)]
    if config.algo.holdout <= 0.0:
        return rows, None
    ids = episode_ids(obs, nxt, done)[rows]
    episodes = np.unique(ids)
    if episodes.size < 2:
        raise UserError(f"agent.algo.holdout = {config.algo.holdout} needs at least two episodes (one held out, one to "
                        f"train on), but bc clones {episodes.size}: set --agent.algo.holdout 0 (no early stopping)")
    num_held = min(max(1, int(round(config.algo.holdout * episodes.size))), episodes.size - 1)
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    held = rng.choice(episodes, size=num_held, replace=False)
    is_held = np.isin(ids, held)
    held_rows = rows[is_held]
    if held_rows.size > MAX_HOLDOUT_PAIRS:
        held_rows = np.sort(rng.choice(held_rows, size=MAX_HOLDOUT_PAIRS, replace=False))
    return rows[~is_held], held_rows


def build(config: AgentConfig, dataset, pool=None, termination_fn=None, active_key=None) -> train.Trainer:
    """The BC Trainer (same interface as every algorithm's; pool and termination_fn unused)."""
    del pool, termination_fn
    active_key = jax.random.PRNGKey(0) if active_key is None else active_key
    data = make_train_data(dataset, None, config, active_key)
    train_rows, held_rows = split_rows(dataset, config, active_key)
    if train_rows.size < data.obs.shape[0]:  # %BC and/or a hold-out: train on the kept rows only
        take = jnp.asarray(train_rows)
        data = data.replace(obs=data.obs[take], act=data.act[take], reward=data.reward[take],
                            next_obs=data.next_obs[take], done=data.done[take])
    if held_rows is not None:
        data = data.replace(holdout_obs=jnp.asarray(dataset.observations, jnp.float32)[held_rows],
                            holdout_act=networks.from_env_action(jnp.asarray(dataset.actions, jnp.float32)[held_rows],
                                                                 config.action_scale))
    nets = make_networks(config, data.act.shape[1], with_critic=False)
    tx = optax.adam(config.behaviour.lr)
    return train.bind(config, data, nets, functools.partial(init_state, nets, tx),
                      functools.partial(run_chunk, config, nets, tx))


# its knobs, and the shared ones it never reads: `common.Bc`
PARTS.register("bc", Parts(needs_model=False, build=build))
register_algorithm("bc", algo="bc")
register_algorithm("bc-top10", {"algo": "bc", "algo.top_fraction": 0.1})  # %BC: the top 10 % of episodes by return
