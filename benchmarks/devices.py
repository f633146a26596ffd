"""Seeds per second against the number of devices (jaxrl_bayes.sharding), one process each.

    python -m benchmarks.devices --devices 1 2 4 --seeds 4

The device count of a JAX process is fixed when JAX starts, so every count runs in its own
subprocess; on CPU the devices are `--xla_force_host_platform_device_count` host devices, which
share the machine's cores (the row shows what splitting the seed axis costs or gains there; on
GPUs each device is a chip). Each process trains the same S seeds (same keys, same trainer)
laid over its D devices and times `run_chunk_seeds` after compilation, best of `reps` calls.

Numbers: `seed_steps_per_s` = S x R / chunk time (train steps of all seeds per second).

Each subprocess is this module run as `python -m benchmarks.devices --worker SPEC` (SPEC: the
JSON of `devices_row`); `--worker` is internal, handled before the options are parsed, and not
shown by --help.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from experiments import cli

REPO = Path(__file__).resolve().parents[1]
PROG = "python -m benchmarks.devices"
WORKER = "--worker"  # devices_row's subprocesses: `--worker SPEC`, not a user option


def _worker(seeds: int, steps: int, reps: int, agent: dict, num_data: int) -> dict:
    """Runs in the subprocess: build, shard, compile, time. Returns one row."""
    import jax

    from benchmarks.synthetic import synthetic_dataset
    from jaxrl_bayes import dynamics, sharding
    from jaxrl_bayes.algos import algo_config, make_trainer
    from jaxrl_bayes.termination import walker2d_termination

    ds = synthetic_dataset(num_data)
    pool, _ = dynamics.train_pool(jax.random.PRNGKey(0), ds.observations, ds.actions, ds.rewards,
                                  ds.next_observations,
                                  dynamics.DynamicsConfig(num_members=agent["num_active"], hidden=(32, 32),
                                                          max_epochs=1))
    config = algo_config(agent.pop("algo"), **{k: tuple(v) if isinstance(v, list) else v for k, v in agent.items()},
                         steps_per_chunk=steps)
    trainer, mesh = sharding.shard_trainer(make_trainer(config, ds, pool, walker2d_termination), seeds)
    states = sharding.init_sharded(trainer, jax.random.split(jax.random.PRNGKey(0), seeds), mesh)
    t0 = time.perf_counter()
    states, _ = trainer.run_chunk_seeds(states)
    jax.block_until_ready(states)
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        states, _ = trainer.run_chunk_seeds(states)
        jax.block_until_ready(states)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"devices": jax.device_count(), "state_devices": sharding.num_shards(states), "seeds": seeds,
            "steps_per_chunk": steps, "chunk_s": best, "first_call_s": first, "all_s": times,
            "seed_steps_per_s": seeds * steps / best, "platform": jax.devices()[0].platform}


def devices_row(device_counts: Sequence[int], *, seeds: int, steps: int, reps: int, agent: dict,
                num_data: int = 2000, timeout: float = 900) -> list[dict]:
    """Seeds/s with each device count, each in a fresh subprocess (forced host devices on CPU).

    Args:
      device_counts: e.g. (1, 2, 4); each must divide `seeds`.
      seeds, steps, reps: S seeds, R steps per chunk, timed calls per count (best is kept).
      agent: AgentConfig overrides incl. "algo" (JSON-able; tuples as lists).
    Returns:
      one dict per count (see `_worker`), or {"devices": D, "error": "..."} where a process failed.
    """
    rows = []
    for d in device_counts:
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        if not _has_accelerator():
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={d}"
        else:  # accelerators: the first d of them
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(d))
        spec = json.dumps({"seeds": seeds, "steps": steps, "reps": reps, "agent": agent, "num_data": num_data})
        proc = subprocess.run([sys.executable, "-m", "benchmarks.devices", WORKER, spec], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            rows.append({"devices": d, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def _has_accelerator() -> bool:
    import jax

    return jax.devices()[0].platform != "cpu"


@dataclasses.dataclass(frozen=True)
class Options:
    """Seeds per second against the number of devices (jaxrl_bayes.sharding), one process per
    device count."""

    devices: tuple[int, ...] = (1, 2, 4)  # device counts, one process each; each must divide --seeds
    seeds: int = 4  # S: seeds trained together, laid over the devices
    steps: int = 5  # R: train steps per chunk
    reps: int = 3  # timed calls per device count (the best is kept)
    algo: str = "rrpi"  # algorithm to train
    debug: bool = False  # print the traceback of a user error too


def _worker_spec(argv: Sequence[str]) -> Optional[str]:
    """SPEC of `--worker SPEC` / `--worker=SPEC` (devices_row's subprocesses), else None."""
    if len(argv) == 2 and argv[0] == WORKER:
        return argv[1]
    if len(argv) == 1 and argv[0].startswith(WORKER + "="):
        return argv[0][len(WORKER) + 1:]
    return None


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point; returns the exit code (0 done, 2 bad options)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = _worker_spec(argv)
    if spec:
        spec = json.loads(spec)
        print(json.dumps(_worker(spec["seeds"], spec["steps"], spec["reps"], spec["agent"], spec["num_data"])))
        return 0
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    args = cli.parse(Options, argv, prog=PROG)
    if args is None:  # --help
        return cli.EXIT_OK
    if not args.devices:
        raise cli.UsageError("--devices needs at least one device count")
    bad = [d for d in args.devices if d < 1 or args.seeds % d]
    if bad:
        raise cli.UsageError(f"--seeds {args.seeds} must be a multiple of every --devices count (not of {bad})")
    agent = dict(algo=args.algo, num_active=2, num_next_samples=1, num_candidates=2, real_batch=8, model_batch=8,
                 critic_hidden=[16], policy_hidden=[16], rollout_batch=8, rollout_horizon=2, buffer_capacity=256)
    rows = devices_row(list(args.devices), seeds=args.seeds, steps=args.steps, reps=args.reps, agent=agent)
    for r in rows:
        print(json.dumps(r))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
