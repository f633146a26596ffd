"""jaxrl_bayes: model-based offline RL in JAX (PSPO and RRPI) as composable pure functions.

Modules: networks, dynamics, termination, value, backups, posterior, rollout, algos, data,
envs, evaluation, checkpoint. See README.md for the command line and the public API.
"""

__version__ = "0.1.0"
