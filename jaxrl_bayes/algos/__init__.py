"""PSPO, RRPI, BC and their variants: registered parts, one train step, named configs.

    from jaxrl_bayes.algos import algo_config, make_trainer
    config = algo_config("pspo", total_steps=20_000, steps_per_chunk=500)
    trainer = make_trainer(config, dataset, pool, termination_fn)
    states = trainer.init_seeds(jax.random.split(key, 4))     # 4 seeds, vmapped
    for _ in range(20_000 // 500):
        states, metrics = trainer.run_chunk_seeds(states)

Overrides name a shared field (`num_active=7`), a component by value or by its kind
(`rollout=Persistent(horizon=1000)`, `temperature="fixed"`), or a dotted path
(`**{"targets.kth": 2, "rollout.horizon": 1000}`); the components (`AgentConfig.algo`, `optim`,
`rollout`, `sampling`, `targets`, `belief`, `temperature`, `behaviour`) are defined and checked
by the modules that read them (`jaxrl_bayes.components`). The algorithm is a choice too
(`algo`: `Rrpi`, `Pspo`, `Bc`), and its knobs hang off it: PSPO's reference weight is
`algo.behaviour_weight`, bc's rows `algo.top_fraction`; under another algorithm they do not
exist. The flat names of the configs before the components (`kth=2`, `behaviour_weight=0`,
`rollout_scheme="persistent"`) still work: the table `overrides.FLAT_NAMES` maps each to its path.

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
`rollout.register_selector`, `posterior.register_consistency`, `posterior.register_belief`
(with a `posterior.BeliefConfig` member of the same `kind`), `REAL_TARGETS.register`, a rollout
scheme (`rollout_schemes.ROLLOUT_SCHEMES.register` with a `RolloutConfig` member),
`PARTS.register` (with an `AlgoConfig` member of the same `kind`, holding its own knobs and
saying in `unread` what it never reads) + `register_algorithm` for a new algorithm.
Importing this package imports the algorithm modules, which register themselves.
"""

from __future__ import annotations

import dataclasses

from jaxrl_bayes.algos.common import (
    ALGORITHMS,
    PARTS,
    REAL_TARGETS,
    AgentConfig,
    AlgoConfig,
    Bc,
    BehaviourFit,
    Fixed,
    KLBudget,
    ModelSampling,
    Targets,
    Parts,
    Pspo,
    Rrpi,
    TrainData,
    TrainState,
    deployed_policy,
    make_train_data,
    register_algorithm,
)
from jaxrl_bayes.algos.overrides import FLAT_NAMES, apply_overrides, from_flat, to_path
from jaxrl_bayes.algos.timescales import Optimiser, with_budget
from jaxrl_bayes.algos.train import Trainer, make_train, make_trainer
from jaxrl_bayes.algos import rrpi, pspo, bc, timescales  # noqa: F401  (register their parts and names)
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.posterior import Gibbs, Profile, Uniform, register_belief, register_consistency
from jaxrl_bayes.registry import closest
from jaxrl_bayes.rollout import register_selector
from jaxrl_bayes.rollout_schemes import Persistent, Short


def algo_config(name: str, *, total_steps: int | None = None, **overrides) -> AgentConfig:
    """AgentConfig of a named algorithm with overrides, validated.

    `overrides` name a shared field (`num_active=5`), a component (`rollout=Persistent(horizon=1000)`,
    a choice also by its kind: `rollout="persistent"`), a dotted path (`**{"targets.kth": 2}`) or
    a flat name of the configs before the components (`kth=2`, `rollout_scheme="persistent"`,
    `overrides.FLAT_NAMES`); choices are applied before their fields. A path that the chosen
    components lack is refused; a flat name keeps the flat config's meaning, where such a value
    was accepted and had no effect (`overrides.from_flat`).

    `total_steps`: the run's budget of train steps. The time-scale rates (`timescales.RATES`,
    the fields of `optim`) that `overrides` does not set follow from it by the budget rule
    (`with_budget`, the rule the command line applies); None leaves them at their defaults
    (PMDB's, for 2M steps).

    Raises a one-line `UserError` for an unknown name (listing the known ones and the closest),
    an unknown field or one its chosen components lack, an invalid value, or a budget in which
    an explicit ref_tau cannot move the reference policy (`timescales.check_reference_moves`).
    """
    if name not in ALGORITHMS:
        raise UserError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHMS)}{closest(name, ALGORITHMS)}")
    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(k for k, v in overrides.items() if to_path(k, v)[0].split(".")[0] not in fields)
    if unknown:
        raise UserError(f"unknown AgentConfig fields {unknown}; valid fields: {sorted(fields)} (and their paths)")
    config = apply_overrides(AgentConfig(), ALGORITHMS[name])
    flat = {k: v for k, v in overrides.items() if k in FLAT_NAMES and to_path(k, v)[0] != k}
    # flat names keep the flat config's meaning: one its chosen components lack had no effect there
    config = from_flat(config, flat)[0] if flat else config
    config = apply_overrides(config, {k: v for k, v in overrides.items() if k not in flat})
    given = {to_path(k, v)[0] for k, v in overrides.items()}
    explicit = {p for p in given if p.startswith("optim.")}
    if "optim" in given:
        explicit |= {f"optim.{r}" for r in timescales.RATES}
    if total_steps is not None:
        config = with_budget(config, total_steps, explicit=explicit)
    config.validate()
    if total_steps is not None and not fields_without_effect(config, ["optim.ref_tau"]):  # it has a reference policy
        timescales.check_reference_moves(config.optim.ref_tau, total_steps, config.behaviour.init_policy)
    return config


def parts_for(config: AgentConfig) -> Parts:
    """The registered parts of `config.algo` (by its kind)."""
    return PARTS.lookup(config.algo.kind, "agent.algo")


def algo_needs_model(name: str | AgentConfig) -> bool:
    """Whether a named algorithm (or a config) trains through a dynamics pool (bc: False).

    The CLI skips pool training where this is False.
    """
    algo = name.algo.kind if isinstance(name, AgentConfig) else ALGORITHMS.lookup(name, "algo")["algo"]
    return PARTS.lookup(algo, "agent.algo").needs_model


def _covered(path: str, names) -> bool:
    """Whether `path` or a path above it is in `names`."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))


def fields_without_effect(config: AgentConfig, names) -> list[str]:
    """Those of the AgentConfig paths `names` (or flat names) that `config` never reads (sorted):
    those its components (the algorithm among them) name as unread under this config
    (`AgentConfig.unread_paths`). A path its chosen members lack does not exist, and is not
    asked about here (`apply_overrides` refuses it)."""
    unread = config.unread_paths()
    return sorted(n for n in names if _covered(to_path(n, None)[0], unread))


__all__ = [
    "ALGORITHMS", "PARTS", "REAL_TARGETS", "AgentConfig", "AlgoConfig", "Bc", "BehaviourFit", "Fixed",
    "Gibbs", "KLBudget", "ModelSampling", "Optimiser", "Persistent", "Profile", "Pspo", "Rrpi", "Short", "Targets",
    "Uniform", "apply_overrides", "Parts", "Trainer", "TrainData", "TrainState",
    "algo_config", "algo_needs_model", "deployed_policy", "fields_without_effect", "make_train", "make_train_data", "make_trainer", "parts_for",
    "register_algorithm", "register_belief", "register_consistency", "register_selector", "with_budget",
]
