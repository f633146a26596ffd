"""Interleaved A/B of the fused soft value against chunked evaluation (the model-state target's cost).

    python -m benchmarks.value_chunking --algo pmdb --size paper --chunks 64 256 1024 --rounds 3

Builds the step trainer of `benchmarks.throughput` (chunks of R train steps, one-state rollout)
once with the library's fused soft value and once per chunk size with the successors' soft
value evaluated by `lax.map` over chunks (`AgentConfig.value_chunk`), then times them in
alternation, round after round, so that a shared machine's load hits every variant alike.
Prints, and writes as JSON with `--out`, the best and median chunk time of each variant.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from typing import Optional, Sequence

import jax

from benchmarks import throughput as tp
from experiments import cli

PROG = "python -m benchmarks.value_chunking"


@dataclasses.dataclass(frozen=True)
class Options:
    """Interleaved A/B of the fused soft value against chunked evaluation:
    best and median chunk time of each variant."""

    algo: str = "pmdb"  # algorithm whose step trainer is timed (jaxrl_bayes.algos.ALGORITHMS)
    size: tp.SizeName = "paper"  # benchmark size (benchmarks.throughput.SIZES, its --sizes)
    chunks: tuple[int, ...] = (64, 256, 1024)  # states per chunk
    steps: int = 2  # train steps per timed call
    rounds: int = 3  # timed calls of every variant, in alternation
    out: Optional[str] = None  # JSON file to write
    debug: bool = False  # print the traceback of a user error too


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad options)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def parse_options(argv: Sequence[str]) -> Optional[Options]:
    """The options of a command line, checked before anything is built (the dynamics pool trains
    first: a bad name must not wait for it); None when --help was printed.

    Raises:
      cli.UsageError: an unknown option, a bad value or an unknown --algo (naming the closest
        registered one), as one line.
    """
    from jaxrl_bayes.algos import ALGORITHMS
    from jaxrl_bayes.registry import closest

    o = cli.parse(Options, list(argv), prog=PROG)
    if o is None:
        return None
    problems = []
    if o.algo not in ALGORITHMS:
        problems.append(f"--algo: unknown algorithm {o.algo!r} (choose from {sorted(ALGORITHMS)})"
                        f"{closest(o.algo, ALGORITHMS)}")
    if not o.chunks:
        problems.append("--chunks needs at least one chunk size")
    if any(c < 1 for c in o.chunks):  # 0 would be the fused variant under a chunked name
        problems.append(f"--chunks are states per chunk, each >= 1 (got {list(o.chunks)})")
    for name in ("steps", "rounds"):
        if getattr(o, name) < 1:
            problems.append(f"--{name} must be >= 1 (got {getattr(o, name)})")
    if problems:
        raise cli.UsageError("; ".join(problems))
    return o


def _main(argv: list[str], ctx: cli.Context) -> int:
    o = parse_options(argv)
    if o is None:  # --help
        return cli.EXIT_OK
    run(o)
    return cli.EXIT_OK


def run(o: Options) -> dict:
    """Times the variants; prints the table and writes `o.out`. Returns the result."""
    size = tp.SIZES[o.size]
    dataset = tp.synthetic_dataset(size.num_data)
    pool, _ = tp.dynamics_bench(dataset, size, size.num_active)
    variants = [("fused", None)] + [(f"chunked-{c}", c) for c in o.chunks]
    runners = {}
    for name, chunk in variants:
        bench = tp.Bench(size, dataset, pool, 1, None, True, chunk or 256, max_seeds=1)
        trainer = bench.step_trainer(o.algo, o.steps, "fused" if chunk is None else "chunked")
        t0 = time.perf_counter()
        compiled, flops, states = bench.chunk(trainer, 1)
        jax.block_until_ready(compiled(states, trainer.data))
        print(f"{name}: compiled + first call {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runners[name] = (compiled, states, trainer.data)
    times = {name: [] for name, _ in variants}
    for r in range(o.rounds):
        for name, _ in variants:
            compiled, states, data = runners[name]
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(states, data))
            times[name].append((time.perf_counter() - t0) / o.steps)
        print(f"round {r + 1}: " + ", ".join(f"{n} {1e3 * t[-1]:.0f} ms" for n, t in times.items()),
              file=sys.stderr)
    result = {"algo": o.algo, "size": o.size, "steps_per_call": o.steps, "load_average": list(os.getloadavg()),
              "step_s": {n: {"min": min(t), "median": statistics.median(t), "all": t} for n, t in times.items()}}
    for n, t in times.items():
        print(f"{n:>14}: best {1e3 * min(t):.0f} ms/step, median {1e3 * statistics.median(t):.0f} ms/step")
    if o.out:
        tp._atomic_write(o.out, json.dumps(result, indent=1).encode())
    return result


if __name__ == "__main__":
    sys.exit(main())
