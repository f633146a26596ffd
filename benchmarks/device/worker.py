"""The device script's own pieces of work, each run in a subprocess of `benchmarks.device.script`
(which bounds its time):

    python -m benchmarks.device.worker probe OUT.json MATMUL_N REPS GPU_ONLY
    python -m benchmarks.device.worker hopper-file PATH NUM

- `probe`: JAX's devices, versions, and the dense matmul references measured in this run:
  float32 at JAX's default precision (what the train step's matmuls run at), float32 at
  "highest" precision, and bfloat16 (`benchmarks.throughput.matmul_throughput`).
- `hopper-file`: a D4RL-schema file of NUM hopper-shaped transitions (`benchmarks.synthetic`)
  written by `jaxrl_bayes.collect.writers.write_d4rl_hdf5`, for the short `experiments.run`.

Internal: the arguments are positional and checked only by the script that builds them.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

MATMULS = (("float32", None), ("float32", "highest"), ("bfloat16", None))


def probe(out: str, matmul_n: int, reps: int, gpu_only: bool = False) -> dict:
    import importlib.metadata

    import jax

    from benchmarks import throughput
    from jaxrl_bayes.io import atomic_open

    devices = jax.devices()
    rec = {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "devices": [str(d) for d in devices],
        "versions": {p: _version(importlib.metadata, p) for p in
                     ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "numpy")},
        "environment": throughput.environment(),
        "matmul": {},
    }
    for dtype, precision in MATMULS if rec["platform"] == "gpu" or not gpu_only else ():
        key = dtype + ("" if precision is None else f"_{precision}")
        rec["matmul"][key] = throughput.matmul_throughput(matmul_n, reps, dtype=dtype, precision=precision)
    with atomic_open(out, "w") as f:
        json.dump(rec, f, indent=1, default=str)
    return rec


def _version(metadata, name: str):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def hopper_file(path: str, num: int) -> str:
    import numpy as np

    from benchmarks.synthetic import EPISODE_LEN, synthetic_arrays
    from jaxrl_bayes.collect.episodes import LevelData
    from jaxrl_bayes.collect.writers import write_d4rl_hdf5

    arrays = synthetic_arrays(num, "hopper")
    arrays["terminals"] = arrays["terminals"].astype(bool)
    arrays["timeouts"] = arrays["timeouts"].astype(bool)
    starts = np.arange(0, num, EPISODE_LEN)
    level = LevelData(arrays, starts, np.zeros(len(starts), bool))
    # no env_id recorded: the command gives --eval-env, so the file works with or without it
    return str(write_d4rl_hdf5(path, level, {"generated_by": "benchmarks.device (synthetic, hopper-shaped)"}))


def main(argv: Sequence[str]) -> int:
    task, *args = argv
    if task == "probe":
        rec = probe(args[0], int(args[1]), int(args[2]), args[3] == "1")
        print(f"{rec['platform']} {rec['device_kind']} x{rec['num_devices']}")
    elif task == "hopper-file":
        print(hopper_file(args[0], int(args[1])))
    else:
        print(f"error: unknown task {task!r} (probe, hopper-file)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
