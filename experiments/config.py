"""The configuration of one run: `RunConfig`, presets, resolution, diffs and hashes.

A run is configured by three frozen dataclasses: `RunConfig` (below), `jaxrl_bayes.dynamics.
DynamicsConfig` and `jaxrl_bayes.algos.AgentConfig`. A field's value resolves as (later wins)

    dataclass default < algorithm default (algos.algo_config) < preset < command line

except the rates that set the run's time scales (`jaxrl_bayes.algos.timescales.RATES`: ref_tau,
tau, policy_lr, critic_lr), which follow from `run.total_steps` by the library's budget rule
(`jaxrl_bayes.algos.with_budget`) unless given on the command line; a preset may set only the
one the rule never scales (`timescales.UNSCALED`: critic_lr; `with_budget_rates`). A run's
config.json records which fields follow another ("_derived"), so a reader tells the run's
choices from their consequences (`saved_json`, `derived_fields`).

Presets live in `experiments/configs/<family>.json` (family = the dataset's family, e.g.
liquidation, hopper); each file holds named presets ("cpu", "paper"), each with sections "run",
"dynamics", "agent" (and optional "algo:<name>" sections applied to that algorithm and its
ablations "<name>-*"); every value is {"value": ..., "_source": "..."}. A family file may name a
shared file as its `"_base"` (every locomotion robot: `locomotion.json`): the base's preset of the
same name applies first and the family's own values, if any, on top.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import typing
from pathlib import Path
from typing import Annotated, Any, Mapping, NamedTuple, Optional

import tyro

from experiments import rundir
from jaxrl_bayes import algos, components
from jaxrl_bayes.algos import overrides, timescales
from jaxrl_bayes.dynamics import DynamicsConfig
from jaxrl_bayes.errors import UserError

logger = logging.getLogger("experiments.config")

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
SECTIONS = ("run", "dynamics", "agent")
# Fields that do not change what is computed: a resume may differ in them.
IGNORED_ON_RESUME = frozenset({"run.out", "run.force", "run.progress", "run.tensorboard", "run.wandb",
                               "run.wandb_project", "run.bc_score"})
# Run fields a preset may not set (they choose the preset, or are per-invocation).
NOT_IN_PRESETS = frozenset({"dataset", "algo", "preset", "out", "force", "eval_env", "ref_min_score",
                            "ref_max_score", "bc_score"})


class UsageError(UserError):
    """A bad name, value or preset on the command line; printed as one line, exit status 2."""


def _alias(*flags: str) -> Any:
    return tyro.conf.arg(aliases=flags)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What to train on, for how long, how often to evaluate/checkpoint, where to write."""

    # BENCHMARKS.md: liquidation is the embedded default; the no-argument run is RRPI, cpu preset
    dataset: Annotated[str, _alias("--dataset")] = "liquidation-random-v0"  # a name (see --list), a D4RL-schema .hdf5 file or a Minari dataset directory
    algo: Annotated[str, _alias("--algo")] = "rrpi"  # algorithm name (see --list)
    preset: Annotated[str, _alias("--preset")] = "cpu"  # preset in experiments/configs/<family>.json (cpu, paper)
    seeds: Annotated[int, _alias("--seeds")] = 1  # seeds trained together with jax.vmap
    seed: Annotated[int, _alias("--seed")] = 0  # base seed: seed i uses fold_in(PRNGKey(seed), i)
    total_steps: int = 20_000  # train steps per seed, rounded up to whole chunks (preset sets it)
    eval_every_chunks: int = 5  # periodic evaluation (0 = only the final one)
    eval_episodes: int = 1000  # BENCHMARKS.md: liquidation >= 1000, locomotion >= 10
    final_eval_episodes: int = 0  # episodes of the final evaluation (0 = eval_episodes)
    # also evaluate the other deployments (agent.deploy choices) at each evaluation: eval/<name>/* in
    # metrics; the moving average ("average") exists only in a run that deploys it, so
    # --agent.deploy average --run.eval_deployments compares all three on the same episodes
    eval_deployments: bool = False
    checkpoint_every_chunks: int = 1  # measured choice: an orbax save costs ~0.1 s on CPU
    keep_checkpoints: int = 3  # the last k are kept
    dynamics_seed: int = 0  # key of the dynamics pool training (part of the cache key)
    eval_env: Annotated[str, _alias("--eval_env")] = ""  # Gymnasium id to evaluate a local dataset file in ("" = from its metadata)
    ref_min_score: Annotated[Optional[float], _alias("--ref_min_score")] = None  # reference return of score 0 (a local file; else raw returns only)
    ref_max_score: Annotated[Optional[float], _alias("--ref_max_score")] = None  # reference return of score 100 (a local file)
    bc_score: Optional[float] = None  # BC's normalized score on this data, a line in learning_curve.png (default: a finished bc run beside this one)
    out: Annotated[str, _alias("--out")] = ""  # run directory ("" = runs/<dataset>/<algo>-<timestamp>)
    force: Annotated[bool, _alias("--force")] = False  # overwrite a finished or unfinished run in --out
    progress: bool = True  # progress bar
    tensorboard: bool = False  # optional sink (needs tensorboardX)
    wandb: bool = False  # optional sink (needs wandb)
    wandb_project: str = "jaxrl_bayes"  # wandb project name

    def validate(self) -> None:
        import math

        problems = []
        for name in ("seeds", "total_steps", "eval_episodes", "checkpoint_every_chunks", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"run.{name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every_chunks", "final_eval_episodes"):
            if getattr(self, name) < 0:
                problems.append(f"run.{name}={getattr(self, name)} must be >= 0")
        for name in ("seed", "dynamics_seed"):  # a PRNG key holds 32 bits: larger seeds repeat smaller ones
            if not 0 <= getattr(self, name) < 2**32:
                problems.append(f"run.{name}={getattr(self, name)} must be in [0, 2**32)")
        for name in ("ref_min_score", "ref_max_score", "bc_score"):  # optional, checked when set
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                problems.append(f"run.{name}={value} must be a finite number (or unset)")
        if (self.ref_min_score is None) != (self.ref_max_score is None):
            problems.append("--ref-min-score and --ref-max-score go together")
        if problems:
            raise UsageError("invalid run config: " + "; ".join(problems))


class Config(NamedTuple):
    """The three resolved configs of a run."""

    run: RunConfig
    dynamics: DynamicsConfig
    agent: algos.AgentConfig

    def to_json(self) -> dict:
        """{"run": {...}, "dynamics": {...}, "agent": {...}} with tuples as lists; a component is
        a dict of its fields, with "kind" for a choice's member (`components.to_json`)."""
        return json.loads(json.dumps({s: components.to_json(getattr(self, s)) for s in SECTIONS}))

    def to_paths(self) -> dict:
        """{section: {dotted path: JSON value}}: every field by its command-line name (a choice's
        kind at the choice's own path, "rollout": "persistent")."""
        return {s: flatten(section) for s, section in self.to_json().items()}


SECTION_TYPES = {"run": RunConfig, "dynamics": DynamicsConfig, "agent": algos.AgentConfig}


# ----------------------------------------------------------------------------- values from JSON


def _from_json(tp: Any, value: Any, where: str) -> Any:
    """A JSON value (preset or saved config) as a value of type `tp` (lists -> tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _from_json(args[0], value, where)
    if type(None) in args and value is None:
        return None
    if origin is tuple and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return tuple(_from_json(inner, v, where) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool), float: lambda v: isinstance(v, float),
          bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str)}
    inner = [a for a in args if a is not type(None)] if args and origin is not tuple else [tp]
    if all(t in ok for t in inner) and not any(ok[t](value) for t in inner):
        raise UsageError(f"{where}: {value!r} is not a valid {getattr(tp, '__name__', tp)}")
    return value


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested JSON (a component as a dict, a choice's member with "kind") as {dotted path: value}."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Mapping):
            if components.KIND in v:
                out[prefix + k] = v[components.KIND]
            out.update(flatten({kk: vv for kk, vv in v.items() if kk != components.KIND}, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def _path_type(obj: Any, path: str) -> Any:
    """The annotated type of the field at dotted `path` under `obj`'s chosen members."""
    head, _, rest = path.partition(".")
    return _path_type(getattr(obj, head), rest) if rest else components.field_types(type(obj))[head]


def _in_another_member(cfg: Any, path: str) -> bool:
    """Whether dotted `path` names a field of a choice's member other than the chosen one."""
    head, _, rest = path.partition(".")
    if not rest or not dataclasses.is_dataclass(getattr(cfg, head, None)):
        return False
    sub = getattr(cfg, head)
    first, _, deeper = rest.partition(".")
    if not deeper and first not in {f.name for f in dataclasses.fields(sub)}:
        base = components.field_types(type(cfg))[head]
        return components.is_choice(base) and any(
            first in {f.name for f in dataclasses.fields(c)} for c in components.choices(base).values())
    return _in_another_member(sub, rest)


def build_agent(values: Mapping[str, Any], where: str, base: Any = None, *, preset: bool = False) -> algos.AgentConfig:
    """An AgentConfig from JSON `values` on top of `base` (or the defaults): nested (a
    config.json), dotted paths (a preset), or the flat names of a config.json written before the
    components (`overrides.from_flat`: its values at their paths, those its own choices never
    read dropped). `preset`: a value for a member of a choice that the config does not choose
    is skipped (a preset serves every algorithm of a family: its `belief.lam` is PSPO's)."""
    base = algos.AgentConfig() if base is None else base
    try:
        if overrides.is_flat(values):  # a value its own choices never read is dropped, as a preset's
            values, preset = dict(overrides.to_path(k, v) for k, v in values.items()), True
        elif overrides.has_algo_sections(values):  # its algorithm's section read as `algo`'s fields
            values = overrides.lift_algo_sections(values)
        cfg = base
        for path, value in sorted(flatten(values).items(), key=lambda kv: kv[0].count(".")):
            try:
                tp = _path_type(cfg, path)
            except (AttributeError, KeyError):
                tp = Any  # the path's own error comes from replace_path
            if preset and _in_another_member(cfg, path):
                continue
            if not (isinstance(value, str) and components.is_choice(tp)):
                value = _from_json(tp, value, f"{where} agent.{path}")
            cfg = components.replace_path(cfg, path, value, f"{where}: agent.{path}")
        return cfg
    except UsageError:
        raise
    except UserError as e:
        raise UsageError(str(e)) from None


def build_section(section: str, values: Mapping[str, Any], where: str, base: Any = None) -> Any:
    """A `section` dataclass from JSON `values` (on top of `base`, or the dataclass defaults)."""
    if section == "agent":
        return build_agent(values, where, base)
    cls = SECTION_TYPES[section]
    hints = typing.get_type_hints(cls, include_extras=True)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise UsageError(f"{where}: unknown {section} field(s) {', '.join(unknown)}; valid fields: "
                         f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    kw = {k: _from_json(hints[k], v, f"{where} {section}.{k}") for k, v in values.items()}
    return dataclasses.replace(base, **kw) if base is not None else cls(**kw)


def from_json(cfg_json: Mapping[str, Mapping[str, Any]], where: str) -> Config:
    """A `Config` from its JSON form (a saved config.json)."""
    return Config(*(build_section(s, cfg_json.get(s, {}), where) for s in SECTIONS))


# ----------------------------------------------------------------------------- presets


def read_run_config(run_dir: Path) -> Config:
    """The `config.json` of a run directory, each field it lacks (one added to the code later) at its
    current default: how `--resume`, `experiments.diagnose` and `experiments.report` read a run.

    Raises:
      rundir.RunDirError: the file is missing or unreadable.
      UsageError: it no longer fits this code.
    """
    path = run_dir / "config.json"
    return from_json(rundir.read_json(path, "run config"), str(path))


BASE = "_base"  # a preset file's shared base file (its stem), applied first


def _preset_names(data: Mapping[str, Any], configs_dir: Path) -> list[str]:
    """The preset names of a preset file's contents, its base's included."""
    names = [k for k in data if not k.startswith("_")]
    if BASE in data:
        base = json.loads((Path(configs_dir) / f"{data[BASE]}.json").read_text())
        names += [k for k in _preset_names(base, configs_dir) if k not in names]
    return names


def available_presets(configs_dir: Path = CONFIGS_DIR) -> dict[str, list[str]]:
    """family -> preset names, for every preset file."""
    out = {}
    for p in sorted(Path(configs_dir).glob("*.json")):
        try:
            out[p.stem] = _preset_names(json.loads(p.read_text()), configs_dir)
        except (OSError, json.JSONDecodeError):
            out[p.stem] = ["<unreadable>"]
    return out


class Preset(NamedTuple):
    """A preset's values {section: {field: value}} and sources {"section.field": text}."""

    values: dict[str, dict[str, Any]]
    sources: dict[str, str]


def load_preset(family: str, name: str, algo: str, *, explicit: bool,
                configs_dir: Path = CONFIGS_DIR) -> Preset:
    """Preset `name` of dataset family `family` for algorithm `algo`.

    "algo:<a>" sections apply when algo == a or algo starts with a + "-" (its ablations). A
    missing preset file is an error only when the preset was asked for explicitly; otherwise the
    defaults are used (with a warning).
    """
    path = Path(configs_dir) / f"{family}.json"
    out = Preset({s: {} for s in SECTIONS}, {})
    if not path.is_file():
        files = sorted(p.stem for p in Path(configs_dir).glob("*.json"))
        msg = (f"no preset file for dataset family {family!r} ({path}); preset files exist for: "
               f"{', '.join(files) or 'none'}")
        if explicit:
            raise UsageError(msg + "; drop --preset to use the built-in defaults")
        logger.warning("%s; using the built-in defaults", msg)
        return out
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"preset file {path} is not valid JSON: {e}") from e
    if BASE in data:
        base_path = Path(configs_dir) / f"{data[BASE]}.json"
        if not isinstance(data[BASE], str) or not base_path.is_file() or data[BASE] == family:
            raise UsageError(f"{path}: {BASE} {data[BASE]!r} names no other preset file in {configs_dir}")
        try:
            base_names = _preset_names(json.loads(base_path.read_text()), configs_dir)
        except json.JSONDecodeError as e:
            raise UsageError(f"preset file {base_path} (the {BASE} of {path}) is not valid JSON: {e}") from e
        if name in base_names:
            out = load_preset(data[BASE], name, algo, explicit=True, configs_dir=configs_dir)
    own = [k for k in data if not k.startswith("_")]
    names = own + [k for k in (base_names if BASE in data else []) if k not in own]  # as `_preset_names`
    if name not in names:
        raise UsageError(f"unknown preset {name!r} for {family} ({path}); choose one of: {', '.join(names)}")

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
            if target == "run" and field in NOT_IN_PRESETS:
                raise UsageError(f"{path}: preset {name!r} may not set run.{field}")
            if target == "agent":
                field = overrides.to_path(field, entry["value"])[0]
                if field.startswith("optim.") and field[len("optim."):] not in timescales.UNSCALED:
                    raise UsageError(f"{path}: preset {name!r} may not set agent.{field}: it follows from "
                                     f"run.total_steps by the budget rule (jaxrl_bayes.algos.timescales)")
            out.values[target][field] = entry["value"]
            out.sources[f"{target}.{field}"] = f"preset {family}:{name} ({entry['_source']})"

    for key, section in data.get(name, {}).items():
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


def check_algo(algo: str) -> None:
    if algo not in algos.ALGORITHMS:
        import difflib

        close = difflib.get_close_matches(algo, list(algos.ALGORITHMS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown algorithm {algo!r}; choose one of: {', '.join(algos.ALGORITHMS)}{hint}")


def get_spec(run: RunConfig) -> Any:
    """The dataset spec of `run.dataset`: a registry name, or a local file evaluated in
    `run.eval_env` with the reference scores given (`registry.get_spec`)."""
    from jaxrl_bayes.data import registry

    return registry.get_spec(run.dataset, eval_env=run.eval_env or None, ref_min_score=run.ref_min_score,
                             ref_max_score=run.ref_max_score)


def family_of(spec: Any, dataset: str) -> str:
    fam = getattr(spec, "family", None)
    if fam:
        return str(fam)
    return dataset.split("/")[-2] if "/" in dataset else dataset.split("-")[0]


def base_config(run: RunConfig, *, preset_explicit: bool) -> tuple[Config, dict[str, str]]:
    """Defaults of a new run: dataclass < algorithm (`run.algo`) < preset (`run.preset` of the
    dataset's family). `run` carries the choices and anything given on the command line.

    Returns:
      (config, sources): sources maps "section.field" to where a non-dataclass default came from.
    """
    check_algo(run.algo)
    spec = get_spec(run)
    preset = load_preset(family_of(spec, run.dataset), run.preset, run.algo, explicit=preset_explicit)
    sources = {f"agent.{k}": f"algorithm {run.algo}" for k in algos.ALGORITHMS[run.algo]}
    sources.update(preset.sources)
    where = f"preset {run.preset}"
    agent = build_agent(preset.values["agent"], where, base=algos.algo_config(run.algo), preset=True)
    cfg = Config(build_section("run", preset.values["run"], where, base=run),
                 build_section("dynamics", preset.values["dynamics"], where), agent)
    have = {f"{s}.{p}" for s, section in cfg.to_paths().items() for p in section}
    return cfg, {k: v for k, v in sources.items() if k in have}


BUDGET_RULE = "budget rule for run.total_steps"  # how the source of a rate the rule set begins


def with_budget_rates(cfg: Config, given: frozenset[str] | set[str] = frozenset()) -> tuple[Config, dict[str, str]]:
    """`cfg` for its budget (`algos.with_budget` for `cfg.run.total_steps`): the rates given on
    the command line or set by the preset (`given`: "agent.optim.<rate>" names) are the explicit
    ones, the rule sets the rest.

    Returns (config, sources of the rates the rule set).
    """
    cfg.run.validate()  # the rule needs a valid run.total_steps: a bad one is a usage error, not a traceback
    explicit = {name.split(".", 1)[1] for name in given if name.startswith("agent.optim.")}
    agent = algos.with_budget(cfg.agent, cfg.run.total_steps, explicit)
    why = f"{BUDGET_RULE} = {cfg.run.total_steps} (jaxrl_bayes.algos.timescales)"
    rates = {name.rsplit(".", 1)[1] for name in explicit}
    return cfg._replace(agent=agent), {f"agent.optim.{k}": why for k in timescales.derived_rates(rates)}


DERIVED = "_derived"  # config.json's record of the fields that follow another field


def saved_json(cfg: Config, sources: Mapping[str, str]) -> dict:
    """The config.json of a new run: the config's JSON form plus "_derived", {field: the field it
    follows} for each rate the budget rule set from run.total_steps (their `sources`)."""
    out = cfg.to_json()
    out[DERIVED] = {name: "run.total_steps" for name, why in sorted(sources.items()) if why.startswith(BUDGET_RULE)}
    return out


def derived_fields(cfg_json: Mapping[str, Any]) -> frozenset[str]:
    """The "section.path" names that a saved config records as following another field (none
    in a config.json written before the record existed: every value counts as chosen; the flat
    names of one written before the components at their paths)."""
    names = cfg_json.get(DERIVED) or ()
    return frozenset(f"agent.{overrides.FLAT_NAMES.get(n[6:], n[6:])}" if n.startswith("agent.") else n for n in names)


def apply_preset(cfg: Config, name: str) -> Config:
    """`cfg` with preset `name` of its dataset's family applied on top (a resume that names one)."""
    run = dataclasses.replace(cfg.run, preset=name)
    preset = load_preset(family_of(get_spec(run), run.dataset), name, run.algo, explicit=True)
    return Config(build_section("run", preset.values["run"], f"preset {name}", base=run),
                  build_section("dynamics", preset.values["dynamics"], f"preset {name}", base=cfg.dynamics),
                  build_agent(preset.values["agent"], f"preset {name}", base=cfg.agent, preset=True))


def validate(cfg: Config) -> Config:
    """Checks every section; returns `cfg` or raises UsageError naming the problem."""
    cfg.run.validate()
    check_algo(cfg.run.algo)
    for section in ("dynamics", "agent"):
        try:
            getattr(cfg, section).validate()
        except UserError:
            raise
        except (TypeError, ValueError) as e:
            raise UsageError(f"{section} config: {e}") from e
    if cfg.agent.steps_per_chunk < 1:
        raise UsageError("agent.steps_per_chunk must be >= 1")
    if not algos.fields_without_effect(cfg.agent, ["optim.ref_tau"]):  # the algorithm has a reference policy
        timescales.check_reference_moves(cfg.agent.optim.ref_tau, cfg.run.total_steps, cfg.agent.behaviour.init_policy)
    return cfg


def config_diff(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]],
                ignore: frozenset = IGNORED_ON_RESUME) -> list[tuple[str, Any, Any]]:
    """[(section.path, value in a, value in b)] for every field that differs (JSON values, nested
    components compared field by field)."""
    diffs = []
    a, b = ({s: flatten(j.get(s, {})) for s in SECTIONS} for j in (a, b))
    for s in SECTIONS:
        for k in sorted(set(a.get(s, {})) | set(b.get(s, {}))):
            name = f"{s}.{k}"
            if name in ignore:
                continue
            va, vb = a.get(s, {}).get(k, "<absent>"), b.get(s, {}).get(k, "<absent>")
            if va != vb:
                diffs.append((name, va, vb))
    return diffs


def config_hash(cfg_json: Mapping[str, Mapping[str, Any]],
                saved: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """sha256 of the config without the fields a resume may change.

    `saved`: the run's config.json. Only its fields are hashed, so a run started before a field
    existed still resumes with the newer code: the field is absent from its config.json, which
    then loads it at its default (the behaviour the run had), and it was absent from the hash.
    A config.json with the flat agent names of the code before the components is hashed in that
    form (`overrides.to_flat`, the saved values where its choices read none), as its
    checkpoints were; one with the `pspo`/`bc` sections of the code before the algorithm was a
    choice likewise (`overrides.algo_sections_form`).
    """
    if saved is not None and overrides.is_flat(saved.get("agent", {})):
        flat = overrides.to_flat(build_agent(cfg_json["agent"], "config"))
        cfg_json = {**cfg_json, "agent": {**saved["agent"], **flat}}
    else:
        sections = saved is not None and overrides.has_algo_sections(saved.get("agent", {}))
        cfg_json = {s: flatten(cfg_json[s]) for s in SECTIONS}
        saved = None if saved is None else {s: flatten(saved.get(s, {})) for s in SECTIONS}
        if sections:  # the same test that reads such a config.json (`build_agent`)
            cfg_json["agent"] = overrides.algo_sections_form(cfg_json["agent"], saved["agent"])
    kept = {s: {k: v for k, v in cfg_json[s].items() if f"{s}.{k}" not in IGNORED_ON_RESUME
                and (saved is None or k in saved.get(s, {}))} for s in SECTIONS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def with_sources(cfg: Config, sources: Mapping[str, str]) -> dict:
    """The config's JSON form plus "_sources": where every value that is not the dataclass
    default came from (algorithm, preset with its source, command line)."""
    out = cfg.to_json()
    out["_sources"] = dict(sorted(sources.items()))
    return out
