"""PSPO, RRPI, BC and their variants: registered parts, one train step, named configs.

    from jaxrl_bayes.algos import algo_config, make_trainer
    config = algo_config("pspo", total_steps=20_000, steps_per_chunk=500)
    trainer = make_trainer(config, dataset, pool, termination_fn)
    states = trainer.init_seeds(jax.random.split(key, 4))     # 4 seeds, vmapped
    for _ in range(20_000 // 500):
        states, metrics = trainer.run_chunk_seeds(states)

`total_steps` is the run's budget of train steps: the rates that set its time scales (ref_tau,
tau, policy_lr, critic_lr) follow from it by the budget rule of `timescales`, as on the command
line, except those given as overrides. Without it they stay at PMDB's values, which the rule
gives for PMDB's 2,000,000 steps only.

Names (`ALGORITHMS`): rrpi, pmdb (RRPI's code path with the 2nd-smallest of 10 members),
rrpi-random (RRPI ablation: uniform member), pspo, pspo-avg (PSPO ablation: uniform
posterior, "average utilization"), pspo-noreg (PSPO ablation: no behaviour-policy term),
bc (behaviour cloning; needs no dynamics pool: `algo_needs_model("bc")` is False and
`make_trainer(config, dataset)` works without pool or termination function).

Extending (one function plus its registration, in any file; see `common`'s docstring):
`rollout.register_selector`, `posterior.register_consistency`, `posterior.register_belief`,
`REAL_TARGETS.register`, `PARTS.register` + `register_algorithm` for a new algorithm.
Importing this package imports the algorithm modules, which register themselves.
"""

from __future__ import annotations

import dataclasses

from jaxrl_bayes.algos.common import (
    ALGORITHMS,
    PARTS,
    REAL_TARGETS,
    AgentConfig,
    Parts,
    TrainData,
    TrainState,
    deployed_policy,
    make_train_data,
    register_algorithm,
)
from jaxrl_bayes.algos.timescales import with_budget
from jaxrl_bayes.algos.train import Trainer, make_train, make_trainer
from jaxrl_bayes.algos import rrpi, pspo, bc, timescales  # noqa: F401  (register their parts and names)
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.posterior import register_belief, register_consistency
from jaxrl_bayes.registry import closest
from jaxrl_bayes.rollout import register_selector


def algo_config(name: str, *, total_steps: int | None = None, **overrides) -> AgentConfig:
    """AgentConfig of a named algorithm with field overrides, validated.

    `total_steps`: the run's budget of train steps. The time-scale rates (`timescales.RATES`)
    that `overrides` does not set follow from it by the budget rule (`with_budget`, the rule the
    command line applies); None leaves them at the dataclass's values (PMDB's, for 2M steps).

    Raises a one-line `UserError` for an unknown name (listing the known ones and the closest),
    an unknown field, an invalid value, or a budget in which an explicit ref_tau cannot move
    the reference policy (`timescales.check_reference_moves`).
    """
    if name not in ALGORITHMS:
        raise UserError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHMS)}{closest(name, ALGORITHMS)}")
    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(f"unknown AgentConfig fields {unknown}; valid fields: {sorted(fields)}")
    config = AgentConfig(**{**ALGORITHMS[name], **overrides})
    if total_steps is not None:
        config = with_budget(config, total_steps, explicit=overrides)
    config.validate()
    if total_steps is not None and not fields_without_effect(config, ["ref_tau"]):  # it has a reference policy
        timescales.check_reference_moves(config.ref_tau, total_steps)
    return config


def parts_for(config: AgentConfig) -> Parts:
    """The registered parts of `config.algo`."""
    return PARTS.lookup(config.algo, "agent.algo")


def algo_needs_model(name: str | AgentConfig) -> bool:
    """Whether a named algorithm (or a config) trains through a dynamics pool (bc: False).

    The CLI skips pool training where this is False.
    """
    algo = name.algo if isinstance(name, AgentConfig) else ALGORITHMS.lookup(name, "algo")["algo"]
    return PARTS.lookup(algo, "agent.algo").needs_model


# what `train.behaviour_cloning` reads: fitting pi_beta is all they do
BEHAVIOUR_FIT_FIELDS = frozenset({"bc_steps", "bc_lr", "bc_batch"})


def fields_without_effect(config: AgentConfig, names) -> list[str]:
    """Those of the AgentConfig field `names` that `config.algo` never reads (sorted)."""
    parts = PARTS.lookup(config.algo, "agent.algo")
    reads = parts.reads
    unread = set(names) & config.unread_fields()
    if parts.ignores is not None:
        unread |= set(names) & parts.ignores(config)
    if reads is None and not (parts.needs_behaviour or config.init_from_behaviour):
        unread |= set(names) & BEHAVIOUR_FIT_FIELDS  # no pi_beta is fitted
    return sorted(unread if reads is None else (set(names) - reads) | unread)


__all__ = [
    "ALGORITHMS", "PARTS", "REAL_TARGETS", "AgentConfig", "Parts", "Trainer", "TrainData", "TrainState",
    "algo_config", "algo_needs_model", "deployed_policy", "fields_without_effect", "make_train", "make_train_data", "make_trainer", "parts_for",
    "register_algorithm", "register_belief", "register_consistency", "register_selector", "with_budget",
]
