"""Per-chunk diagnostics of the belief and of how targets follow member disagreement.

PSPO §5.2 (Figure 3) reports a negative Spearman rank correlation between the TD target and
its uncertainty metric: where the members disagree, the posterior-sampled target is lower,
an adaptive, not indiscriminate, pessimism. `target_uncertainty` measures the same on the
model states of the buffer: rho between the algorithm's own model-state target (the configured
member selector: a posterior sample for PSPO, the k-th minimum for RRPI) and the standard
deviation of the N member targets on the same (s, a). `chunk_diagnostics` adds it to a chunk's
metrics, with the belief's argmax (which active member holds the largest chunk-mean weight).

`greedy_gain` asks whether the policy step or the critic limits a run: how much Q the critic
still offers above the deployed action, over the best of M actions drawn from the policy. Near
zero, the projection has caught up with the critic (the critic is flat around the policy, and a
better policy needs a better critic); large, the policy lags its critic. `deployed_greedy_gain`
is the same on `GREEDY_STATES` dataset states for one seed's parameters; the run computes it at
its evaluations only (beside `start_value`), not inside every compiled chunk.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxrl_bayes import buffer, networks, stats
from jaxrl_bayes.algos import targets
from jaxrl_bayes.algos.common import Ctx, Networks, TrainData, critic_values, policy_dist

# model states per chunk on which the rank correlation is measured (one all-member target
# pass per chunk: negligible next to a chunk's train steps)
DIAGNOSTIC_STATES = 256


def target_uncertainty(ctx: Ctx, key: chex.PRNGKey, obs: jax.Array, act: jax.Array, value_fn) -> dict:
    """Spearman's rho between the model-state target and the member disagreement.

    Args:
      ctx: the learner's context (config, networks, data, state with the current belief).
      key: PRNG key.
      obs: states (B, S); act: actions (B, A).
      value_fn: the soft value under the target critic.
    Returns:
      dict with "target_uncertainty_spearman" (scalar in [-1, 1]) and "member_target_std"
      (mean over the B pairs of the std of the N member targets).
    """
    k_target, k_members = jax.random.split(key)
    y, _ = targets.model_target(ctx, k_target, obs, act, value_fn)
    member_y = targets.all_member_targets(ctx, k_members, obs, act, value_fn).member_y
    spread = jnp.std(member_y, axis=0)
    return {"target_uncertainty_spearman": stats.spearman_correlation(y, spread),
            "member_target_std": jnp.mean(spread)}


GREEDY_SAMPLES = 32  # M actions of pi per state in `deployed_greedy_gain`
GREEDY_STATES = 256  # dataset states per measurement of `deployed_greedy_gain`


def greedy_gain(q_fn, dist: networks.GaussianParams, key: chex.PRNGKey, num_samples: int) -> jax.Array:
    """Mean over states of max(Q(s, mode), max_i Q(s, a_i)) - Q(s, mode), a_i ~ pi(.|s), i <= M.

    The Q that a greedy step over M policy samples would gain at each state above the deployed
    action tanh(mean) (never negative: the mode is one of the choices).

    Args:
      q_fn: actions (..., B, A) -> Q (..., B) at the B states `dist` belongs to.
      dist: the policy's tanh-Gaussian at those states, (B, A) parameters.
      key: PRNG key for the samples.
      num_samples: M (static).
    Returns:
      a scalar, in the critic's units.
    """
    mode = networks.tanh_gaussian_mode(dist)
    samples = networks.tanh_gaussian_sample(key, dist, (num_samples,))[0]  # (M, B, A)
    q_mode = q_fn(mode)
    return jnp.mean(jnp.maximum(jnp.max(q_fn(samples), axis=0), q_mode) - q_mode)


def deployed_greedy_gain(nets: Networks, config, data: TrainData, critic_params, policy_params,
                         key: chex.PRNGKey) -> jax.Array:
    """`greedy_gain` of one seed's policy under its critic (the min of the twins, clipped as in the
    targets), on `GREEDY_STATES` dataset states drawn with `key`, over `GREEDY_SAMPLES` draws of
    the policy. Learning units; vmap over seeds.
    """
    k_obs, k_act = jax.random.split(key)
    obs = data.obs[jax.random.randint(k_obs, (GREEDY_STATES,), 0, data.obs.shape[0])]
    dist = policy_dist(nets, policy_params, data, obs)
    return greedy_gain(lambda a: critic_values(nets, critic_params, data, obs, a, config), dist, k_act,
                       GREEDY_SAMPLES)


def chunk_diagnostics(ctx: Ctx, key: chex.PRNGKey, value_fn, chunk_metrics: dict) -> dict:
    """Figure-3 diagnostics at the end of a chunk, on `DIAGNOSTIC_STATES` model-buffer pairs.

    Args:
      ctx: context holding the state after the chunk's train steps.
      key: PRNG key.
      value_fn: the soft value under the state's target critic.
      chunk_metrics: the chunk means of the train-step metrics ("posterior_belief" (N,)).
    Returns:
      dict: target_uncertainty_spearman, member_target_std, posterior_argmax (int32).
    """
    k_sample, k_diag = jax.random.split(key)
    pairs = buffer.buffer_sample(ctx.state.buffer, k_sample, DIAGNOSTIC_STATES)
    out = target_uncertainty(ctx, k_diag, pairs.obs, pairs.act, value_fn)
    out["posterior_argmax"] = jnp.argmax(chunk_metrics["posterior_belief"]).astype(jnp.int32)
    return out


def start_value(nets: Networks, config, data: TrainData, critic_params, policy_params, obs: jax.Array) -> jax.Array:
    """Mean over states of the critic's Q(s, a) at the deployed policy's action a = tanh(mean pi(s)):
    the min of the twin critics, clipped as in the targets (learning units).

    At the evaluation episodes' first states this is the value the critic predicts for the
    episodes, the number to set beside their discounted Monte Carlo return
    (`evaluation.value_in_learning_units`); Q on model states is not comparable with it, as
    those states come from other distributions (the persistent scheme's adversarial paths).
    One seed's parameters; vmap over seeds.
    """
    act = networks.tanh_gaussian_mode(policy_dist(nets, policy_params, data, obs))
    return jnp.mean(critic_values(nets, critic_params, data, obs, act, config))
