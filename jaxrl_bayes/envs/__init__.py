"""Environments: optimal liquidation (Gymnasium `Liquidation-v0` and a pure-JAX version).

Importing this package registers `Liquidation-v0` with Gymnasium (once). See
`jaxrl_bayes.envs.liquidation` for the MDP, data generation, evaluation and its exact optimum.
"""

from __future__ import annotations

import gymnasium

from jaxrl_bayes.envs.liquidation import (
    ACT_DIM,
    CONFIG,
    OBS_DIM,
    REF_MAX_SCORE,
    REF_MIN_SCORE,
    DPResult,
    LiquidationActionError,
    LiquidationConfig,
    LiquidationEnv,
    LiquidationState,
    all_at_once_policy,
    behaviour_policy,
    dp_optimum,
    equal_shares_policy,
    evaluate_policy,
    fixed_policy_values_analytic,
    generate_dataset,
    last_step_policy,
    make_dp_policy,
    normalize_score,
    reference_table,
    score_summary,
)

LIQUIDATION_ENV_ID = "Liquidation-v0"

if LIQUIDATION_ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=LIQUIDATION_ENV_ID,
        entry_point="jaxrl_bayes.envs.liquidation:LiquidationEnv",
    )

__all__ = [
    "ACT_DIM",
    "CONFIG",
    "LIQUIDATION_ENV_ID",
    "OBS_DIM",
    "REF_MAX_SCORE",
    "REF_MIN_SCORE",
    "DPResult",
    "LiquidationActionError",
    "LiquidationConfig",
    "LiquidationEnv",
    "LiquidationState",
    "all_at_once_policy",
    "behaviour_policy",
    "dp_optimum",
    "equal_shares_policy",
    "evaluate_policy",
    "fixed_policy_values_analytic",
    "generate_dataset",
    "last_step_policy",
    "make_dp_policy",
    "normalize_score",
    "reference_table",
    "score_summary",
]
