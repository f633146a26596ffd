"""Generate D4RL-protocol locomotion datasets with online SAC (command line, tyro).

    python -m experiments.collect --env walker2d \\
        --levels random,medium,medium-replay,expert,full-replay,medium-expert

Writes `<namespace>/<env>/<level>-v0` into the local Minari store ($MINARI_DATASETS_PATH,
default ~/.minari/datasets) and, with --hdf5-dir, D4RL-schema hdf5 files (they record their
env_id, so `experiments.run --dataset <file>.hdf5` trains on them as they are). Defaults are
D4RL's full sizes (1M SAC steps, 1M-transition rollouts); a CPU smoke run:

    python -m experiments.collect --env hopper --levels all --sac-steps 5000 \\
        --start-steps 1000 --dataset-size 2000 --hidden 64 --medium-fraction 0

The SAC run is checkpointed in --work-dir; rerun with --resume (and a larger --sac-steps to
train further). See `jaxrl_bayes.collect` for the protocol.

Bad input (an unknown option, level or environment, an existing dataset, a checkpoint of other
settings) ends with one line on stderr and exit status 2; a filesystem fault (a full disk or
quota, a read-only or permission-denied folder) with one line naming the path and exit status
74, leaving every file written before intact: rerun the same command with --resume once it is
fixed (datasets this same config wrote are rewritten identically). `--debug` shows the
traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import jaxrl_bayes.collect as gen
from experiments import cli
from jaxrl_bayes import sac

PROG = "python -m experiments.collect"
_C, _S = gen.CollectConfig, sac.SACConfig  # defaults (and their sources) live there


@dataclasses.dataclass(frozen=True)
class Args:
    """Generate D4RL-protocol datasets (random, medium, medium-replay, expert, full-replay,
    medium-expert) with online SAC, into the local Minari store and optionally hdf5 files.
    Exit status: 0 done, 2 bad input, 74 a filesystem fault (full disk, read-only folder, ...;
    fix it and rerun with --resume), 130 interrupted."""

    env: str = _C.env
    """hopper, walker2d, halfcheetah (Gymnasium v4) or any Gymnasium id"""
    levels: str = "all"
    """comma-separated subset of random,medium,medium-replay,expert,full-replay,medium-expert, or 'all'"""
    namespace: str = "jaxrl_bayes"
    """first part of the Minari ids"""
    work_dir: Optional[str] = None
    """SAC checkpoints and summary.json (default runs/collect/<env>)"""
    hdf5_dir: Optional[str] = None
    """also export D4RL-schema hdf5 files here"""
    resume: bool = False
    """continue the checkpoint in --work-dir (and rewrite the datasets this same config wrote)"""
    overwrite: bool = False
    """replace existing datasets"""
    progress: bool = True
    """progress bars (--no-progress: none)"""
    debug: bool = False
    """show the traceback of an error"""
    # budget and sizes
    sac_steps: int = _C.sac_steps
    """SAC environment steps"""
    dataset_size: int = _C.dataset_size
    """transitions of random, medium and expert"""
    num_envs: int = _C.num_envs
    """parallel environments"""
    max_episode_steps: int = _C.max_episode_steps
    """time limit of an episode"""
    seed: int = _C.seed
    """seed of environments, SAC and rollouts"""
    # SAC schedule
    start_steps: int = _C.start_steps
    """uniform random actions for the first steps"""
    update_after: int = _C.update_after
    """first SAC update after this many steps"""
    steps_per_epoch: int = _C.steps_per_epoch
    """env steps collected between fused update blocks"""
    utd: float = _C.utd
    """updates per environment step"""
    eval_every: int = _C.eval_every
    """env steps between evaluations"""
    eval_episodes: int = _C.eval_episodes
    """episodes per evaluation"""
    confirm_episodes: int = _C.confirm_episodes
    """episodes of the confirming evaluation a medium candidate must also pass (0: none)"""
    checkpoint_every: int = _C.checkpoint_every
    """env steps between checkpoints"""
    medium_fraction: float = _C.medium_fraction
    """medium = first policy whose eval return reaches this fraction of D4RL's expert reference"""
    medium_return: Optional[float] = None
    """absolute medium threshold (overrides --medium-fraction)"""
    # SAC hyperparameters
    hidden: int = _S.actor_hidden[0]
    """width of the hidden layers of actor and critics"""
    layers: int = len(_S.actor_hidden)
    """number of hidden layers"""
    batch_size: int = _S.batch_size
    """SAC minibatch size"""
    lr: float = _S.actor_lr
    """actor, critic and temperature learning rate"""
    discount: float = _S.discount
    """SAC discount"""
    tau: float = _S.tau
    """Polyak rate of the target critics"""


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def config_from_args(args: Args) -> gen.CollectConfig:
    """The `CollectConfig` the flags describe (refused with a GenerateError/UserError if invalid)."""
    if args.layers < 1 or args.hidden < 1:
        raise cli.UsageError(f"--hidden and --layers must be >= 1, got {args.hidden} and {args.layers}")
    hidden = (args.hidden,) * args.layers
    sac_cfg = sac.SACConfig(actor_hidden=hidden, critic_hidden=hidden, batch_size=args.batch_size,
                            actor_lr=args.lr, critic_lr=args.lr, alpha_lr=args.lr,
                            discount=args.discount, tau=args.tau)
    return gen.CollectConfig(
        env=args.env, sac=sac_cfg, num_envs=args.num_envs, sac_steps=args.sac_steps,
        start_steps=args.start_steps, update_after=args.update_after,
        steps_per_epoch=args.steps_per_epoch, utd=args.utd, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, confirm_episodes=args.confirm_episodes,
        medium_fraction=args.medium_fraction,
        medium_return=args.medium_return, dataset_size=args.dataset_size,
        max_episode_steps=args.max_episode_steps, checkpoint_every=args.checkpoint_every,
        seed=args.seed)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 done, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    args = cli.parse(Args, argv, prog=PROG)
    if args is None:  # --help
        return cli.EXIT_OK
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", message=".*out of date.*")
    config = config_from_args(args)
    levels = gen.LEVELS if args.levels == "all" else gen.parse_levels(args.levels)
    work_dir = Path(args.work_dir or Path("runs") / "collect" / config.family)
    ctx.retry = "rerun the same command with --resume (what was written is intact)"
    try:
        results, train = gen.generate(
            config, levels, work_dir, namespace=args.namespace, hdf5_dir=args.hdf5_dir,
            resume=args.resume, overwrite=args.overwrite, progress=args.progress)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"interrupted: the last checkpoint in {work_dir} is kept; rerun the same command "
              f"with --resume to continue", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    if train is not None:
        print(f"\nSAC: {train.env_steps} env steps, {train.seconds:.0f} s in this process "
              f"(medium at {train.medium_index}, final eval return {_fmt(train.final_eval)})")
        print("return curve (env steps: eval return mean +- std):")
        for p in train.curve:
            print(f"  {p.env_steps:>9d}: {p.return_mean:9.1f} +- {p.return_std:.1f}  "
                  f"(normalized {_fmt(gen.normalized_score(config.family, p.return_mean))})")
        if train.confirmations:
            print("medium candidates (routine evaluation, then the confirming one):")
        for c in train.confirmations:
            print(f"  {c.env_steps:>9d}: {c.crossing_mean:9.1f} +- {c.crossing_std:.1f} "
                  f"({c.crossing_episodes} episodes), confirming {c.confirm_mean:.1f} +- "
                  f"{c.confirm_std:.1f} ({c.confirm_episodes} episodes): "
                  f"{'medium' if c.accepted else 'rejected'}")
    print(f"\n{'dataset id':44s} {'transitions':>11s} {'episodes':>8s} "
          f"{'return mean +- std':>22s} {'normalized':>16s}")
    for r in results:
        s = r.summary
        print(f"{r.dataset_id:44s} {s['transitions']:11d} {s['episodes']:8d} "
              f"{s['return_mean']:11.1f} +- {s['return_std']:7.1f} "
              f"{_fmt(s['normalized_mean']):>8s} +- {_fmt(s['normalized_std'])}")
        if r.hdf5_path is not None:
            print(f"{'':44s} hdf5: {r.hdf5_path}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
