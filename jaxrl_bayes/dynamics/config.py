"""`DynamicsConfig`: the hyper-parameters of a dynamics pool (architecture and training).

Its own module because the network (`model`), the trainer (`training`) and the pool files
(`files`, which store it as JSON) all read it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from jaxrl_bayes import networks
from jaxrl_bayes.errors import UserError


EARLY_STOPPING = ("mse", "geometric_mse")  # DynamicsConfig.early_stopping


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """Hyper-parameters of the dynamics pool (hashable: used as a static field)."""

    num_members: int = 7  # pool size P (PSPO / PMDB use 100; MBPO 7; small default for CPU)
    hidden: tuple[int, ...] = (200, 200, 200, 200)  # MBPO / PMDB hopper; PSPO Table 5: 512 wide
    activation: str = "silu"  # MBPO / PMDB: Swish = SiLU
    learning_rate: float = 1e-3  # MBPO / PMDB
    weight_decay: float = 5e-5  # AdamW decoupled decay (MBPO's L2 is 2.5e-5 .. 1e-4 per layer)
    batch_size: int = 256  # MBPO / PMDB; PSPO Table 5 uses 512
    max_epochs: int = 200  # upper bound on epochs (MBPO trains until early stopping)
    max_epochs_since_update: int = 5  # early-stopping patience (MBPO)
    # What a member's held-out improvement is measured on (EARLY_STOPPING): "mse", the mean over
    # the standardized target dimensions (MBPO); "geometric_mse", their geometric mean, under which
    # a dimension the inputs determine (money left after a sale, a reward) counts as much as one
    # at its noise floor (a random price step): with "mse" the noise floor of one dimension hides
    # the others' progress from the 1 % rule, and the members stop while still wrong on them.
    early_stopping: str = "mse"
    holdout_ratio: float = 0.1  # MBPO / PMDB: 10 % held out ...
    max_holdout: int = 1000  # ... at most 1000 transitions (MBPO `max_holdout`)
    beta_nll: float = 0.0  # 0 = Gaussian NLL; 0.5 = beta-NLL (Seitzer et al., 2022)
    logstd_bound_coef: float = 0.01  # MBPO / PETS regulariser on the learnable bounds
    num_elites: Optional[int] = None  # MBPO uses 5 of 7; None = all members
    bootstrap: bool = True  # PETS: each member trains on its own bootstrap resample
    normalize_targets: bool = True  # project choice: standardise [Δs, r] per dimension
    init_max_logstd: float = 0.25  # MBPO max log-variance 0.5, written as log-std
    init_min_logstd: float = -5.0  # MBPO min log-variance -10, written as log-std

    def __post_init__(self):
        # A list would make the config unhashable (it is a static pytree field under jit).
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def validate(self) -> None:
        """Raises UserError (a ValueError) for settings that cannot work."""
        problems = []
        if self.num_members < 1:
            problems.append(f"num_members={self.num_members} must be >= 1")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            problems.append(f"hidden={self.hidden} must be a non-empty tuple of positive widths")
        if self.activation not in networks.ACTIVATIONS:
            problems.append(
                f"activation={self.activation!r} unknown; choose one of {sorted(networks.ACTIVATIONS)}"
            )
        if self.batch_size < 1:
            problems.append(f"batch_size={self.batch_size} must be >= 1")
        if self.max_epochs < 1:
            problems.append(f"max_epochs={self.max_epochs} must be >= 1")
        if self.early_stopping not in EARLY_STOPPING:
            problems.append(f"early_stopping={self.early_stopping!r} unknown; choose one of {', '.join(EARLY_STOPPING)}")
        if self.max_epochs_since_update < 0:
            problems.append("max_epochs_since_update must be >= 0")
        if not 0.0 <= self.holdout_ratio < 1.0:
            problems.append(f"holdout_ratio={self.holdout_ratio} must be in [0, 1)")
        if self.max_holdout < 0:
            problems.append("max_holdout must be >= 0")
        if not 0.0 <= self.beta_nll <= 1.0:
            problems.append(f"beta_nll={self.beta_nll} must be in [0, 1]")
        if self.num_elites is not None and not 1 <= self.num_elites <= self.num_members:
            problems.append(
                f"num_elites={self.num_elites} must be None or in [1, num_members={self.num_members}]"
            )
        import math

        # real numbers: NaN and inf are refused
        for name, ok, rule in (("learning_rate", lambda v: 0.0 < v <= 1.0, "a finite number in (0, 1]"),
                               ("weight_decay", lambda v: v >= 0.0, "a finite number >= 0"),
                               ("logstd_bound_coef", lambda v: v >= 0.0, "a finite number >= 0"),
                               ("init_max_logstd", lambda v: True, "a finite number"),
                               ("init_min_logstd", lambda v: True, "a finite number")):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok(value)):
                problems.append(f"{name}={value} must be {rule}")
        if not self.init_min_logstd < self.init_max_logstd:
            problems.append("init_min_logstd must be < init_max_logstd")
        if problems:
            raise UserError("invalid DynamicsConfig: " + "; ".join(problems))
