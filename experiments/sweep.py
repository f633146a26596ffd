"""`python -m experiments.sweep`: a grid of runs (algorithm x dataset) on Ray, then the report.

    python -m experiments.sweep --algos rrpi pspo pmdb bc --datasets hopper-medium-replay-v2 \
        walker2d-medium-replay-v2 --seeds 4 --preset cpu --out sweeps/table1
    python -m experiments.sweep ... --address auto                 # an existing Ray cluster
    python -m experiments.sweep ... --address ray://HEAD:10001 --gpus-per-trial 0.5
    python -m experiments.sweep ... -- --run.total_steps 2000      # after `--`: every trial's
                                                                   # extra experiments.run options
                                                                   # (those its algorithm reads)

One trial per (algorithm, dataset). A trial is exactly `experiments.run.main(argv)` (the same
code path as the command line) with `--algo A --dataset D --seeds S --preset P --out
OUT/<dataset>/<algo>` in a Ray task of its own worker process; its seeds train together with
vmap, over all devices the trial sees. Without `--address` a local Ray is started on this
machine (`ray.init(num_cpus=...)`, no dashboard).

- Resumable: a trial whose run directory holds results.json is skipped; one with an unfinished
  run (config.json, no results.json) continues it (`experiments.run --resume`).
- A failed trial is reported with its error (and its log file) and does not stop the others;
  the exit status is 1 when any trial failed. Bad options end in one line and status 2, a
  filesystem fault (full disk, read-only or permission-denied --out) in one line naming the path
  and status 74 (experiments/cli.py); a trial's own fault is its `error:` line in the summary.
- Trials on one dataset share its dynamics pool: one trains it while the others wait (the
  cache entry's lock, experiments/pools.py), so it is trained once.
- Ctrl-C stops the sweep: running trials get the interrupt (experiments.run then saves a
  checkpoint after its chunk), nothing finished is touched, and the same command resumes.
- Memory: trials sharing a GPU (`--gpus-per-trial` < 1) each get
  `XLA_PYTHON_CLIENT_MEM_FRACTION = 0.9 x gpus-per-trial` (capped at JAX's default 0.75)
  instead of each preallocating 75 % of the device.
- At the end `experiments.report` writes OUT/report.md, report.csv and curves/.

With a multi-node cluster, OUT must be a path every node can write (a shared filesystem), and
the project must be installed on every node (`pip install -e ".[sweep]"`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

from experiments import cli, rundir
from experiments.report import safe_name
from jaxrl_bayes.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_IO, EXIT_INTERRUPTED = 0, 1, cli.EXIT_USAGE, cli.EXIT_IO, 130
JAX_DEFAULT_MEM_FRACTION = 0.75  # JAX's preallocation default (XLA_PYTHON_CLIENT_MEM_FRACTION)
GPU_HEADROOM = 0.9  # share of a GPU the trials on it may take together (CUDA context, other use)


class Trial(NamedTuple):
    algo: str
    dataset: str
    run_dir: str  # OUT/<dataset>/<algo>
    log_file: str  # OUT/logs/<dataset>__<algo>.log (the trial's stdout and stderr)


def plan(out: Path, algos: Sequence[str], datasets: Sequence[str]) -> list[Trial]:
    """The trials of the grid, datasets outer, algorithms inner."""
    return [Trial(a, d, str(out / safe_name(d) / a), str(out / "logs" / f"{safe_name(d)}__{a}.log"))
            for d in datasets for a in algos]


def _option_groups(extra: Sequence[str]) -> list[list[str]]:
    """`extra` cut into options: each `--name` with the values that follow it."""
    return cli.option_groups(extra)


@dataclasses.dataclass(frozen=True)
class _Option:
    """One option group of the extra options, named the way experiments.run reads it."""
    section: str  # "agent", "dynamics", "run", ... ("" for a stray value)
    field: str  # the dotted path below the section, underscores for dashes, a boolean's `no_` removed
    negated: bool  # given as --<section>.<path>.no-<field> (a boolean set to False)
    value: Optional[str]  # the inline `=value` or the next token, None for a bare flag


def _agent_paths() -> frozenset[str]:
    """Every AgentConfig path under any member of its choices (`components`)."""
    from jaxrl_bayes import algos as algos_lib, components

    def walk(obj, prefix):
        out = set(components.paths(obj, prefix))
        for name, sub in components.component_fields(obj).items():
            base = components.field_types(type(obj))[name]
            if components.is_choice(base):
                for cls in components.choices(base).values():
                    out |= walk(cls(), f"{prefix}{name}.")
            else:
                out |= walk(sub, f"{prefix}{name}.")
        return out

    return frozenset(walk(algos_lib.AgentConfig(), ""))


def _parse_option(group: Sequence[str]) -> _Option:
    """`group` (from `_option_groups`) as section, path, negation and value: the one place the
    sweep turns an option's spelling into a config path, so `_trial_agent` and `options_for`
    agree. `--agent.<path>.no-<field>` is a negation only where `<path>.<field>` is an
    AgentConfig path and `<path>.no_<field>` is not."""
    head = group[0]
    if not head.startswith("--"):
        return _Option("", "", False, None)
    name, eq, inline = head[2:].partition("=")
    section, _, field = name.partition(".")
    field = field.replace("-", "_")
    known = _agent_paths() if section == "agent" else frozenset()
    parent, _, last = field.rpartition(".")
    plain = f"{parent}.{last[3:]}" if parent else last[3:]
    negated = section == "agent" and last.startswith("no_") and field not in known and plain in known
    if negated:
        field = plain
    value = inline if eq else (group[1] if len(group) > 1 else None)
    return _Option(section, field, negated, value)


def _trial_agent(algo: str, extra: Sequence[str], dataset: str | None, preset: str | None):
    """The AgentConfig a trial's new run starts from: the algorithm's, with the preset of the
    dataset's family where both are given (the locomotion presets choose the persistent rollout
    scheme, whose component has other fields than the short one), and the extra options'
    choices (`--agent.<choice> <kind>`) and flags (booleans), which decide which fields exist
    and which are read."""
    from jaxrl_bayes import algos as algos_lib, components

    agent = algos_lib.algo_config(algo)
    if dataset is not None and preset is not None:
        from experiments import config as config_mod

        try:
            run = config_mod.RunConfig(dataset=dataset, algo=algo, preset=preset)
            agent = config_mod.base_config(run, preset_explicit=True)[0].agent
        except UserError:  # a missing file, an unknown preset: the trial itself says so
            pass
    for opt in map(_parse_option, _option_groups(extra)):
        if opt.section != "agent" or not opt.field:
            continue
        current = components.paths(agent).get(opt.field)
        try:
            if isinstance(current, bool):
                agent = components.replace_path(agent, opt.field, not opt.negated)
            elif isinstance(current, str) and opt.value and opt.field in cli.choice_paths(agent):
                agent = components.replace_path(agent, opt.field, opt.value)
        except UserError:  # a bad kind: the trial itself says so
            pass
    return agent


def options_for(algo: str, extra: Sequence[str], dataset: str | None = None,
                preset: str | None = None) -> tuple[list[str], list[str]]:
    """The extra experiments.run options that apply to `algo`, and the names of those left out.

    experiments.run refuses an option that has no effect on its algorithm (a `--dynamics.*`
    for bc, which trains no model; an `--agent.*` path the algorithm never reads, or one that
    its chosen components lack, such as `--agent.rollout.batch` under the persistent rollout
    scheme of the locomotion presets), so a grid that mixes bc with the model-based methods
    passes each trial only what it reads; the sweep prints what it left out of which trials.
    With `dataset` and `preset` the check is against the preset the trial's run resolves
    (`_trial_agent`), else the algorithm's defaults. An agent option that names no path at all
    is kept: the trial refuses it.
    """
    from jaxrl_bayes import algos as algos_lib, components

    agent = _trial_agent(algo, extra, dataset, preset)
    have, known = components.paths(agent), _agent_paths()
    keep: list[str] = []
    dropped: list[str] = []
    for group in _option_groups(extra):
        opt = _parse_option(group)
        section, field = opt.section, opt.field
        unused = ((section == "dynamics" and not algos_lib.algo_needs_model(agent))
                  or (section == "agent" and field in known
                      and (field not in have or algos_lib.fields_without_effect(agent, [field]))))
        if unused:
            dropped.append(group[0])
        else:
            keep.extend(group)
    return keep, dropped


def trial_argv(trial: Trial, seeds: int, preset: str, extra: Sequence[str],
               options: Optional[Sequence[str]] = None) -> list[str]:
    """experiments.run's argv for a trial: a new run (with the extra options that apply to its
    algorithm: `options`, the kept list of `options_for` where the caller has it, else resolved
    here from `extra`), or `--resume` of an unfinished one."""
    run_dir = Path(trial.run_dir)
    if (run_dir / "config.json").is_file():
        return ["--resume", str(run_dir)]
    if options is None:
        options = options_for(trial.algo, extra, trial.dataset, preset)[0]
    return ["--algo", trial.algo, "--dataset", trial.dataset, "--seeds", str(seeds), "--preset", preset,
            "--out", str(run_dir), *options]


def is_finished(trial: Trial) -> bool:
    return (Path(trial.run_dir) / "results.json").is_file()


def mem_fraction(gpus_per_trial: float) -> Optional[float]:
    """XLA_PYTHON_CLIENT_MEM_FRACTION for a trial holding this share of a GPU (None: whole
    GPUs or none, JAX's default applies)."""
    if not 0 < gpus_per_trial < 1:
        return None
    return round(min(JAX_DEFAULT_MEM_FRACTION, GPU_HEADROOM * gpus_per_trial), 4)


def run_trial(trial: Trial, seeds: int, preset: str, extra: Sequence[str],
              options: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Runs one trial in this process (the body of the Ray task); `options` as in `trial_argv`.

    Returns {"status": "finished" | "skipped" | "failed" | "interrupted", "error": str | None,
    "seconds": float}; stdout and stderr go to the trial's log file.
    """
    t0 = time.time()
    if is_finished(trial):
        return {"status": "skipped", "error": None, "seconds": 0.0}
    Path(trial.log_file).parent.mkdir(parents=True, exist_ok=True)
    argv = trial_argv(trial, seeds, preset, extra, options)
    error = None
    with open(trial.log_file, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        print(f"$ python -m experiments.run {' '.join(argv)}", flush=True)
        try:
            from experiments import run as run_mod

            code = run_mod.main(argv)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BaseException as e:  # noqa: BLE001 - every failure is reported, none stops the sweep
            traceback.print_exc()
            code, error = EXIT_FAILED, f"{type(e).__name__}: {e}"
    if code == 0 and is_finished(trial):
        status = "finished"
    elif code == EXIT_INTERRUPTED:
        status = "interrupted"
    else:
        status = "failed"
        if error is None:
            error = _last_error_line(trial.log_file) or f"experiments.run exited with status {code}"
    return {"status": status, "error": error, "seconds": time.time() - t0}


def _last_error_line(path: str) -> Optional[str]:
    try:
        lines = [l.strip() for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]
    except OSError:
        return None
    errors = [l for l in lines if l.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else None)


def _check_algos(algos: Sequence[str]) -> None:
    from jaxrl_bayes import algos as algos_lib

    known = list(algos_lib.ALGORITHMS)
    bad = [a for a in algos if a not in known]
    if bad:
        raise UserError(f"unknown algorithm(s) {', '.join(bad)}; choose from {', '.join(known)}")


def _ray_init(address: Optional[str], num_cpus: Optional[int], num_gpus: Optional[int]):
    try:
        import ray
    except ImportError:
        raise UserError("the sweep runs on Ray, which is not installed; install it with "
                        "pip install -e \".[sweep]\"") from None
    if ray.is_initialized():
        return ray, False  # a caller's Ray: use it, leave it running
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False)
    return ray, True


def _leaders(todo: Sequence[Trial]) -> tuple[dict[str, Trial], dict[str, list[Trial]]]:
    """Per dataset: the trial that trains the dynamics pool (the first of an algorithm that needs
    a model; bc needs none) and the trials that wait for it. A dataset none of whose trials trains
    a pool has neither: its trials all start at once."""
    from jaxrl_bayes import algos as algos_lib

    needs = getattr(algos_lib, "algo_needs_model", None)

    def uses_pool(t: Trial) -> bool:
        try:
            return bool(needs(t.algo)) if needs else True
        except Exception:  # noqa: BLE001 - an odd name: treat it as needing a pool
            return True

    leaders: dict[str, Trial] = {}
    followers: dict[str, list[Trial]] = {}
    for d in dict.fromkeys(t.dataset for t in todo):
        group = [t for t in todo if t.dataset == d]
        leader = next((t for t in group if uses_pool(t)), None)
        if leader is None:
            continue
        leaders[d] = leader
        rest = [t for t in group if t is not leader]
        if rest:
            followers[d] = rest
    return leaders, followers


def _pool_ready(leader: Trial, pending: dict) -> bool:
    """The leader's pool is cached (its run dir records it) or the leader is no longer running."""
    return (Path(leader.run_dir) / "dynamics.json").is_file() or leader not in pending.values()


def _print(msg: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_report(out: str) -> str:
    """experiments.report on the sweep folder; returns one line saying what was written."""
    from experiments import report

    try:
        written = report.write_report(Path(out))
    except UserError as e:
        return f"report: not written: {e}"
    return f"report: {written['markdown']}, {written['csv']}, {len(written['figures'])} figure(s)"


def sweep(algos: Sequence[str], datasets: Sequence[str], *, seeds: int, preset: str, out: Path,
          address: Optional[str] = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
          num_cpus: Optional[int] = None, num_gpus: Optional[int] = None,
          extra: Sequence[str] = (), report: bool = True) -> dict[Trial, dict[str, Any]]:
    """Runs every (algorithm, dataset) trial on Ray, then the report; returns each trial's outcome.

    Finished trials are skipped without starting a task. Ctrl-C cancels the running trials
    (they stop after their current chunk and checkpoint) and re-raises KeyboardInterrupt. With
    a Ray client address (ray://) the finished-run check and the report run on the cluster,
    where OUT is.
    """
    trials = plan(out, algos, datasets)
    outcomes: dict[Trial, dict[str, Any]] = {}
    # each trial's extra options, checked once against the preset its run resolves: the kept ones
    # go into its argv, the left-out ones are printed here
    chosen = {t: options_for(t.algo, extra, t.dataset, preset) for t in trials}
    for a in algos:
        dropped = {t.dataset: chosen[t][1] for t in trials if t.algo == a}
        if len({tuple(v) for v in dropped.values()}) == 1:  # the same on every dataset
            if dropped[datasets[0]]:
                _print(f"{a} trials: {', '.join(dropped[datasets[0]])} left out (no effect on {a})")
        else:
            for d, names in dropped.items():
                if names:
                    _print(f"{a} trials on {d}: {', '.join(names)} left out (no effect on {a} there)")
    client = bool(address) and address.startswith("ray://")  # the driver may not see OUT
    todo = []
    for t in trials:
        if not client and is_finished(t):
            outcomes[t] = {"status": "skipped", "error": None, "seconds": 0.0}
            _print(f"skip {t.algo} on {t.dataset}: finished run in {t.run_dir}")
        else:
            todo.append(t)
    if not todo:
        if report:
            _print(write_report(str(out)))
        return outcomes
    ray, started = _ray_init(address, num_cpus, num_gpus)
    try:
        options: dict[str, Any] = {"num_cpus": cpus_per_trial, "num_gpus": gpus_per_trial, "max_retries": 0}
        fraction = mem_fraction(gpus_per_trial)
        if fraction is not None:
            options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_MEM_FRACTION": str(fraction)}}
        # max_calls=1: one worker process per trial (a fresh JAX; its GPU memory is returned)
        task = ray.remote(max_calls=1)(run_trial).options(**options)
        pending: dict = {}

        def submit(ts):
            for t in ts:
                # a Ray client's driver may not see a dataset file the cluster sees (as with OUT):
                # there the trial checks its options itself, where its run resolves them
                kept = None if client else chosen[t][0]
                pending[task.remote(t, seeds, preset, list(extra), kept)] = t
                _print(f"start {t.algo} on {t.dataset} -> {t.run_dir}")

        # Trials of one dataset share its cached dynamics pool: the first trains it, the others
        # start once it is cached (the leader's run dir has dynamics.json) or the leader ended.
        # A Ray client cannot see the run dirs: there every trial starts at once.
        leaders, followers = _leaders(todo) if not client else ({}, {})
        waiting = {t for ts in followers.values() for t in ts}
        submit([t for t in todo if t not in waiting])
        try:
            while pending or followers:
                for d in [d for d in followers if _pool_ready(leaders[d], pending)]:
                    submit(followers.pop(d))
                if not pending:
                    continue
                done, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
                for ref in done:
                    t = pending.pop(ref)
                    try:
                        outcomes[t] = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the worker died, was killed, ...
                        outcomes[t] = {"status": "failed", "error": f"{type(e).__name__}: "
                                       + (str(e).strip().splitlines() or [""])[-1], "seconds": None}
                    o = outcomes[t]
                    _print(f"{o['status']} {t.algo} on {t.dataset}"
                           + (f" in {o['seconds']:.0f} s" if o.get("seconds") else "")
                           + (f": {o['error']} (log: {t.log_file})" if o["error"] else ""))
        except KeyboardInterrupt:
            _print(f"interrupted: stopping {len(pending)} running trial(s); finished runs are kept, "
                   f"the same command resumes")
            for ref in pending:
                ray.cancel(ref)  # KeyboardInterrupt in the trial: it checkpoints and exits
            try:
                ray.wait(list(pending), num_returns=len(pending), timeout=60.0)
            except KeyboardInterrupt:
                pass
            for t in pending.values():
                outcomes[t] = {"status": "interrupted", "error": None, "seconds": None}
            raise
        if report:
            remote_report = ray.remote(num_cpus=0)(write_report).remote(str(out)) if client else None
            _print(ray.get(remote_report) if client else write_report(str(out)))
    finally:
        if started:
            ray.shutdown()
    return outcomes


def summary(outcomes: dict[Trial, dict[str, Any]]) -> str:
    lines = [f"{'algorithm':<12} {'dataset':<32} {'status':<12} detail"]
    for t, o in outcomes.items():
        detail = o["error"] or t.run_dir
        lines.append(f"{t.algo:<12} {t.dataset:<32} {o['status']:<12} {detail}")
    return "\n".join(lines)


PROG = "python -m experiments.sweep"


@dataclasses.dataclass(frozen=True)
class Args:
    """One experiments.run per (algorithm, dataset) on Ray; finished trials are skipped; a report
    (report.md, report.csv, curves/) is written at the end. After `--`: experiments.run options
    for every trial. Exit status: 0 done, 1 a trial failed, 2 bad input, 74 a filesystem fault
    (full disk, read-only --out, ...; fix it and run the same command again), 130 interrupted."""

    algos: tuple[str, ...]  # algorithm names (experiments.run --list)
    datasets: tuple[str, ...]  # dataset names or local dataset paths
    seeds: int = 5  # seeds per trial, trained together (enough for bootstrap intervals; vmapped, so cheap on an accelerator)
    preset: str = "cpu"  # preset of every trial (cpu, paper)
    out: str = "sweeps/sweep"  # sweep folder: OUT/<dataset>/<algo> per trial
    address: Optional[str] = None  # Ray cluster to use: auto (the local node's cluster) or ray://HOST:PORT; default: start a local Ray on this machine
    gpus_per_trial: float = 0.0  # GPUs per trial; below 1 trials share a GPU and each gets that share of its memory
    cpus_per_trial: float = 1.0  # CPUs reserved per trial
    num_cpus: Optional[int] = None  # CPUs of the local Ray (None: all)
    num_gpus: Optional[int] = None  # GPUs of the local Ray (None: detected)
    report: bool = True  # write the report at the end (--no-report: do not)
    debug: bool = False  # print the traceback of a user error too


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 done, 1 a trial failed, 2 bad input, 74 filesystem
    fault, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    return cli.front_door(functools.partial(_main, argv, extra), argv)


def _main(argv: list[str], extra: list[str], ctx: cli.Context) -> int:
    args = cli.parse(Args, argv, prog=PROG)
    if args is None:  # --help
        return EXIT_OK
    out = Path(args.out)
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds} must be >= 1")
    if args.gpus_per_trial < 0 or args.cpus_per_trial < 0:
        raise UserError("--gpus-per-trial and --cpus-per-trial must be >= 0")
    if args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial):
        raise UserError(f"--gpus-per-trial {args.gpus_per_trial}: above 1 use a whole number of GPUs")
    if not args.algos or not args.datasets:
        raise UserError("--algos and --datasets each need at least one name")
    if len(set(args.algos)) != len(args.algos) or len(set(args.datasets)) != len(args.datasets):
        raise UserError("--algos and --datasets must not repeat a name")
    _check_algos(args.algos)
    client = bool(args.address) and args.address.startswith("ray://")
    if not client:  # the driver writes nothing there with a Ray client: the cluster does
        rundir.check_out_path(out)
        out.mkdir(parents=True, exist_ok=True)  # a read-only or full --out fails now, not per trial
    try:
        outcomes = sweep(list(args.algos), list(args.datasets), seeds=args.seeds, preset=args.preset, out=out,
                         address=args.address, cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                         extra=extra, report=args.report)
    except KeyboardInterrupt:
        print(f"Interrupted. Finished runs in {out} are kept; run the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(outcomes))
    failed = [t for t, o in outcomes.items() if o["status"] == "failed"]
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
