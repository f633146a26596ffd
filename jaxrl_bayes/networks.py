"""Networks: MLP, member-stacked ensembles, tanh-Gaussian policy, twin critic.

Everything here is a flax.linen module or a pure function of parameters. An *ensemble* is not
a special module: it is the parameters of one member module stacked along a leading member
axis, initialised with `jax.vmap(module.init)` and applied with `jax.vmap(module.apply)`
(`init_ensemble` / `apply_ensemble`). Selecting a subset of members is indexing that axis
(`select_members`), so any member subset runs through the same code.

The tanh-Gaussian policy follows SAC (Haarnoja et al., 2018, App. C): u ~ N(mean, std),
a = tanh(u), log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2), with the Jacobian term computed
stably as 2 (log 2 - u - softplus(-2u)). Log-std is clamped to [LOG_STD_MIN, LOG_STD_MAX]
(ALGORITHMS.md "Notation and conventions").

A tanh can reach the bounds of the action box only as its mean goes to infinity, so a policy
whose best action is a bound (sell everything, full torque) deploys a point strictly inside
it, and the KL and entropy terms of a regularized projection pay it to stay there. An
`action_scale` c > 1 widens the policy's squash: the environment (and the dynamics model)
receives clip(c a, -1, 1), where a = tanh(u) is the policy's own action. Every policy-side
quantity (log-densities, KLs, critic inputs, cloned data actions a_env / c) lives in the
policy's space, where the densities stay smooth; the bound is reached from the finite mean
atanh(1 / c). c = 1 is the plain tanh-Gaussian (`to_env_action` and `from_env_action` are then
the identity).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0
# Actions handed to `tanh_gaussian_log_prob` are clipped this far inside (-1, 1) before atanh,
# so dataset actions at exactly +-1 give finite log-densities.
ACTION_EPS = 1e-6

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
    "gelu": nn.gelu,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks up an activation by name; unknown names list the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Fully connected network: hidden layers with an activation, then a linear output layer.

    Attributes:
      hidden: widths of the hidden layers, e.g. (256, 256).
      out_dim: width of the output layer.
      activation: name of the hidden activation (see `ACTIVATIONS`).
      final_scale: variance scale of the output layer's initialiser (small values start a
        policy or critic near zero output).
      layer_norm: LayerNorm between each hidden Dense and its activation (the critics of
        RLPD and ReBRAC: it bounds how far the output can grow away from the data).
    """

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    final_scale: float = 1.0
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = get_activation(self.activation)
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=nn.initializers.lecun_normal())(x)
            x = act(nn.LayerNorm()(x) if self.layer_norm else x)
        init = nn.initializers.variance_scaling(self.final_scale, "fan_in", "truncated_normal")
        return nn.Dense(self.out_dim, kernel_init=init)(x)


# ----------------------------------------------------------------------------- ensembles


def init_ensemble(module: nn.Module, key: chex.PRNGKey, num_members: int, *example_inputs):
    """Initialises `num_members` independent copies of `module`.

    Returns:
      parameters whose every leaf has a leading member axis of size `num_members`.
    """
    keys = jax.random.split(key, num_members)
    return jax.vmap(lambda k: module.init(k, *example_inputs))(keys)


def apply_ensemble(module: nn.Module, params, *inputs, shared_inputs: bool = True):
    """Applies every member of a stacked ensemble: `jax.vmap(module.apply)` over members.

    Args:
      module: the member module.
      params: stacked parameters (leading member axis N).
      *inputs: the inputs. With `shared_inputs` every member sees the same inputs; otherwise
        each input carries its own leading member axis N.
    Returns:
      the member outputs stacked on a leading axis N.
    """
    in_axes = (0,) + (None if shared_inputs else 0,) * len(inputs)
    return jax.vmap(module.apply, in_axes=in_axes)(params, *inputs)


def select_members(params, members: jax.Array):
    """Gathers the members `members` (an int array of indices) from stacked parameters."""
    return jax.tree_util.tree_map(lambda p: p[members], params)


def num_members(params) -> int:
    """Size of the leading member axis of stacked parameters."""
    return jax.tree_util.tree_leaves(params)[0].shape[0]


# ----------------------------------------------------------------------------- policy


class GaussianParams(NamedTuple):
    """Pre-tanh Gaussian of a tanh-Gaussian policy: arrays of shape batch + (action_dim,)."""

    mean: jax.Array
    log_std: jax.Array


def to_env_action(actions: jax.Array, action_scale: float) -> jax.Array:
    """The environment's action for the policy's action a in (-1, 1): clip(c a, -1, 1)."""
    return actions if action_scale == 1.0 else jnp.clip(action_scale * actions, -1.0, 1.0)


def from_env_action(actions: jax.Array, action_scale: float) -> jax.Array:
    """The policy's action for an environment action in [-1, 1] (a dataset action): a_env / c."""
    return actions if action_scale == 1.0 else actions / action_scale


class TanhGaussianPolicy(nn.Module):
    """State -> pre-tanh Gaussian (mean, clamped log-std) of a tanh-squashed policy.

    Attributes:
      action_dim: width of the action.
      hidden: hidden widths (D4RL / PMDB use (256, 256); PSPO Table 5 width 256).
      activation: hidden activation.
      action_scale: c >= 1; the environment receives clip(c tanh(u), -1, 1) (`to_env_action`).
        It does not change the network, only how its actions meet the environment.
    """

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"
    action_scale: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> GaussianParams:
        out = MLP(self.hidden, 2 * self.action_dim, self.activation, final_scale=0.01)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return GaussianParams(mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX))


def _normal_log_prob(u: jax.Array, dist: GaussianParams) -> jax.Array:
    z = (u - dist.mean) * jnp.exp(-dist.log_std)
    return jnp.sum(-0.5 * z**2 - dist.log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def _tanh_log_det(u: jax.Array) -> jax.Array:
    """sum log(1 - tanh(u)^2), computed without cancellation."""
    return jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def tanh_gaussian_sample(
    key: chex.PRNGKey, dist: GaussianParams, sample_shape: Sequence[int] = ()
) -> tuple[jax.Array, jax.Array]:
    """Draws actions a = tanh(u) and their log-densities (tanh Jacobian included).

    Args:
      key: PRNG key.
      dist: Gaussian of shape B + (A,).
      sample_shape: extra leading sample axes.
    Returns:
      (actions of shape sample_shape + B + (A,), log-densities of shape sample_shape + B).
    """
    shape = tuple(sample_shape) + dist.mean.shape
    u = dist.mean + jnp.exp(dist.log_std) * jax.random.normal(key, shape, dist.mean.dtype)
    return jnp.tanh(u), _normal_log_prob(u, dist) - _tanh_log_det(u)


def tanh_gaussian_log_prob(dist: GaussianParams, actions: jax.Array) -> jax.Array:
    """Log-density of actions in (-1, 1) under the tanh-Gaussian `dist`.

    Args:
      dist: Gaussian of shape B + (A,).
      actions: shape S + B + (A,) for any leading sample shape S (broadcast against dist).
    Returns:
      log-densities of shape S + B.
    """
    a = jnp.clip(actions, -1.0 + ACTION_EPS, 1.0 - ACTION_EPS)
    u = jnp.arctanh(a)
    return _normal_log_prob(u, dist) - _tanh_log_det(u)


def tanh_gaussian_mode(dist: GaussianParams) -> jax.Array:
    """The deterministic action tanh(mean), in the policy's space."""
    return jnp.tanh(dist.mean)


def deployed_action(module: TanhGaussianPolicy, dist: GaussianParams) -> jax.Array:
    """The environment action a deterministic policy deploys: clip(c tanh(mean), -1, 1)."""
    return to_env_action(tanh_gaussian_mode(dist), module.action_scale)


def tanh_gaussian_kl(p: GaussianParams, q: GaussianParams) -> jax.Array:
    """KL(p || q) of two tanh-Gaussians with the same squashing: equal to the Gaussian KL.

    (tanh is a bijection, so the KL is invariant to it.) Returns shape B.
    """
    var_ratio = jnp.exp(2.0 * (p.log_std - q.log_std))
    mean_term = ((p.mean - q.mean) * jnp.exp(-q.log_std)) ** 2
    return 0.5 * jnp.sum(var_ratio + mean_term - 1.0 - 2.0 * (p.log_std - q.log_std), axis=-1)


# ----------------------------------------------------------------------------- critic


class Critic(nn.Module):
    """One Q network: concat(s, a) -> scalar."""

    hidden: Sequence[int] = (256, 256, 256)
    activation: str = "relu"
    layer_norm: bool = False  # see MLP

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.activation, layer_norm=self.layer_norm)(jnp.concatenate([obs, act], axis=-1))[..., 0]


class TwinCritic(nn.Module):
    """`num_qs` independent critics (2 = twin), member-stacked with `nn.vmap`.

    Returns Q values of shape (num_qs,) + batch. Use `q.min(0)` for the clipped double Q.
    PMDB / RRPI critics: 3 x 256.
    """

    hidden: Sequence[int] = (256, 256, 256)
    activation: str = "relu"
    num_qs: int = 2
    layer_norm: bool = False  # see MLP

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        vmapped = nn.vmap(
            Critic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_qs,
        )
        return vmapped(self.hidden, self.activation, self.layer_norm)(obs, act)
