"""The shared pieces of PSPO, RRPI and BC: config, state, registries and building blocks.

An algorithm is a member of the choice `AgentConfig.algo` (`AlgoConfig`: `Rrpi`, `Pspo`, `Bc`,
holding the knobs that algorithm alone reads, e.g. `algo.behaviour_weight`) and a set of
*parts* registered under the member's kind (`Parts` in `PARTS`, by the module that defines
them: `rrpi.py`, `pspo.py`, `bc.py`): the reference log-density and temperature of the
KL-regularized backup and projection, and flags. Which knobs exist follows from the chosen
members; what a chosen member never reads of the rest its `unread` says (`AlgoConfig`). The
other choices are orthogonal parts looked up by name in registries that their defining modules
fill:

    rollout.SELECTORS       member rule of rollouts and model-state backups (worst, posterior, uniform)
    rollout_schemes.ROLLOUT_SCHEMES  how the train step gets its model rows (short, persistent; `AgentConfig.rollout`)
    MODEL_BACKUPS           target on model states (selected; rules over all members' targets in `targets.py`)
    posterior.BELIEFS       belief update (gibbs, uniform)
    posterior.CONSISTENCY   consistency metric of the Gibbs belief (observed, consensus)
    REAL_TARGETS            target on real pairs (data, robust; entries in `targets.py`)
    PARTS                   algorithm parts by `AgentConfig.algo`'s kind (rrpi, pspo, bc)
    ALGORITHMS              named configurations (rrpi, pmdb, rrpi-random, pspo, ...)

`AgentConfig`'s knobs are components (`jaxrl_bayes.components`), each checked by its own
`problems`; `AgentConfig.validate` collects them (one-line `UserError`: a bad name with its
choices and the closest, or every bad number named by its path). The losses live in `losses.py`, the targets in `targets.py`, the
train step, the chunk and `make_trainer` in `train.py` (brax's seams; `make_trainer` only binds
and jits), the rollout schemes in `jaxrl_bayes.rollout_schemes`.

`TrainData` (the dataset on device, the active dynamics members and normalizers) is an ARGUMENT
of every jitted function, never a closure: jit would otherwise embed it as a constant.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_bayes import buffer, dynamics, networks, posterior, rollout, rollout_schemes, value
from jaxrl_bayes.algos import timescales
from jaxrl_bayes.components import (
    AT_LEAST_ONE, COUNT, NONNEGATIVE, POSITIVE, PROBABILITY, UNIT, Component, all_problems, choices, component_fields,
    numeric_problems,
)
from jaxrl_bayes.data.dataset import reward_normalizer
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.registry import Registry, closest


class Parts(NamedTuple):
    """What an algorithm (registered under its `AlgoConfig` member's kind) adds to the orthogonal
    registered parts; which knobs it has and which it never reads are its member's fields and
    `unread` (`AlgoConfig`).

    reference(ctx, obs (B,S), actions (M,B,A), dists, q (M,B), log_q (M,B)) -> (log_mu (M,B),
      temperature broadcastable to (B,)): the reference policy mu and temperature of the
      KL-regularized soft value and projection. `dists` holds the GaussianParams of "pi",
      "ref" and "beta" at obs.
    needs_behaviour: fit pi_beta by behaviour cloning at init (PSPO).
    needs_model: trains through a dynamics pool (False: BC; the CLI then skips pool training).
    build: a trainer builder replacing the shared one, (config, dataset, pool, termination_fn,
      active_key) -> Trainer (BC, which has no critic).
    """

    reference: Callable[..., tuple[jax.Array, jax.Array]] | None = None
    needs_behaviour: bool = False
    needs_model: bool = True
    build: Callable[..., Any] | None = None


# algorithm parts by AgentConfig.algo.kind; filled by rrpi.py, pspo.py, bc.py
PARTS: Registry[Parts] = Registry("algorithm (agent.algo)")
# named configurations: name -> AgentConfig overrides; filled by the same modules
ALGORITHMS: Registry[dict] = Registry("named algorithm")
# real-pair target rules: name -> fn(ctx, key, real, observed_y, value_fn) -> y (B,); filled by targets.py
REAL_TARGETS: Registry[Callable[..., jax.Array]] = Registry("real-pair target")
# model-state backup rules: name -> fn(ctx, key, obs, act, value_fn) -> targets.ModelBackup; filled by
# targets.py ("selected", and `targets.register_member_backup` for rules over all members' targets)
MODEL_BACKUPS: Registry[Callable[..., Any]] = Registry("model-state backup")


def register_algorithm(name: str, overrides: dict | None = None, **more) -> dict:
    """Registers a named configuration: AgentConfig overrides (must include `algo`, the kind of
    an `AlgoConfig` member), by field or dotted path ({"algo": "pspo", "algo.behaviour_weight": 0,
    "targets.kth": 2, "belief": "uniform"}; `apply_overrides`)."""
    overrides = {**(overrides or {}), **more}
    if "algo" not in overrides:
        raise ValueError(f"named algorithm {name!r} must set `algo` (one of {list(PARTS)})")
    return ALGORITHMS.register(name, dict(overrides))


REWARD_NORMALIZATIONS = ("pmdb", "scale", "signed")  # modes of data.dataset.reward_normalizer
MODEL_REWARDS = ("sample", "mean")  # ModelSampling.reward
MODEL_SUCCESSORS = ("sample", "mean")  # ModelSampling.successor
# AgentConfig.deploy: which policy's tanh(mean) is evaluated and saved. "policy": pi (the
# projection's output, the last iterate); "reference": pi_ref, the Polyak copy that is the
# KL-regularized update's mu (PMDB's reported "mode 1"; it follows pi within 1/optim.ref_tau
# steps, so it averages no more than that); "average": an exponential moving average of pi's
# parameters with rate optim.avg_tau (by the budget rule a time constant of a quarter of the run),
# used by nothing but deployment, so it can average the last iterates' oscillation away without
# slowing the algorithm. `deployed_policy` reads it.
DEPLOYMENTS = ("policy", "reference", "average")


def _one_of(name: str, value: str, valid, what: str = "") -> list[str]:
    return [] if value in valid else [f"{name} = {value!r} is not {what or 'valid'}; choose one of: "
                                      f"{', '.join(valid)}{closest(value, list(valid))}"]


# ----------------------------------------------------------------------------- components


@dataclasses.dataclass(frozen=True)
class ModelSampling(Component):
    """`AgentConfig.sampling`: how the members' successors and rewards are drawn in the targets."""

    num_next_samples: int = 10  # K, PMDB MC_size_state
    # Members share their sampling noise (common random numbers), so the k-th min over members
    # compares their expectations, as RRPI's operator min_p E_p[V] does, instead of also picking
    # the luckiest-worst noise draw (a downward bias ~ std/sqrt(K)). PMDB samples independently
    # (set False to reproduce it). Measured choice: liquidation, see experiments/configs.
    common_noise: bool = True
    # Reward of a member in the one-step targets (MODEL_REWARDS): "sample" (a draw r ~ N(mu_r, sigma_r),
    # the papers' E over p_m of r + gamma V) | "mean" (mu_r; PMDB's code); measured in docs/locomotion.md.
    reward: str = "sample"
    # Successor of a member, in targets and rollouts alike (MODEL_SUCCESSORS): "sample" (a draw
    # s' ~ N(mu, sigma), the papers' E over p_m) | "mean" (mu: a deterministic member, whose falls
    # are those of its best guess, not of its noise crossing a termination threshold); docs/locomotion.md.
    successor: str = "sample"

    @property
    def deterministic(self) -> bool:
        """Mean successor and mean reward: K identical draws would only repeat work."""
        return self.successor == "mean" and self.reward == "mean"

    def problems(self) -> list[str]:
        return (_one_of("reward", self.reward, MODEL_REWARDS) + _one_of("successor", self.successor, MODEL_SUCCESSORS)
                + numeric_problems(self, {"num_next_samples": AT_LEAST_ONE}))

    def unread(self, config) -> frozenset[str]:
        """Deterministic members draw nothing: K and the noise sharing idle."""
        return frozenset({"num_next_samples", "common_noise"}) if self.deterministic else frozenset()


@dataclasses.dataclass(frozen=True)
class Targets(Component):
    """`AgentConfig.targets`: the backups on real pairs and model states, and the member rule."""

    # Member rule (`rollout.SELECTORS`) for BOTH the rollouts and the model-state backup:
    # worst (k-th smallest one-step target; RRPI/PMDB) | posterior (draw from the belief; PSPO) |
    # uniform (RRPI's "random member" ablation)
    selector: str = "worst"
    kth: int = 1  # the worst selector's k: RRPI worst case; PMDB = 2
    # Target on model states (`MODEL_BACKUPS`): "selected" (the one-step target of the member the
    # selector picks per state; RRPI, PMDB, PSPO) | a rule over all members' targets registered with
    # `targets.register_member_backup` (e.g. a lower confidence bound, examples/lcb_backup.py)
    backup: str = "selected"
    # Target on real pairs (`REAL_TARGETS`): "data" (observed r, s'; PMDB) | "robust" (the model-state
    # target rule, i.e. the selected member's target, applied to real pairs)
    real_target: str = "data"
    real_weight: float = 0.5  # RRPI Eq. 9: omega_1 = omega_2 = 0.5
    value_clip: bool = True  # clip Q and targets to [0, value_max] (RRPI §3.2, PMDB); [-value_max, value_max] for signed rewards
    value_max: float | None = None  # None = 1/(1-gamma) (RRPI); required when discount = 1
    # Successors outside the data's box (obs_bound_std) count as terminal in the targets, so the value
    # of leaving the data is 0 (PMDB's soft box). Without it they only end a rollout path.
    box_terminal: bool = False

    def problems(self) -> list[str]:
        out = []
        for name, registry in (("selector", rollout.SELECTORS), ("backup", MODEL_BACKUPS),
                               ("real_target", REAL_TARGETS)):
            value = getattr(self, name)
            if value not in registry:
                out.append(f"{name} = {value!r} is not a registered {registry.kind}; choose one of: {', '.join(registry)}"
                           f"{closest(value, list(registry))}")
        return out + numeric_problems(self, {"kth": AT_LEAST_ONE, "real_weight": PROBABILITY, "value_max": POSITIVE},
                                      optional=("value_max",))


@dataclasses.dataclass(frozen=True)
class TemperatureConfig(Component):
    """The choice `AgentConfig.temperature` (`--agent.temperature kl_budget|fixed`): the temperature
    of the KL-regularized backup and projection (`temperature_for`)."""


@dataclasses.dataclass(frozen=True)
class Fixed(TemperatureConfig):
    """A fixed temperature alpha (PSPO's reference uses its trust-region multiplier eta instead)."""

    kind = "fixed"
    alpha: float = 0.1  # PMDB

    def problems(self) -> list[str]:
        return numeric_problems(self, {"alpha": POSITIVE})


@dataclasses.dataclass(frozen=True)
class KLBudget(TemperatureConfig):
    """PMDB's per-state KL-budget rule (`value.kl_budget_temperature`)."""

    kind = "kl_budget"
    target_kl: float = 5.0  # PMDB target_kld

    def problems(self) -> list[str]:
        return numeric_problems(self, {"target_kl": POSITIVE})


@dataclasses.dataclass(frozen=True)
class BehaviourFit(Component):
    """`AgentConfig.behaviour`: behaviour cloning of pi_beta (PSPO's, or the start of pi with
    `init_policy`); its step size and batch are also the bc algorithm's."""

    steps: int = 0  # behaviour-cloning steps before policy iteration (PSPO)
    lr: float = 1e-3  # Adam step size of behaviour cloning (pi_beta of PSPO; the bc algorithm)
    batch: int = 256  # states per behaviour-cloning step (the value PSPO's pi_beta fit always used)
    # Start pi and pi_k at pi_beta (fitted by `steps` of behaviour cloning, for any algorithm)?
    # Not in the papers: policy iteration from pi_0 = pi_beta, so RRPI's monotone improvement
    # (Theorem 2) starts at the data's policy rather than at a random network. Measured on
    # liquidation (PSPO, 3 seeds): with the slow reference (ref_tau 1e-5) pi_k then stays near the
    # behaviour policy all run, 95.3 vs 97.4.
    init_policy: bool = False

    def problems(self) -> list[str]:
        out = numeric_problems(self, {"steps": COUNT, "lr": UNIT, "batch": AT_LEAST_ONE})
        if self.init_policy and self.steps < 1:
            out.append("init_policy starts pi at pi_beta, which needs steps >= 1 (e.g. 5000)")
        return out

    def unread(self, config) -> frozenset[str]:
        """The shared trainer fits no pi_beta where the algorithm needs none and pi does not start
        at it (an algorithm with a trainer of its own, bc, says in its `unread` what it reads)."""
        parts = PARTS.get(config.algo.kind)
        if parts is not None and parts.build is None and not (parts.needs_behaviour or self.init_policy):
            return frozenset({"steps", "lr", "batch"})
        return frozenset()


@dataclasses.dataclass(frozen=True)
class AlgoConfig(Component):
    """The choice `AgentConfig.algo` (`--agent.algo rrpi|pspo|bc`): the algorithm, whose `kind`
    names its registered parts (`PARTS[config.algo.kind]`), with the knobs that it alone reads.

    The algorithm is the one component that reads the config as a whole, so its `unread` names
    AgentConfig paths (its own fields as "algo.<field>"): the shared fields and the other
    components' fields that it never reads under `config`."""


@dataclasses.dataclass(frozen=True)
class Rrpi(AlgoConfig):
    """RRPI (`rrpi.py`): mu is the previous iterate pi_ref; it has no knobs of its own."""

    kind = "rrpi"


@dataclasses.dataclass(frozen=True)
class Pspo(AlgoConfig):
    """PSPO (`pspo.py`): its reference, the geometric mixture of pi_beta and pi_k, and the trust
    region of its temperature eta."""

    kind = "pspo"
    behaviour_weight: float = 0.1  # alpha in KL(pi || pi_beta); 0 = "without regularization"
    trust_eta: float = 0.1  # initial trust-region multiplier eta
    trust_epsilon: float = 0.05  # KL(pi_{k+1} || pi_k) budget per chunk
    trust_rate: float = 0.0  # dual-ascent rate for eta (0 = fixed eta)

    def problems(self) -> list[str]:
        return numeric_problems(self, {"behaviour_weight": NONNEGATIVE, "trust_eta": POSITIVE,
                                       "trust_epsilon": POSITIVE, "trust_rate": NONNEGATIVE})

    def unread(self, config) -> frozenset[str]:
        """The temperature is eta (or the KL-budget rule), never a `Fixed` one's alpha; without
        the behaviour term the KL-budget rule replaces eta too, and the trust region has nothing
        to set."""
        out = {"temperature.alpha"} if isinstance(config.temperature, Fixed) else set()
        if self.behaviour_weight == 0.0 and isinstance(config.temperature, KLBudget):
            out |= {"algo.trust_eta", "algo.trust_epsilon", "algo.trust_rate"}
        return frozenset(out)


@dataclasses.dataclass(frozen=True)
class Bc(AlgoConfig):
    """Behaviour cloning (`bc.py`): which rows it clones, and its early stopping. It trains a
    policy by `behaviour.lr` and `behaviour.batch` on the dataset's pairs, with no critic and no
    dynamics model."""

    kind = "bc"
    # Share of the complete episodes, by return, that bc clones: 1 = all (BC); 0.1 = %BC (the top 10 %,
    # Decision Transformer's baseline; `data.dataset.top_episode_rows`).
    top_fraction: float = 1.0
    # Share of the (kept) episodes held out (at least one, and one left to train on): the deployed bc policy is the one
    # with the best held-out loss (`loss`) seen at a chunk's end (early stopping on held-out episodes, never on
    # returns). 0 = no hold-out: the last iterate is deployed.
    holdout: float = 0.1
    # What is fitted (`losses.CLONING_LOSSES`): "likelihood", the tanh-Gaussian's negative
    # log-likelihood of the dataset's actions (the loss PSPO fits pi_beta with), or "mse", the squared
    # error of the deployed action tanh(mean) (CORL's BC). The held-out check uses the same loss.
    loss: str = "likelihood"

    def problems(self) -> list[str]:
        problems = numeric_problems(self, {"top_fraction": UNIT,
                                           "holdout": ((lambda v: 0.0 <= v < 1.0), "in [0, 1)")})
        return problems + _one_of("loss", self.loss, ("likelihood", "mse"))

    def unread(self, config) -> frozenset[str]:
        """Everything but the policy (`policy_hidden`, `action_scale`), its cloning steps
        (`behaviour.lr`, `behaviour.batch`, `steps_per_chunk`) and its own fields: no pi_beta
        is fitted before (`behaviour.steps`, `behaviour.init_policy`), and only one policy is
        deployed (`deploy`)."""
        no_critic = {"discount", "critic_hidden", "critic_layer_norm", "real_batch", "num_candidates",
                     "data_action_std", "value_chunk", "reward_normalization", "optim", "targets", "temperature"}
        no_model = {"num_active", "model_batch", "buffer_capacity", "obs_bound_std", "rollout", "sampling", "belief"}
        return frozenset(no_critic | no_model | {"deploy", "behaviour.steps", "behaviour.init_policy"})


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Every hyperparameter of PSPO / RRPI / PMDB training: shared fields, then the components
    (`jaxrl_bayes.components`), each owned and checked by its module. Sources in comments.

    "PMDB" = the public PMDB code's defaults (huawei-noah/HEBO, PMDB/config.py), which RRPI
    builds on; "PSPO T5" = PSPO Table 5.
    """

    # The algorithm (`AlgoConfig`: rrpi | pspo | bc), whose kind names its registered parts
    # (`PARTS`), with its own knobs; named variants such as pmdb are configurations (`ALGORITHMS`).
    algo: AlgoConfig = Rrpi()
    # --- RL
    discount: float = 0.99  # both papers
    critic_hidden: tuple[int, ...] = (256, 256, 256)  # PMDB: 3 x 256 twin critics
    # LayerNorm in the critics' hidden layers (RLPD, ReBRAC; PMDB has none): a worst
    # case over members' V(s') also picks the critic's roughness between nearby successors.
    critic_layer_norm: bool = False
    policy_hidden: tuple[int, ...] = (256, 256)  # PSPO T5 width 256; D4RL SAC 2 x 256
    # c >= 1: the environment and the dynamics model receive clip(c tanh(u), -1, 1), so an action
    # at the box's bound is reached from a finite mean (`networks.to_env_action`); 1 = plain tanh
    # (SAC, PMDB). Dataset actions enter the policy's space as a / c.
    action_scale: float = 1.0
    real_batch: int = 128  # PMDB real_batch_size
    model_batch: int = 128  # PMDB adv_batch_size
    num_candidates: int = 20  # M, PMDB MC_size_action
    data_action_std: float = 0.1  # PMDB: pre-tanh std of the proposal around dataset actions
    num_active: int = 10  # N members drawn from the pool (PSPO T5 / PMDB: 10 of 100)
    # Reward units of learning. "pmdb": r~ = (r - shift)/scale in [0.045, 0.955] (PMDB). It adds
    # a constant per step, which changes the optimal policy wherever the policy controls episode
    # length (liquidation: selling ends the episode). "scale": r~ = r / (1.1 max r), for tasks
    # with non-negative rewards; the optimal policy is unchanged. "signed": r~ = r / (1.1 max |r|),
    # for rewards of either sign (the optimal policy unchanged; values clipped to +-value_bound).
    reward_normalization: str = "pmdb"
    buffer_capacity: int = 100_000
    obs_bound_std: float = 10.0  # successors beyond data min/max +- this many stds end a path
    steps_per_chunk: int = 1000  # R train steps per jitted call
    # Soft values are computed in chunks of this many states (lax.map): one 256k-row critic batch
    # is memory-bound on CPU; 64 states x M candidates was fastest (benchmarks/value_chunking.py,
    # -17..-44 % per PMDB step). 0 = one batch.
    value_chunk: int = 64
    # --- deployment (DEPLOYMENTS): the policy whose tanh(mean) is evaluated and saved
    deploy: str = "policy"
    # --- components
    optim: timescales.Optimiser = timescales.Optimiser()  # step sizes and Polyak rates (set by the budget rule)
    rollout: rollout_schemes.RolloutConfig = rollout_schemes.Short()  # model rollouts: short | persistent
    sampling: ModelSampling = ModelSampling()  # the members' draws in the targets
    targets: Targets = Targets()  # backups and member rule
    belief: posterior.BeliefConfig = posterior.Gibbs()  # belief update: profile | gibbs | uniform
    temperature: TemperatureConfig = KLBudget()  # kl_budget | fixed
    behaviour: BehaviourFit = BehaviourFit()  # behaviour cloning of pi_beta

    def validate(self) -> None:
        """Raises a one-line `UserError` listing every bad field, each named by its path
        (`agent.rollout.horizon`); every component checks its own."""
        problems = []
        kind = getattr(self.algo, "kind", self.algo)
        if kind not in PARTS:
            problems.append(f"algo = {kind!r} is not an algorithm; choose one of: {', '.join(PARTS)}"
                            f"{closest(str(kind), list(PARTS))}")
        problems += _one_of("reward_normalization", self.reward_normalization, REWARD_NORMALIZATIONS,
                            "a reward normalization")
        problems += _one_of("deploy", self.deploy, DEPLOYMENTS)
        for name, base in (("algo", AlgoConfig), ("rollout", rollout_schemes.RolloutConfig),
                           ("belief", posterior.BeliefConfig), ("temperature", TemperatureConfig)):
            if not isinstance(getattr(self, name), base) or not getattr(self, name).kind:
                problems.append(f"{name} must be one of: {', '.join(choices(base))}")
        if self.rollout.kind and self.rollout.kind not in rollout_schemes.ROLLOUT_SCHEMES:
            problems.append(f"rollout = {self.rollout.kind!r} has no registered scheme")
        if self.belief.kind and self.belief.kind not in posterior.BELIEFS:
            problems.append(f"belief = {self.belief.kind!r} has no registered belief update")
        if not 0.0 < self.discount <= 1.0:
            problems.append(f"discount must be in (0, 1], got {self.discount}")
        if self.discount == 1.0 and self.targets.value_clip and self.targets.value_max is None:
            problems.append("discount = 1 with targets.value_clip needs an explicit targets.value_max (e.g. the horizon)")
        if isinstance(self.targets.kth, int) and not 1 <= self.targets.kth <= self.num_active:
            problems.append(f"targets.kth must be in [1, num_active={self.num_active}], got {self.targets.kth}")
        if self.num_candidates < 2:
            problems.append("num_candidates must be >= 2")
        problems += numeric_problems(self, {
            "action_scale": ((lambda v: 1.0 <= v <= 10.0), "in [1, 10]"), "data_action_std": POSITIVE,
            "obs_bound_std": NONNEGATIVE, "real_batch": AT_LEAST_ONE, "model_batch": AT_LEAST_ONE,
            "num_active": AT_LEAST_ONE, "steps_per_chunk": AT_LEAST_ONE, "buffer_capacity": AT_LEAST_ONE,
            "value_chunk": COUNT})
        for name in ("critic_hidden", "policy_hidden"):
            if any(int(h) < 1 for h in getattr(self, name)):
                problems.append(f"{name}={tuple(getattr(self, name))} must hold widths >= 1")
        problems += [p.split(".", 1)[1] for p in all_problems(self, "agent")]
        names = [p for p in problems if " = '" in p and "choose one of" in p]  # a bad name: it alone, with its choices
        if names:
            raise UserError(f"agent.{names[0]}")
        if problems:
            raise UserError("invalid AgentConfig: " + "; ".join(problems))

    def unread_paths(self) -> frozenset[str]:
        """Paths of the fields that this config's own choices never read although they exist
        (each component's `unread`; the algorithm's names AgentConfig paths, `AlgoConfig`); a
        path covers the fields below it. `algos.fields_without_effect` reports them, so the CLI
        refuses them when given."""
        out = set()
        for name, component in component_fields(self).items():
            prefix = "" if isinstance(component, AlgoConfig) else f"{name}."
            out |= {prefix + f for f in component.unread(self)}
        return frozenset(out)

    def draws(self, num_samples: int) -> int:
        """Successor draws per member for a configured K: 1 where members are deterministic
        (`model_successor` and `model_reward` "mean": K identical draws would only repeat work)."""
        return 1 if self.sampling.deterministic else num_samples

    def model_sampler(self, data: "TrainData", num_samples: int):
        """`sample_model` under this config's noise sharing, reward and successor rules."""
        s = self.sampling
        return sample_model(data, self.draws(num_samples), s.common_noise, s.reward == "mean", s.successor == "mean",
                            self.action_scale)

    @property
    def value_bound(self) -> float:
        """Upper clip of Q values and targets: targets.value_max, or 1/(1-gamma) by default."""
        vmax = self.targets.value_max
        return vmax if vmax is not None else 1.0 / (1.0 - self.discount)

    @property
    def reward_range(self) -> tuple[float, float]:
        """Clip of model rewards in learning units: [0, 1] (PMDB; "pmdb" and "scale" map the
        data's rewards inside it), [-1, 1] for "signed" rewards."""
        return (-1.0 if self.reward_normalization == "signed" else 0.0, 1.0)

    @property
    def value_range(self) -> tuple[float, float] | None:
        """`reward_range` over 1/(1-gamma) steps where targets are clipped, else None: (0, value_bound),
        or (-value_bound, value_bound) for "signed" rewards, whose values may be negative."""
        return (self.reward_range[0] * self.value_bound, self.value_bound) if self.targets.value_clip else None


# ----------------------------------------------------------------------------- state and data


@flax.struct.dataclass
class TrainData:
    """Everything constant during training, passed to the jitted functions as an argument."""

    obs: jax.Array
    act: jax.Array
    reward: jax.Array  # rewards in learning units r~ = (r - reward_shift) / reward_scale
    next_obs: jax.Array
    done: jax.Array  # float 0/1, true terminations only
    obs_mean: jax.Array
    obs_std: jax.Array
    obs_low: jax.Array  # rollout bounds
    obs_high: jax.Array
    reward_shift: jax.Array  # scalars: model rewards (raw units) are mapped the same way
    reward_scale: jax.Array
    model: dynamics.DynamicsPool | None  # the N active members, predicting RAW rewards (None: BC)
    holdout_obs: jax.Array | None = None  # bc: held-out pairs of its early stopping (None elsewhere)
    holdout_act: jax.Array | None = None


@flax.struct.dataclass
class TrainState:
    """The whole learner state: a pytree that vmaps over seeds and checkpoints with orbax."""

    critic: Any
    target_critic: Any
    critic_opt: Any
    policy: Any
    policy_opt: Any
    ref_policy: Any  # mu / pi_k: Polyak copy of the policy
    behaviour: Any  # pi_beta (PSPO; RRPI keeps its unused initial copy)
    # model states and actions (buffer.StateAction): the short scheme's rollouts, from which it
    # draws the model rows; the persistent scheme's rows as trained on; the chunk diagnostics sample it
    buffer: buffer.RingBuffer
    # the rollout scheme's own state (`rollout_schemes.ROLLOUT_SCHEMES[config.rollout.kind]`): () for
    # "short", `rollout_schemes.Paths` for "persistent" (whose two leaves are those of the former
    # adv_obs and adv_steps fields, in their place, so its older checkpoints restore unchanged)
    rollout: Any
    belief: jax.Array  # posterior b over the N active members (uniform for RRPI)
    eta: jax.Array  # PSPO trust-region multiplier
    step: jax.Array
    key: jax.Array
    # deploy = "average": the moving average of pi that is deployed (None otherwise, so the states
    # and checkpoints of the other deployments are unchanged)
    avg_policy: Any = None


class Networks(NamedTuple):
    policy: networks.TanhGaussianPolicy
    critic: networks.TwinCritic | None


def make_networks(config: AgentConfig, act_dim: int, with_critic: bool = True) -> Networks:
    """The tanh-Gaussian policy (config.policy_hidden) and the twin critic (config.critic_hidden)."""
    return Networks(networks.TanhGaussianPolicy(act_dim, config.policy_hidden, action_scale=config.action_scale),
                    networks.TwinCritic(config.critic_hidden, layer_norm=config.critic_layer_norm)
                    if with_critic else None)


class Ctx(NamedTuple):
    """What a part sees: the config, networks, constant data, current state, termination rule."""

    config: AgentConfig
    nets: Networks
    data: TrainData
    state: TrainState
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def make_train_data(dataset, pool: dynamics.DynamicsPool | None, config: AgentConfig, key: chex.PRNGKey) -> TrainData:
    """Puts a `data.Dataset` on device with the N active members drawn from the pool.

    The active set is drawn without replacement from the pool's members (from its elites if
    the pool has fewer elites than members and enough of them). pool = None (BC) leaves
    `model` empty.
    """
    model = None
    if pool is not None:
        num_pool = pool.num_members
        if config.num_active > num_pool:
            raise UserError(
                f"num_active={config.num_active} members requested but the dynamics pool has only "
                f"{num_pool}; lower --agent.num_active or train a larger pool (--dynamics.num_members)"
            )
        candidates = np.asarray(pool.elites) if len(pool.elites) >= config.num_active else np.arange(num_pool)
        active = jax.random.permutation(key, jnp.asarray(candidates))[: config.num_active]
        model = dynamics.select(pool, active)
    obs = jnp.asarray(dataset.observations, jnp.float32)
    std = jnp.asarray(dataset.obs_std, jnp.float32)
    shift, scale = reward_normalizer(float(dataset.reward_min), float(dataset.reward_max),
                                     config.reward_normalization)
    return TrainData(
        obs=obs,
        act=networks.from_env_action(jnp.asarray(dataset.actions, jnp.float32), config.action_scale),
        reward=(jnp.asarray(dataset.rewards, jnp.float32) - shift) / scale,
        next_obs=jnp.asarray(dataset.next_observations, jnp.float32),
        done=jnp.asarray(dataset.terminals, jnp.float32),
        obs_mean=jnp.asarray(dataset.obs_mean, jnp.float32),
        obs_std=std,
        obs_low=obs.min(0) - config.obs_bound_std * std,
        obs_high=obs.max(0) + config.obs_bound_std * std,
        reward_shift=jnp.asarray(shift, jnp.float32),
        reward_scale=jnp.asarray(scale, jnp.float32),
        model=model,
    )


# ----------------------------------------------------------------------------- building blocks


def normalize_obs(data: TrainData, obs: jax.Array) -> jax.Array:
    return (obs - data.obs_mean) / data.obs_std


def policy_dist(nets: Networks, params, data: TrainData, obs: jax.Array) -> networks.GaussianParams:
    return nets.policy.apply(params, normalize_obs(data, obs))


def critic_values(nets: Networks, params, data: TrainData, obs: jax.Array, act: jax.Array, config: AgentConfig) -> jax.Array:
    """min of the twin critics at (obs, act), clipped to `config.value_range` if configured.

    obs broadcasts against act's leading axes: obs (B,S) with act (M,B,A) -> (M,B).
    """
    obs = jnp.broadcast_to(normalize_obs(data, obs), act.shape[:-1] + obs.shape[-1:])
    q = nets.critic.apply(params, obs, act).min(0)
    return q if config.value_range is None else jnp.clip(q, *config.value_range)


# Centre of the narrow proposal around dataset actions, kept this far inside (-1, 1) so that
# atanh stays finite (PMDB).
DATA_ACTION_EPS = 1e-4


def mix_candidates(key: chex.PRNGKey, proposal: networks.GaussianParams, reference: networks.GaussianParams,
                   num_candidates: int) -> tuple[jax.Array, jax.Array]:
    """M candidate actions: M // 2 from a proposal and M - M // 2 from the reference (PMDB).

    Args:
      key: PRNG key.
      proposal, reference: tanh-Gaussians of batch shape B.
      num_candidates: M (static).
    Returns:
      (actions (M,) + B + (A,), log-density of each under the distribution it was drawn from (M,) + B):
      the proposal's candidates first.
    """
    num_proposal = num_candidates // 2
    k_ref, k_prop = jax.random.split(key)
    a_ref, lp_ref = networks.tanh_gaussian_sample(k_ref, reference, (num_candidates - num_proposal,))
    a_prop, lp_prop = networks.tanh_gaussian_sample(k_prop, proposal, (num_proposal,))
    return jnp.concatenate([a_prop, a_ref]), jnp.concatenate([lp_prop, lp_ref])


def value_candidates(key: chex.PRNGKey, dists: dict, config: AgentConfig) -> tuple[jax.Array, jax.Array]:
    """Candidates of the soft value: half from pi, half from mu's proposal pi_ref (PMDB)."""
    return mix_candidates(key, dists["pi"], dists["ref"], config.num_candidates)


def policy_candidates(key: chex.PRNGKey, dists: dict, real_act: jax.Array, config: AgentConfig) -> tuple[jax.Array, jax.Array]:
    """Candidates of the policy step on [real states; model states] (PMDB).

    The proposal half is a narrow tanh-Gaussian (pre-tanh std `data_action_std`) around the
    dataset action on the first len(real_act) (real) states and the current policy on the
    rest (model states); the other half comes from pi_ref.
    """
    n_real = real_act.shape[0]
    around_data = networks.GaussianParams(
        jnp.arctanh(jnp.clip(real_act, -1 + DATA_ACTION_EPS, 1 - DATA_ACTION_EPS)),
        jnp.full_like(real_act, jnp.log(config.data_action_std)),
    )
    proposal = jax.tree_util.tree_map(lambda d, p: jnp.concatenate([d, p[n_real:]]), around_data, dists["pi"])
    return mix_candidates(key, proposal, dists["ref"], config.num_candidates)


def reference_dists(ctx: Ctx, obs: jax.Array) -> dict:
    """Current, reference and behaviour policies at obs (XLA drops whichever is unused)."""
    nets, data, state = ctx.nets, ctx.data, ctx.state
    return {
        "pi": policy_dist(nets, state.policy, data, obs),
        "ref": policy_dist(nets, state.ref_policy, data, obs),
        "beta": policy_dist(nets, state.behaviour, data, obs),
    }


def temperature_for(config: AgentConfig, q, log_mu, log_q) -> jax.Array:
    """`config.temperature`: a fixed alpha, or PMDB's per-state KL-budget rule."""
    if isinstance(config.temperature, KLBudget):
        return value.kl_budget_temperature(q, log_mu, log_q, config.temperature.target_kl)
    return jnp.asarray(config.temperature.alpha, q.dtype)


def make_value_fn(ctx: Ctx, parts: Parts, critic_params) -> Callable[[chex.PRNGKey, jax.Array], jax.Array]:
    """(key, states (..., S)) -> soft value V(s) under `critic_params` and the algorithm's reference.

    States are processed `config.value_chunk` at a time with `lax.map` (same estimator; each
    chunk draws its candidates with its own key).
    """
    config, nets, data = ctx.config, ctx.nets, ctx.data

    def one_batch(key, flat):
        dists = reference_dists(ctx, flat)
        actions, log_q = value_candidates(key, dists, config)
        q = critic_values(nets, critic_params, data, flat, actions, config)
        log_mu, temp = parts.reference(ctx, flat, actions, dists, q, log_q)
        return value.soft_value(q, log_mu, log_q, temp)

    return chunked_value_fn(one_batch, config.value_chunk)


def chunked_value_fn(value_fn: Callable, chunk_states: int) -> Callable:
    """Evaluates `value_fn(key, states (..., S))` `chunk_states` states at a time with lax.map.

    Same estimator, other random draws (each chunk gets its own key); the last chunk is padded
    with copies of the first state and trimmed. Keeps one chunk's critic activations
    (chunk_states * M rows) in cache instead of writing N*K*B*M rows per layer to memory.
    chunk_states = 0, or a batch no larger than one chunk, calls value_fn once.
    """

    def fn(key, states):
        batch_shape, dim = states.shape[:-1], states.shape[-1]
        flat = states.reshape(-1, dim)
        n = flat.shape[0]
        if not chunk_states or n <= chunk_states:
            return value_fn(key, flat).reshape(batch_shape)
        num = -(-n // chunk_states)
        flat = jnp.concatenate([flat, jnp.broadcast_to(flat[:1], (num * chunk_states - n, dim))])
        v = jax.lax.map(lambda kx: value_fn(*kx), (jax.random.split(key, num), flat.reshape(num, chunk_states, dim)))
        return v.reshape(-1)[:n].reshape(batch_shape)

    return fn


def sample_model(data: TrainData, num_samples: int, common_noise: bool = False, mean_reward: bool = False,
                 mean_next_obs: bool = False, action_scale: float = 1.0):
    """(key, obs, act) -> (next_obs (N,K,B,S), rewards (N,K,B) in learning units) from the active members
    (`dynamics.sample`: common_noise shares the noise across members; mean_reward gives mu_r;
    mean_next_obs gives mu_s'). `act` is in the policy's space: the members see the environment's
    action `networks.to_env_action(act, action_scale)`."""

    def sample_fn(key, obs, act):
        act = networks.to_env_action(act, action_scale)
        out = dynamics.sample(data.model, key, obs, act, num_samples, common_noise=common_noise,
                              mean_reward=mean_reward, mean_next_obs=mean_next_obs)
        return out.next_obs, (out.reward - data.reward_shift) / data.reward_scale

    return sample_fn


def sample_real(key: chex.PRNGKey, data: TrainData, batch_size: int) -> buffer.Transition:
    """A uniform minibatch of dataset transitions (with replacement)."""
    idx = jax.random.randint(key, (batch_size,), 0, data.obs.shape[0])
    return buffer.Transition(data.obs[idx], data.act[idx], data.reward[idx], data.next_obs[idx], data.done[idx])


def deployed_policy(states, config: AgentConfig):
    """The parameters of the deployed policy in (possibly seed-stacked) learner `states`:
    `config.deploy` = "policy" (pi), "reference" (pi_ref) or "average" (the moving average of pi,
    kept by states whose config deploys it). BC deploys its best held-out policy (`best_policy`),
    or its policy without a hold-out."""
    if config.deploy == "reference" and hasattr(states, "ref_policy"):
        return states.ref_policy
    if config.deploy == "average" and getattr(states, "avg_policy", None) is not None:
        return states.avg_policy
    if getattr(states, "best_policy", None) is not None:  # bc with a hold-out: early stopping
        return states.best_policy
    return states.policy


def strong_types(tree):
    """Drops JAX weak types from every leaf, so a state coming out of a jitted step has exactly
    the avals of the state that went in (a weak-typed leaf would force a recompilation)."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)
