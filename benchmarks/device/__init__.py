"""Everything a GPU machine needs to produce the paper-size figures in one call.

- `python3 -m benchmarks.device` (`script.py`): the call itself: offline wheel install, GPU
  check, `benchmarks.throughput` at the paper sizes, a short `experiments.run` with the paper
  preset, `device.json` and `device.md`. `--dry-run`: the same at tiny sizes on a CPU.
- `python -m benchmarks.device.wheels` (`wheels.py`): gathers the wheels the GPU machine lacks
  into `benchmarks/device/wheels/` (ignored by git, carried along with the call).
- `install.py`, `worker.py`: the install step and the script's own subprocess work.

The call: `python3 -m benchmarks.device` in the repository root, with `benchmarks/device/wheels`
carried along and a timeout of 540 s (the stages' own budget, `--budget-s`, is 450 s).
"""
