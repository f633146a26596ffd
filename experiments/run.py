"""`python -m experiments.run`: train RRPI / PSPO / PMDB (and ablations) on one dataset.

With no arguments it runs RRPI on `liquidation-random-v0` with the liquidation "cpu" preset.

The flow (ALGORITHMS.md §6, ARCHITECTURE.md):

    load data -> train or reuse the cached dynamics pool -> trainer.init (behaviour cloning for
    PSPO) -> policy iteration in jitted chunks (all seeds at once with jax.vmap), periodic
    evaluation and checkpoints -> final evaluation -> results.json, learning_curve.png, summary

Configuration is three frozen dataclasses: `RunConfig` (below), `jaxrl_bayes.dynamics.
DynamicsConfig` and `jaxrl_bayes.algos.AgentConfig`. A field's value is resolved in this order
(later wins):

    dataclass default < algorithm default (algos.algo_config) < preset < command line

Presets live in `experiments/configs/<family>.json` (family = the dataset's family, e.g.
liquidation, hopper); each file holds named presets ("cpu", "paper"), each with sections "run",
"dynamics", "agent" (and optional "algo:<name>" sections applied to that algorithm and its
ablations "<name>-*"); every value is {"value": ..., "_source": "..."}. Every config field can be
overridden: `--run.total_steps 2000 --dynamics.num_members 10 --agent.gamma 0.99`; tuples are
comma lists (`--dynamics.hidden 200,200`), booleans true/false, optionals `none`.

A run directory holds: config.json (the resolved config), run.log, metrics.jsonl and metrics.csv
(one row per chunk), checkpoints/ (orbax, the newest `keep_checkpoints` kept), dynamics.json
(which cached pool was used), learning_curve.png, policy_seed{i}.npz (each seed's deployable
policy, `jaxrl_bayes.policy`; evaluate with `python -m experiments.evaluate --policy RUN_DIR`),
and results.json written last and atomically (its presence marks a finished run). Optional
TensorBoard (`--run.tensorboard`) and wandb (`--run.wandb`) sinks are off by default.

Ctrl-C (or SIGTERM) stops after the current chunk, saves a checkpoint and prints the resume
command; `--resume RUN_DIR` continues the run bit-exactly (same config required; the differing
fields are listed otherwise). A second Ctrl-C aborts at once; the last checkpoint stays valid.

Everything numerical (training, scores, normalization) comes from the library modules; this file
only wires them together.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from jaxrl_bayes.checkpoint import CheckpointError

logger = logging.getLogger("experiments.run")

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
CACHE_ENV = "JAXRL_BAYES_CACHE"
EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
SECTIONS = ("run", "dynamics", "agent")
# Fields that do not change what is computed: a resume may differ in them.
IGNORED_ON_RESUME = frozenset({"run.out", "run.force", "run.progress", "run.tensorboard", "run.wandb",
                               "run.wandb_project"})
# Run fields a preset may not set (they choose the preset, or are per-invocation).
_NOT_IN_PRESETS = frozenset({"dataset", "algo", "preset", "out", "force"})


class UsageError(ValueError):
    """A problem the user can fix (bad name, bad value, wrong directory); printed without traceback."""


class ConfigMismatchError(UsageError):
    """A resume was asked for with a config that differs from the saved one."""


class RunDirError(UsageError):
    """The output / resume directory cannot be used as asked."""


# ----------------------------------------------------------------------------- run config


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to train on, for how long, how often to evaluate/checkpoint, where to write."""

    dataset: str = "liquidation-random-v0"  # BENCHMARKS.md: the embedded default
    algo: str = "rrpi"  # issue 6: the no-argument run is RRPI
    preset: str = "cpu"  # issue 6: the small CPU preset unless --preset paper
    seeds: int = 1  # seeds trained together with jax.vmap
    seed: int = 0  # base seed: seed i uses fold_in(PRNGKey(seed), i)
    total_steps: int = 20_000  # train steps per seed, rounded up to whole chunks (preset sets it)
    eval_every_chunks: int = 5  # periodic evaluation (0 = only the final one)
    eval_episodes: int = 1000  # BENCHMARKS.md: liquidation >= 1000, locomotion >= 10
    final_eval_episodes: int = 0  # episodes of the final evaluation (0 = eval_episodes)
    checkpoint_every_chunks: int = 1  # measured choice: an orbax save costs ~0.1 s on CPU
    keep_checkpoints: int = 3  # issue 6: last k kept
    dynamics_seed: int = 0  # key of the dynamics pool training (part of the cache key)
    out: str = ""  # run directory ("" = runs/<dataset>/<algo>-<timestamp>)
    force: bool = False  # overwrite a finished run in --out
    progress: bool = True  # progress bar
    tensorboard: bool = False  # optional sink (needs tensorboardX)
    wandb: bool = False  # optional sink (needs wandb)
    wandb_project: str = "jaxrl_bayes"

    def validate(self) -> None:
        problems = []
        for name in ("seeds", "total_steps", "eval_episodes", "checkpoint_every_chunks", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"run.{name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every_chunks", "final_eval_episodes"):
            if getattr(self, name) < 0:
                problems.append(f"run.{name}={getattr(self, name)} must be >= 0")
        if problems:
            raise UsageError("invalid run config: " + "; ".join(problems))


class ResolvedConfig(NamedTuple):
    run: RunConfig
    dynamics: Any  # DynamicsConfig
    agent: Any  # AgentConfig

    def to_json(self) -> dict:
        """{"run": {...}, "dynamics": {...}, "agent": {...}} with tuples as lists."""
        return json.loads(json.dumps({s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}))


class Components(NamedTuple):
    """The library pieces the run needs (injectable so the CLI plumbing is testable)."""

    get_spec: Callable[[str], Any]
    list_datasets: Callable[[], Sequence[str]]
    algorithms: Sequence[str]
    algo_config: Callable[..., Any]
    make_trainer: Callable[..., Any]
    AgentConfig: type
    DynamicsConfig: type
    train_pool: Callable[..., Any]
    save_pool: Callable[[Any, str], None]
    load_pool: Callable[[str], Any]
    configs_dir: Path = CONFIGS_DIR


def real_components() -> Components:
    """The project's modules (imported here, lazily)."""
    from jaxrl_bayes import algos, dynamics
    from jaxrl_bayes.data import registry

    return Components(
        get_spec=registry.get_spec,
        list_datasets=registry.list_datasets,
        algorithms=tuple(algos.ALGORITHMS),
        algo_config=algos.algo_config,
        make_trainer=algos.make_trainer,
        AgentConfig=algos.AgentConfig,
        DynamicsConfig=dynamics.DynamicsConfig,
        train_pool=dynamics.train_pool,
        save_pool=dynamics.save_pool,
        load_pool=dynamics.load_pool,
    )


# ----------------------------------------------------------------------------- typed values


def _field_comments(cls: type) -> dict[str, str]:
    """The trailing `# comment` of each field line in the class source (help texts)."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in source.splitlines():
        m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            out.setdefault(m.group(1), m.group(2).strip())
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (_type_name(args[0]) if len(args) == 1 else "|".join(_type_name(a) for a in args)) + "|none"
    if origin is tuple:
        args = typing.get_args(tp)
        return f"{_type_name(args[0])},..." if args else "a,b,..."
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(tp)) + "}"
    return getattr(tp, "__name__", str(tp))


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def parse_value(text: str, tp: Any) -> Any:
    """Parses command-line text into a value of type `tp`.

    bool: true/false/1/0/yes/no/on/off; tuple[X, ...]: comma list ("" = empty); Optional[X]:
    "none"/"null" = None; Literal: one of the choices; other types: int/float/str, else JSON.
    Raises ValueError with a readable message.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp) and text.strip().lower() in {"none", "null"}:
            return None
        errors = []
        for a in args:
            try:
                return parse_value(text, a)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is tuple:
        args = typing.get_args(tp)
        inner = args[0] if args else str
        body = text.strip().strip("()[]")
        if not body.strip():
            return ()
        return tuple(parse_value(p.strip(), inner) for p in body.split(","))
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if str(c) == text:
                return c
        raise ValueError(f"{text!r} is not one of {list(choices)}")
    if tp is bool:
        t = text.strip().lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            f = float(text)  # accept 2e4
            if f.is_integer():
                return int(f)
            raise ValueError(f"{text!r} is not an integer") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if tp is str or tp is Any:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def coerce_value(value: Any, tp: Any, where: str) -> Any:
    """Checks/converts a JSON value (preset or saved config) to type `tp` (lists -> tuples)."""
    origin = typing.get_origin(tp)
    bad = UsageError(f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in typing.get_args(tp):
            return None
        for a in typing.get_args(tp):
            if a is type(None):
                continue
            try:
                return coerce_value(value, a, where)
            except UsageError:
                pass
        raise bad
    if origin is tuple:
        if isinstance(value, str):
            return parse_value(value, tp)
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        inner = args[0] if args and (len(args) == 2 and args[1] is Ellipsis or len(args) == 1) else Any
        return tuple(coerce_value(v, inner, where) for v in value)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def _check_fields(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise UsageError(
            f"{where}: unknown field(s) {', '.join(unknown)}; valid fields of {cls.__name__}: "
            f"{', '.join(types_)}"
        )
    return {k: coerce_value(v, types_[k], f"{where}.{k}") for k, v in values.items()}


# ----------------------------------------------------------------------------- presets


def preset_file(family: str, configs_dir: Path) -> Path:
    return Path(configs_dir) / f"{family}.json"


def available_presets(configs_dir: Path) -> dict[str, list[str]]:
    """family -> preset names, for every preset file."""
    out = {}
    for p in sorted(Path(configs_dir).glob("*.json")):
        try:
            out[p.stem] = [k for k in json.loads(p.read_text()) if not k.startswith("_")]
        except (OSError, json.JSONDecodeError):
            out[p.stem] = ["<unreadable>"]
    return out


def load_preset(family: str, name: str, algo: str, configs_dir: Path, *, explicit: bool) -> dict[str, dict]:
    """The section values of preset `name` for dataset family `family` and algorithm `algo`.

    Returns {"run": {...}, "dynamics": {...}, "agent": {...}} (plain values, sources dropped).
    "algo:<a>" sections apply when algo == a or algo starts with a + "-" (its ablations).
    A missing preset file is an error only when the preset was asked for explicitly; otherwise
    the defaults are used (with a warning).
    """
    path = preset_file(family, configs_dir)
    empty = {s: {} for s in SECTIONS}
    if not path.is_file():
        files = sorted(p.stem for p in Path(configs_dir).glob("*.json"))
        msg = (f"no preset file for dataset family {family!r} ({path}); preset files exist for: "
               f"{', '.join(files) or 'none'}")
        if explicit:
            raise UsageError(msg + "; drop --preset to use the built-in defaults")
        logger.warning("%s; using the built-in defaults", msg)
        return empty
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"preset file {path} is not valid JSON: {e}") from e
    names = [k for k in data if not k.startswith("_")]
    if name not in names:
        raise UsageError(f"unknown preset {name!r} for {family} ({path}); choose one of: {', '.join(names)}")
    preset = data[name]
    out = {s: {} for s in SECTIONS}

    def take(section_name: str, section: Mapping[str, Any], target: str) -> None:
        if target not in SECTIONS:
            raise UsageError(f"{path}: preset {name!r} has unknown section {section_name!r}; "
                             f"sections are {', '.join(SECTIONS)} and algo:<name>")
        for field, entry in section.items():
            if field.startswith("_"):
                continue
            if not isinstance(entry, Mapping) or "value" not in entry or "_source" not in entry:
                raise UsageError(f"{path}: preset {name!r} {section_name}.{field} must be "
                                 f'{{"value": ..., "_source": "..."}}')
            if target == "run" and field in _NOT_IN_PRESETS:
                raise UsageError(f"{path}: preset {name!r} may not set run.{field}")
            out[target][field] = entry["value"]

    for key, section in preset.items():
        if key.startswith("_"):
            continue
        if key.startswith("algo:"):
            a = key[len("algo:"):]
            if algo == a or algo.startswith(a + "-"):
                for sub, subsection in section.items():
                    if not sub.startswith("_"):
                        take(f"{key}/{sub}", subsection, sub)
            continue
        take(key, section, key)
    return out


# ----------------------------------------------------------------------------- resolution


def _get_spec(comps: Components, name: str) -> Any:
    try:
        return comps.get_spec(name)
    except ValueError as e:
        msg = str(e)
        try:
            names = list(comps.list_datasets())
        except Exception:  # the listing is a courtesy
            names = []
        if names and not any(n in msg for n in names[:3]):
            msg += "; known datasets: " + ", ".join(names)
        raise UsageError(msg) from e


def _check_algo(comps: Components, algo: str) -> None:
    if algo not in comps.algorithms:
        raise UsageError(f"unknown algorithm {algo!r}; choose one of: {', '.join(comps.algorithms)}")


def _family(spec: Any, dataset: str) -> str:
    fam = getattr(spec, "family", None)
    if fam:
        return str(fam)
    return dataset.split("/")[-2] if "/" in dataset else dataset.split("-")[0]


def _build(comps: Components, run_vals: Mapping, dyn_vals: Mapping, agent_vals: Mapping,
           *, use_algo_defaults: bool) -> ResolvedConfig:
    run_kw = _check_fields(RunConfig, run_vals, "run")
    dyn_kw = _check_fields(comps.DynamicsConfig, dyn_vals, "dynamics")
    agent_kw = _check_fields(comps.AgentConfig, agent_vals, "agent")
    run = RunConfig(**run_kw)
    run.validate()
    _check_algo(comps, run.algo)
    dynamics = comps.DynamicsConfig(**dyn_kw)
    if hasattr(dynamics, "validate"):
        try:
            dynamics.validate()
        except ValueError as e:
            raise UsageError(str(e)) from e
    try:
        if use_algo_defaults:
            # the named algorithm's defaults, then the preset/CLI values (an explicit --agent.algo
            # overrides the code path the name selects: a research variant)
            agent = comps.algo_config(run.algo, **agent_kw)
        else:
            agent = comps.AgentConfig(**agent_kw)
            if hasattr(agent, "validate"):
                agent.validate()
    except (TypeError, ValueError) as e:
        raise UsageError(f"agent config for {run.algo!r}: {e}") from e
    if getattr(agent, "steps_per_chunk", 1) < 1:
        raise UsageError("agent.steps_per_chunk must be >= 1")
    return ResolvedConfig(run, dynamics, agent)


def resolve_config(overrides: Mapping[str, Mapping[str, Any]], comps: Components,
                   saved: Optional[Mapping[str, Mapping[str, Any]]] = None) -> ResolvedConfig:
    """Resolves the three configs.

    Args:
      overrides: {"run": {...}, "dynamics": {...}, "agent": {...}} of values given on the
        command line (only those given).
      comps: the library components.
      saved: a saved config.json (resume): it replaces the defaults; a preset is applied on top
        only when `overrides["run"]` names one, then the overrides.
    Returns:
      ResolvedConfig. New runs: dataclass defaults < algorithm defaults < preset < overrides.
    """
    over = {s: dict(overrides.get(s, {})) for s in SECTIONS}
    if saved is None:
        run_defaults = dataclasses.asdict(RunConfig())
        algo = over["run"].get("algo", run_defaults["algo"])
        dataset = over["run"].get("dataset", run_defaults["dataset"])
        _check_algo(comps, algo)
        spec = _get_spec(comps, dataset)
        preset_name = over["run"].get("preset", run_defaults["preset"])
        preset = load_preset(_family(spec, dataset), preset_name, algo, comps.configs_dir,
                             explicit="preset" in over["run"])
        return _build(comps, {**preset["run"], **over["run"]}, {**preset["dynamics"], **over["dynamics"]},
                      {**preset["agent"], **over["agent"]}, use_algo_defaults=True)
    base = {s: dict(saved[s]) for s in SECTIONS}
    if "preset" in over["run"]:
        algo = over["run"].get("algo", base["run"]["algo"])
        dataset = over["run"].get("dataset", base["run"]["dataset"])
        spec = _get_spec(comps, dataset)
        preset = load_preset(_family(spec, dataset), over["run"]["preset"], algo, comps.configs_dir, explicit=True)
        for s in SECTIONS:
            base[s].update(preset[s])
    for s in SECTIONS:
        base[s].update(over[s])
    return _build(comps, base["run"], base["dynamics"], base["agent"], use_algo_defaults=False)


def config_diff(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]],
                ignore: frozenset = IGNORED_ON_RESUME) -> list[tuple[str, Any, Any]]:
    """[(section.field, value in a, value in b)] for every field that differs (JSON values)."""
    diffs = []
    for s in SECTIONS:
        for k in sorted(set(a.get(s, {})) | set(b.get(s, {}))):
            name = f"{s}.{k}"
            if name in ignore:
                continue
            va, vb = a.get(s, {}).get(k, "<absent>"), b.get(s, {}).get(k, "<absent>")
            if va != vb:
                diffs.append((name, va, vb))
    return diffs


def config_hash(cfg_json: Mapping[str, Mapping[str, Any]]) -> str:
    """sha256 of the config without the fields a resume may change."""
    kept = {s: {k: v for k, v in cfg_json[s].items() if f"{s}.{k}" not in IGNORED_ON_RESUME} for s in SECTIONS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def check_optional_sinks(run: RunConfig) -> None:
    """Fails early (before any directory is made) when an optional sink's package is missing."""
    import importlib.util

    for flag, package in (("tensorboard", "tensorboardX"), ("wandb", "wandb")):
        if getattr(run, flag) and importlib.util.find_spec(package) is None:
            raise UsageError(f"--run.{flag} needs the optional package {package}: `pip install {package}` "
                             f"(or `pip install jaxrl_bayes[logging]`), or leave the sink off (the default)")


# ----------------------------------------------------------------------------- run directory


def default_out(run: RunConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = run.dataset.replace("/", "_")
    base = Path("runs") / safe / f"{run.algo}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def prepare_new_run_dir(out: Path, force: bool) -> None:
    """Makes `out` ready for a new run; never deletes anything that is not a run directory."""
    if out.exists():
        if not out.is_dir():
            raise RunDirError(f"--out {out} exists and is not a directory; choose another --out")
        if any(out.iterdir()):
            if not (out / "config.json").is_file():
                raise RunDirError(f"--out {out} is not empty and holds no run (no config.json); "
                                  f"choose another --out (--force only replaces run directories)")
            finished = (out / "results.json").is_file()
            lock = out / ".lock"
            if lock.is_file():
                try:
                    pid = int(lock.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and _alive(pid):
                    raise RunDirError(f"{out} is in use by process {pid}; wait for it or stop it")
            if not force:
                if finished:
                    raise RunDirError(f"{out} already holds a finished run (results.json); choose another "
                                      f"--out, or pass --force to overwrite it")
                raise RunDirError(f"{out} holds an unfinished run; continue it with "
                                  f"`python -m experiments.run --resume {out}`, or pass --force to start over")
            logger.warning("--force: removing the previous run in %s", out)
            (out / "results.json").unlink(missing_ok=True)  # first: the dir no longer looks finished
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


class _RunLock:
    """An exclusive lock file in the run directory (a stale lock of a dead process is taken over)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"

    def __enter__(self) -> "_RunLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise RunDirError(f"{self.path.parent} is in use by process {pid}; wait for it or stop it")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RunDirError(f"cannot lock {self.path.parent}")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"{what} {path} is unreadable ({e})") from e


# ----------------------------------------------------------------------------- dynamics cache


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxrl_bayes")


def dataset_fingerprint(dataset: Any) -> str:
    """sha256 over the transition arrays (name, size, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    h.update(str(getattr(dataset, "name", "")).encode())
    for field in ("observations", "actions", "rewards", "next_observations", "terminals"):
        arr = np.ascontiguousarray(np.asarray(getattr(dataset, field)))
        h.update(f"{field}:{arr.shape}:{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def dynamics_cache_dir(dataset_name: str, dyn_json: Mapping[str, Any], fingerprint: str, dynamics_seed: int) -> Path:
    """`$JAXRL_BAYES_CACHE/dynamics/<dataset>-<hash of config, data fingerprint, seed>`."""
    # "targets": what the pool learns; bump it whenever that changes so no stale pool is reused.
    key = json.dumps({"config": dyn_json, "data": fingerprint, "seed": dynamics_seed,
                      "targets": "delta_obs+raw_reward"}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_name)
    return cache_root() / "dynamics" / f"{safe}-{digest}"


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def get_or_train_pool(comps: Components, dataset: Any, cfg: ResolvedConfig) -> tuple[Any, dict]:
    """Loads the cached pool for (dataset, DynamicsConfig, dynamics_seed) or trains and caches it.

    The pool file is written atomically (dynamics.save_pool), so a cache entry exists only once
    complete; an unreadable entry is retrained. Returns (pool loaded from the cache file, info).
    """
    import jax

    from jaxrl_bayes.checkpoint import atomic_write_json

    dyn_json = cfg.to_json()["dynamics"]
    fp = dataset_fingerprint(dataset)
    cdir = dynamics_cache_dir(cfg.run.dataset, dyn_json, fp, cfg.run.dynamics_seed)
    pool_path = cdir / "pool.npz"
    info: dict[str, Any] = {"cache_dir": str(cdir), "pool_file": str(pool_path), "dataset_fingerprint": fp}
    if pool_path.is_file():
        try:
            pool = comps.load_pool(str(pool_path))
            info.update(reused=True, pool_sha256=_file_sha(pool_path))
            logger.info("reused cached dynamics pool %s", cdir)
            return pool, info
        except (ValueError, OSError) as e:
            logger.warning("cached dynamics pool %s is unreadable (%s); retraining it", pool_path, e)
    dyn = cfg.dynamics
    logger.info("training dynamics pool for %s (%s members; cache %s) ...", cfg.run.dataset,
                getattr(dyn, "num_members", "?"), cdir)
    t0 = time.perf_counter()
    pool, report = comps.train_pool(
        jax.random.PRNGKey(cfg.run.dynamics_seed),
        dataset.observations,
        dataset.actions,
        dataset.rewards,  # raw units: each algorithm applies its own reward normalization
        dataset.next_observations,
        dyn,
        progress=cfg.run.progress,
    )
    seconds = time.perf_counter() - t0
    cdir.mkdir(parents=True, exist_ok=True)
    comps.save_pool(pool, str(pool_path))
    summary = {"train_seconds": seconds}
    for name in ("epochs", "stopped_early", "num_train", "num_holdout"):
        if hasattr(report, name):
            summary[name] = getattr(report, name)
    for name in ("val_mse", "val_nll"):
        if hasattr(report, name):
            summary[name] = np.asarray(getattr(report, name)).tolist()
    from jaxrl_bayes.logging import to_json_value

    atomic_write_json(cdir / "info.json", to_json_value(
        {"dataset": cfg.run.dataset, "dynamics": dyn_json, "dynamics_seed": cfg.run.dynamics_seed,
         "dataset_fingerprint": fp, "report": summary}))
    logger.info("trained dynamics pool in %.1f s%s", seconds,
                f" (mean validation MSE {np.mean(summary['val_mse']):.4g})" if "val_mse" in summary else "")
    pool = comps.load_pool(str(pool_path))  # the same bytes a later run or a resume reads
    info.update(reused=False, pool_sha256=_file_sha(pool_path), train_seconds=seconds)
    return pool, info


# ----------------------------------------------------------------------------- trainer adapter


class PolicyExport(NamedTuple):
    """What a deployable policy file needs besides one seed's parameters (jaxrl_bayes.policy)."""

    action_dim: int
    hidden: tuple[int, ...]
    activation: str
    obs_mean: Any  # [obs_dim]
    obs_std: Any  # [obs_dim]
    check_obs: Any  # [B, obs_dim] states on which the file's actions are checked against `act`


class Driver(NamedTuple):
    """The seed-vmapped operations the run loop needs, whatever the Trainer's exact shape."""

    init: Callable[[Any], Any]  # keys [S, 2] -> states
    abstract_init: Callable[[Any], Any]  # keys -> ShapeDtypeStruct tree of the states (no compute)
    run_chunk: Callable[[Any], tuple[Any, Any]]  # states -> (states, metrics with a seed axis)
    policy_params: Callable[[Any], Any]  # states -> policy parameters with a seed axis
    act: Callable[[Any, Any], Any]  # (one seed's policy params, obs [B, obs_dim]) -> actions (jitted)
    # The same map, traceable and created once per run: the evaluators take it with a seed's
    # parameters as a traced argument, so every evaluation of every seed shares one compilation.
    eval_act: Optional[Callable[[Any, Any], Any]] = None
    policy_export: Optional[PolicyExport] = None  # None: the trainer's policy cannot be exported


def make_driver(trainer: Any) -> Driver:
    """Adapts a trainer: either `jaxrl_bayes.algos.Trainer` (functions take its `data`; jitted
    `init_seeds` / `run_chunk_seeds`) or the plain contract `init(key)`, `run_chunk(state)`,
    `act(params, obs)`, which is vmapped and jitted here."""
    import jax

    def policy_params(states):
        return states.policy_params if hasattr(states, "policy_params") else states.policy

    if hasattr(trainer, "init_seeds") and hasattr(trainer, "run_chunk_seeds"):
        data = trainer.data
        act_jit = jax.jit(trainer.act)
        return Driver(trainer.init_seeds, lambda keys: jax.eval_shape(trainer.init_seeds, keys),
                      trainer.run_chunk_seeds, policy_params, lambda p, o: act_jit(p, o, data),
                      eval_act=functools.partial(trainer.act, data=data),
                      policy_export=_policy_export(trainer))
    init = jax.jit(jax.vmap(trainer.init))
    act_jit = jax.jit(trainer.act)
    return Driver(init, lambda keys: jax.eval_shape(jax.vmap(trainer.init), keys),
                  jax.jit(jax.vmap(trainer.run_chunk)), policy_params, act_jit, eval_act=trainer.act)


def _policy_export(trainer: Any) -> Optional[PolicyExport]:
    """The architecture and normalizers of a `jaxrl_bayes.algos.Trainer`'s policy (None if the
    trainer does not have that shape). Every file written is checked against `trainer.act`
    (`write_policies`)."""
    nets, data = getattr(trainer, "nets", None), getattr(trainer, "data", None)
    if not hasattr(nets, "policy") or not all(hasattr(data, f) for f in ("obs", "act", "obs_mean", "obs_std")):
        return None
    module = nets.policy
    obs = np.asarray(data.obs)
    check = obs[np.linspace(0, len(obs) - 1, min(len(obs), 256)).astype(int)]
    return PolicyExport(int(module.action_dim), tuple(int(h) for h in module.hidden), module.activation,
                        np.asarray(data.obs_mean), np.asarray(data.obs_std), check)


# ----------------------------------------------------------------------------- evaluation


def seed_keys(seed: int, num_seeds: int):
    """[S, 2] uint32 keys; seed i's key does not depend on S (fold_in, not split)."""
    import jax
    import jax.numpy as jnp

    base = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(base, i) for i in range(num_seeds)])


def eval_seed(run_seed: int, seed_index: int, final: bool) -> int:
    """Evaluation episode seed: the same episodes at every periodic evaluation of a seed (common
    random numbers make the curve less noisy); other episodes for the final evaluation."""
    return ((run_seed * 100_003 + seed_index) * 2 + (2 if final else 1)) % (2**31 - 1)


def _accepts_params(evaluate: Callable) -> bool:
    """Whether an evaluate function takes the `params=` keyword (DatasetSpec.evaluate does)."""
    import inspect

    try:
        sig = inspect.signature(evaluate)
    except (TypeError, ValueError):
        return False
    return "params" in sig.parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                             for p in sig.parameters.values())


def evaluate_seeds(spec: Any, act_fn: Callable, policy_params: Any, num_seeds: int, episodes: int,
                   run_seed: int, *, final: bool) -> dict[str, Any]:
    """Evaluates every seed's deterministic policy.

    `act_fn(params, obs)` should be one object for the whole run: where `spec.evaluate` takes
    `params=` (the registry's specs do), each seed's parameters are a traced argument of one
    compiled evaluation, so no evaluation after the first compiles anything.

    Returns {"raw": [S] mean returns, "raw_std": [S] std over episodes, "normalized": [S] or
    None (no reference scores), "episodes": n}.
    """
    import jax

    has_ref = getattr(spec, "ref_min_score", None) is not None and getattr(spec, "ref_max_score", None) is not None
    with_params = _accepts_params(spec.evaluate)
    raw, raw_std, norm = [], [], []
    for i in range(num_seeds):
        p_i = jax.tree_util.tree_map(lambda x: x[i], policy_params)
        seed_i = eval_seed(run_seed, i, final)
        if with_params:
            returns = spec.evaluate(act_fn, episodes, seed_i, params=p_i)
        else:  # an evaluator without the params form: a closure per seed (compiles each time)
            returns = spec.evaluate(lambda o, p=p_i: act_fn(p, o), episodes, seed_i)
        returns = np.asarray(returns, dtype=np.float64)
        raw.append(float(returns.mean()))
        raw_std.append(float(returns.std()))
        if has_ref:
            norm.append(float(np.mean(spec.normalize(returns))))
    return {"raw": raw, "raw_std": raw_std, "normalized": norm if has_ref else None, "episodes": episodes}


def _mean_std(xs: Sequence[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


# ----------------------------------------------------------------------------- signals


class _StopFlag:
    """First SIGINT/SIGTERM: stop after the current chunk. Second: KeyboardInterrupt (abort)."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        logger.warning("%s received: stopping after the current chunk and saving a checkpoint "
                       "(press Ctrl-C again to abort without saving)", self.signal_name)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self)

    def uninstall(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


# ----------------------------------------------------------------------------- training


def _device_info() -> dict[str, Any]:
    import jax

    devs = jax.devices()
    return {"platform": devs[0].platform, "kind": devs[0].device_kind, "count": len(devs),
            "jax_version": jax.__version__}


def execute(run_dir: Path, cfg: ResolvedConfig, comps: Components, *, resuming: bool) -> int:
    """Trains (or continues) the run in `run_dir`; returns the exit code."""
    import jax
    from tqdm.auto import tqdm

    from jaxrl_bayes.checkpoint import Checkpointer, atomic_write_json
    from jaxrl_bayes.logging import make_metric_logger, summarize_chunk_metrics, to_json_value

    run, agent = cfg.run, cfg.agent
    cfg_json = cfg.to_json()
    chash = config_hash(cfg_json)
    t_setup = time.perf_counter()

    spec = _get_spec(comps, run.dataset)
    logger.info("loading dataset %s", run.dataset)
    dataset = spec.load()
    logger.info("dataset: %s transitions, obs_dim %s, act_dim %s", getattr(dataset, "size", "?"),
                getattr(dataset, "obs_dim", "?"), getattr(dataset, "act_dim", "?"))
    pool, pool_info = get_or_train_pool(comps, dataset, cfg)
    previous = run_dir / "dynamics.json"
    if resuming and previous.is_file():
        old_sha = _read_json(previous, "dynamics record").get("pool_sha256")
        if old_sha and old_sha != pool_info["pool_sha256"]:
            logger.warning("the dynamics pool differs from the one this run started with (the cache was "
                           "rebuilt); the resumed run will not be bit-identical to an uninterrupted one")
    atomic_write_json(previous, pool_info)

    trainer = comps.make_trainer(agent, dataset, pool, spec.termination_fn)
    driver = make_driver(trainer)
    keys = seed_keys(run.seed, run.seeds)

    spc = int(agent.steps_per_chunk)
    num_chunks = max(1, math.ceil(run.total_steps / spc))
    total = num_chunks * spc
    if total != run.total_steps:
        logger.info("total_steps %d rounded up to %d chunks x %d steps = %d", run.total_steps, num_chunks, spc, total)

    ckpt = Checkpointer(run_dir / "checkpoints", run.keep_checkpoints)
    start, history, evals, elapsed_before = 0, [], [], 0.0
    latest = ckpt.latest_step()
    if latest is not None:
        meta = ckpt.restore_meta(latest)
        if meta.get("config_hash") != chash:
            raise ConfigMismatchError(f"the checkpoint in {run_dir / 'checkpoints'} belongs to another config "
                                      f"(hash {meta.get('config_hash')} vs {chash}); start a new run")
        target = driver.abstract_init(keys)
        states, meta = ckpt.restore(target, latest)
        start, history, evals = int(meta["chunk"]), list(meta["history"]), list(meta["evals"])
        elapsed_before = float(meta["elapsed_s"])
        logger.info("resumed from the checkpoint at chunk %d/%d (step %d)", start, num_chunks, start * spc)
    else:
        if resuming:
            logger.info("no checkpoint in %s yet: starting from the beginning", run_dir)
        logger.info("initialising %d seed(s)%s", run.seeds,
                    " (behaviour cloning first)" if run.algo.startswith("pspo") else "")
        states = driver.init(keys)
    setup_s = time.perf_counter() - t_setup

    metric_logger = make_metric_logger(run_dir, history=history, tensorboard=run.tensorboard, wandb=run.wandb,
                                       wandb_project=run.wandb_project,
                                       run_name=f"{run.algo}-{run.dataset}", config=cfg_json)
    stop = _StopFlag()
    stop.install()
    saved_chunk = latest
    t0 = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def save(chunk: int) -> None:
        ckpt.save(chunk, states, to_json_value({"chunk": chunk, "num_chunks": num_chunks, "config_hash": chash,
                                                "history": history, "evals": evals, "elapsed_s": elapsed()}))

    bar = tqdm(total=total, initial=start * spc, unit="step", disable=not run.progress, dynamic_ncols=True,
               desc=f"{run.algo} {run.dataset}", file=sys.stderr)
    c = start
    try:
        while c < num_chunks:
            if stop.requested:
                break
            tc = time.perf_counter()
            states, metrics = driver.run_chunk(states)
            metrics = jax.device_get(metrics)
            chunk_s = time.perf_counter() - tc
            c += 1
            row: dict[str, Any] = {"chunk": c, "step": c * spc, "chunk_time_s": chunk_s,
                                   "steps_per_s": spc / chunk_s if chunk_s > 0 else None,
                                   "includes_compile": c == start + 1}
            row.update(summarize_chunk_metrics(metrics))
            final = c == num_chunks
            if final or (run.eval_every_chunks > 0 and c % run.eval_every_chunks == 0):
                episodes = (run.final_eval_episodes or run.eval_episodes) if final else run.eval_episodes
                ev = evaluate_seeds(spec, driver.eval_act or driver.act, driver.policy_params(states), run.seeds,
                                    episodes, run.seed, final=final)
                ev.update(chunk=c, step=c * spc, final=final)
                evals.append(to_json_value(ev))
                row["eval/raw_mean"] = _mean_std(ev["raw"])["mean"]
                if ev["normalized"] is not None:
                    ns = _mean_std(ev["normalized"])
                    row["eval/normalized_mean"], row["eval/normalized_std"] = ns["mean"], ns["std"]
                    if run.seeds > 1:
                        row["eval/normalized/seeds"] = ev["normalized"]
            row["wall_time_s"] = elapsed()
            row = to_json_value(row)
            history.append(row)
            metric_logger.write(row)
            bar.update(spc)
            bar.set_postfix(_postfix(row, evals), refresh=False)
            if final or c % run.checkpoint_every_chunks == 0:
                save(c)
                saved_chunk = c
        if c < num_chunks:  # a stop was requested
            if saved_chunk != c:
                save(c)
            bar.close()
            msg = (f"Interrupted at chunk {c}/{num_chunks} (step {c * spc}); checkpoint saved.\n"
                   f"Resume with: python -m experiments.run --resume {run_dir}")
            logger.info(msg.replace("\n", " "))
            print(msg, file=sys.stderr)
            return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        bar.close()
        where = f"chunk {saved_chunk}" if saved_chunk is not None else "no checkpoint yet"
        msg = (f"Aborted at chunk {c}/{num_chunks} without saving; the last checkpoint is at {where}.\n"
               f"Resume with: python -m experiments.run --resume {run_dir}")
        print(msg, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop.uninstall()
        bar.close()
        metric_logger.close()
        ckpt.close()

    policies = write_policies(run_dir, driver, states, cfg, evals[-1], total_steps=total)
    finish(run_dir, cfg, spec, evals, history, wall_s=elapsed(), setup_s=setup_s, pool_info=pool_info,
           total_steps=total, num_chunks=num_chunks, chash=chash, policy_files=policies)
    return EXIT_OK


def write_policies(run_dir: Path, driver: Driver, states: Any, cfg: ResolvedConfig, final: Mapping[str, Any], *,
                   total_steps: int) -> list[str]:
    """Writes `policy_seed{i}.npz` (jaxrl_bayes.policy, atomically) for every seed.

    Each file's actions are checked against the trainer's own `act` on dataset states before it
    is kept. Returns the file names (relative to `run_dir`); [] if the trainer's policy cannot
    be exported.
    """
    import jax

    from jaxrl_bayes import policy as policy_lib

    export = driver.policy_export
    if export is None:
        logger.info("this trainer's policy has no deployable form; no policy files written")
        return []
    run = cfg.run
    all_params = driver.policy_params(states)
    names = []
    for i in range(run.seeds):
        p_i = jax.tree_util.tree_map(lambda x: x[i], all_params)
        name = policy_lib.POLICY_FILE_TEMPLATE.format(i)
        meta = {
            "algo": run.algo, "dataset": run.dataset, "preset": run.preset, "seed_index": i, "run_seed": run.seed,
            "total_steps": total_steps, "eval_episodes": final["episodes"],
            "eval_seed": eval_seed(run.seed, i, final=True),  # `experiments.evaluate --seed` reproduces it
            "raw_return": final["raw"][i],
            "normalized_score": None if final["normalized"] is None else final["normalized"][i],
            "run_dir": str(run_dir), "written_at": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        path = policy_lib.save_policy(run_dir / name, p_i, obs_mean=export.obs_mean, obs_std=export.obs_std,
                                      action_dim=export.action_dim, hidden=export.hidden,
                                      activation=export.activation, meta=meta)
        deployed = policy_lib.load_policy(path)
        want = np.asarray(driver.act(p_i, export.check_obs))
        got = np.asarray(deployed.act(export.check_obs))
        if want.shape != got.shape or not np.allclose(want, got, rtol=0.0, atol=1e-5):
            path.unlink(missing_ok=True)
            raise RuntimeError(f"the exported policy {path} does not reproduce the trainer's actions "
                               f"(max difference {np.max(np.abs(want - got)) if want.shape == got.shape else 'shape'}); "
                               "the policy architecture in experiments.run._policy_export is out of date")
        names.append(name)
    logger.info("wrote %s in %s", ", ".join(names), run_dir)
    return names


def _postfix(row: Mapping[str, Any], evals: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    out = {}
    if row.get("steps_per_s") is not None:
        out["steps/s"] = f"{row['steps_per_s']:.0f}"
    if evals:
        last = evals[-1]
        if last.get("normalized") is not None:
            out["eval"] = f"{np.mean([v for v in last['normalized'] if v is not None]):.1f}"
        else:
            out["eval"] = f"{np.mean(last['raw']):.3g} (raw)"
        out["@step"] = str(last["step"])
    return out


def finish(run_dir: Path, cfg: ResolvedConfig, spec: Any, evals: Sequence[Mapping], history: Sequence[Mapping], *,
           wall_s: float, setup_s: float, pool_info: Mapping, total_steps: int, num_chunks: int, chash: str,
           policy_files: Sequence[str] = ()) -> dict:
    """Writes learning_curve.png, then results.json (atomically, last), prints the summary."""
    from experiments.plotting import paper_references, plot_learning_curve
    from jaxrl_bayes.checkpoint import atomic_write_json
    from jaxrl_bayes.logging import to_json_value

    run = cfg.run
    final = evals[-1]
    refs = paper_references(run.dataset, run.algo)
    plot_learning_curve(evals, run_dir / "learning_curve.png", title=f"{run.algo.upper()} on {run.dataset}",
                        references=refs)
    per_seed = []
    for i in range(run.seeds):
        per_seed.append({
            "seed_index": i,
            "raw_return": final["raw"][i],
            "raw_return_std_over_episodes": final["raw_std"][i],
            "normalized_score": None if final["normalized"] is None else final["normalized"][i],
            "policy_file": policy_files[i] if i < len(policy_files) else None,
        })
    timed = [r for r in history if r.get("chunk_time_s")]
    chunk_times = [r["chunk_time_s"] for r in timed if not r.get("includes_compile")] or [
        r["chunk_time_s"] for r in timed]
    results = {
        "dataset": run.dataset,
        "algo": run.algo,
        "preset": run.preset,
        "seeds": run.seeds,
        "total_steps": total_steps,
        "num_chunks": num_chunks,
        "eval_episodes": final["episodes"],
        "per_seed": per_seed,
        "raw_return": _mean_std(final["raw"]),
        "normalized_score": None if final["normalized"] is None else _mean_std(final["normalized"]),
        "std_note": "std over seeds (population std, ddof=0)",
        "ref_min_score": getattr(spec, "ref_min_score", None),
        "ref_max_score": getattr(spec, "ref_max_score", None),
        "paper_references": [{"label": l, "normalized_score": v} for l, v in refs],
        "wall_time_s": wall_s,
        "setup_time_s_last_segment": setup_s,
        # chunk time only: evaluation, checkpoints and (where possible) compilation excluded
        "train_steps_per_s": (cfg.agent.steps_per_chunk * len(chunk_times) / sum(chunk_times)) if chunk_times else None,
        "device": _device_info(),
        "dynamics_pool": dict(pool_info),
        # deployable policies (jaxrl_bayes.policy), relative to the run directory
        "policy_files": list(policy_files),
        "config_hash": chash,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    results = to_json_value(results)
    atomic_write_json(run_dir / "results.json", results)
    print(summary_table(results, run_dir))
    return results


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def summary_table(results: Mapping[str, Any], run_dir: Path) -> str:
    """A readable end-of-run table: per-seed raw return and normalized score, mean ± std."""
    dev = results["device"]
    lines = [
        "",
        f"{results['algo'].upper()} on {results['dataset']}  ({results['seeds']} seed(s), "
        f"{results['total_steps']:,} steps, {results['eval_episodes']} evaluation episodes)",
        f"  {'seed':>6}  {'raw return':>12}  {'normalized':>10}",
    ]
    for s in results["per_seed"]:
        norm = "n/a" if s["normalized_score"] is None else f"{s['normalized_score']:.1f}"
        lines.append(f"  {s['seed_index']:>6}  {s['raw_return']:>12.2f}  {norm:>10}")
    raw, norm = results["raw_return"], results["normalized_score"]
    norm_txt = "n/a" if norm is None else f"{norm['mean']:.1f} ± {norm['std']:.1f}"
    lines.append(f"  {'mean':>6}  {raw['mean']:>8.2f} ± {raw['std']:<.2f}  {norm_txt:>10}")
    for ref in results["paper_references"]:
        lines.append(f"  reference: {ref['label']} = {ref['normalized_score']:g}")
    sps = results.get("train_steps_per_s")
    lines.append(f"  wall time {_fmt_time(results['wall_time_s'])}"
                 + (f", {sps:.0f} train steps/s" if sps else "")
                 + f", device {dev['platform']} ({dev['kind']}) x{dev['count']}")
    lines.append(f"  run directory: {run_dir}")
    policies = results.get("policy_files") or []
    if policies:
        lines.append(f"  policies: {', '.join(policies)} (evaluate: python -m experiments.evaluate --policy {run_dir})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


_SHORTCUTS = {
    "algo": ("--algo", "algorithm name"),
    "dataset": ("--dataset", "dataset name (see --list)"),
    "seeds": ("--seeds", "number of seeds, trained together with jax.vmap"),
    "preset": ("--preset", "preset name in experiments/configs/<family>.json (cpu, paper)"),
    "out": ("--out", "run directory (default runs/<dataset>/<algo>-<timestamp>)"),
    "force": ("--force", "overwrite a finished run in --out"),
}


def build_parser(comps: Components) -> argparse.ArgumentParser:
    """The argument parser; `--<section>.<field>` options are generated from the dataclasses."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.run",
        usage="python -m experiments.run [--algo NAME] [--dataset NAME] [--seeds N] [--preset NAME] [--out DIR]\n"
              "                                [--resume RUN_DIR] [--force] [--show-config] [--list]\n"
              "                                [--run.FIELD V] [--dynamics.FIELD V] [--agent.FIELD V] ...",
        description="Train RRPI / PSPO / PMDB on an offline dataset (default: RRPI on liquidation-random-v0, "
                    "cpu preset). Values resolve as: dataclass default < algorithm default < preset < "
                    "command line.",
        epilog="Algorithms: " + ", ".join(comps.algorithms) + ". Presets: "
               + "; ".join(f"{fam}: {', '.join(names)}" for fam, names in available_presets(comps.configs_dir).items())
               + ". Example: python -m experiments.run --algo pspo --seeds 4 --run.total_steps 2000",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue the run in RUN_DIR exactly (other options must match its config)")
    parser.add_argument("--list", action="store_true", help="list algorithms, datasets and presets, then exit")
    parser.add_argument("--show-config", action="store_true",
                        help="print the resolved config (defaults, algorithm, preset, overrides) as JSON and exit")
    notes = {
        "run": "",
        "dynamics": " The preset may change these defaults.",
        "agent": " The algorithm (--algo) and the preset may change these defaults; --show-config prints the result.",
    }
    for section, cls in (("run", RunConfig), ("dynamics", comps.DynamicsConfig), ("agent", comps.AgentConfig)):
        group = parser.add_argument_group(f"{section} ({cls.__name__} fields)",
                                          f"Tuples are comma lists, booleans true/false, optionals none.{notes[section]}"
                                          if section != "run" else None)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        comments = _field_comments(cls)
        for name, tp in _field_types(cls).items():
            flags = [f"--{section}.{name}"]
            helptext = ""
            if section == "run" and name in _SHORTCUTS:
                flags.insert(0, _SHORTCUTS[name][0])
                helptext = _SHORTCUTS[name][1] + "; "
            elif name in comments:
                helptext = comments[name] + "; "
            default = defaults.get(name, dataclasses.MISSING)
            helptext += "default: " + ("(required)" if default is dataclasses.MISSING else repr(default))
            helptext = helptext.replace("%", "%%")
            kwargs: dict[str, Any] = dict(dest=f"{section}.{name}", default=argparse.SUPPRESS, help=helptext,
                                          type=_arg_type(tp, f"{section}.{name}"), metavar=_type_name(tp).upper())
            if tp is bool:
                kwargs.update(nargs="?", const=True, metavar="BOOL")
            group.add_argument(*flags, **kwargs)
    return parser


def _arg_type(tp: Any, name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_value(text, tp)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{name}: {e}") from None

    convert.__name__ = _type_name(tp)
    return convert


def _split_overrides(ns: argparse.Namespace) -> dict[str, dict[str, Any]]:
    over: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for dest, value in vars(ns).items():
        if "." in dest:
            section, field = dest.split(".", 1)
            over[section][field] = value
    return over


def _setup_logging(run_dir: Optional[Path]) -> list[tuple[logging.Logger, logging.Handler]]:
    class TqdmHandler(logging.Handler):
        def emit(self, record):
            try:
                from tqdm import tqdm

                tqdm.write(self.format(record), file=sys.stderr)
            except Exception:
                self.handleError(record)

    added = []
    console = TqdmHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handlers: list[logging.Handler] = [console]
    if run_dir is not None:
        fh = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(fh)
    for name in ("experiments", "jaxrl_bayes"):
        lg = logging.getLogger(name)
        added.append((lg, ("state", lg.level, lg.propagate)))
        lg.setLevel(logging.INFO)
        # not to the root logger: libraries (absl via orbax) put a stderr handler there, which
        # would print every line twice
        lg.propagate = False
        for h in handlers:
            lg.addHandler(h)
            added.append((lg, h))
    return added


def _teardown_logging(added) -> None:
    for lg, h in reversed(added):
        if isinstance(h, tuple):
            lg.setLevel(h[1])
            lg.propagate = h[2]
        else:
            lg.removeHandler(h)
            h.close()


def main(argv: Optional[Sequence[str]] = None, components: Optional[Components] = None) -> int:
    """Entry point. Returns the exit code (0 done, 2 usage error, 130 interrupted)."""
    comps = components or real_components()
    parser = build_parser(comps)
    ns = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if ns.list:
        print("algorithms: " + ", ".join(comps.algorithms))
        print("datasets: " + ", ".join(comps.list_datasets()))
        for fam, names in available_presets(comps.configs_dir).items():
            print(f"presets for {fam}: {', '.join(names)}")
        return EXIT_OK
    over = _split_overrides(ns)
    console_only = _setup_logging(None)
    run_dir: Optional[Path] = None
    try:
        if ns.resume:
            run_dir = Path(ns.resume)
            cfg_path = run_dir / "config.json"
            if not cfg_path.is_file():
                raise RunDirError(f"--resume {run_dir}: not a run directory (no config.json there)")
            saved = _read_json(cfg_path, "config")
            if (run_dir / "results.json").is_file():
                results = _read_json(run_dir / "results.json", "results")
                print(f"{run_dir} already holds a finished run; nothing to resume.")
                print(summary_table(results, run_dir))
                return EXIT_OK
            try:
                saved_cfg = resolve_config({s: {} for s in SECTIONS}, comps, saved=saved)
            except UsageError as e:
                raise RunDirError(f"the saved config {cfg_path} no longer fits this code: {e}") from e
            cfg = resolve_config(over, comps, saved=saved)
            diffs = config_diff(saved_cfg.to_json(), cfg.to_json())
            if diffs:
                lines = "\n".join(f"  {n}: saved {a!r}, given {b!r}" for n, a, b in diffs)
                raise ConfigMismatchError(f"refusing to resume {run_dir}: the config differs from the saved one in\n"
                                          f"{lines}\nresume without these options (or with the saved values), "
                                          f"or start a new run with another --out")
            # `cfg` equals the saved config except in fields a resume may change (sinks, progress)
            resuming = True
            if ns.show_config:
                print(json.dumps(cfg.to_json(), indent=2))
                return EXIT_OK
            check_optional_sinks(cfg.run)
        else:
            cfg = resolve_config(over, comps)
            if ns.show_config:
                print(json.dumps(cfg.to_json(), indent=2))
                return EXIT_OK
            check_optional_sinks(cfg.run)
            run_dir = Path(cfg.run.out) if cfg.run.out else default_out(cfg.run)
            cfg = cfg._replace(run=dataclasses.replace(cfg.run, out=str(run_dir)))
            prepare_new_run_dir(run_dir, cfg.run.force)
            resuming = False
        _teardown_logging(console_only)
        console_only = []
        with _RunLock(run_dir):
            if not resuming:
                from jaxrl_bayes.checkpoint import atomic_write_json

                atomic_write_json(run_dir / "config.json", cfg.to_json())
            added = _setup_logging(run_dir)
            try:
                logger.info("%s run in %s: %s on %s, preset %s, %d seed(s)", "resuming" if resuming else "new",
                            run_dir, cfg.run.algo, cfg.run.dataset, cfg.run.preset, cfg.run.seeds)
                return execute(run_dir, cfg, comps, resuming=resuming)
            finally:
                _teardown_logging(added)
    except (UsageError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        hint = ""
        if run_dir is not None and (run_dir / "config.json").is_file():
            hint = f"\nResume with: python -m experiments.run --resume {run_dir}"
        print("Interrupted." + hint, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _teardown_logging(console_only)


if __name__ == "__main__":
    sys.exit(main())
