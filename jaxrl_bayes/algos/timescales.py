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

**The order of the time scales.** Theorem 2 of RRPI solves each regularized subproblem with mu
held at the previous iterate: evaluation settles before mu moves. The critic's value propagates
through its target network with time constant 1/(tau (1 - gamma)) steps (docs/locomotion.md), so
mu, whose time constant is 1/ref_tau, must be no faster:

    ref_tau <= tau (1 - gamma) / ORDER_RATIO,  ORDER_RATIO = 1,

and never so slow that mu completes fewer than MIN_REFERENCE_TIME_CONSTANTS in the run (a mu
frozen at its random initialization was the first failure on the walker). PMDB's own rates keep
the ratio at 5 (20,000 steps against 100,000); at CPU budgets a ratio of 5 would leave mu less
than one time constant (10k steps, tau 0.02, gamma 0.99: 1/(5 * 2e-4) = 25,000 steps), so the
rule keeps the smallest ratio that orders them, 1, and PMDB's wherever the budget allows it.
An undiscounted task (gamma = 1) propagates over its episode length, which the agent's config does
not hold; there the rule keeps the budget's scaling alone (`with_budget`).

So a 10k-step locomotion run (gamma 0.99) gets tau 0.02, ref_tau 2e-4 (2 time constants: mu's
5,000 steps equal the critic's), policy_lr 3e-4; a 20k-step run ref_tau 2e-4 (4); the 1M-step
paper presets 2e-5 (PMDB's 20 time constants, ratio 5), tau 0.01 and policy_lr 6e-5; 2M steps give
PMDB's values exactly. Without a discount (`budget_rates(T)`) ref_tau is the budget's scaling alone:
2e-3 at 10k steps (20 time constants, as PMDB).

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

# mu's time constant (1/ref_tau) is at least this multiple of the critic's value propagation
# time 1/(tau (1 - gamma)) (the module docstring: the order of the time scales).
ORDER_RATIO = 1.0


def budget_rates(total_steps: int, discount: float | None = None, tau: float | None = None) -> dict[str, float]:
    """{field: rate} of `RATES` for a run of `total_steps` train steps (the module's rule). Given a
    `discount` below 1, ref_tau also keeps mu no faster than the critic's value propagation
    (`ordered_ref_tau`) at the target rate `tau` (the rule's own when None)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    stretch = max(1.0, PMDB_STEPS / total_steps)
    rates = {name: min(r.cap, r.pmdb * stretch) for name, r in RATES.items()}
    if discount is not None:
        rates["ref_tau"] = ordered_ref_tau(rates["ref_tau"], total_steps, discount, rates["tau"] if tau is None else tau)
    return rates


def value_propagation_steps(tau: float, discount: float) -> float:
    """1/(tau (1 - gamma)): the time constant, in train steps, with which the critic's value
    propagates through a target network of Polyak rate `tau` (inf when undiscounted)."""
    return math.inf if discount >= 1.0 else 1.0 / (tau * (1.0 - discount))


def ordered_ref_tau(ref_tau: float, total_steps: int, discount: float, tau: float) -> float:
    """`ref_tau` lowered so that mu's time constant is at least ORDER_RATIO times the critic's
    value propagation, but not below MIN_REFERENCE_TIME_CONSTANTS per run (where the budget cannot
    hold both, mu still moves and the order is the budget's). Undiscounted: `ref_tau` unchanged."""
    if discount >= 1.0:
        return ref_tau
    order = float(f"{tau * (1.0 - discount) / ORDER_RATIO:.12g}")  # 1 / (ORDER_RATIO * value_propagation_steps)
    return min(ref_tau, max(order, MIN_REFERENCE_TIME_CONSTANTS / total_steps))


def derived_rates(explicit: Collection[str] = ()) -> tuple[str, ...]:
    """The fields of `RATES` that the rule sets: those not in `explicit` (the `Optimiser` field
    names the user set, e.g. "ref_tau")."""
    return tuple(name for name in RATES if name not in explicit)


def with_budget(config: "AgentConfig", total_steps: int, explicit: Collection[str] = ()) -> "AgentConfig":
    """`config` for a run of `total_steps` train steps: each rate of `RATES` (a field of
    `config.optim`) not named in `explicit` set by the rule (`budget_rates`); the named ones keep
    their values. `explicit` holds `Optimiser` field names ("ref_tau") or their paths in the
    config ("optim.ref_tau"). A derived ref_tau keeps the order of the time scales at the config's
    discount and its tau (explicit or derived)."""
    explicit = {name.rsplit(".", 1)[-1] for name in explicit if name in RATES or name.startswith("optim.")}
    tau = config.optim.tau if "tau" in explicit else None
    rates = budget_rates(total_steps, discount=config.discount, tau=tau)
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
