"""Generate D4RL-protocol locomotion datasets with online SAC (command line).

    python -m experiments.collect --env walker2d \\
        --levels random,medium,medium-replay,expert,full-replay,medium-expert

Writes `<namespace>/<env>/<level>-v0` into the local Minari store ($MINARI_DATASETS_PATH,
default ~/.minari/datasets) and, with --hdf5-dir, D4RL-schema hdf5 files. Defaults are D4RL's
full sizes (1M SAC steps, 1M-transition rollouts); a CPU smoke run:

    python -m experiments.collect --env hopper --levels all --sac-steps 5000 \\
        --start-steps 1000 --dataset-size 2000 --hidden 64 --medium-fraction 0

The SAC run is checkpointed in --work-dir; rerun with --resume (and a larger --sac-steps to
train further). See `jaxrl_bayes.collect` for the protocol.

Bad input (an unknown level or environment, an existing dataset, a checkpoint of other
settings) ends with one line on stderr and exit status 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import jaxrl_bayes.collect as gen
from jaxrl_bayes import sac
from jaxrl_bayes.errors import UserError


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def build_parser() -> argparse.ArgumentParser:
    d = gen.CollectConfig()
    s = sac.SACConfig()
    p = argparse.ArgumentParser(prog="python -m experiments.collect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=d.env,
                   help="hopper, walker2d, halfcheetah (Gymnasium v4) or any Gymnasium id")
    p.add_argument("--levels", default="all",
                   help=f"comma-separated subset of {','.join(gen.LEVELS)}, or 'all'")
    p.add_argument("--namespace", default="jaxrl_bayes", help="first part of the Minari ids")
    p.add_argument("--work-dir", default=None,
                   help="SAC checkpoints and summary.json (default runs/collect/<env>)")
    p.add_argument("--hdf5-dir", default=None, help="also export D4RL-schema hdf5 files here")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --work-dir")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    g = p.add_argument_group("budget and sizes")
    g.add_argument("--sac-steps", type=int, default=d.sac_steps, help="SAC environment steps")
    g.add_argument("--dataset-size", type=int, default=d.dataset_size,
                   help="transitions of random, medium and expert")
    g.add_argument("--num-envs", type=int, default=d.num_envs, help="parallel environments")
    g.add_argument("--max-episode-steps", type=int, default=d.max_episode_steps)
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("SAC schedule")
    g.add_argument("--start-steps", type=int, default=d.start_steps,
                   help="uniform random actions for the first steps")
    g.add_argument("--update-after", type=int, default=d.update_after)
    g.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch,
                   help="env steps collected between fused update blocks")
    g.add_argument("--utd", type=float, default=d.utd, help="updates per environment step")
    g.add_argument("--eval-every", type=int, default=d.eval_every)
    g.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    g.add_argument("--medium-fraction", type=float, default=d.medium_fraction,
                   help="medium = first policy whose eval return reaches this fraction of "
                        "D4RL's expert reference return")
    g.add_argument("--medium-return", type=float, default=None,
                   help="absolute medium threshold (overrides --medium-fraction)")
    g = p.add_argument_group("SAC hyperparameters")
    g.add_argument("--hidden", type=int, default=s.actor_hidden[0],
                   help="width of the 2 hidden layers of actor and critics")
    g.add_argument("--layers", type=int, default=len(s.actor_hidden))
    g.add_argument("--batch-size", type=int, default=s.batch_size)
    g.add_argument("--lr", type=float, default=s.actor_lr, help="actor, critic and alpha lr")
    g.add_argument("--discount", type=float, default=s.discount)
    g.add_argument("--tau", type=float, default=s.tau)
    return p


def config_from_args(args: argparse.Namespace) -> gen.CollectConfig:
    hidden = (args.hidden,) * args.layers
    sac_cfg = sac.SACConfig(actor_hidden=hidden, critic_hidden=hidden, batch_size=args.batch_size,
                            actor_lr=args.lr, critic_lr=args.lr, alpha_lr=args.lr,
                            discount=args.discount, tau=args.tau)
    return gen.CollectConfig(
        env=args.env, sac=sac_cfg, num_envs=args.num_envs, sac_steps=args.sac_steps,
        start_steps=args.start_steps, update_after=args.update_after,
        steps_per_epoch=args.steps_per_epoch, utd=args.utd, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, medium_fraction=args.medium_fraction,
        medium_return=args.medium_return, dataset_size=args.dataset_size,
        max_episode_steps=args.max_episode_steps, checkpoint_every=args.checkpoint_every,
        seed=args.seed)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", message=".*out of date.*")
    try:
        config = config_from_args(args)
        levels = gen.LEVELS if args.levels == "all" else gen.parse_levels(args.levels)
        work_dir = Path(args.work_dir or Path("runs") / "collect" / config.family)
        results, train = gen.generate(
            config, levels, work_dir, namespace=args.namespace, hdf5_dir=args.hdf5_dir,
            resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except UserError as e:
        if args.debug:
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted: the last checkpoint in the work directory is kept; rerun the same "
              "command with --resume to continue", file=sys.stderr)
        return 130
    if train is not None:
        print(f"\nSAC: {train.env_steps} env steps, {train.seconds:.0f} s in this process "
              f"(medium at {train.medium_index}, final eval return {_fmt(train.final_eval)})")
        print("return curve (env steps: eval return mean +- std):")
        for p in train.curve:
            print(f"  {p.env_steps:>9d}: {p.return_mean:9.1f} +- {p.return_std:.1f}  "
                  f"(normalized {_fmt(gen.normalized_score(config.family, p.return_mean))})")
    print(f"\n{'dataset id':44s} {'transitions':>11s} {'episodes':>8s} "
          f"{'return mean +- std':>22s} {'normalized':>16s}")
    for r in results:
        s = r.summary
        print(f"{r.dataset_id:44s} {s['transitions']:11d} {s['episodes']:8d} "
              f"{s['return_mean']:11.1f} +- {s['return_std']:7.1f} "
              f"{_fmt(s['normalized_mean']):>8s} +- {_fmt(s['normalized_std'])}")
        if r.hdf5_path is not None:
            print(f"{'':44s} hdf5: {r.hdf5_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
