"""Throughput of the jitted train step, model rollouts and dynamics training.

    python -m benchmarks.throughput                      # RRPI, PSPO, PMDB at small + paper sizes
    python -m benchmarks.throughput --quick              # tiny sizes; ~14 min on 2 shared cores (load 15-20)
    python -m benchmarks.throughput --algos pmdb --sizes paper --steps 3 --reps 2 --seeds 1

What is measured (all after compilation, every call ended by `jax.block_until_ready`):

- **Train step.** `Trainer.run_chunk_seeds` of a trainer built with `steps_per_chunk = R` and a
  one-state, one-step rollout (so the chunk is R train steps plus a negligible refill). The
  step time is (T(R) - T(1)) / (R - 1) from a second trainer with R = 1; T(1) * R against T(R)
  is the dispatch overhead that the scanned chunk removes. Repeated with 1, 2, 4, 8 seeds vmapped.
- **Rollout.** The chunk's rollout refill (`algos.train.begin_chunk` of the short scheme: policy,
  all N members, the member selector, `rollout.rollout` with `lax.scan`, the buffer write) jitted
  alone: transitions per second = B_roll * H / time.
- **Dynamics.** `dynamics.train_pool` for two epochs; samples per second = member-samples of the
  second (compiled) epoch per second, as the pool's own report gives it.
- **Where the time goes.** The model-state target, the real-pair target and PSPO's belief
  update (`algos.targets`, the functions the train step calls) jitted alone on the step's
  batch, against the whole step.
- **The limit.** FLOPs of each jitted function counted from its jaxpr (`benchmarks.flops`:
  every scan / lax.map body times its trip count, so a chunked part and its one-batch variant
  agree), divided by the measured time, against a dense float32 matmul timed INTERLEAVED with
  the train-step chunks (best of several rounds each), so both see the same machine; a row
  whose matmul readings moved by more than `--noisy` (default 20 %) is flagged noisy. XLA's
  own `cost_analysis()` (which counts a loop body once) is kept beside it as `flops_per_step_xla`.
  Per-step FLOPs come from a chunk with R = 1.
- **Devices.** Seeds/s with 1, 2, 4 devices (`benchmarks.devices`: one process per count;
  forced host devices on CPU).
- **CPU presets.** Sizes `cpu-hopper`, `cpu-walker2d`, `cpu-halfcheetah` are read from the
  `cpu` presets in experiments/configs/ (preset values over the config defaults); the robots share
  one locomotion preset, so the three are the same sizes.
- **Scaling.** Step time and FLOPs against N, M, K and the batch, one at a time, from the first
  of `--sizes` (or `--scaling-size`, one of them).
- **Chunked soft value** (`--variants chunked`): the same step with the N x K x B successors'
  soft value evaluated in chunks (`lax.map`) that keep the critic's activations in cache: an
  experiment on the library's hot spot through `make_trainer(parts=...)`, not a library change.

Output (under `--out`, default `benchmarks/results/<timestamp>/`): `throughput.json`,
`throughput.md` (tables), `scaling.png`, `seeds.png`, with the device, the load average and the
library versions. PSPO's Table 6 (RTX 3090 Ti, PyTorch) and PMDB's official PyTorch code on this
project's CPU (ALGORITHMS.md §8) are printed as reference rows, marked as such.

The data are synthetic walker2d-shaped transitions (obs 17, act 6) and the dynamics pool is
trained for two epochs only: throughput does not depend on what the numbers mean.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Container, Literal, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import devices as devices_bench
from benchmarks.flops import count_flops, interleaved_reference
from benchmarks.synthetic import ACT_DIM, OBS_DIM, synthetic_dataset
from experiments import cli
from jaxrl_bayes.io import atomic_open
from jaxrl_bayes import buffer, dynamics, posterior, rollout_schemes
from jaxrl_bayes.algos.overrides import to_path
from jaxrl_bayes import components
from jaxrl_bayes.components import replace_path
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.algos import algo_config, common, make_trainer, targets, train
from jaxrl_bayes.data.dataset import Dataset
from jaxrl_bayes.termination import walker2d_termination


# Other hardware / other code: printed as reference rows only, never compared as equals.
REFERENCE_ROWS = [
    {"what": "PSPO iteration, PSPO Table 6 (RTX 3090 Ti, PyTorch) - OTHER HARDWARE", "ms_per_step": 112.1},
    {"what": "PMDB iteration, PSPO Table 6 (RTX 3090 Ti, PyTorch) - OTHER HARDWARE", "ms_per_step": 80.9},
    {"what": "PMDB official PyTorch code, default sizes, this project's 2-core CPU (ALGORITHMS.md §8)",
     "ms_per_step": 3300.0},
    {"what": "  same, allocator tuned (ALGORITHMS.md §8)", "ms_per_step": 1940.0},
]


class BenchmarkError(cli.UsageError):
    """Bad benchmark options; the message says which and what to use instead (one line, exit
    status 2)."""


@dataclasses.dataclass(frozen=True)
class Size:
    """One problem size. `paper`: PMDB / PSPO defaults (sources in comments)."""

    name: str
    num_active: int  # N
    num_next_samples: int  # K
    num_candidates: int  # M
    real_batch: int
    model_batch: int
    critic_hidden: tuple[int, ...]
    policy_hidden: tuple[int, ...]
    dyn_hidden: tuple[int, ...]
    rollout_batch: int
    rollout_horizon: int
    num_data: int  # synthetic transitions

    def agent_overrides(self) -> dict:
        return dict(
            num_active=self.num_active, num_next_samples=self.num_next_samples,
            num_candidates=self.num_candidates, real_batch=self.real_batch,
            model_batch=self.model_batch, critic_hidden=self.critic_hidden,
            policy_hidden=self.policy_hidden, rollout_batch=self.rollout_batch,
            rollout_horizon=self.rollout_horizon,
        )


SIZES: dict[str, Size] = {
    # PMDB defaults: N = 10 of a pool, K = 10, M = 20, 128 real + 128 model states, twin 3 x 256
    # critics; PSPO Table 5: dynamics width 512 (4 layers as MBPO), policy width 256.
    "paper": Size("paper", 10, 10, 20, 128, 128, (256, 256, 256), (256, 256), (512,) * 4, 1000, 5, 20_000),
    "small": Size("small", 5, 2, 4, 32, 32, (64, 64), (64, 64), (64, 64), 100, 5, 5_000),
    "tiny": Size("tiny", 2, 1, 2, 8, 8, (16,), (16,), (16,), 8, 2, 500),
}



def preset_size(family: str, preset: str = "cpu") -> Size:
    """The sizes of a preset of experiments/configs/<family>.json, its `_base` included (values over
    the defaults of AgentConfig / DynamicsConfig); the synthetic data stay walker2d-shaped."""
    from experiments.config import load_preset

    sections = load_preset(family, preset, "rrpi", explicit=True).values

    def values(section: str) -> dict:
        return dict(sections.get(section, {}))

    agent = common.AgentConfig()
    for path, value in sorted((to_path(k, v) for k, v in values("agent").items()), key=lambda kv: kv[0].count(".")):
        try:  # a preset's values for components this config does not choose (PSPO's belief.lam) are skipped
            agent = replace_path(agent, path, tuple(value) if isinstance(value, list) else value)
        except UserError:
            pass
    dyn = dataclasses.asdict(dynamics.DynamicsConfig())
    dyn.update(values("dynamics"))
    # a scheme without a refill (the persistent one advances its states inside the train step):
    # the rollout row times the short scheme at the library's default sizes
    short = agent.rollout if isinstance(agent.rollout, rollout_schemes.Short) else rollout_schemes.Short()
    return Size(f"{preset}-{family}", int(agent.num_active), int(agent.sampling.num_next_samples),
                int(agent.num_candidates), int(agent.real_batch), int(agent.model_batch),
                tuple(agent.critic_hidden), tuple(agent.policy_hidden), tuple(dyn["hidden"]),
                int(short.batch), int(short.horizon), 20_000)


for _family in ("hopper", "walker2d", "halfcheetah"):
    try:
        SIZES[f"cpu-{_family}"] = preset_size(_family)
    except (OSError, KeyError, ValueError, UserError):  # no such preset file: that size is not offered
        pass

SizeName = Literal[tuple(sorted(SIZES))]  # the sizes above, as --sizes and --scaling-size choices
ALGOS = ("rrpi", "pspo", "pmdb")
DEFAULT_SCALING = {
    "num_active": (2, 5, 10),
    "num_candidates": (4, 10, 20),
    "num_next_samples": (1, 5, 10),
    "batch": (32, 128, 256),  # real + model, split evenly
}


# ----------------------------------------------------------------------------- helpers


def _atomic_write(path: str, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def environment() -> dict:
    """Device, platform, load and library versions of this run."""
    dev = jax.devices()[0]
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "chex", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "num_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average_start": list(os.getloadavg()),
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
    }


def time_call(fn: Callable[[], Any], reps: int) -> dict:
    """Times `fn()` `reps` times after one warm-up call (which compiles). Returns seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return {"min_s": min(times), "median_s": statistics.median(times), "first_call_s": first, "all_s": times}


def xla_flops(jitted, *args) -> float:
    """FLOPs of a jitted function at these arguments, from XLA's compiled cost analysis."""
    return _cost_flops(jitted.lower(*args).compile())


def scan_counts_body_once() -> bool:
    """True if XLA's cost analysis counts a scan body once regardless of its trip count."""
    x = jnp.ones((64, 64), jnp.float32)

    def f(x, length):
        return jax.lax.scan(lambda c, _: (c @ c, None), x, None, length=length)[0]

    f1 = xla_flops(jax.jit(functools.partial(f, length=1)), x)
    f5 = xla_flops(jax.jit(functools.partial(f, length=5)), x)
    return bool(abs(f5 - f1) < 0.5 * f1)


def matmul_throughput(n: int, reps: int, dtype: str = "float32", precision: str | None = None) -> dict:
    """Dense n x n matmul: best of `reps` timed calls, in FLOP/s (2 n^3 per call).

    Args:
      dtype: of both operands ("float32", "bfloat16", ...).
      precision: `jax.lax.Precision` name ("highest", ...); None is JAX's default, the precision
        the train step's float32 matmuls run at (on recent NVIDIA GPUs XLA may use TF32 there).
    """
    a = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.PRNGKey(2), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(functools.partial(jnp.dot, precision=precision))
    t = time_call(lambda: f(a, b), reps)
    return {"n": n, "dtype": dtype, "precision": precision, "flops": 2.0 * n**3, "min_s": t["min_s"],
            "flops_per_s": 2.0 * n**3 / t["min_s"], "median_flops_per_s": 2.0 * n**3 / t["median_s"]}


def dynamics_bench(dataset: Dataset, size: Size, num_members: int, seed: int = 0) -> tuple[dynamics.DynamicsPool, dict]:
    """Trains a pool for two epochs (quality irrelevant) and reports training throughput."""
    cfg = dynamics.DynamicsConfig(num_members=num_members, hidden=size.dyn_hidden, max_epochs=2,
                                  max_epochs_since_update=10)
    pool, report = dynamics.train_pool(
        jax.random.PRNGKey(seed), dataset.observations, dataset.actions,
        dataset.normalized_rewards(), dataset.next_observations, cfg)
    in_dim, out_dim = OBS_DIM + ACT_DIM, 2 * (OBS_DIM + 1)
    widths = (in_dim,) + tuple(size.dyn_hidden) + (out_dim,)
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    sps = float(report.samples_per_second)
    return pool, {
        "num_members": num_members,
        "hidden": list(size.dyn_hidden),
        "batch_size": cfg.batch_size,
        "num_train": int(report.num_train),
        "member_samples_per_s": sps,
        # forward + backward ~ 3 x forward = 6 FLOPs per MAC (analytic, not XLA's count)
        "flops_per_member_sample_analytic": 6.0 * macs,
        "flops_per_s_analytic": 6.0 * macs * sps,
        "wall_time_s": float(report.wall_time_s),
    }


def agent_config(algo: str, size: Size, **overrides) -> common.AgentConfig:
    """The named algorithm at a size. PSPO's behaviour cloning is cut to 0 steps (init is not timed)."""
    base = size.agent_overrides()
    if algo.startswith("pspo"):
        base["behaviour.steps"] = 0
    base.update(overrides)
    return algo_config(algo, **base)


def _single(states):
    return jax.tree_util.tree_map(lambda x: x[0], states)


# ----------------------------------------------------------------------------- chunked soft value


# The chunked soft value is the library's own (`AgentConfig.value_chunk`, default 64 states);
# the "fused" variant sets value_chunk = 0 (one batch) to show what chunking buys.
chunked_value_fn = common.chunked_value_fn


def variant_overrides(variant: str, chunk_states: int) -> dict:
    """AgentConfig overrides of a benchmark variant."""
    return {"value_chunk": 0 if variant == "fused" else chunk_states}


# ----------------------------------------------------------------------------- train step


class Bench:
    """One size's data, pool and caches of trainers, initial states and compiled chunks.

    make_trainer returns fresh jitted functions, so every trainer compiles anew: the caches
    make each distinct (config, variant, seed count) compile exactly once per run.
    """

    def __init__(self, size: Size, dataset: Dataset, pool, reps: int, peak: float | None,
                 counts_once: bool, chunk_states: int = 256, max_seeds: int = 1, matmul_n: int = 1024,
                 noisy: float = 0.2):
        self.max_seeds, self.matmul_n, self.noisy = max_seeds, matmul_n, noisy
        self.size, self.dataset, self.pool, self.reps, self.peak = size, dataset, pool, reps, peak
        self.counts_once, self.chunk_states = counts_once, chunk_states
        self._trainers: dict = {}
        self._states: dict = {}
        self._compiled: dict = {}
        self.parts_flops: dict = {}  # (algo, variant) -> part -> FLOPs (jaxpr count)

    def trainer(self, algo: str, variant: str = "fused", **overrides):
        cfg = agent_config(algo, self.size, **{**overrides, **variant_overrides(variant, self.chunk_states)})
        key = (cfg, variant)
        if key not in self._trainers:
            self._trainers[key] = make_trainer(cfg, self.dataset, self.pool, walker2d_termination)
        return self._trainers[key]

    def step_trainer(self, algo: str, steps: int, variant: str = "fused", **overrides):
        """A trainer whose chunk is `steps` train steps and a one-state, one-step rollout."""
        over = dict(steps_per_chunk=steps, rollout_batch=1, rollout_horizon=1, buffer_capacity=1000)
        over.update(overrides)
        return self.trainer(algo, variant, **over)

    def states(self, trainer, num_seeds: int):
        """Initial states of `num_seeds` seeds (one init compile per state structure)."""
        c = trainer.config
        key = (c.num_active, c.critic_hidden, c.policy_hidden, c.buffer_capacity)
        have = self._states.get(key)
        if have is None or jax.tree_util.tree_leaves(have)[0].shape[0] < num_seeds:
            n = max(num_seeds, self.max_seeds)
            self._states[key] = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(0), n))
        return jax.tree_util.tree_map(lambda x: x[:num_seeds], self._states[key])

    def chunk(self, trainer, num_seeds: int):
        """(compiled run_chunk for num_seeds seeds, its FLOPs {"jaxpr", "xla"}, initial states)."""
        states = self.states(trainer, num_seeds)
        key = (trainer.config, id(trainer), num_seeds)
        if key not in self._compiled:
            compiled = trainer.run_chunk_seeds_jit.lower(states, trainer.data).compile()
            flops = {"jaxpr": count_flops(trainer.run_chunk_seeds_jit, states, trainer.data),
                     "xla": _cost_flops(compiled)}
            self._compiled[key] = (compiled, flops)
        compiled, flops = self._compiled[key]
        return compiled, flops, states

    def time_chunk(self, trainer, num_seeds: int, interleave: bool = False) -> dict:
        """Best-of-reps chunk time; with `interleave`, timed in rounds alternating with the dense
        matmul reference (`benchmarks.flops.interleaved_reference`), whose best and spread come back."""
        compiled, flops, states = self.chunk(trainer, num_seeds)
        box = {"s": states}

        def call():
            box["s"], metrics = compiled(box["s"], trainer.data)
            return box["s"], metrics

        if interleave:
            t = time_call(call, 1)  # warm-up (compiled already: first call moves the states)
            ref = interleaved_reference(call, matmul_n=self.matmul_n, rounds=self.reps, noisy_spread=self.noisy)
            t.update(min_s=ref["timed_s"], median_s=statistics.median(ref["timed_rounds_s"]),
                     all_s=ref["timed_rounds_s"], reference=ref)
            # parts and rollouts (timed alone) are compared with the best matmul seen so far
            self.peak = max(self.peak or 0.0, ref["matmul_flops_per_s"])
        else:
            t = time_call(call, self.reps)
        t["flops"], t["flops_xla"] = flops["jaxpr"], flops["xla"]
        return t


def _cost_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def bench_train_step(bench: Bench, algo: str, *, steps: int, seeds: Sequence[int],
                     variant: str = "fused") -> dict:
    """Step time, steps/s, XLA FLOPs, utilization, dispatch overhead and seed scaling.

    The step time is the marginal (T(R) - T(1)) / (R - 1); when that difference is within the
    timing noise (under 10 % of T(R), tiny sizes) it falls back to T(R) / R and says so.
    """
    t1_trainer = bench.step_trainer(algo, 1, variant)
    t1 = bench.time_chunk(t1_trainer, 1, interleave=steps <= 1)
    # R = 1: one step + a one-state rollout + the chunk's KL metric and diagnostics; loops
    # counted per trip. With R > 1 the per-step figure below is the marginal (F(R) - F(1)) / (R - 1).
    flops_step = t1["flops"]
    out: dict[str, Any] = {"algo": algo, "size": bench.size.name, "variant": variant, "R": steps,
                           "config": components.to_json(t1_trainer.config),
                           "flops_per_step": flops_step, "flops_per_step_xla": t1["flops_xla"],
                           "one_step_per_call_s": t1["min_s"], "one_step_first_call_s": t1["first_call_s"]}
    reference = t1.get("reference")
    per_seed = {}
    if steps > 1:
        tr_trainer = bench.step_trainer(algo, steps, variant)
        for s in sorted(set(seeds) | {1}):
            tr = bench.time_chunk(tr_trainer, s, interleave=s == 1)
            if s in seeds:
                per_seed[str(s)] = {"chunk_s": tr["min_s"], "chunk_median_s": tr["median_s"],
                                    "first_call_s": tr["first_call_s"],
                                    "steps_per_s": s * steps / tr["min_s"],
                                    "seed_steps_per_s_per_seed": steps / tr["min_s"]}
            if s == 1:
                # FLOPs on the same footing as the time: a chunk also refills the buffer and
                # computes its diagnostics once, so the step's FLOPs are the chunk's marginal FLOPs
                t_r, flops_r, reference = tr["min_s"], tr["flops"], tr["reference"]
        diff = t_r - t1["min_s"]
        if diff > 0.1 * t_r:
            step_s, how = diff / (steps - 1), "marginal (T(R) - T(1)) / (R - 1)"
            flops_step = (flops_r - flops_step) / (steps - 1)
        else:
            step_s, how = t_r / steps, "chunk average T(R) / R (difference within noise)"
            flops_step = flops_r / steps
        out["flops_per_step"] = flops_step
        out.update(
            chunk_R_s=t_r, step_estimate=how,
            dispatch={"R_calls_of_1_step_s": steps * t1["min_s"], "one_call_of_R_steps_s": t_r,
                      "overhead_per_call_s": max(t1["min_s"] - step_s, 0.0),
                      "speedup": steps * t1["min_s"] / t_r},
        )
    else:
        step_s = t1["min_s"]
        out.update(step_estimate="one step per call (includes dispatch)", dispatch=None)
    out["seeds"] = per_seed
    out["step_s"] = step_s
    out["steps_per_s"] = 1.0 / step_s
    out["flops_per_s"] = flops_step / step_s
    # against the matmul timed in the same rounds as the chunk of R steps (one seed)
    out["reference"] = reference
    out["matmul_flops_per_s"] = reference["matmul_flops_per_s"]
    out["noisy"] = reference["noisy"]
    out["utilization"] = out["flops_per_s"] / reference["matmul_flops_per_s"]
    return out


def bench_parts(bench: Bench, algo: str, variant: str = "fused") -> dict:
    """The model-state target, the real-state target and the belief update jitted alone.

    Each is the library function the train step calls (`algos.targets`), bound to the step
    trainer's own `Learner`: the same value clip, member rule and chunking as in training.
    """
    trainer = bench.step_trainer(algo, 1, variant)
    learner, cfg = trainer.learner, trainer.config
    state = _single(bench.states(trainer, 1))
    data = trainer.data
    idx = jnp.arange(cfg.model_batch) % data.obs.shape[0]
    ridx = jnp.arange(cfg.real_batch) % data.obs.shape[0]

    def setup(state, data):
        ctx = train.context(learner, state, data)
        real = buffer.Transition(data.obs[ridx], data.act[ridx], data.reward[ridx], data.next_obs[ridx], data.done[ridx])
        return ctx, real, common.make_value_fn(ctx, learner.parts, state.target_critic)

    def model_target(state, data, key):
        ctx, _, vf = setup(state, data)
        return targets.model_target(ctx, key, data.obs[idx], data.act[idx], vf)[0]

    def real_target(state, data, key):
        ctx, real, vf = setup(state, data)
        observed = targets.observed_backup(ctx, key, real, vf)
        return common.REAL_TARGETS[cfg.targets.real_target](ctx, key, real, observed, vf)

    fns = {"model_target": model_target, "real_target": real_target}
    if posterior.BELIEFS[cfg.belief.kind].needs_evidence:
        def belief_update(state, data, key):
            ctx, real, vf = setup(state, data)
            return targets.belief_update(ctx, key, real, targets.observed_backup(ctx, key, real, vf), vf)

        fns["belief_update"] = belief_update
    key = jax.random.PRNGKey(3)
    res = {}
    for name, fn in fns.items():
        compiled = jax.jit(fn).lower(state, data, key).compile()
        fl = count_flops(fn, state, data, key)  # lax.map chunks counted per trip
        t = time_call(lambda c=compiled: c(state, data, key), bench.reps)
        res[name] = {"s": t["min_s"], "flops": fl, "flops_xla": _cost_flops(compiled), "flops_per_s": fl / t["min_s"],
                     "utilization": fl / t["min_s"] / bench.peak if bench.peak else None}
    bench.parts_flops[(algo, variant)] = {k: v["flops"] for k, v in res.items()}
    return res


def bench_rollout(bench: Bench, algo: str) -> dict:
    """The chunk's rollout refill (`algos.train.begin_chunk` of the short scheme: start states,
    policy, all N members, the member selector, `lax.scan`, the buffer write) jitted alone at the
    size's B x H."""
    base = bench.step_trainer(algo, 1)
    state = _single(bench.states(base, 1))
    trainer = make_trainer(agent_config(algo, bench.size), bench.dataset, bench.pool, walker2d_termination)
    cfg = trainer.config  # the size's rollout_batch and horizon, the library's value_chunk

    def run(state, data, key):
        return train.begin_chunk(trainer.learner, state, data, key)

    key = jax.random.PRNGKey(4)
    compiled = jax.jit(run).lower(state, trainer.data, key).compile()
    t = time_call(lambda: compiled(state, trainer.data, key), bench.reps)
    flops = count_flops(run, state, trainer.data, key)  # the horizon scan counted per step
    n = cfg.rollout.batch * cfg.rollout.horizon
    return {"rollout_batch": cfg.rollout.batch, "horizon": cfg.rollout.horizon, "selector": cfg.targets.selector,
            "s": t["min_s"], "transitions_per_s": n / t["min_s"], "flops": flops, "flops_xla": _cost_flops(compiled),
            "flops_per_s": flops / t["min_s"], "utilization": flops / t["min_s"] / bench.peak if bench.peak else None}


def bench_scaling(bench: Bench, algo: str, grid: dict, steps: int) -> dict:
    """Step time (T(R) / R) and XLA FLOPs against N, M, K and the batch, one varied at a time."""
    out = {}
    for param, values in grid.items():
        rows = []
        for v in values:
            over = {"real_batch": max(v // 2, 1), "model_batch": max(v - v // 2, 1)} if param == "batch" else {param: v}
            if param == "num_active" and algo == "pmdb" and v < 2:
                continue
            trainer = bench.step_trainer(algo, steps, **over)
            t = bench.time_chunk(trainer, 1)
            rows.append({"value": v, "step_s": t["min_s"] / steps, "flops_per_step": t["flops"] / steps,
                         "flops_per_step_xla": t["flops_xla"] if bench.counts_once else t["flops_xla"] / steps})
        out[param] = rows
    return out


# ----------------------------------------------------------------------------- report


def _fmt(x, unit=""):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".strip()


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# jaxrl_bayes throughput",
        "",
        f"Device: {env['device_kind']} ({env['platform']}), {env['cpu_count']} CPUs, {env['processor'] or env['machine']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in env['load_average_start'])}, "
        f"at end {', '.join(f'{x:.2f}' for x in result.get('load_average_end', []))}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + f", python {env['python']}.",
        f"Run at {env['time']}; options: `{result['argv']}`.",
        "",
        f"Dense float32 matmul ({result['matmul']['n']}^2): {_fmt(result['matmul']['flops_per_s'], 'FLOP/s')} "
        f"at the start, {_fmt(result['matmul_end']['flops_per_s'], 'FLOP/s')} at the end (best of "
        f"{result['options']['reps'] + 2} each). A train-step row's utilization is against the matmul timed "
        f"in rounds alternating with that row's chunks (best of {result['options']['reps'] + 1} rounds; "
        f"'noisy' = its readings spread by more than {100 * result['options']['noisy']:.0f} %); parts and "
        f"rollouts against the best matmul reading so far. FLOPs are counted from the jaxpr (loops times "
        f"their trips); XLA's cost analysis counts a scan body once: {result['xla_scan_counts_body_once']}.",
        "",
        "## Train step (one seed)",
        "",
        "| algo | size | variant | step ms | steps/s | GFLOP/step | GFLOP/step (XLA's count) | GFLOP/s | matmul GFLOP/s | utilization | T(R)/R ms | 1 step/call ms | R | R x 1-step calls / 1 call of R |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["train_step"]:
        d = r.get("dispatch") or {}
        lines.append(
            f"| {r['algo']} | {r['size']} | {r['variant']} | {1e3 * r['step_s']:.2f} | {r['steps_per_s']:.3g} | "
            f"{r['flops_per_step'] / 1e9:.3g} | {r['flops_per_step_xla'] / 1e9:.3g} | {r['flops_per_s'] / 1e9:.3g} | "
            f"{r['matmul_flops_per_s'] / 1e9:.3g} | "
            f"{100 * (r.get('utilization') or float('nan')):.0f} %{' (noisy)' if r.get('noisy') else ''} | "
            f"{1e3 * r.get('chunk_R_s', r['step_s'] * r['R']) / r['R']:.2f} | "
            f"{1e3 * r['one_step_per_call_s']:.2f} | {r['R']} | "
            f"{d.get('speedup', float('nan')):.2f}x |")
    lines += ["", "Reference rows (NOT this run, NOT this hardware unless said so):", "",
              "| reference | ms per iteration |", "|---|---|"]
    lines += [f"| {r['what']} | {r['ms_per_step']:.1f} |" for r in REFERENCE_ROWS]
    seeds_rows = [(r, s, v) for r in result["train_step"] for s, v in r.get("seeds", {}).items()]
    if seeds_rows:
        lines += ["", "## Seeds vmapped (chunks of R steps)", "",
                  "| algo | size | variant | seeds | chunk ms | total steps/s | steps/s per seed |", "|---|---|---|---|---|---|---|"]
        for r, s, v in seeds_rows:
            lines.append(f"| {r['algo']} | {r['size']} | {r['variant']} | {s} | {1e3 * v['chunk_s']:.1f} | "
                         f"{v['steps_per_s']:.3g} | {v['seed_steps_per_s_per_seed']:.3g} |")
    if result.get("parts"):
        lines += ["", "## Where the time goes (parts jitted alone, one seed)", "",
                  "| algo | size | variant | part | ms | share of step | GFLOP | GFLOP/s | utilization |",
                  "|---|---|---|---|---|---|---|---|---|"]
        steps = {(r["algo"], r["size"], r["variant"]): r["step_s"] for r in result["train_step"]}
        for p in result["parts"]:
            step = steps.get((p["algo"], p["size"], p["variant"]))
            for name, v in p["parts"].items():
                share = f"{100 * v['s'] / step:.0f} %" if step else "-"
                util = f"{100 * v['utilization']:.0f} %" if v.get("utilization") else "-"
                lines.append(f"| {p['algo']} | {p['size']} | {p['variant']} | {name} | {1e3 * v['s']:.2f} | {share} | "
                             f"{v['flops'] / 1e9:.3g} | {v['flops_per_s'] / 1e9:.3g} | {util} |")
    if result.get("rollout"):
        lines += ["", "## Model rollouts (jitted alone)", "",
                  "| algo | size | selector | B x H | ms | transitions/s | GFLOP | utilization |", "|---|---|---|---|---|---|---|---|"]
        for r in result["rollout"]:
            util = f"{100 * r['utilization']:.0f} %" if r.get("utilization") else "-"
            lines.append(f"| {r['algo']} | {r['size']} | {r['selector']} | {r['rollout_batch']} x {r['horizon']} | "
                         f"{1e3 * r['s']:.1f} | {r['transitions_per_s']:.3g} | {r['flops'] / 1e9:.3g} | {util} |")
    if result.get("dynamics"):
        lines += ["", "## Dynamics pool training", "",
                  "| size | members | hidden | member-samples/s | GFLOP/s (analytic 6 x MACs) | utilization |", "|---|---|---|---|---|---|"]
        peak = result["matmul"]["flops_per_s"]
        for name, d in result["dynamics"].items():
            lines.append(f"| {name} | {d['num_members']} | {d['hidden']} | {d['member_samples_per_s']:.3g} | "
                         f"{d['flops_per_s_analytic'] / 1e9:.3g} | {100 * d['flops_per_s_analytic'] / peak:.0f} % |")
    if result.get("scaling"):
        sc = result["scaling"]
        lines += ["", f"## Scaling ({sc['algo']}, base size {sc['size']}, one parameter varied)", "",
                  "| parameter | value | step ms | GFLOP/step | ms relative to first | FLOPs relative to first |",
                  "|---|---|---|---|---|---|"]
        for param, rows in sc["curves"].items():
            for r in rows:
                lines.append(f"| {param} | {r['value']} | {1e3 * r['step_s']:.2f} | {r['flops_per_step'] / 1e9:.3g} | "
                             f"{r['step_s'] / rows[0]['step_s']:.2f} | {r['flops_per_step'] / rows[0]['flops_per_step']:.2f} |")
    if result.get("devices"):
        lines += ["", "## Devices (seeds laid over a device mesh; one process per count)", "",
                  "| devices | seeds | chunk ms (R steps) | seed-steps/s | relative to 1 device |", "|---|---|---|---|---|"]
        base = next((d["seed_steps_per_s"] for d in result["devices"] if d.get("devices") == 1 and "error" not in d), None)
        for d in result["devices"]:
            if "error" in d:
                lines.append(f"| {d['devices']} | - | failed: {d['error']} | - | - |")
                continue
            rel = f"{d['seed_steps_per_s'] / base:.2f}x" if base else "-"
            lines.append(f"| {d['devices']} | {d['seeds']} | {1e3 * d['chunk_s']:.1f} | {d['seed_steps_per_s']:.3g} | {rel} |")
        lines += ["", f"Devices are {result['devices'][0].get('platform', '?')} devices"
                  + (" forced on the host (--xla_force_host_platform_device_count): they share the same CPU cores."
                     if result["devices"][0].get("platform") == "cpu" else ".")]
    lines += ["", "Notes: step ms = (T(R) - T(1)) / (R - 1) from chunks of R and of 1 step (one-state rollout), best of "
              "the repetitions, or T(R) / R where that difference is within the noise (`step_estimate` in the JSON); "
              "utilization = FLOPs (jaxpr count) / time / matmul FLOP/s timed interleaved with the row. 'chunked' = "
              "the successors' soft value evaluated in chunks of --chunk-states states; its FLOPs are counted per "
              "chunk (they match the one-batch variant's). The machine is shared: see the load "
              "average; on a loaded machine every figure moves by tens of percent between runs.", ""]
    return "\n".join(lines)


def plots(result: dict, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    sc = result.get("scaling")
    if sc:
        curves = sc["curves"]
        fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.5), squeeze=False)
        for ax, (param, rows) in zip(axes[0], curves.items()):
            x = np.asarray([r["value"] for r in rows], float)
            t = np.asarray([r["step_s"] for r in rows])
            f = np.asarray([r["flops_per_step"] for r in rows])
            ax.plot(x, t / t[0], "o-", label="step time")
            ax.plot(x, f / f[0], "s--", label="FLOPs (XLA)")
            ax.plot(x, x / x[0], ":", color="gray", label="proportional")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(param)
            ax.set_ylabel(f"relative to {param} = {rows[0]['value']}")
            ax.set_title(f"{sc['algo']} ({sc['size']}): {param}", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, "scaling.png")
        _save_fig(fig, path)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    any_line = False
    for r in result["train_step"]:
        if r.get("seeds"):
            s = sorted(int(k) for k in r["seeds"])
            ax.plot(s, [r["seeds"][str(k)]["steps_per_s"] for k in s], "o-", label=f"{r['algo']} {r['size']} {r['variant']}")
            any_line = True
    ax.set_xlabel("seeds vmapped")
    ax.set_ylabel("train steps / s (all seeds)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    if any_line:
        ax.legend(fontsize=7)
    ax.set_title(result["environment"]["device_kind"])
    fig.tight_layout()
    path = os.path.join(out_dir, "seeds.png")
    _save_fig(fig, path)
    plt.close(fig)
    written.append(path)
    return written


def _save_fig(fig, path):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path) + ".", dir=directory, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- main


def run(options: Options, argv: Sequence[str] = ()) -> dict:
    """Runs the benchmark described by `options` (see `parse_options`); writes and returns the result."""
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not options.silent else (lambda *a: None)
    out_dir = options.out or os.path.join("benchmarks", "results", _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    result: dict[str, Any] = {"argv": " ".join(argv),
                              "options": {**dataclasses.asdict(options), "scaling_grid": options.scaling_grid},
                              "environment": environment(), "reference_rows": REFERENCE_ROWS}
    log(f"device {result['environment']['device_kind']}, load {result['environment']['load_average_start']}")
    result["matmul"] = matmul_throughput(options.matmul_n, options.reps + 2)
    peak = result["matmul"]["flops_per_s"]
    log(f"matmul {options.matmul_n}: {peak / 1e9:.1f} GFLOP/s")
    counts_once = scan_counts_body_once()
    result["xla_scan_counts_body_once"] = counts_once
    result["train_step"], result["parts"], result["rollout"], result["dynamics"] = [], [], [], {}
    for size_name in options.sizes:
        size = SIZES[size_name]
        dataset = synthetic_dataset(size.num_data)
        n_pool = size.num_active
        if options.scaling and size_name == options.scaling_size:
            n_pool = max([n_pool, *options.scaling_grid.get("num_active", ())])
        t0 = time.perf_counter()
        pool, dyn = dynamics_bench(dataset, size, n_pool)
        result["dynamics"][size_name] = dyn
        log(f"[{size_name}] dynamics pool of {n_pool}: {dyn['member_samples_per_s']:.3g} member-samples/s "
            f"({time.perf_counter() - t0:.1f} s)")
        bench = Bench(size, dataset, pool, options.reps, peak, counts_once, options.chunk_states,
                      max_seeds=max(options.seeds), matmul_n=options.matmul_n, noisy=options.noisy)
        for algo in options.algos:
            for variant in options.variants:
                t0 = time.perf_counter()
                r = bench_train_step(bench, algo, steps=options.steps, seeds=options.seeds, variant=variant)
                result["train_step"].append(r)
                log(f"[{size_name}] {algo} {variant}: {1e3 * r['step_s']:.2f} ms/step, "
                    f"{r['flops_per_step_xla'] / 1e9:.3g} GFLOP, util {100 * r['utilization']:.0f} % "
                    f"({time.perf_counter() - t0:.1f} s)")
                if options.parts:
                    p = bench_parts(bench, algo, variant)
                    result["parts"].append({"algo": algo, "size": size_name, "variant": variant, "parts": p})
                    log(f"[{size_name}] {algo} {variant} parts: " +
                        ", ".join(f"{k} {1e3 * v['s']:.1f} ms" for k, v in p.items()))
            if options.rollouts:
                ro = bench_rollout(bench, algo)
                ro.update(algo=algo, size=size_name)
                result["rollout"].append(ro)
                log(f"[{size_name}] {algo} rollout: {ro['transitions_per_s']:.3g} transitions/s")
        if options.scaling and size_name == options.scaling_size:
            t0 = time.perf_counter()
            curves = bench_scaling(bench, options.scaling_algo, options.scaling_grid, options.scaling_steps)
            result["scaling"] = {"algo": options.scaling_algo, "size": size_name, "curves": curves}
            log(f"[{size_name}] scaling done ({time.perf_counter() - t0:.1f} s)")
    if options.devices:
        t0 = time.perf_counter()
        size = SIZES[options.sizes[0]]
        agent = {**dataclasses.asdict(size), "algo": options.algos[0]}
        agent = {k: (list(v) if isinstance(v, tuple) else v) for k, v in agent.items()
                 if k in size.agent_overrides() or k == "algo"}
        result["devices"] = devices_bench.devices_row(list(options.devices), seeds=max(options.devices),
                                                      steps=options.steps, reps=options.reps, agent=agent)
        log(f"[{size.name}] devices {list(options.devices)}: " + ", ".join(
            f"{d.get('seed_steps_per_s', float('nan')):.3g}" for d in result["devices"])
            + f" seed-steps/s ({time.perf_counter() - t0:.1f} s)")
    result["load_average_end"] = list(os.getloadavg())
    # the machine may be shared: a second matmul at the end shows how much the load moved
    result["matmul_end"] = matmul_throughput(options.matmul_n, options.reps + 2)
    log(f"matmul {options.matmul_n} at the end: {result['matmul_end']['flops_per_s'] / 1e9:.1f} GFLOP/s")
    md = markdown(result)
    try:
        _atomic_write(os.path.join(out_dir, "throughput.json"), json.dumps(result, indent=1, default=str).encode())
        _atomic_write(os.path.join(out_dir, "throughput.md"), md.encode())
    except OSError:
        print(md)  # a full disk does not lose the measurements: the table goes to stdout
        raise
    result["plots"] = plots(result, out_dir)
    result["out_dir"] = out_dir
    if not options.silent:
        print(md)
        print(f"written to {out_dir}", file=sys.stderr)
    return result


PROG = "python -m benchmarks.throughput"


@dataclasses.dataclass(frozen=True)
class Options:
    """Throughput of the jitted train step, model rollouts and dynamics training."""

    algos: tuple[str, ...] = ALGOS  # of rrpi, pspo, pmdb (and other named algorithms)
    sizes: tuple[SizeName, ...] = ("small", "paper")  # problem sizes (SIZES; cpu-* from the cpu presets)
    steps: int = 5  # R: train steps per chunk (>= 2 to separate dispatch)
    reps: int = 3  # timed repetitions (best is reported)
    seeds: tuple[int, ...] = (1, 2, 4, 8)  # seed counts to vmap
    variants: tuple[Literal["fused", "chunked"], ...] = ("fused",)  # fused (the library) | chunked (experiment)
    chunk_states: int = 256  # states per chunk of the chunked variant (refused without chunked in --variants)
    parts: bool = True  # the per-part breakdown
    rollouts: bool = True  # rollout throughput
    scaling: bool = True  # the scaling curves (--no-scaling refuses a given --scaling-* option: it would do nothing)
    scaling_size: Optional[SizeName] = None  # base size of the scaling curves: one of --sizes (None: the first of them)
    scaling_algo: str = "pmdb"  # algorithm of the scaling curves
    scaling_steps: int = 2  # R of the scaling curves' chunks
    matmul_n: int = 2048  # size of the dense float32 matmul reference
    noisy: float = 0.2  # flag a row noisy when its interleaved matmul readings spread by more than this fraction
    devices: tuple[int, ...] = (1, 2, 4)  # device counts of the devices row (forced host devices on CPU; none: skip it)
    quick: bool = False  # tiny size, pmdb + pspo, R = 2, 2 reps, seeds 1 and 2, matmul 512, scaling in M only, devices 1, 2, 4; options given beside it keep their values (--devices with no count skips them)
    out: Optional[str] = None  # output folder (None: benchmarks/results/<timestamp>/); exit status 2: bad options, 74: the folder cannot be written (read-only, full disk)
    silent: bool = False  # no progress or table on the terminal
    debug: bool = False  # print the traceback of a user error too

    def __post_init__(self):
        if self.scaling_size is None and self.sizes:  # not given: the first size measured
            object.__setattr__(self, "scaling_size", self.sizes[0])

    @property
    def scaling_grid(self) -> dict:
        """The scaling curves' values of each parameter: DEFAULT_SCALING, M only with --quick."""
        return {"num_candidates": (2, 4)} if self.quick else dict(DEFAULT_SCALING)


# --quick's values; a field the command line sets keeps its own (every distinct trainer costs a
# ~10 s compile there: few of them)
QUICK = dict(algos=("pmdb", "pspo"), sizes=("tiny",), steps=2, reps=2, seeds=(1, 2), matmul_n=512, scaling_steps=2)


def quick_options(o: Options, given: Container[str] = ()) -> Options:
    """`o` with --quick's values (`QUICK`) for the fields that `given` (the fields the command
    line set) does not hold: an explicit --algos, --sizes, --steps, --reps, --seeds, --matmul-n
    or --scaling-steps wins. The scaling curves' size is a given --scaling-size, else the first
    of the sizes (tiny unless --sizes is given); their grid is M only (`Options.scaling_grid`)."""
    return dataclasses.replace(
        o, **{k: v for k, v in QUICK.items() if k not in given},
        scaling_size=o.scaling_size if "scaling_size" in given else None)


# The options that only the scaling curves read: given with --no-scaling they would do nothing.
SCALING_ONLY = ("scaling_size", "scaling_algo", "scaling_steps")


def _flags(fields: Sequence[str]) -> str:
    return ", ".join("--" + f.replace("_", "-") for f in fields)


def check_options(o: Options, given: Container[str] = ()) -> None:
    """Raises BenchmarkError naming every problem of `o` at once (before anything is built).

    Args:
      given: the fields the command line set (`cli.given_fields`): an option given where it has
        no effect (a scaling option with --no-scaling, --chunk-states without the chunked
        variant) is refused.
    """
    problems = []
    from jaxrl_bayes.algos import ALGORITHMS
    from jaxrl_bayes.registry import closest

    for a in o.algos:
        if a not in ALGORITHMS:
            problems.append(f"unknown algorithm {a!r} (choose from {sorted(ALGORITHMS)}){closest(a, ALGORITHMS)}")
    if o.scaling_algo not in ALGORITHMS:  # checked with --no-scaling too: a typo is never right
        problems.append(f"--scaling-algo: unknown algorithm {o.scaling_algo!r} (choose from {sorted(ALGORITHMS)})"
                        f"{closest(o.scaling_algo, ALGORITHMS)}")
    for s in o.sizes:
        if s not in SIZES:
            problems.append(f"unknown size {s!r} (choose from {sorted(SIZES)})")
    for v in o.variants:
        if v not in ("fused", "chunked"):
            problems.append(f"unknown variant {v!r} (choose fused or chunked)")
    empty = [f"--{name}" for name in ("algos", "sizes", "seeds", "variants") if not getattr(o, name)]
    if empty:  # nothing measured (--devices alone may be empty: no devices row)
        problems.append(f"{', '.join(empty)} " + ("needs at least one value" if len(empty) == 1 else
                                                  "need at least one value each")
                        + " (leave an option out for its default)")
    if o.scaling and o.sizes and o.scaling_size not in o.sizes:
        problems.append(f"--scaling-size {o.scaling_size!r} must be one of --sizes {list(o.sizes)} "
                        f"(leave it out for the first of them, or pass --no-scaling)")
    idle = [f for f in SCALING_ONLY if f in given] if not o.scaling else []
    if idle:
        problems.append(f"{_flags(idle)} " + ("has" if len(idle) == 1 else "have")
                        + " no effect with --no-scaling: drop " + ("it" if len(idle) == 1 else "them")
                        + ", or drop --no-scaling")
    if "chunk_states" in given and "chunked" not in o.variants:
        problems.append("--chunk-states has no effect without chunked in --variants: drop it, "
                        "or pass --variants chunked (or fused chunked)")
    if o.devices and any(d < 1 or max(o.devices) % d for d in o.devices):
        problems.append(f"--devices {list(o.devices)}: each count must divide the largest (its seed count)")
    if o.steps < 1 or o.reps < 1 or o.scaling_steps < 1 or any(s < 1 for s in o.seeds):
        problems.append("--steps, --reps, --scaling-steps and --seeds must be >= 1")
    if "pmdb" in o.algos or (o.scaling and o.scaling_algo == "pmdb"):
        for s in o.sizes:
            if s in SIZES and SIZES[s].num_active < 2:
                problems.append(f"pmdb uses the 2nd smallest member target: size {s!r} needs N >= 2")
    if problems:
        raise BenchmarkError("; ".join(problems))


def parse_options(argv: Sequence[str]) -> Optional[Options]:
    """The options of a command line, --quick applied and checked; None when --help was printed.

    Raises:
      cli.UsageError: an unknown option or a bad value (BenchmarkError: bad names or counts), as
        one line.
    """
    argv = list(argv)
    o = cli.parse(Options, argv, prog=PROG)
    if o is None:
        return None
    given = cli.given_fields(Options, argv)
    if o.quick:
        o = quick_options(o, given)
    check_options(o, given)
    return o


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad options, 74 --out cannot be written)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    options = parse_options(argv)
    if options is None:  # --help
        return cli.EXIT_OK
    run(options, argv)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
