"""Termination functions on hand-made states (Gymnasium v4 rules)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import termination as T


def _hopper(height=1.25, angle=0.0, rest=0.0):
    obs = np.zeros(11, np.float32)
    obs[0], obs[1] = height, angle
    obs[2:] = rest
    return obs


def test_hopper_cases():
    states = np.stack([
        _hopper(),                       # healthy
        _hopper(height=0.69),            # too low
        _hopper(angle=0.21),             # tilted
        _hopper(angle=-0.21),
        _hopper(rest=150.0),             # velocity blow-up, positive
        _hopper(rest=-150.0),            # negative: `abs(x < 100)` would call this healthy
        _hopper(rest=99.0),              # large but inside the bound
    ])
    done = np.asarray(T.hopper_termination(None, None, jnp.asarray(states)))
    np.testing.assert_array_equal(done, [False, True, True, True, True, True, False])


@pytest.mark.parametrize("value", [-100.0, -150.0, -1e6, -np.inf, 100.0, 1e6])
def test_hopper_any_entry_beyond_100_in_absolute_value_terminates(value):
    # The slip `abs(x < 100)` is 1 for every x < 100, so it calls x in (-inf, -100] healthy and
    # never ends a rollout whose velocities blow up downwards. The library must end it for an
    # out-of-range value in ANY entry of obs[2:] (obs[1], the angle, has its own 0.2 bound).
    states = np.stack([_hopper() for _ in range(9)])
    for i in range(9):
        states[i, 2 + i] = value
    done = np.asarray(T.hopper_termination(None, None, jnp.asarray(states)))
    np.testing.assert_array_equal(done, np.ones(9, bool))


def test_hopper_entries_just_inside_100_stay_healthy():
    states = np.stack([_hopper(rest=-99.9), _hopper(rest=99.9)])
    np.testing.assert_array_equal(np.asarray(T.hopper_termination(None, None, jnp.asarray(states))), [False, False])


def test_walker2d_cases():
    def w(h, a):
        o = np.zeros(17, np.float32)
        o[0], o[1] = h, a
        return o
    states = np.stack([w(1.2, 0.0), w(0.79, 0.0), w(2.01, 0.0), w(1.2, 1.01), w(1.2, -1.01), w(1.99, 0.99)])
    done = np.asarray(T.walker2d_termination(None, None, jnp.asarray(states)))
    np.testing.assert_array_equal(done, [False, True, True, True, True, False])


def test_halfcheetah_never_terminates_but_nan_does():
    s = np.zeros((3, 17), np.float32)
    s[1, 0] = -1e6
    s[2, 4] = np.nan
    np.testing.assert_array_equal(np.asarray(T.halfcheetah_termination(None, None, jnp.asarray(s))), [False, False, True])


def test_liquidation_cases():
    s = jnp.array([[5.0, 50.0, 1.2], [20.0, 50.0, 1.2], [19.9, 50.0, 1.2], [3.0, 0.05, 1.0], [19.0, 0.1, 1.0]])
    np.testing.assert_array_equal(np.asarray(T.liquidation_termination(None, None, s)), [False, True, True, True, False])


def test_batch_shapes_are_kept():
    s = jnp.ones((4, 5, 2, 17)) * 1.2
    assert T.walker2d_termination(None, None, s).shape == (4, 5, 2)


def test_lookup_by_dataset_name():
    assert T.get_termination_fn("walker2d-medium-replay-v2") is T.walker2d_termination
    assert T.get_termination_fn("Hopper-v4") is T.hopper_termination
    with pytest.raises(ValueError, match="known environments"):
        T.get_termination_fn("ant")
