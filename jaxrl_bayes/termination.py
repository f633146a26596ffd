"""Termination functions for model rollouts, one per environment, in `jnp`.

Each function maps (obs, act, next_obs) with any leading batch shape to a boolean array of
that batch shape: True where `next_obs` is a true environment termination (a fall, or the end
of a liquidation episode), never a time-limit truncation.

The MuJoCo rules reproduce Gymnasium's v4 `terminated` conditions, which D4RL v2 data and our
evaluation environments share:

- Hopper-v4: healthy iff every entry of state_vector()[2:] satisfies |x| < 100, height > 0.7
  and |angle| < 0.2. Observations drop the x position, so state_vector()[2:] is obs[1:].
  (One public implementation wrote `abs(x < 100)`, which is always 0 or 1 and so never ends a
  rollout whose velocities explode; `tests/test_termination.py` checks that case.)
- Walker2d-v4: healthy iff 0.8 < height < 2.0 and -1 < angle < 1.
- HalfCheetah-v4: never terminates.
- Liquidation (BENCHMARKS.md): obs = (t, m, p); done when t' >= horizon or m' < 0.1.

Non-finite next observations always count as terminal, so a diverging model path stops.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

TerminationFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

LIQUIDATION_HORIZON = 20
LIQUIDATION_MIN_MONEY = 0.1


def _finite(next_obs: jax.Array) -> jax.Array:
    return jnp.all(jnp.isfinite(next_obs), axis=-1)


def hopper_termination(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Hopper-v4: unhealthy if any |obs[1:]| >= 100, height <= 0.7 or |angle| >= 0.2."""
    del obs, act
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (
        jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1)
        & (height > 0.7)
        & (jnp.abs(angle) < 0.2)
    )
    return ~(healthy & _finite(next_obs))


def walker2d_termination(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Walker2d-v4: unhealthy unless 0.8 < height < 2.0 and -1 < angle < 1."""
    del obs, act
    height, angle = next_obs[..., 0], next_obs[..., 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~(healthy & _finite(next_obs))


def halfcheetah_termination(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    """HalfCheetah-v4 never terminates (only non-finite model states end a rollout)."""
    del obs, act
    return ~_finite(next_obs)


def liquidation_termination(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Liquidation: next_obs = (t', m', p'); done when t' >= 20 or m' < 0.1."""
    del obs, act
    t, money = next_obs[..., 0], next_obs[..., 1]
    # t is an integer step count carried as a float; a model predicts it only approximately,
    # so round before comparing with the horizon.
    done = (jnp.round(t) >= LIQUIDATION_HORIZON) | (money < LIQUIDATION_MIN_MONEY)
    return done | ~_finite(next_obs)


def no_termination(obs: jax.Array, act: jax.Array, next_obs: jax.Array) -> jax.Array:
    """Never terminates (except non-finite states): for tasks without a known rule."""
    del obs, act
    return ~_finite(next_obs)


TERMINATION_FNS: dict[str, TerminationFn] = {
    "hopper": hopper_termination,
    "walker2d": walker2d_termination,
    "halfcheetah": halfcheetah_termination,
    "liquidation": liquidation_termination,
    "none": no_termination,
}


def get_termination_fn(env: str) -> TerminationFn:
    """Termination function by environment family name ('hopper', 'walker2d', ...).

    Also accepts a dataset or environment name that starts with a family name, e.g.
    'walker2d-medium-replay-v2' or 'Hopper-v4'.
    """
    key = env.lower()
    for name, fn in TERMINATION_FNS.items():
        if key == name or key.startswith(name):
            return fn
    raise ValueError(
        f"no termination function for {env!r}; known environments: {sorted(TERMINATION_FNS)}"
    )
