"""BC: behaviour cloning, the baseline every offline-RL score is read against (issue 11).

Maximum likelihood of the dataset's actions under the same tanh-Gaussian policy as the other
algorithms (`config.policy_hidden`): `losses.behaviour_cloning_loss`, the loss PSPO's pi_beta
is fitted with, one Adam step (`bc_lr`) on `bc_batch` pairs at a time through
`train.behaviour_cloning_step`, `steps_per_chunk` of them per jitted chunk in `lax.scan`, seeds
by vmap. The deployed policy is tanh(mean), as for every algorithm.

BC needs no dynamics pool (`Parts.needs_model = False`, `algos.algo_needs_model("bc")` is
False): `make_trainer(config, dataset, pool=None)` works, and the CLI skips pool training.
Chunk metrics: `bc_loss` (mean negative log-likelihood of the chunk's batches) and
`policy_loss` (the same number, under the name every algorithm reports).
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxrl_bayes.algos import train
from jaxrl_bayes.algos.common import (
    PARTS, AgentConfig, Networks, Parts, TrainData, make_networks, make_train_data, register_algorithm, strong_types,
)


@flax.struct.dataclass
class BCState:
    """The learner state of BC: a pytree that vmaps over seeds and checkpoints with orbax."""

    policy: Any
    policy_opt: Any
    step: jax.Array
    key: jax.Array


def init_state(nets: Networks, tx: optax.GradientTransformation, key: chex.PRNGKey, data: TrainData) -> BCState:
    """A fresh policy and optimizer."""
    k_pol, k_state = jax.random.split(key)
    policy = nets.policy.init(k_pol, jnp.zeros((1, data.obs.shape[1])))
    return strong_types(BCState(policy, tx.init(policy), jnp.zeros((), jnp.int32), k_state))


def run_chunk(config: AgentConfig, nets: Networks, tx: optax.GradientTransformation, state: BCState,
              data: TrainData) -> tuple[BCState, dict]:
    """`steps_per_chunk` behaviour-cloning steps in lax.scan; metrics bc_loss and policy_loss."""
    key, k_steps = jax.random.split(state.key)

    def step(carry, k):
        params, opt = carry
        params, opt, loss = train.behaviour_cloning_step(params, opt, k, data, nets, tx, config.bc_batch)
        return (params, opt), loss

    (policy, policy_opt), nll = jax.lax.scan(step, (state.policy, state.policy_opt),
                                             jax.random.split(k_steps, config.steps_per_chunk))
    state = BCState(policy, policy_opt, state.step + config.steps_per_chunk, key)
    return state, {"bc_loss": jnp.mean(nll), "policy_loss": jnp.mean(nll)}


def build(config: AgentConfig, dataset, pool=None, termination_fn=None, active_key=None) -> train.Trainer:
    """The BC Trainer (same interface as every algorithm's; pool and termination_fn unused)."""
    del pool, termination_fn
    data = make_train_data(dataset, None, config, active_key)
    nets = make_networks(config, data.act.shape[1], with_critic=False)
    tx = optax.adam(config.bc_lr)
    return train.bind(config, data, nets, functools.partial(init_state, nets, tx),
                      functools.partial(run_chunk, config, nets, tx))


# every AgentConfig field that build/init_state/run_chunk (and make_train_data) read
READS = frozenset({"algo", "policy_hidden", "bc_lr", "bc_batch", "steps_per_chunk"})

PARTS.register("bc", Parts(needs_model=False, build=build, reads=READS))
register_algorithm("bc", algo="bc")
