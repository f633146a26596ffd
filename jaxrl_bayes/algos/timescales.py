"""The time scales of a run follow from its budget of train steps: one rule for every preset.

PMDB's step sizes (huawei-noah/HEBO, PMDB/config.py) were set for runs of T_PMDB = 2,000,000
gradient steps. A rate r (a Polyak coefficient, or a learning rate of a fixed-size step) sets a
time scale of about 1/r steps, so a run of T steps lives through T·r of them. Running PMDB's rates
for 10,000 steps is another algorithm: the reference policy mu of the KL-regularized update
(`ref_tau` = 1e-5) completes 0.1 of a time constant and stays ~90 % its random initialization,
where PMDB's run lets it follow the policy through 20 (ALGORITHMS.md §3; measured on the
walker2d look-alike in docs/locomotion.md).

The rule keeps every rate's number of time constants per run at PMDB's, up to a per-step cap
beyond which a step is no longer a small step:

    r(T) = min(cap, r_PMDB · max(1, T_PMDB / T))

    field       r_PMDB   cap     the cap's source
    ref_tau     1e-5     1.0     a Polyak rate is at most 1 (mu = the previous iterate, RRPI Thm 2)
    tau         5e-3     0.02    measured, hopper look-alike (docs/locomotion.md): the value
                                 propagates with time constant 1/(tau (1 - gamma)); 0.02 doubled
                                 Q/MC at 4k steps (0.50 vs 0.21) at the same score
    policy_lr   3e-5     3e-4    SAC's Adam step size, the largest the projection was run with
    critic_lr   3e-4     3e-4    PMDB (already SAC's; never raised)
    avg_tau     2e-6     1.0     not PMDB's: the deployed moving average of pi (deploy "average")
                                 spans a quarter of the run (rate 4 / T, up to 2M steps)

So a 10k-step run gets ref_tau 2e-3 (20 time constants, as PMDB), tau 0.02 and policy_lr 3e-4;
the 1M-step paper presets get 2e-5, 0.01 and 6e-5; 2M steps give PMDB's values exactly.

`with_budget` applies the rule to a config; a rate the user set explicitly keeps its value.
The rule scales every rate but `critic_lr` (its cap is PMDB's own value): that one is no time
scale of the budget, so a task's preset may set it (`UNSCALED`); the others only a user may.
`jaxrl_bayes.algos.algo_config(name, total_steps=T, **overrides)` calls it (the rates among
`overrides` are the explicit ones), and so does `experiments.config` for every new run (the
rates given on the command line, or an `UNSCALED` one set by the preset, are the explicit ones). An
explicit ref_tau is checked by `check_reference_moves`: one that leaves mu at its random
initialization is refused, one that holds mu at pi_beta (`behaviour.init_policy`) is warned about.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Collection, NamedTuple

from jaxrl_bayes.components import UNIT, Component, numeric_problems
from jaxrl_bayes.errors import UserError

if TYPE_CHECKING:
    from jaxrl_bayes.algos.common import AgentConfig

PMDB_STEPS = 2_000_000  # PMDB/config.py agent_num_steps


@dataclasses.dataclass(frozen=True)
class Optimiser(Component):
    """`AgentConfig.optim`: the step sizes and Polyak rates, the fields of `RATES` (their
    defaults PMDB's; a run sets those it is not given from its budget, `with_budget`)."""

    critic_lr: float = 3e-4  # PMDB
    policy_lr: float = 3e-5  # PMDB actor_lr
    tau: float = 5e-3  # PMDB tau_value (target critics)
    ref_tau: float = 1e-5  # PMDB tau_policy (reference policy mu = Polyak copy of pi)
    # Polyak rate of the deployed moving average of pi (agent.deploy = "average"; not in PMDB)
    avg_tau: float = 2e-6

    def problems(self) -> list[str]:
        return numeric_problems(self, {name: UNIT for name in ("critic_lr", "policy_lr", "tau", "ref_tau", "avg_tau")})

    def unread(self, config) -> frozenset[str]:
        """Only the "average" deployment keeps the moving average."""
        return frozenset() if config.deploy == "average" else frozenset({"avg_tau"})


class Rate(NamedTuple):
    pmdb: float  # PMDB's value, for PMDB_STEPS steps
    cap: float  # the largest value the rule gives


RATES: dict[str, Rate] = {
    "ref_tau": Rate(1e-5, 1.0),
    "tau": Rate(5e-3, 0.02),
    "policy_lr": Rate(3e-5, 3e-4),
    "critic_lr": Rate(3e-4, 3e-4),
    # not PMDB's: 2e-6 over PMDB's 2M steps is a time constant of a quarter of the run, as at any shorter budget
    "avg_tau": Rate(2e-6, 1.0),
}

# The rates the rule never scales (its cap is PMDB's value): a step size, no time scale of the
# budget, so a task's preset may set them where a measurement says so.
UNSCALED: tuple[str, ...] = tuple(name for name, r in RATES.items() if r.cap <= r.pmdb)

# The reference policy must complete at least this many time constants (T * ref_tau) in a run:
# below one it moves less than 1 - 1/e = 63 % of the way toward the policy.
MIN_REFERENCE_TIME_CONSTANTS = 1.0


def budget_rates(total_steps: int) -> dict[str, float]:
    """{field: rate} of `RATES` for a run of `total_steps` train steps (the module's rule)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    stretch = max(1.0, PMDB_STEPS / total_steps)
    return {name: min(r.cap, r.pmdb * stretch) for name, r in RATES.items()}


def derived_rates(explicit: Collection[str] = ()) -> tuple[str, ...]:
    """The fields of `RATES` that the rule sets: those not in `explicit` (the `Optimiser` field
    names the user set, e.g. "ref_tau")."""
    return tuple(name for name in RATES if name not in explicit)


def with_budget(config: "AgentConfig", total_steps: int, explicit: Collection[str] = ()) -> "AgentConfig":
    """`config` for a run of `total_steps` train steps: each rate of `RATES` (a field of
    `config.optim`) not named in `explicit` set by the rule (`budget_rates`); the named ones keep
    their values. `explicit` holds `Optimiser` field names ("ref_tau") or their paths in the
    config ("optim.ref_tau")."""
    explicit = {name.rsplit(".", 1)[-1] for name in explicit if name in RATES or name.startswith("optim.")}
    rates = budget_rates(total_steps)
    optim = dataclasses.replace(config.optim, **{name: rates[name] for name in derived_rates(explicit)})
    return dataclasses.replace(config, optim=optim)


def reference_time_constants(ref_tau: float, total_steps: int) -> float:
    """-T log(1 - ref_tau): the time constants mu lives through in T steps (T * ref_tau for small rates)."""
    return math.inf if ref_tau >= 1.0 else -total_steps * math.log1p(-ref_tau)


def check_reference_moves(ref_tau: float, total_steps: int, starts_at_behaviour: bool = False) -> None:
    """Refuses (one-line `UserError`) a reference policy that cannot move in the run's budget:
    it would stay at its random initialization. One that starts at the behaviour policy
    (`starts_at_behaviour`, `behaviour.init_policy`) is a principled fixed mu = pi_beta, a
    behaviour-regularized update: a warning says so instead."""
    n = reference_time_constants(ref_tau, total_steps)
    if n < MIN_REFERENCE_TIME_CONSTANTS:
        moved = 1.0 - math.exp(-n)
        rule = budget_rates(total_steps)["ref_tau"]
        if starts_at_behaviour:
            warnings.warn(f"agent.optim.ref_tau = {ref_tau:g} moves the reference policy only {moved:.1%} of the way "
                          f"toward the policy in {total_steps} steps: mu stays near pi_beta, where behaviour.init_policy "
                          f"starts it (a behaviour-regularized update, not RRPI's policy iteration)", stacklevel=3)
            return
        raise UserError(
            f"agent.optim.ref_tau = {ref_tau:g} moves the reference policy only {moved:.1%} of the way toward the "
            f"policy in {total_steps} steps ({n:.2g} time constants; at least {MIN_REFERENCE_TIME_CONSTANTS:g} "
            f"needed): drop --agent.optim.ref_tau to get the budget rule's {rule:.3g} "
            f"(jaxrl_bayes.algos.timescales), or run longer")
