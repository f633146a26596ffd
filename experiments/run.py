"""`python -m experiments.run`: train RRPI / PSPO / PMDB (and ablations) on one dataset.

With no arguments it runs RRPI on `liquidation-random-v0` with the liquidation "cpu" preset.

    load data -> train or reuse the cached dynamics pool -> trainer.init (behaviour cloning for
    PSPO) -> policy iteration in jitted chunks (all seeds at once with jax.vmap), periodic
    evaluation and checkpoints -> final evaluation -> policy files, learning_curve.png,
    results.json (last, atomically), summary

Configuration (experiments/config.py): `RunConfig`, `DynamicsConfig`, `AgentConfig`, resolved
as dataclass default < algorithm default < preset < command line. Every field is an option
(`--agent.targets.kth 3`, `--run.total_steps 2000`, `--dynamics.hidden 200 200`, booleans as
`--agent.targets.value_clip` / `--agent.targets.no_value_clip`, optionals `None`); a choice
among components by its member's name, then that member's fields (`--agent.rollout persistent
--agent.rollout.horizon 1000`; `jaxrl_bayes.components`); `--help` lists them with the
resolved defaults of the chosen algorithm and preset.

Ctrl-C (or SIGTERM) stops after the current chunk, saves a checkpoint and prints the resume
command; `--resume RUN_DIR` continues the run bit-exactly (same config required; the differing
fields are listed otherwise). A second Ctrl-C aborts at once; the last checkpoint stays valid.
A user error (bad name, value or file) prints one line `error: ...` and exits with status 2; a
filesystem fault (full disk or quota, read-only or permission-denied output, cache or dataset
folder) prints one line naming the path and exits with status 74, every file as it was before
the failed write, so `--resume` continues once it is fixed (experiments/cli.py); the run
directory layout is in experiments/rundir.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from experiments import cli, config, pools, results, rundir
from experiments.config import Config, RunConfig
from experiments.plotting import paper_references, plot_learning_curve
from jaxrl_bayes import algos, evaluation, sharding
from jaxrl_bayes import policy as policy_lib
from jaxrl_bayes.algos.diagnostics import deployed_greedy_gain, start_value
from jaxrl_bayes.checkpoint import Checkpointer, atomic_write_json
from jaxrl_bayes.data import registry
from jaxrl_bayes.dynamics import DynamicsConfig
from jaxrl_bayes.evaluation import behaviour_score
from jaxrl_bayes.logging import make_metric_logger, summarize_chunk_metrics, to_json_value

logger = logging.getLogger("experiments.run")

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = cli.EXIT_OK, cli.EXIT_USAGE, cli.EXIT_INTERRUPTED
PROG = "python -m experiments.run"


@dataclasses.dataclass(frozen=True)
class Args:
    """Train RRPI / PSPO / PMDB on an offline dataset (default: RRPI on liquidation-random-v0,
    cpu preset). Values resolve as: dataclass default < algorithm default < preset < command
    line; the defaults shown are those of the chosen --algo, --dataset and --preset."""

    run: RunConfig = RunConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    agent: algos.AgentConfig = algos.AgentConfig()
    resume: Optional[str] = None  # continue the run in this directory exactly (options must match its config)
    list: bool = False  # list algorithms, datasets and presets, then exit
    show_config: bool = False  # print the resolved config with each value's source as JSON, then exit
    debug: bool = False  # print the traceback of a user error too (it always goes to run.log)


HELP = (" ".join(Args.__doc__.split()) + f" Algorithms: {', '.join(algos.ALGORITHMS)}. Datasets: see --list."
        " Exit status: 0 done, 2 bad input, 74 a filesystem fault (full disk or quota, read-only or"
        " permission-denied folder; fix it, then --resume), 130 interrupted (--resume continues).")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point. Returns the exit code (0 done, 2 user error, 74 filesystem fault, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    with rundir.console_logging():
        parsed = parse_command_line(argv)
        if parsed is None:  # --help
            return EXIT_OK
        args, cfg, sources = parsed
        if args.list:
            print(listing())
            return EXIT_OK
        if args.show_config:
            print(json.dumps(config.with_sources(cfg, sources), indent=2, ensure_ascii=False))
            return EXIT_OK
        check_optional_sinks(cfg.run)
        resuming = args.resume is not None
        if resuming:
            run_dir = Path(args.resume)
        else:
            run_dir = Path(cfg.run.out) if cfg.run.out else rundir.default_out(cfg.run.dataset, cfg.run.algo)
            cfg = cfg._replace(run=dataclasses.replace(cfg.run, out=str(run_dir)))
            rundir.check_new_run_dir(run_dir, cfg.run.force)
        spec, dataset = load_data(cfg.run)  # validated before anything is written
        if not resuming:
            rundir.make_new_run_dir(run_dir, cfg.run.force)
        try:
            with rundir.run_lock(run_dir):
                ctx.run_dir = run_dir
                if not resuming:
                    atomic_write_json(run_dir / "config.json", config.saved_json(cfg, sources))
                with rundir.file_logging(run_dir):
                    logger.info("%s run in %s: %s on %s, preset %s, %d seed(s)", "resuming" if resuming else "new",
                                run_dir, cfg.run.algo, cfg.run.dataset, cfg.run.preset, cfg.run.seeds)
                    return train(run_dir, cfg, spec, dataset)
        except BaseException as e:
            if not resuming:
                rundir.remove_unstarted(run_dir)  # a failed start leaves nothing behind
            if (run_dir / "config.json").is_file():  # after a full disk etc.: continue, don't restart
                ctx.retry = f"resume with `{PROG} --resume {run_dir}` (the checkpoints saved before are intact)"
            if isinstance(e, KeyboardInterrupt):
                saved = (run_dir / "config.json").is_file()
                print("Interrupted." + (f"\nResume with: {PROG} --resume {run_dir}" if saved else
                                        " Nothing was saved."), file=sys.stderr)
                return EXIT_INTERRUPTED
            raise


# ----------------------------------------------------------------------------- configuration


def parse_command_line(argv: list[str]) -> Optional[tuple[Args, Config, dict[str, str]]]:
    """(args, resolved and validated config, sources of non-default values), or None (--help).

    Parsed twice: first for the choices (algorithm, dataset, preset, or the run to resume),
    which give the defaults; then the whole command line on top of those defaults.
    """
    # the choices first: which components an --agent option reaches depends on them
    choosing = [t for g in cli.option_groups(argv) if not g[0].startswith(("--agent.", "--dynamics."))
                and g[0] not in ("-h", "--help") for t in g]
    first = cli.parse(Args, choosing, prog=PROG, description="")
    given = cli.given_fields(Args, choosing)
    if first.list:
        return first, Config(first.run, first.dynamics, first.agent), {}
    if first.resume is not None:
        saved = base = saved_config(Path(first.resume))
        sources: dict[str, str] = {}
        if "run.preset" in given:
            base = config.apply_preset(saved, first.run.preset)
    else:
        base, sources = config.base_config(first.run, preset_explicit="run.preset" in given)
    default = Args(base.run, base.dynamics, base.agent)
    args = cli.parse(Args, argv, default=default, prog=PROG, description=HELP)
    if args is None:
        return None
    given = cli.given_fields(Args, argv, default=default)
    cfg = Config(args.run, args.dynamics, args.agent)
    if first.resume is None:  # a resumed run keeps its saved rates
        preset_rates = {name for name, why in sources.items()  # timescales.UNSCALED only (config.load_preset)
                        if name.startswith("agent.optim.") and why.startswith("preset ")}
        cfg, rate_sources = config.with_budget_rates(cfg, set(given) | preset_rates)
        sources.update(rate_sources)
    cfg = config.validate(cfg)
    sources.update({name: "command line" for name in given if name.split(".")[0] in config.SECTIONS})
    ignored = ["agent." + n for n in algos.fields_without_effect(
        cfg.agent, [g.split(".", 1)[1] for g in given if g.startswith("agent.")])]
    if "run.eval_deployments" in given and algos.fields_without_effect(cfg.agent, ["deploy"]):
        ignored.append("run.eval_deployments")  # bc has one policy only
    no_model = not algos.algo_needs_model(cfg.agent)
    if no_model:
        ignored += sorted(g for g in given if g.startswith("dynamics."))
    if ignored:
        why = " (it trains no dynamics model)" if no_model else ""
        raise config.UsageError(f"--{ignored[0]} has no effect on --algo {cfg.run.algo}{why}; drop "
                                f"{', '.join('--' + n for n in ignored)}")
    if first.resume is not None:
        diffs = config.config_diff(saved.to_json(), cfg.to_json())
        if diffs:
            listed = ", ".join(f"{n} (saved {a!r}, given {b!r})" for n, a, b in diffs)
            raise config.UsageError(f"refusing to resume {first.resume}: the config differs from the saved one "
                                    f"in {listed}; resume without these options (or with the saved values), "
                                    f"or start a new run with another --out")
    return args, cfg, sources


def saved_config(run_dir: Path) -> Config:
    """The config of the unfinished run in `run_dir` (refusing a finished run or another directory)."""
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise rundir.RunDirError(f"--resume {run_dir}: not a run directory (no config.json there)")
    if rundir.is_finished(run_dir):
        raise rundir.RunDirError(f"--resume {run_dir}: the run there is finished (results.json); nothing to "
                                 f"resume. Start a new run with another --out")
    try:
        return config.read_run_config(run_dir)
    except config.UsageError as e:
        raise rundir.RunDirError(f"the saved config {cfg_path} no longer fits this code: {e}") from e


def listing() -> str:
    lines = ["algorithms: " + ", ".join(algos.ALGORITHMS),
             "datasets: " + ", ".join(registry.list_datasets())
             + ", a Minari id, or a path to a D4RL-schema .hdf5 file or Minari dataset directory"]
    lines += [f"presets for {fam}: {', '.join(names)}" for fam, names in config.available_presets().items()]
    return "\n".join(lines)


def check_optional_sinks(run: RunConfig) -> None:
    """Fails early (before any directory is made) when an optional sink's package is missing."""
    import importlib.util

    for flag, package in (("tensorboard", "tensorboardX"), ("wandb", "wandb")):
        if getattr(run, flag) and importlib.util.find_spec(package) is None:
            raise config.UsageError(f"--run.{flag} needs the optional package {package}: `pip install {package}` "
                                    f"(or `pip install jaxrl_bayes[logging]`), or leave the sink off (the default)")


def load_data(run: RunConfig) -> tuple[Any, Any]:
    """The dataset's spec and its validated data."""
    spec = config.get_spec(run)
    logger.info("loading dataset %s", run.dataset)
    dataset = spec.load()  # validated: keys, dtypes, finite values, widths against the evaluation env
    logger.info("dataset: %d transitions, obs_dim %d, act_dim %d", dataset.size, dataset.obs_dim, dataset.act_dim)
    return spec, dataset


# ----------------------------------------------------------------------------- the loop


def train(run_dir: Path, cfg: Config, spec: Any, dataset: Any) -> int:
    """Trains (or continues) the run in `run_dir`; returns the exit code."""
    # over the fields of the run's config.json (written at its start): a field added to the code
    # since then, at its default, neither changes the hash nor blocks a resume
    chash = config.config_hash(cfg.to_json(), saved=rundir.read_json(run_dir / "config.json", "config"))
    code = results.provenance()  # the code that trains, taken now: the checkout may move before the run ends
    t_setup = time.perf_counter()
    # seeds over all local devices (jaxrl_bayes.sharding; one device: a no-op placement); an S
    # that does not split evenly over them is refused here, before the pool is trained
    mesh = sharding.seed_mesh(cfg.run.seeds)
    pool, pool_info = setup_pool(run_dir, cfg, dataset)
    learning = setup_learning(cfg, spec, dataset, pool, mesh)
    chunks = Chunks.of(cfg)
    ckpt = Checkpointer(run_dir / "checkpoints", cfg.run.keep_checkpoints)
    start = resume_or_init(run_dir, cfg, learning.trainer, mesh, ckpt, chash, chunks)
    setup_s = time.perf_counter() - t_setup

    hook = ChunkHook(run_dir, cfg, spec, learning, ckpt, start, chunks, chash)
    states, c = start.states, start.chunk
    try:
        with StopFlag() as stop:
            while c < chunks.num and not stop.requested:
                tc = time.perf_counter()
                states, metrics = learning.trainer.run_chunk_seeds(states)
                metrics = jax.device_get(metrics)
                chunk_s = time.perf_counter() - tc
                c += 1
                hook(c, states, metrics, chunk_s)
        if c < chunks.num:  # a stop was requested
            hook.stopped(c, states)
            return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        if hook.saved_chunk is None:
            raise  # nothing saved: the caller removes the unstarted run directory
        hook.aborted(c)
        return EXIT_INTERRUPTED
    finally:
        hook.close()
    return finish(run_dir, cfg, spec, dataset, learning, states, hook, pool_info=pool_info, setup_s=setup_s,
                  chash=chash, code=code)


# ----------------------------------------------------------------------------- setup


def setup_pool(run_dir: Path, cfg: Config, dataset: Any) -> tuple[Any, dict[str, Any]]:
    """The dynamics pool, cached per (data, DynamicsConfig, seed), and its record, written to the
    run's dynamics.json (none for an algorithm without a model, bc). Warns where a resumed run
    gets another pool than the one it started with."""
    run = cfg.run
    if algos.algo_needs_model(cfg.agent):
        pool, pool_info = pools.get_or_train_pool(dataset, run.dataset, cfg.dynamics, run.dynamics_seed,
                                                  progress=run.progress)
    else:
        pool, pool_info = None, {"reused": None, "note": f"{run.algo} trains without a dynamics pool"}
    previous = run_dir / "dynamics.json"
    if previous.is_file() and rundir.read_json(previous, "dynamics record").get("pool_sha256") != pool_info.get(
            "pool_sha256"):
        logger.warning("the dynamics pool differs from the one this run started with (the cache was "
                       "rebuilt); the resumed run will not be bit-identical to an uninterrupted one")
    atomic_write_json(previous, pool_info)
    return pool, pool_info


@dataclasses.dataclass(frozen=True)
class Learning:
    """The run's trainer and the functions that evaluate and export its policies."""

    trainer: Any  # algos.Trainer, its data on every device
    act: Any  # jitted (params, obs, data) -> deterministic actions (the policy files' check)
    eval_act: Any  # (params, obs) -> actions: one object, so evaluation compiles once
    can_evaluate: bool  # the dataset has an evaluator
    # (discount, reward shift, reward scale): the learner's reward units, for the Monte Carlo
    # check of its critic; None without a critic
    units: Optional[tuple[float, float, float]]
    start_q: Any  # per-seed Q at the evaluation episodes' first states, or None
    greedy: Any  # per-seed Q a greedy pick among the deployed policy's draws gains, or None
    other_deployments: list[str]  # --run.eval_deployments: the deployments evaluated besides agent.deploy


def setup_learning(cfg: Config, spec: Any, dataset: Any, pool: Any, mesh: Any) -> Learning:
    """The trainer of `cfg.agent` on `dataset` (and `pool`), and its evaluation functions."""
    run, agent = cfg.run, cfg.agent
    trainer = algos.make_trainer(agent, dataset, pool, spec.termination_fn)
    act = jax.jit(trainer.act)
    eval_act = functools.partial(trainer.act, data=trainer.data)
    trainer = sharding.replicate_data(trainer, mesh)  # training: the data on every device
    data = trainer.data
    units = ((agent.discount, float(data.reward_shift), float(data.reward_scale))
             if trainer.nets.critic is not None else None)
    # Q at the evaluation episodes' first states under the deployed action, per seed: the critic's
    # prediction of the discounted return that the episodes measure (the calibration check)
    # (the data is an argument, not a constant of the jitted function); each seed at the first
    # states its own episodes recorded (`evaluation.Episodes.first_obs`). None on liquidation: its
    # evaluator gives returns only
    start_q = (jax.jit(jax.vmap(functools.partial(start_value, trainer.nets, agent), in_axes=(None, 0, 0, 0)))
               if units is not None and spec.eval_env_spec is not None else None)
    # the Q a greedy pick among the deployed policy's draws gains above its action, per seed, on
    # dataset states (does the policy step or the critic limit the run?); at evaluations
    greedy = (jax.jit(jax.vmap(functools.partial(deployed_greedy_gain, trainer.nets, agent), in_axes=(None, 0, 0, None)))
              if trainer.nets.critic is not None else None)
    can_evaluate = evaluation.evaluator_for(spec) is not None
    if not can_evaluate:
        logger.warning("%s", results.NO_EVALUATION.format(dataset=run.dataset))
    # the moving average exists only in a run that deploys it: deploy it to see all three side by side
    other_deployments = ([d for d in algos.common.DEPLOYMENTS if d not in (agent.deploy, "average")]
                         if run.eval_deployments and "deploy" not in algos.fields_without_effect(agent, ["deploy"])
                         else [])
    return Learning(trainer, act, eval_act, can_evaluate, units, start_q, greedy, other_deployments)


class Chunks(NamedTuple):
    """The run's train steps as `num` jitted chunks of `size` steps."""

    num: int
    size: int

    @classmethod
    def of(cls, cfg: Config) -> "Chunks":
        """run.total_steps rounded up to whole chunks of agent.steps_per_chunk."""
        spc = cfg.agent.steps_per_chunk
        chunks = cls(max(1, math.ceil(cfg.run.total_steps / spc)), spc)
        if chunks.total != cfg.run.total_steps:
            logger.info("total_steps %d rounded up to %d chunks x %d steps = %d", cfg.run.total_steps, chunks.num,
                        spc, chunks.total)
        return chunks

    @property
    def total(self) -> int:
        return self.num * self.size


@dataclasses.dataclass
class Start:
    """Where the loop starts: the seeds' states after `chunk` chunks, the records so far, and the
    chunk of the newest checkpoint (None: none yet)."""

    states: Any
    chunk: int = 0
    history: list = dataclasses.field(default_factory=list)  # the metrics rows
    evals: list = dataclasses.field(default_factory=list)  # the evaluation records
    elapsed_s: float = 0.0  # wall time of the run before this process
    saved_chunk: Optional[int] = None


def resume_or_init(run_dir: Path, cfg: Config, trainer: Any, mesh: Any, ckpt: Checkpointer, chash: str,
                   chunks: Chunks) -> Start:
    """Continues from the newest checkpoint in `ckpt` (refusing one of another config), or
    initialises every seed (behaviour cloning first where the config has bc_steps)."""
    run = cfg.run
    keys = seed_keys(run.seed, run.seeds)
    latest = ckpt.latest_step()
    if latest is None:
        logger.info("initialising %d seed(s)%s", run.seeds, " (behaviour cloning first)" if cfg.agent.behaviour.steps else "")
        return Start(sharding.init_sharded(trainer, keys, mesh))
    meta = ckpt.restore_meta(latest)
    if meta.get("config_hash") != chash:
        raise config.UsageError(f"the checkpoint in {run_dir / 'checkpoints'} belongs to another config "
                                f"(hash {meta.get('config_hash')} vs {chash}); start a new run")
    states, meta = ckpt.restore(jax.eval_shape(trainer.init_seeds, keys), latest)
    start = Start(sharding.shard_seeds(states, mesh), int(meta["chunk"]), list(meta["history"]),
                  list(meta["evals"]), float(meta["elapsed_s"]), latest)
    logger.info("resumed from the checkpoint at chunk %d/%d (step %d)", start.chunk, chunks.num,
                start.chunk * chunks.size)
    return start


# ----------------------------------------------------------------------------- after each chunk


class ChunkHook:
    """What follows each chunk: its metrics row, the periodic evaluation, the metric sinks and
    progress bar, and the periodic checkpoint. Holds the run's records (history, evals) and its
    wall time; `close` closes the sinks, the bar and the checkpointer."""

    def __init__(self, run_dir: Path, cfg: Config, spec: Any, learning: Learning, ckpt: Checkpointer,
                 start: Start, chunks: Chunks, chash: str):
        self.run_dir, self.cfg, self.spec, self.learning, self.ckpt = run_dir, cfg, spec, learning, ckpt
        self.chunks, self.chash, self.first_chunk = chunks, chash, start.chunk + 1
        self.history, self.evals, self.saved_chunk = start.history, start.evals, start.saved_chunk
        run = cfg.run
        self.metric_logger = make_metric_logger(run_dir, history=self.history, tensorboard=run.tensorboard,
                                                wandb=run.wandb, wandb_project=run.wandb_project,
                                                run_name=f"{run.algo}-{run.dataset}", config=cfg.to_json())
        self._elapsed_before, self._t0 = start.elapsed_s, time.perf_counter()
        self.bar = tqdm(total=chunks.total, initial=start.chunk * chunks.size, unit="step", disable=not run.progress,
                        dynamic_ncols=True, desc=f"{run.algo} {run.dataset}", file=sys.stderr)

    def elapsed(self) -> float:
        """Wall time of the run so far, over every process that ran it."""
        return self._elapsed_before + time.perf_counter() - self._t0

    def __call__(self, c: int, states: Any, metrics: Any, chunk_s: float) -> None:
        """After chunk `c` (1-based) took `chunk_s` seconds, giving `states` and `metrics`."""
        run, spc = self.cfg.run, self.chunks.size
        row: dict[str, Any] = {"chunk": c, "step": c * spc, "chunk_time_s": chunk_s,
                               "steps_per_s": spc / chunk_s if chunk_s > 0 else None,
                               "includes_compile": c == self.first_chunk}
        row.update(summarize_chunk_metrics(metrics))
        final = c == self.chunks.num
        if self.learning.can_evaluate and (final or (run.eval_every_chunks > 0 and c % run.eval_every_chunks == 0)):
            row.update(self.evaluate(c, states, final))
        row["wall_time_s"] = self.elapsed()
        row = to_json_value(row)
        self.history.append(row)
        self.metric_logger.write(row)
        self.bar.update(spc)
        self.bar.set_postfix(_postfix(row, self.evals), refresh=False)
        if final or c % run.checkpoint_every_chunks == 0:
            self.save(c, states)

    def evaluate(self, c: int, states: Any, final: bool) -> dict[str, Any]:
        """Evaluates the deployed policy of every seed after chunk `c` (and the other deployments
        with --run.eval_deployments); appends the record to `evals`; returns the row's eval fields."""
        run, agent, learning = self.cfg.run, self.cfg.agent, self.learning
        trainer, row = learning.trainer, {}
        episodes = (run.final_eval_episodes or run.eval_episodes) if final else run.eval_episodes
        deployed = algos.deployed_policy(states, agent)
        # Q at the episodes' first states, after them, with the critic of the deployed policy
        q_at = (None if learning.start_q is None
                else functools.partial(learning.start_q, trainer.data, states.critic, deployed))
        ev = results.evaluate_seeds(self.spec, learning.eval_act, jax.device_get(deployed),
                                    run.seeds, episodes, final=final, units=learning.units, start_q=q_at)
        for other in learning.other_deployments:  # --run.eval_deployments: the same episodes, another policy
            ev_o = results.evaluate_seeds(
                self.spec, learning.eval_act,
                jax.device_get(algos.deployed_policy(states, dataclasses.replace(agent, deploy=other))),
                run.seeds, episodes, final=final, units=learning.units)
            ev.setdefault("deployments", {})[other] = {k: ev_o[k] for k in ("raw", "normalized", "mc_value")}
            if ev_o["normalized"] is not None:
                row[f"eval/{other}/normalized_mean"] = results.mean_std(ev_o["normalized"])["mean"]
        if learning.greedy is not None:  # the same dataset states at every evaluation of every seed
            gains = np.asarray(jax.device_get(learning.greedy(trainer.data, states.critic, deployed,
                                                              jax.random.PRNGKey(run.seed))), np.float64)
            row["greedy_gain"] = float(gains.mean())
            if run.seeds > 1:
                row["greedy_gain/seeds"] = gains.tolist()
        if "q_start" in ev:  # in the stored record: results.json reads it per seed
            row["eval/q_start_mean"] = results.mean_std(ev["q_start"])["mean"]
        ev.update(chunk=c, step=c * self.chunks.size, final=final)
        self.evals.append(to_json_value(ev))
        row["eval/raw_mean"] = results.mean_std(ev["raw"])["mean"]
        if ev["normalized"] is not None:
            ns = results.mean_std(ev["normalized"])
            row["eval/normalized_mean"], row["eval/normalized_std"] = ns["mean"], ns["std"]
            if run.seeds > 1:
                row["eval/normalized/seeds"] = ev["normalized"]
        if ev["mc_value"] is not None:  # discounted return of the episodes, learning units
            row["eval/mc_value_mean"] = results.mean_std(ev["mc_value"])["mean"]
        return row

    def save(self, c: int, states: Any) -> None:
        """A checkpoint of `states` after chunk `c`, with the records so far."""
        self.ckpt.save(c, states, to_json_value({"chunk": c, "num_chunks": self.chunks.num, "config_hash": self.chash,
                                                 "history": self.history, "evals": self.evals,
                                                 "elapsed_s": self.elapsed()}))
        self.saved_chunk = c

    def stopped(self, c: int, states: Any) -> None:
        """A stop was requested after chunk `c`: saves it (unless just saved) and says how to resume."""
        if self.saved_chunk != c:
            self.save(c, states)
        self.bar.close()
        msg = (f"Interrupted at chunk {c}/{self.chunks.num} (step {c * self.chunks.size}); checkpoint saved.\n"
               f"Resume with: {PROG} --resume {self.run_dir}")
        logger.info(msg.replace("\n", " "))
        print(msg, file=sys.stderr)

    def aborted(self, c: int) -> None:
        """A second Ctrl-C during chunk `c + 1`: says where the last checkpoint is."""
        self.bar.close()
        print(f"Aborted at chunk {c}/{self.chunks.num} without saving; the last checkpoint is at chunk "
              f"{self.saved_chunk}.\nResume with: {PROG} --resume {self.run_dir}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        self.metric_logger.close()
        self.ckpt.close()


# ----------------------------------------------------------------------------- the end


def finish(run_dir: Path, cfg: Config, spec: Any, dataset: Any, learning: Learning, states: Any, hook: ChunkHook,
           *, pool_info: dict[str, Any], setup_s: float, chash: str, code: Optional[dict[str, Any]] = None) -> int:
    """The finished run's policy files, learning curve, results.json (last) and summary table."""
    run, agent, evals, history = cfg.run, cfg.agent, hook.evals, hook.history
    total = hook.chunks.total
    final_eval = evals[-1] if evals else None
    policy_files = write_policies(run_dir, learning.trainer, learning.act,
                                  jax.device_get(algos.deployed_policy(states, agent)), cfg, final_eval,
                                  total_steps=total)
    refs = paper_references(run.dataset, run.algo)
    behaviour = behaviour_score(dataset, spec.ref_min_score, spec.ref_max_score)
    bc = (("BC (--run.bc_score)", run.bc_score) if run.bc_score is not None
          else rundir.bc_score_beside(run_dir, run.dataset))
    plot_learning_curve(evals, run_dir / "learning_curve.png", title=f"{run.algo.upper()} on {run.dataset}",
                        references=refs, history=history, behaviour=behaviour._asdict(), bc=bc,
                        posterior=agent.algo.kind == "pspo")
    res = results.write_results(run_dir, cfg, spec, evals, history, wall_s=hook.elapsed(), setup_s=setup_s,
                                pool_info=pool_info, total_steps=total, num_chunks=hook.chunks.num, chash=chash,
                                policy_files=policy_files, references=refs, behaviour=behaviour, code=code)
    print(results.summary_table(res, run_dir))
    return EXIT_OK


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """[S, 2] uint32 keys; seed i's key does not depend on S (fold_in, not split)."""
    base = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(base, i) for i in range(num_seeds)])


class StopFlag:
    """Inside `with`: the first SIGINT/SIGTERM asks to stop after the current chunk; the second
    raises KeyboardInterrupt (abort)."""

    def __init__(self):
        self.requested = False
        self._old: dict[int, Any] = {}

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("%s received: stopping after the current chunk and saving a checkpoint "
                       "(press Ctrl-C again to abort without saving)", signal.Signals(signum).name)

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


def write_policies(run_dir: Path, trainer: Any, act: Any, policy_params: Any, cfg: Config,
                   final: Optional[dict[str, Any]], *, total_steps: int) -> list[str]:
    """Writes `policy_seed{i}.npz` (jaxrl_bayes.policy, atomically) for every seed.

    Each file's actions are checked against the trainer's own `act` on dataset states before it
    is kept. Returns the file names (relative to `run_dir`).
    """
    module, data = trainer.nets.policy, trainer.data
    obs = np.asarray(data.obs)
    check_obs = obs[np.linspace(0, len(obs) - 1, min(len(obs), 256)).astype(int)]
    run = cfg.run
    names = []
    for i in range(run.seeds):
        p_i = jax.tree_util.tree_map(lambda x: x[i], policy_params)
        name = policy_lib.POLICY_FILE_TEMPLATE.format(i)
        meta = {
            "algo": run.algo, "dataset": run.dataset, "preset": run.preset, "seed_index": i, "run_seed": run.seed,
            "total_steps": total_steps, "eval_episodes": final["episodes"] if final else 0,
            "eval_seed": results.eval_seed(final=True),  # `experiments.evaluate --seed` reproduces it
            "raw_return": final["raw"][i] if final else None,
            "normalized_score": final["normalized"][i] if final and final["normalized"] is not None else None,
            # a local dataset file's evaluation setting, so `experiments.evaluate` can repeat it
            "eval_env": run.eval_env or None, "ref_min_score": run.ref_min_score, "ref_max_score": run.ref_max_score,
            "run_dir": str(run_dir), "written_at": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        path = policy_lib.save_policy(run_dir / name, p_i, obs_mean=np.asarray(data.obs_mean),
                                      obs_std=np.asarray(data.obs_std), action_dim=int(module.action_dim),
                                      hidden=tuple(int(h) for h in module.hidden), activation=module.activation,
                                      action_scale=module.action_scale, meta=meta)
        want = np.asarray(act(p_i, check_obs, data))
        got = np.asarray(policy_lib.load_policy(path).act(check_obs))
        if want.shape != got.shape or not np.allclose(want, got, rtol=0.0, atol=1e-5):
            path.unlink(missing_ok=True)
            raise RuntimeError(f"the exported policy {path} does not reproduce the trainer's actions; "
                               "experiments.run.write_policies is out of date with the trainer's policy")
        names.append(name)
    logger.info("wrote %s in %s", ", ".join(names), run_dir)
    return names


def _postfix(row: dict[str, Any], evals: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    if row.get("steps_per_s") is not None:
        out["steps/s"] = f"{row['steps_per_s']:.0f}"
    if evals:
        last = evals[-1]
        if last.get("normalized") is not None:
            out["eval"] = f"{np.mean(last['normalized']):.1f}"
        else:
            out["eval"] = f"{np.mean(last['raw']):.3g} (raw)"
        out["@step"] = str(last["step"])
    return out


if __name__ == "__main__":
    sys.exit(main())
