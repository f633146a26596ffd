"""`python -m experiments.report DIR`: a Table-1-style report, with interval estimates, of every
finished run under DIR.

It reads only run directories (any folder under DIR with a `results.json`; `config.json` for
the configuration, `metrics.jsonl` for the learning curves), so it works on sweep output and on
runs made by hand alike. Several run directories of the same (dataset, algorithm) and the same
method configuration (`RUN_FIELDS_NOT_METHOD` says which fields count) each contribute their
seeds to one row; seeds made by different git commits are pooled only with `--allow-mixed` (and
the report then says so). Runs of one algorithm with different configurations on a dataset are
separate rows ("variants"), each named by the algorithm and the fields in which the
configurations differ, e.g. `rrpi (agent.rollout.explore=1.0)`; the algorithm alone names the
row where it has one configuration. A variant sorts after its algorithm and takes the
algorithm's place in the papers' numbers and the comparisons (each variant against BC). A run
whose results.json or config.json is missing or does not load is listed as unreadable.

Writes (default into DIR, `--out` elsewhere):
- `report.md`: the Table-1-style grid (dataset x algorithm, mean ± std over seeds beside the
  papers' numbers and the behaviour policy); per (dataset, algorithm) the mean and the IQM over seeds with 95 % stratified-
  bootstrap intervals, the seed and evaluation-episode counts, the gap to the task's optimum
  on the same episodes (liquidation: the DP policy on the same 10,000 price paths), the papers'
  numbers and the behaviour policy's score; across datasets (normalized scores only) the
  aggregate IQM, mean and optimality gap (to 100); for named pairs (PSPO against `pspo-avg`
  and `pspo-noreg`, RRPI against `rrpi-random`, every method against BC) the probability of
  improvement and the mean difference with intervals; which datasets were evaluated paired
  (every run on the same episodes); the provenance (git commits, package versions, devices);
- `report.csv` (one row per (dataset, algorithm or variant; a variant's differing fields in its
  `variant` column), behaviour included) and
  `report_comparisons.csv` (aggregates and pairs): the same numbers;
- `curves/<dataset>.png`: the learning curves of every algorithm on that dataset (mean over
  seeds with a ±std band; the papers' numbers and the behaviour score as horizontal lines);
- `performance_profile.png`: per algorithm, the fraction of runs above each normalized score,
  with a 95 % bootstrap band.

The statistics are `jaxrl_bayes.stats` (scipy's bootstrap and trim_mean; Agarwal et al., 2021).
Std is the population std over seeds (ddof = 0), as in results.json. Datasets without
reference scores are reported in raw return.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Sequence

import numpy as np
import tyro

from experiments import cli, config
from experiments.plotting import paper_references, save_png
from jaxrl_bayes import stats
from jaxrl_bayes.algos import algo_needs_model, fields_without_effect
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open
from jaxrl_bayes.logging import read_jsonl

# Column order of the papers' methods; any other algorithm follows in name order.
ALGO_ORDER = ("bc", "rrpi", "pspo", "pmdb")
_NO_ALGO = "\0"  # paper_references of a name no paper uses: the dataset-level references only
# (X, Y) pairs whose probability of improvement P(X > Y) the report gives, where both have runs;
# every method against BC is added to these.
NAMED_PAIRS = (("pspo", "pspo-avg"), ("pspo", "pspo-noreg"), ("rrpi", "rrpi-random"))
OPTIMALITY_GAMMA = 100.0  # optimality gap: shortfall below the expert's normalized score
PROG = "python -m experiments.report"
# Which config.json fields make a run's method. Runs of one (dataset, algorithm) whose configs
# (each loaded as --resume loads it: a field the file lacks at its current default) differ in
# one of them are separate rows, never pooled. They are every agent.* and dynamics.* field the
# algorithm reads (not those `algos.fields_without_effect` names, nor dynamics.* for an algorithm
# without a dynamics model, bc: the CLI refuses those, so they differ only through presets and
# would split a method from itself), and every run.* field except the ones below: the row's key
# (dataset and algorithm, from results.json), the seeds (dynamics_seed: another draw of the same
# dynamics pool), where and how the run writes, logs and checkpoints, and how often and on how
# many episodes it is evaluated. So run.total_steps and run.preset count, and so do run.eval_env
# and the reference scores of a local dataset (they change what a score means). A run field added
# later counts until it is listed here: two rows are the safe side of pooling two methods.
RUN_FIELDS_NOT_METHOD = frozenset({
    "run.dataset", "run.algo", "run.seed", "run.seeds", "run.dynamics_seed", "run.out", "run.force", "run.progress",
    "run.tensorboard", "run.wandb", "run.wandb_project", "run.bc_score", "run.eval_every_chunks",
    "run.eval_episodes", "run.final_eval_episodes", "run.eval_deployments", "run.checkpoint_every_chunks",
    "run.keep_checkpoints"})


@dataclass
class Cell:
    """All seeds of one (dataset, algorithm, method configuration) gathered from one or more run
    directories: one row of the report."""

    dataset: str
    algo: str  # the algorithm (results.json's "algo"), also for a variant
    # "section.field" -> value where this row's configuration differs from the algorithm's other
    # rows on the dataset (a field that config.json records as following another, such as a rate
    # the budget rule set from run.total_steps, left out); empty where the algorithm has one
    # configuration there
    variant: dict[str, Any] = field(default_factory=dict)
    normalized: list[float] = field(default_factory=list)  # per seed (empty: no reference scores)
    raw: list[float] = field(default_factory=list)  # per seed
    gaps: list[float] = field(default_factory=list)  # per seed: mean gap to the optimum (empty: none known)
    gap_units: Optional[str] = None  # "normalized" or "raw"
    optimum: Optional[float] = None  # the optimum's score on the same episodes (units of gap_units)
    episodes: set = field(default_factory=set)  # final evaluation episodes per seed
    eval_seeds: set = field(default_factory=set)  # final evaluation seeds (None: before paired evaluation)
    run_dirs: list[str] = field(default_factory=list)
    commits: dict[str, Optional[str]] = field(default_factory=dict)  # run dir -> git commit (None: unknown)
    provenance: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # run dir -> its record
    presets: set = field(default_factory=set)
    steps: set = field(default_factory=set)
    curve: dict[int, list[float]] = field(default_factory=dict)  # step -> per-seed scores
    curve_normalized: bool = True
    # per run: the best one-line schedule on its episodes (results.json "best_schedule"), as
    # (name, score in the units of `scores`), or None where the run recorded none
    schedules: list = field(default_factory=list)

    @property
    def scores(self) -> list[float]:
        """The per-seed scores the statistics use: normalized where known, else raw."""
        return self.normalized or self.raw

    @property
    def schedule(self) -> Optional[tuple[str, float]]:
        """The schedule every run of the cell met, or None (a run without one, or on other episodes)."""
        distinct = set(self.schedules)
        return next(iter(distinct)) if len(distinct) == 1 else None

    @property
    def seeds(self) -> int:
        return len(self.scores)

    @property
    def variant_text(self) -> str:
        """The variant's fields as "section.field=value, ..." (sorted; "" for none)."""
        return ", ".join(f"{k}={_compact(v)}" for k, v in sorted(self.variant.items()))

    @property
    def label(self) -> str:
        """The row's name: the algorithm, then its variant's fields in parentheses."""
        return f"{self.algo} ({self.variant_text})" if self.variant else self.algo


def _compact(value: Any) -> str:
    """A config value in a label: a string as it is, anything else as compact JSON."""
    return value if isinstance(value, str) and value else json.dumps(value, separators=(",", ":"))


def base_algo(label: str) -> str:
    """The algorithm of a row label (`Cell.label`): "rrpi (agent.rollout.explore=1.0)" -> "rrpi"."""
    return label.split(" (", 1)[0]


def display(label: str) -> str:
    """A row label as the tables and figures show it: the algorithm in capitals, the fields as they are."""
    if label.startswith("schedule: "):
        return label
    base = base_algo(label)
    return base.upper() + label[len(base):]


@dataclass
class Report:
    cells: dict[tuple[str, str], Cell]  # (dataset, row label) -> its cell
    behaviour: dict[str, dict[str, Optional[float]]]  # dataset -> {"normalized", "raw"}
    unfinished: list[str]
    unreadable: list[tuple[str, str]]  # (run dir, what is wrong with its results.json or config.json)
    mixed: list[str] = field(default_factory=list)  # cells pooled across commits (with --allow-mixed)


# ----------------------------------------------------------------------------- reading


def find_run_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """(finished run directories, unfinished ones) under `root` (root itself included).

    A run directory is a folder with `config.json`; it is finished once it holds
    `results.json` (written last by experiments.run). Checkpoint folders are not searched.
    """
    finished, unfinished = [], []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "checkpoints" and not d.startswith("."))
        if "results.json" in files:
            finished.append(Path(here))
        elif "config.json" in files:
            unfinished.append(Path(here))
    return finished, unfinished


def _number(x: Any) -> Optional[float]:
    if isinstance(x, Mapping):
        x = x.get("mean")
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def behaviour_score(results: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """The behaviour policy's score recorded in a results.json, if any.

    Accepts `"behaviour": {"normalized_score": x, "raw_return": y}` (numbers or {"mean": ..})
    and flat keys `behaviour_normalized_score` / `behaviour_raw_return`.
    """
    out = {"normalized": None, "raw": None}
    block = results.get("behaviour")
    if isinstance(block, Mapping):
        out["normalized"] = _number(block.get("normalized_score", block.get("normalized")))
        out["raw"] = _number(block.get("raw_return", block.get("raw", block.get("return"))))
    out["normalized"] = out["normalized"] if out["normalized"] is not None else _number(
        results.get("behaviour_normalized_score"))
    out["raw"] = out["raw"] if out["raw"] is not None else _number(results.get("behaviour_raw_return"))
    return out


def _curve_points(rows: Sequence[Mapping]) -> tuple[dict[int, list[float]], bool]:
    """step -> per-seed evaluation scores from metrics.jsonl rows (normalized where logged)."""
    points: dict[int, list[float]] = {}
    normalized = any("eval/normalized_mean" in r for r in rows)
    for r in rows:
        if "step" not in r:
            continue
        seeds = r.get("eval/normalized/seeds") if normalized else None
        if isinstance(seeds, list):
            vals = [float(v) for v in seeds if _number(v) is not None]
        else:
            # one seed, or a run that logged only the mean over its seeds: the mean counts once
            mean = _number(r.get("eval/normalized_mean" if normalized else "eval/raw_mean"))
            vals = [] if mean is None else [mean]
        if vals:
            points.setdefault(int(r["step"]), []).extend(vals)
    return points, normalized


def method_fields(cfg: config.Config, cfg_json: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The "section.path" names of `cfg` (`cfg_json` = `cfg.to_paths()`) that make its method
    (`RUN_FIELDS_NOT_METHOD`)."""
    names = {f"run.{k}" for k in cfg_json["run"]} - RUN_FIELDS_NOT_METHOD
    try:
        unread, model = set(fields_without_effect(cfg.agent, list(cfg_json["agent"]))), algo_needs_model(cfg.agent)
    except UserError:  # agent.algo is not in this code: every field counts
        unread, model = set(), True
    names |= {f"agent.{k}" for k in cfg_json["agent"] if k not in unread}
    return names | ({f"dynamics.{k}" for k in cfg_json["dynamics"]} if model else set())


def variants(configs: Sequence[config.Config],
             derived: Optional[Sequence[frozenset[str]]] = None) -> list[dict[str, Any]]:
    """For the configs of the runs of one (dataset, algorithm): each one's values of the method
    fields in which they differ (all {} where they agree). `derived`: per config, the fields its
    config.json records as following another field (`config.derived_fields`, e.g. a rate the
    budget rule set from run.total_steps); a field that follows another in every config is no
    choice of the runs and is left out: the field it follows, which then differs too, names it."""
    jsons = [c.to_paths() for c in configs]  # components by dotted path; a member's fields only where it is chosen
    flat = [{f"{s}.{k}": v for s, section in j.items() for k, v in section.items()} for j in jsons]
    follows = frozenset.intersection(*derived) if derived else frozenset()
    names = sorted(set().union(*(method_fields(c, j) for c, j in zip(configs, jsons))) - follows)
    differ = [n for n in names if len({json.dumps(f.get(n), sort_keys=True) for f in flat}) > 1]
    return [{n: f[n] for n in differ if n in f} for f in flat]


def collect(root: Path, allow_mixed: bool = False) -> Report:
    """Reads every run directory under `root` into cells keyed by (dataset, row label): one per
    (dataset, algorithm, method configuration).

    Raises:
      UserError: a cell's seeds come from runs of different git commits and not `allow_mixed`.
    """
    finished, unfinished = find_run_dirs(root)
    # (dataset, algo) -> [(run dir, results.json, per seed, (config, its derived fields))]
    runs: dict[tuple[str, str], list[tuple[Path, Mapping[str, Any], list, tuple[config.Config, frozenset]]]] = {}
    behaviour: dict[str, dict[str, Optional[float]]] = {}
    unreadable = []
    for run_dir in finished:
        try:
            results = json.loads((run_dir / "results.json").read_text())
            dataset, algo = str(results["dataset"]), str(results["algo"])
            per_seed = list(results["per_seed"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            unreadable.append((str(run_dir), f"results.json: {type(e).__name__}: {e}"))
            continue
        try:
            cfg = config.read_run_config(run_dir)
            derived = config.derived_fields(json.loads((run_dir / "config.json").read_text()))
        except (ValueError, TypeError, AttributeError) as e:  # UserError is a ValueError
            unreadable.append((str(run_dir), str(e)))
            continue
        runs.setdefault((dataset, algo), []).append((run_dir, results, per_seed, (cfg, derived)))
        b = behaviour_score(results)
        if b["normalized"] is not None or b["raw"] is not None:
            behaviour.setdefault(dataset, b)
    cells: dict[tuple[str, str], Cell] = {}
    for (dataset, algo), group in runs.items():
        configs, derived = zip(*(saved for *_, saved in group))
        for (run_dir, results, per_seed, _), variant in zip(group, variants(configs, derived)):
            cell = Cell(dataset, algo, variant)
            _add_run(cells.setdefault((dataset, cell.label), cell), run_dir, results, per_seed)
    mixed = []
    for (dataset, label), cell in sorted(cells.items()):
        commits = sorted({_short(c) for c in cell.commits.values()})
        if len(commits) > 1:
            if not allow_mixed:
                raise UserError(f"refusing to pool the seeds of {label} on {dataset}: its {len(cell.run_dirs)} runs "
                                f"come from different git commits ({', '.join(commits)}); pass --allow-mixed to "
                                f"pool them anyway, or report the runs of one commit")
            mixed.append(f"{dataset} / {label}: commits {', '.join(commits)}")
    return Report(cells, behaviour, [str(d) for d in unfinished], unreadable, mixed)


def _add_run(cell: Cell, run_dir: Path, results: Mapping[str, Any], per_seed: Sequence[Mapping]) -> None:
    """Adds the seeds, curve and provenance of one run to `cell`."""
    norm = [_number(s.get("normalized_score")) for s in per_seed]
    if all(v is not None for v in norm):
        cell.normalized.extend(norm)
    cell.raw.extend(v for v in (_number(s.get("raw_return")) for s in per_seed) if v is not None)
    gaps = [_number(s.get("optimality_gap")) for s in per_seed]
    optimum = results.get("optimum") if isinstance(results.get("optimum"), Mapping) else None
    if gaps and all(v is not None for v in gaps) and optimum is not None:
        cell.gaps.extend(gaps)
        cell.gap_units = str(optimum.get("gap_units"))
        cell.optimum = _number(optimum.get("normalized_score" if cell.gap_units == "normalized" else "raw_return"))
    if results.get("eval_episodes") is not None:
        cell.episodes.add(int(results["eval_episodes"]))
    cell.eval_seeds.add(results.get("eval_seed"))
    prov = results.get("provenance") if isinstance(results.get("provenance"), Mapping) else {}
    cell.commits[str(run_dir)] = prov.get("git_commit")
    cell.provenance[str(run_dir)] = prov
    cell.run_dirs.append(str(run_dir))
    cell.presets.add(str(results.get("preset", "?")))
    sched = results.get("best_schedule") if isinstance(results.get("best_schedule"), Mapping) else None
    value = None if sched is None else _number(sched.get("normalized_score" if cell.normalized else "raw_return"))
    cell.schedules.append(None if value is None else (str(sched.get("policy")), value))
    if results.get("total_steps") is not None:
        cell.steps.add(int(results["total_steps"]))
    points, is_norm = _curve_points(read_jsonl(run_dir / "metrics.jsonl"))
    if points:
        cell.curve_normalized = cell.curve_normalized and is_norm
    for step, vals in points.items():
        cell.curve.setdefault(step, []).extend(vals)


def _short(commit: Optional[str]) -> str:
    return "unknown" if not commit else commit[:12]


# ----------------------------------------------------------------------------- numbers


def mean_std_n(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, population std, count) of per-seed scores."""
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std()), int(a.size)


def algo_order(algos: Sequence[str]) -> list[str]:
    """Row labels in column order: ALGO_ORDER, then the other algorithms by name; each
    algorithm's variants right after it (by label)."""
    def key(label: str) -> tuple[int, str, str]:
        base = base_algo(label)
        return (ALGO_ORDER.index(base) if base in ALGO_ORDER else len(ALGO_ORDER), base, label)

    return sorted(set(algos), key=key)


def paper_score(dataset: str, algo: str) -> Optional[float]:
    """The paper's normalized score of `algo` on `dataset` (None if no paper reports it)."""
    shared = set(paper_references(dataset, _NO_ALGO))
    own = [v for label, v in paper_references(dataset, algo) if (label, v) not in shared]
    return own[0] if own else None


def dataset_references(dataset: str) -> list[tuple[str, float]]:
    """References that belong to the dataset, not to an algorithm (e.g. the DP ceiling)."""
    return list(paper_references(dataset, _NO_ALGO))


def cell_intervals(cell: Cell) -> dict[str, Any]:
    """Mean and IQM over seeds with 95 % bootstrap intervals (`stats.run_intervals`) of the
    cell's normalized score, raw return and gap to the optimum (None where it has none)."""
    return {key: stats.run_intervals(values) if values else None
            for key, values in (("normalized", cell.normalized), ("raw", cell.raw), ("gap", cell.gaps))}


def rows_of(report: Report) -> list[dict[str, Any]]:
    """One row per (dataset, row label), plus a behaviour row where a run recorded it."""
    rows = []
    datasets = sorted({d for d, _ in report.cells})
    for dataset in datasets:
        b = report.behaviour.get(dataset)
        if b is not None:
            rows.append(dict(dataset=dataset, algo="behaviour", normalized_mean=b["normalized"], raw_mean=b["raw"]))
        for algo in algo_order([a for d, a in report.cells if d == dataset]):
            cell = report.cells[(dataset, algo)]
            row: dict[str, Any] = dict(dataset=dataset, algo=algo, seeds=cell.seeds,
                                       variant=cell.variant_text,
                                       episodes=";".join(str(e) for e in sorted(cell.episodes)),
                                       paper=paper_score(dataset, cell.algo), gap_units=cell.gap_units,
                                       optimum=cell.optimum,
                                       commits=";".join(sorted({_short(c) for c in cell.commits.values()})),
                                       runs=";".join(cell.run_dirs))
            for key, summary in cell_intervals(cell).items():
                if summary is None:
                    continue
                for stat in ("mean", "iqm"):
                    iv = summary[stat]
                    row[f"{key}_{stat}"], row[f"{key}_{stat}_low"], row[f"{key}_{stat}_high"] = iv
            if cell.normalized:
                row["normalized_std"] = mean_std_n(cell.normalized)[1]
            if cell.raw:
                row["raw_std"] = mean_std_n(cell.raw)[1]
            rows.append(row)
    return rows


def paired_datasets(report: Report) -> dict[str, Optional[str]]:
    """dataset -> how its runs were evaluated: a description of the shared episodes when every
    run met the same ones (one evaluation seed and episode count), else None."""
    out: dict[str, Optional[str]] = {}
    for dataset in sorted({d for d, _ in report.cells}):
        cells = [c for (d, _), c in report.cells.items() if d == dataset]
        seeds = set().union(*(c.eval_seeds for c in cells))
        episodes = set().union(*(c.episodes for c in cells))
        ok = len(seeds) == 1 and None not in seeds and len(episodes) == 1
        out[dataset] = f"{next(iter(episodes)):,} episodes, evaluation seed {next(iter(seeds))}" if ok else None
    return out


def aggregates(report: Report) -> list[dict[str, Any]]:
    """Per row label (algorithm or variant), across the datasets with normalized scores where it
    has runs: aggregate IQM, mean and optimality gap (to 100) with stratified-bootstrap intervals."""
    out = []
    for algo in algo_order(sorted({a for _, a in report.cells})):
        cells = [c for (d, a), c in sorted(report.cells.items()) if a == algo and c.normalized]
        if not cells:
            continue
        samples = [c.normalized for c in cells]
        out.append(dict(algo=algo, datasets=len(cells), runs=sum(len(x) for x in samples),
                        iqm=stats.interval(stats.aggregate_iqm, samples),
                        mean=stats.interval(stats.aggregate_mean, samples),
                        optimality_gap=stats.interval(
                            functools.partial(stats.optimality_gap, gamma=OPTIMALITY_GAMMA), samples)))
    return out


def named_pairs(algos: Sequence[str]) -> list[tuple[str, str]]:
    """The (X, Y) pairs compared, of the row labels in `algos`: NAMED_PAIRS, then every method
    against BC; an algorithm's variants each take its place (every variant of X against every
    variant of Y)."""
    ordered = algo_order(list(algos))

    def rows(algo: str) -> list[str]:
        return [a for a in ordered if base_algo(a) == algo]

    pairs = [(x, y) for xa, ya in NAMED_PAIRS for x in rows(xa) for y in rows(ya)]
    return pairs + [(a, b) for a in ordered if base_algo(a) != "bc" for b in rows("bc")]


def comparisons(report: Report) -> list[dict[str, Any]]:
    """Probability of improvement P(X > Y) and the mean difference of X and Y (normalized where
    every shared dataset has references, else raw on one dataset), with stratified-bootstrap
    intervals, over the datasets where both have runs."""
    out = []
    for x, y in named_pairs(sorted({a for _, a in report.cells})):
        shared = [d for d in sorted({d for d, _ in report.cells}) if (d, x) in report.cells and (d, y) in report.cells]
        if not shared:
            continue
        norm = all(report.cells[(d, x)].normalized and report.cells[(d, y)].normalized for d in shared)
        samples = []
        for d in shared:
            samples += [report.cells[(d, x)].scores, report.cells[(d, y)].scores]
        diff = (stats.interval(stats.mean_difference, samples) if norm or len(shared) == 1 else None)
        out.append(dict(x=x, y=y, datasets=shared, poi=stats.interval(stats.probability_of_improvement, samples),
                        difference=diff, units="normalized" if norm else "raw",
                        seeds=(sum(len(report.cells[(d, x)].scores) for d in shared),
                               sum(len(report.cells[(d, y)].scores) for d in shared))))
    return out + schedule_comparisons(report)


def schedule_comparisons(report: Report) -> list[dict[str, Any]]:
    """Each row label against the best one-line schedule of its dataset, where every run of the
    row met the same episodes and recorded it (liquidation: "all at the last step"): did learning
    pay? The schedule is a fixed policy on fixed episodes, a constant without seeds, so the
    intervals resample X's runs only. One dataset per comparison (schedules differ by dataset)."""
    out = []
    for d in sorted({d for d, _ in report.cells}):
        for x in algo_order([a for dd, a in report.cells if dd == d]):
            cell = report.cells[(d, x)]
            if cell.schedule is None or cell.seeds == 0:
                continue
            name, value = cell.schedule
            samples = [cell.scores, [value, value]]  # a constant: resampling it gives itself
            out.append(dict(x=x, y=f"schedule: {name}", datasets=[d], units="normalized" if cell.normalized else "raw",
                            poi=stats.interval(stats.probability_of_improvement, samples),
                            difference=stats.interval(stats.mean_difference, samples), seeds=(cell.seeds, 0)))
    return out


# ----------------------------------------------------------------------------- writing


def _fmt(mean: Optional[float], std: Optional[float] = None, n: Optional[int] = None) -> str:
    if mean is None:
        return ""
    text = f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"
    return text + (f" ({n})" if n is not None else "")


def fmt_interval(iv: Optional[stats.Interval], digits: int = 1) -> str:
    """"x [lo, hi]", "x" without an interval (one seed), "" without a value."""
    if iv is None:
        return ""
    text = f"{iv.point:.{digits}f}"
    return text if iv.low is None else f"{text} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def markdown(report: Report, made_by: Optional[Mapping[str, Any]] = None) -> str:
    """The report's markdown text (`made_by`: the report's own provenance)."""
    algos = algo_order(sorted({a for _, a in report.cells}))
    datasets = sorted({d for d, _ in report.cells})
    paired = paired_datasets(report)
    lines = [
        "# Results",
        "",
        "Scores are normalized (100 = expert, 0 = random; D4RL's formula) unless marked *raw* (the dataset "
        "has no reference scores). Every number over seeds is given with its 95 % stratified-bootstrap "
        "interval in brackets (percentile intervals, 10,000 resamples; `jaxrl_bayes.stats`, after Agarwal "
        "et al., NeurIPS 2021); IQM is the interquartile mean (scipy's trim_mean, 25 % cut from each end; "
        "the plain mean below 4 seeds). With one seed there is no interval.",
        "",
    ]
    lines += overview_lines(report)
    lines += ["", "## Per dataset", ""]
    header = ["dataset", "algorithm", "seeds", "episodes", "mean [95 % CI]", "IQM [95 % CI]", "std",
              "gap to optimum, mean [95 % CI]", "paper"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for d in datasets:
        b = report.behaviour.get(d)
        if b is not None:
            text = _fmt(b["normalized"]) if b["normalized"] is not None else _fmt(b["raw"]) + " *raw*"
            lines.append(f"| {d} | behaviour (the data) |  |  | {text} |  |  |  |  |")
        for a in algos:
            cell = report.cells.get((d, a))
            if cell is None or not cell.scores:
                continue
            iv = cell_intervals(cell)
            key, raw_mark = ("normalized", "") if cell.normalized else ("raw", " *raw*")
            gap = ""
            if iv["gap"] is not None:
                gap = fmt_interval(iv["gap"]["mean"], 2) + ("" if cell.gap_units == "normalized" else " *raw*")
            p = paper_score(d, cell.algo)
            lines.append("| " + " | ".join([
                d, display(a), str(cell.seeds), ", ".join(f"{e:,}" for e in sorted(cell.episodes)) or "?",
                fmt_interval(iv[key]["mean"]) + raw_mark, fmt_interval(iv[key]["iqm"]) + raw_mark,
                f"{mean_std_n(cell.scores)[1]:.1f}", gap, "" if p is None else f"{p:.1f}"]) + " |")
        refs = dataset_references(d)
        optimum = [c.optimum for (dd, _), c in report.cells.items() if dd == d and c.optimum is not None]
        notes = [f"{label} {v:.1f}" for label, v in refs]
        if optimum:
            notes.append(f"the optimum on the same evaluation episodes {optimum[0]:.2f}")
        if paired[d]:
            notes.append(f"paired evaluation: every run met the same {paired[d]}")
        else:
            notes.append("not paired: the runs were evaluated on different episodes")
        lines.append(f"| {d} | *{'; '.join(notes)}* |  |  |  |  |  |  |  |")

    aggs = aggregates(report)
    if aggs:
        lines += ["", "## Across datasets (normalized scores)", "",
                  f"All runs of an algorithm on the datasets with reference scores pooled; the bootstrap "
                  f"resamples runs within each dataset; a variant is its own row. Optimality gap: mean shortfall below "
                  f"{OPTIMALITY_GAMMA:g} (lower is better).", "",
                  "| algorithm | datasets | runs | IQM [95 % CI] | mean [95 % CI] | optimality gap [95 % CI] |",
                  "|---|---|---|---|---|---|"]
        for g in aggs:
            lines.append(f"| {display(g['algo'])} | {g['datasets']} | {g['runs']} | {fmt_interval(g['iqm'])} | "
                         f"{fmt_interval(g['mean'])} | {fmt_interval(g['optimality_gap'])} |")

    comps = comparisons(report)
    if comps:
        lines += ["", "## Probability of improvement", "",
                  "P(X > Y): the chance that a run of X scores above a run of Y on the same dataset (ties "
                  "count 1/2), averaged over the datasets both have; 0.5 = no difference. The difference is "
                  "mean(X) - mean(Y) averaged over those datasets. Both with stratified-bootstrap intervals. "
                  "A Y named \"schedule: ...\" is the dataset's best one-line schedule on the same episodes, a fixed "
                  "policy: 0 seeds, a constant (did learning pay?).",
                  "", "| X | Y | datasets | seeds X / Y | P(X > Y) [95 % CI] | mean(X) - mean(Y) [95 % CI] |",
                  "|---|---|---|---|---|---|"]
        for c in comps:
            diff = "" if c["difference"] is None else fmt_interval(c["difference"], 2) + (
                "" if c["units"] == "normalized" else " *raw*")
            lines.append(f"| {display(c['x'])} | {display(c['y'])} | {len(c['datasets'])} | "
                         f"{c['seeds'][0]} / {c['seeds'][1]} | {fmt_interval(c['poi'], 2)} | {diff} |")

    lines += ["", "Runs:", ""]
    for (d, a), cell in sorted(report.cells.items()):
        steps = ", ".join(str(s) for s in sorted(cell.steps)) or "?"
        lines.append(f"- {d} / {a}: {len(cell.run_dirs)} run(s), preset {', '.join(sorted(cell.presets))}, "
                     f"{steps} steps: " + ", ".join(f"`{r}`" for r in cell.run_dirs))
    if report.unfinished:
        lines += ["", f"Unfinished runs (no results.json; not in the table): {len(report.unfinished)}"]
        lines += [f"- `{r}`" for r in report.unfinished]
    if report.unreadable:
        lines += ["", f"Unreadable results.json or config.json (not in the table): {len(report.unreadable)}"]
        lines += [f"- `{r}`: {why}" for r, why in report.unreadable]
    lines += ["", "## Provenance", ""] + provenance_lines(report, made_by)
    return "\n".join(lines) + "\n"


def overview_lines(report: Report) -> list[str]:
    """The Table-1-style grid: dataset x algorithm, mean ± std (seed count), beside the papers'
    numbers, the behaviour policy's score and the dataset-level references."""
    algos = algo_order(sorted({a for _, a in report.cells}))
    datasets = sorted({d for d, _ in report.cells})
    refs_any = any(dataset_references(d) for d in datasets)
    # (row label, None) per column of runs; (None, algorithm) for the papers' numbers, after the
    # algorithm's last variant
    columns: list[tuple[Optional[str], Optional[str]]] = []
    for i, a in enumerate(algos):
        columns.append((a, None))
        base = base_algo(a)
        last = i + 1 == len(algos) or base_algo(algos[i + 1]) != base
        if last and any(paper_score(d, base) is not None for d in datasets):
            columns.append((None, base))
    header = ["dataset", "behaviour"]
    header += [display(a) if a is not None else f"{base.upper()} (paper)" for a, base in columns]
    if refs_any:
        header.append("other references")
    lines = [
        "## Overview",
        "",
        "Mean ± std over seeds, the seed count in parentheses (std: population std, ddof = 0; how sure "
        "a difference is: the intervals and probabilities of improvement below). \"(paper)\" columns are "
        "the papers' numbers (BENCHMARKS.md): other data scale and budget than a CPU preset.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for d in datasets:
        b = report.behaviour.get(d)
        row = [d, "" if b is None else (_fmt(b["normalized"]) if b["normalized"] is not None
                                        else _fmt(b["raw"]) + " *raw*")]
        for a, base in columns:
            if a is None:
                p = paper_score(d, base)
                row.append("" if p is None else f"{p:.1f}")
                continue
            cell = report.cells.get((d, a))
            if cell is None or not cell.scores:
                row.append("")
            else:
                row.append(_fmt(*mean_std_n(cell.scores)) + ("" if cell.normalized else " *raw*"))
        if refs_any:
            row.append("; ".join(f"{label} {v:.1f}" for label, v in dataset_references(d)))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _describe(prov: Mapping[str, Any]) -> str:
    commit = _short(prov.get("git_commit"))
    dirty = {True: " with uncommitted changes", False: "", None: ""}[prov.get("git_dirty")]
    versions = prov.get("versions") or {}
    dev = prov.get("device") or {}
    text = f"commit {commit}{dirty}"
    if versions:
        text += "; " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v)
    if dev:
        text += f"; device {dev.get('platform')} ({dev.get('kind')}) x{dev.get('count')}"
    return text


def provenance_lines(report: Report, made_by: Optional[Mapping[str, Any]]) -> list[str]:
    """Which code, packages and devices made the runs (grouped), and the report."""
    groups: dict[str, list[str]] = {}
    for cell in report.cells.values():
        for run_dir, prov in cell.provenance.items():
            groups.setdefault(_describe(prov) if prov else "no provenance recorded (a run written before provenance was recorded)",
                              []).append(run_dir)
    lines = [f"- {text}: {len(dirs)} run(s)" for text, dirs in sorted(groups.items())]
    if report.mixed:
        lines.append("- **seeds pooled across git commits (--allow-mixed)**: " + "; ".join(report.mixed))
    if made_by:
        lines.append(f"- this report: {_describe(made_by)}")
    return lines


CSV_FIELDS = ("dataset", "algo", "variant", "seeds", "episodes",
              *(f"{k}_{s}{e}" for k in ("normalized", "raw") for s in ("mean", "iqm") for e in ("", "_low", "_high")),
              "normalized_std", "raw_std",
              *(f"gap_{s}{e}" for s in ("mean", "iqm") for e in ("", "_low", "_high")), "gap_units", "optimum",
              "paper", "commits", "runs")
COMPARISON_FIELDS = ("kind", "x", "y", "datasets", "runs_x", "runs_y", "statistic", "point", "low", "high", "units")


def _csv(fields: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    return buf.getvalue()


def csv_text(report: Report) -> str:
    return _csv(CSV_FIELDS, rows_of(report))


def comparisons_csv_text(report: Report) -> str:
    rows = []
    for g in aggregates(report):
        for stat in ("iqm", "mean", "optimality_gap"):
            rows.append(dict(kind="aggregate", x=g["algo"], datasets=g["datasets"], runs_x=g["runs"], statistic=stat,
                             point=g[stat].point, low=g[stat].low, high=g[stat].high, units="normalized"))
    for c in comparisons(report):
        base = dict(kind="pair", x=c["x"], y=c["y"], datasets=";".join(c["datasets"]), runs_x=c["seeds"][0],
                    runs_y=c["seeds"][1])
        rows.append(dict(base, statistic="probability_of_improvement", point=c["poi"].point, low=c["poi"].low,
                         high=c["poi"].high))
        if c["difference"] is not None:
            d = c["difference"]
            rows.append(dict(base, statistic="mean_difference", point=d.point, low=d.low, high=d.high, units=c["units"]))
    return _csv(COMPARISON_FIELDS, rows)


def safe_name(name: str) -> str:
    """A dataset name or path as one file or folder name (the sweep's folders, the figures)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/")) or "dataset"


def plot_curves(report: Report, dataset: str, path: Path) -> None:
    """One figure: every row's (algorithm or variant) mean learning curve on `dataset` with a ±std
    band; the papers' number of an algorithm once, in its first row's colour."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cells = [report.cells[(dataset, a)] for a in algo_order([a for d, a in report.cells if d == dataset])]
    normalized = all(c.curve_normalized for c in cells)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    papers_drawn = set()
    try:
        for i, cell in enumerate(cells):
            if not cell.curve:
                continue
            steps = np.array(sorted(cell.curve), np.float64)
            vals = [np.asarray(cell.curve[int(s)], np.float64) for s in steps]
            mean = np.array([v.mean() for v in vals])
            std = np.array([v.std() for v in vals])
            color = f"C{i}"
            ax.plot(steps, mean, color=color, lw=2, marker="o", ms=3,
                    label=f"{display(cell.label)} ({len(cell.normalized or cell.raw)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
            p = paper_score(dataset, cell.algo) if normalized and cell.algo not in papers_drawn else None
            if p is not None:
                papers_drawn.add(cell.algo)
                ax.axhline(p, color=color, ls="--", lw=1, label=f"{display(cell.algo)} paper: {p:g}")
        b = report.behaviour.get(dataset)
        if b is not None and b["normalized" if normalized else "raw"] is not None:
            v = b["normalized" if normalized else "raw"]
            ax.axhline(v, color="0.4", ls=":", lw=1.2, label=f"behaviour: {v:.1f}")
        if normalized:
            for label, v in dataset_references(dataset):
                ax.axhline(v, color="k", ls="-.", lw=1, label=f"{label}: {v:g}")
        ax.set_xlabel("training step")
        ax.set_ylabel("normalized score" if normalized else "return")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7)
        fig.tight_layout()
        save_png(fig, path)
    finally:
        plt.close(fig)


def plot_performance_profile(report: Report, path: Path) -> bool:
    """Per row label (algorithm or variant), the fraction of runs (averaged over datasets) with a
    normalized score above tau, with a 95 % stratified-bootstrap band. False (nothing written)
    without normalized scores."""
    groups = {a: [c.normalized for (d, aa), c in sorted(report.cells.items()) if aa == a and c.normalized]
              for a in algo_order(sorted({a for _, a in report.cells}))}
    groups = {a: g for a, g in groups.items() if g}
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    everything = np.concatenate([np.concatenate(g) for g in groups.values()])
    lo, hi = float(everything.min()), float(everything.max())
    pad = max(1.0, 0.05 * (hi - lo))
    taus = np.linspace(lo - pad, hi + pad, 201)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        for i, (algo, samples) in enumerate(groups.items()):
            iv = stats.interval(lambda *x: stats.performance_profile(x, taus), samples, n_resamples=2000)
            runs = sum(len(x) for x in samples)
            ax.plot(taus, iv.point, color=f"C{i}", lw=2,
                    label=f"{display(algo)} ({runs} runs, {len(samples)} datasets)")
            if iv.low is not None:
                ax.fill_between(taus, iv.low, iv.high, color=f"C{i}", alpha=0.15, lw=0)
        ax.set_xlabel("normalized score tau")
        ax.set_ylabel("fraction of runs with score > tau")
        ax.set_title("performance profile (95 % stratified-bootstrap bands)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
        fig.tight_layout()
        save_png(fig, path)
    finally:
        plt.close(fig)
    return True


def write_report(root: Path, out: Optional[Path] = None, *, allow_mixed: bool = False) -> dict[str, Any]:
    """Writes report.md, report.csv, report_comparisons.csv, curves/<dataset>.png and
    performance_profile.png for the runs under `root`.

    Returns {"markdown", "csv", "comparisons_csv": paths, "figures": [paths], "profile": path or
    None, "report": Report}.
    Raises:
      UserError: `root` is not a directory, holds no finished run, or pools seeds of different
        commits without `allow_mixed`.
    """
    from experiments.results import provenance

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give the folder that holds the run directories")
    report = collect(root, allow_mixed=allow_mixed)
    if not report.cells:
        hint = f" ({len(report.unfinished)} unfinished)" if report.unfinished else ""
        raise UserError(f"no finished run (a folder with results.json) under {root}{hint}; "
                        f"give the folder of a sweep or of experiments.run --out directories")
    out = Path(out) if out is not None else root
    md, cv, cmp_csv = out / "report.md", out / "report.csv", out / "report_comparisons.csv"
    with atomic_open(md, "w") as f:
        f.write(markdown(report, made_by=provenance()))
    with atomic_open(cv, "w") as f:
        f.write(csv_text(report))
    with atomic_open(cmp_csv, "w") as f:
        f.write(comparisons_csv_text(report))
    figures = []
    for dataset in sorted({d for d, _ in report.cells}):
        path = out / "curves" / f"{safe_name(dataset)}.png"
        plot_curves(report, dataset, path)
        figures.append(path)
    profile = out / "performance_profile.png"
    return {"markdown": md, "csv": cv, "comparisons_csv": cmp_csv, "figures": figures,
            "profile": profile if plot_performance_profile(report, profile) else None, "report": report}


@dataclasses.dataclass(frozen=True)
class Args:
    """Report (markdown, CSV, learning curves, performance profile) of every finished run
    directory under DIR: mean and IQM over seeds with 95 % bootstrap intervals, probabilities of
    improvement, provenance."""

    dir: tyro.conf.Positional[str]  # folder holding run directories (searched recursively)
    out: Optional[str] = None  # where to write report.md, report.csv, curves/ (default DIR)
    allow_mixed: Annotated[bool, tyro.conf.arg(aliases=("--allow-mixed",))] = False  # pool seeds of runs made by different git commits (the report says so)
    debug: bool = False  # print the traceback of a user error too


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code (0 done, 2 user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: cli.Context) -> int:
    args = cli.parse(Args, argv, prog=PROG)
    if args is None:  # --help
        return cli.EXIT_OK
    written = write_report(Path(args.dir), Path(args.out) if args.out else None, allow_mixed=args.allow_mixed)
    print(written["markdown"].read_text())
    print(f"wrote {written['markdown']}, {written['csv']}, {written['comparisons_csv'].name}, "
          f"{len(written['figures'])} learning-curve figure(s) in {written['markdown'].parent / 'curves'}"
          + (f" and {written['profile'].name}" if written["profile"] else ""))
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
