"""PSPO, RRPI and their variants: one train-step skeleton, per-algorithm parts, named configs.

    from jaxrl_bayes.algos import algo_config, make_trainer
    config = algo_config("pspo", steps_per_chunk=500)
    trainer = make_trainer(config, dataset, pool, termination_fn)
    states = trainer.init_seeds(jax.random.split(key, 4))     # 4 seeds, vmapped
    states, metrics = trainer.run_chunk_seeds(states)

Names (`ALGORITHMS`): rrpi, pmdb (RRPI's code path with the 2nd-smallest of 10 members),
rrpi-random (RRPI ablation: uniform member), pspo, pspo-avg (PSPO ablation: uniform
posterior, "average utilization"), pspo-noreg (PSPO ablation: no behaviour-policy term).
"""

from __future__ import annotations

import dataclasses
import difflib

from jaxrl_bayes.algos.common import (
    AgentConfig,
    Parts,
    Trainer,
    TrainData,
    TrainState,
    make_train,
    make_train_data,
    make_trainer,
)

# Overrides of AgentConfig's defaults that define each named algorithm.
ALGORITHMS: dict[str, dict] = {
    "rrpi": dict(algo="rrpi", kth=1, selector="worst"),
    "pmdb": dict(algo="rrpi", kth=2, selector="worst", num_active=10),  # PMDB: k = 2 of N = 10
    "rrpi-random": dict(algo="rrpi", kth=1, selector="uniform"),
    "pspo": dict(algo="pspo", selector="posterior", belief="gibbs", bc_steps=5000),
    "pspo-avg": dict(algo="pspo", selector="posterior", belief="uniform", bc_steps=5000),
    "pspo-noreg": dict(algo="pspo", selector="posterior", belief="gibbs", bc_steps=5000, behaviour_weight=0.0),
}


def algo_config(name: str, **overrides) -> AgentConfig:
    """AgentConfig of a named algorithm with field overrides; unknown names list the known ones."""
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, list(ALGORITHMS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}.{hint}")
    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown AgentConfig fields {unknown}; valid fields: {sorted(fields)}")
    config = AgentConfig(**{**ALGORITHMS[name], **overrides})
    config.validate()
    return config


def parts_for(config: AgentConfig) -> Parts:
    """The parts of `config.algo`."""
    if config.algo == "rrpi":
        from jaxrl_bayes.algos.rrpi import PARTS
    elif config.algo == "pspo":
        from jaxrl_bayes.algos.pspo import PARTS
    else:
        raise ValueError(f"unknown algo {config.algo!r}; expected 'rrpi' or 'pspo'")
    return PARTS


__all__ = [
    "ALGORITHMS", "AgentConfig", "Parts", "Trainer", "TrainData", "TrainState",
    "algo_config", "make_train", "make_train_data", "make_trainer", "parts_for",
]
