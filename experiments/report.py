"""`python -m experiments.report DIR`: a Table-1-style report of every finished run under DIR.

It reads only run directories (any folder under DIR with a `results.json`; `metrics.jsonl` for
the learning curves), so it works on sweep output and on runs made by hand alike. Several run
directories of the same (dataset, algorithm) each contribute their seeds.

Writes (default into DIR, `--out` elsewhere):
- `report.md`: dataset x algorithm, normalized score mean ± std over seeds with the seed count,
  the papers' number beside each of ours (`experiments.plotting.paper_references`), the
  behaviour policy's score and BC where present, and any dataset-level reference (the
  liquidation DP ceiling);
- `report.csv`: the same numbers, one row per (dataset, algorithm), behaviour included;
- `curves/<dataset>.png`: the learning curves of every algorithm on that dataset (mean over
  seeds with a ±std band; the papers' numbers and the behaviour score as horizontal lines).

Std is the population std over seeds (ddof = 0), as in results.json. Datasets without
reference scores are reported in raw return.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from experiments.plotting import paper_references
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open
from jaxrl_bayes.logging import read_jsonl

# Column order of the papers' methods; any other algorithm follows in name order.
ALGO_ORDER = ("bc", "rrpi", "pspo", "pmdb")
_NO_ALGO = "\0"  # paper_references of a name no paper uses: the dataset-level references only


@dataclass
class Cell:
    """All seeds of one (dataset, algorithm) gathered from one or more run directories."""

    dataset: str
    algo: str
    normalized: list[float] = field(default_factory=list)  # per seed (empty: no reference scores)
    raw: list[float] = field(default_factory=list)  # per seed
    run_dirs: list[str] = field(default_factory=list)
    presets: set = field(default_factory=set)
    steps: set = field(default_factory=set)
    curve: dict[int, list[float]] = field(default_factory=dict)  # step -> per-seed scores
    curve_normalized: bool = True


@dataclass
class Report:
    cells: dict[tuple[str, str], Cell]
    behaviour: dict[str, dict[str, Optional[float]]]  # dataset -> {"normalized", "raw"}
    unfinished: list[str]
    unreadable: list[str]


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


def collect(root: Path) -> Report:
    """Reads every run directory under `root` into cells keyed by (dataset, algorithm)."""
    finished, unfinished = find_run_dirs(root)
    cells: dict[tuple[str, str], Cell] = {}
    behaviour: dict[str, dict[str, Optional[float]]] = {}
    unreadable = []
    for run_dir in finished:
        try:
            results = json.loads((run_dir / "results.json").read_text())
            dataset, algo = str(results["dataset"]), str(results["algo"])
            per_seed = list(results["per_seed"])
        except (OSError, ValueError, KeyError, TypeError):
            unreadable.append(str(run_dir))
            continue
        cell = cells.setdefault((dataset, algo), Cell(dataset, algo))
        norm = [_number(s.get("normalized_score")) for s in per_seed]
        if all(v is not None for v in norm):
            cell.normalized.extend(norm)
        cell.raw.extend(v for v in (_number(s.get("raw_return")) for s in per_seed) if v is not None)
        cell.run_dirs.append(str(run_dir))
        cell.presets.add(str(results.get("preset", "?")))
        if results.get("total_steps") is not None:
            cell.steps.add(int(results["total_steps"]))
        points, is_norm = _curve_points(read_jsonl(run_dir / "metrics.jsonl"))
        if points:
            cell.curve_normalized = cell.curve_normalized and is_norm
        for step, vals in points.items():
            cell.curve.setdefault(step, []).extend(vals)
        b = behaviour_score(results)
        if b["normalized"] is not None or b["raw"] is not None:
            behaviour.setdefault(dataset, b)
    return Report(cells, behaviour, [str(d) for d in unfinished], unreadable)


# ----------------------------------------------------------------------------- numbers


def mean_std_n(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, population std, count) of per-seed scores."""
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std()), int(a.size)


def algo_order(algos: Sequence[str]) -> list[str]:
    known = [a for a in ALGO_ORDER if a in algos]
    return known + sorted(a for a in set(algos) if a not in ALGO_ORDER)


def paper_score(dataset: str, algo: str) -> Optional[float]:
    """The paper's normalized score of `algo` on `dataset` (None if no paper reports it)."""
    shared = set(paper_references(dataset, _NO_ALGO))
    own = [v for label, v in paper_references(dataset, algo) if (label, v) not in shared]
    return own[0] if own else None


def dataset_references(dataset: str) -> list[tuple[str, float]]:
    """References that belong to the dataset, not to an algorithm (e.g. the DP ceiling)."""
    return list(paper_references(dataset, _NO_ALGO))


def rows_of(report: Report) -> list[dict[str, Any]]:
    """One row per (dataset, algorithm), plus a behaviour row where a run recorded it."""
    rows = []
    datasets = sorted({d for d, _ in report.cells})
    for dataset in datasets:
        b = report.behaviour.get(dataset)
        if b is not None:
            rows.append(dict(dataset=dataset, algo="behaviour", seeds="", normalized_mean=b["normalized"],
                             normalized_std=None, raw_mean=b["raw"], raw_std=None, paper=None, runs=""))
        for algo in algo_order([a for d, a in report.cells if d == dataset]):
            cell = report.cells[(dataset, algo)]
            nm = mean_std_n(cell.normalized) if cell.normalized else (None, None, None)
            rm = mean_std_n(cell.raw) if cell.raw else (None, None, None)
            rows.append(dict(dataset=dataset, algo=algo, seeds=len(cell.normalized or cell.raw),
                             normalized_mean=nm[0], normalized_std=nm[1], raw_mean=rm[0], raw_std=rm[1],
                             paper=paper_score(dataset, algo), runs=";".join(cell.run_dirs)))
    return rows


# ----------------------------------------------------------------------------- writing


def _fmt(mean: Optional[float], std: Optional[float] = None, n: Optional[int] = None) -> str:
    if mean is None:
        return ""
    text = f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"
    return text + (f" ({n})" if n is not None else "")


def markdown(report: Report) -> str:
    """The Table-1-style markdown text."""
    algos = algo_order(sorted({a for _, a in report.cells}))
    datasets = sorted({d for d, _ in report.cells})
    with_paper = [a for a in algos if any(paper_score(d, a) is not None for d in datasets)]
    refs_any = any(dataset_references(d) for d in datasets)
    header = ["dataset", "behaviour"]
    for a in algos:
        header.append(a.upper())
        if a in with_paper:
            header.append(f"{a.upper()} (paper)")
    if refs_any:
        header.append("other references")
    lines = [
        "# Results",
        "",
        "Normalized score (100 = expert, 0 = random; D4RL's formula), mean ± std over seeds, the seed "
        "count in parentheses; std is the population std (ddof = 0). A cell marked *raw* is a raw return "
        "(the dataset has no reference scores). \"(paper)\" columns are the papers' numbers "
        "(BENCHMARKS.md): other data scale and budget than a CPU preset.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for d in datasets:
        b = report.behaviour.get(d)
        row = [d, "" if b is None else (_fmt(b["normalized"]) if b["normalized"] is not None
                                        else _fmt(b["raw"]) + " *raw*")]
        for a in algos:
            cell = report.cells.get((d, a))
            if cell is None:
                row.append("")
            elif cell.normalized:
                row.append(_fmt(*mean_std_n(cell.normalized)))
            elif cell.raw:
                row.append(_fmt(*mean_std_n(cell.raw)) + " *raw*")
            else:
                row.append("")
            if a in with_paper:
                p = paper_score(d, a)
                row.append("" if p is None else f"{p:.1f}")
        if refs_any:
            row.append("; ".join(f"{label} {v:.1f}" for label, v in dataset_references(d)))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Runs:", ""]
    for (d, a), cell in sorted(report.cells.items()):
        steps = ", ".join(str(s) for s in sorted(cell.steps)) or "?"
        lines.append(f"- {d} / {a}: {len(cell.run_dirs)} run(s), preset {', '.join(sorted(cell.presets))}, "
                     f"{steps} steps: " + ", ".join(f"`{r}`" for r in cell.run_dirs))
    if report.unfinished:
        lines += ["", f"Unfinished runs (no results.json; not in the table): {len(report.unfinished)}"]
        lines += [f"- `{r}`" for r in report.unfinished]
    if report.unreadable:
        lines += ["", f"Unreadable results.json (not in the table): {len(report.unreadable)}"]
        lines += [f"- `{r}`" for r in report.unreadable]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("dataset", "algo", "seeds", "normalized_mean", "normalized_std", "raw_mean", "raw_std", "paper", "runs")


def csv_text(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows_of(report):
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS})
    return buf.getvalue()


def safe_name(name: str) -> str:
    """A dataset name or path as one file or folder name (the sweep's folders, the figures)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/")) or "dataset"


def plot_curves(report: Report, dataset: str, path: Path) -> None:
    """One figure: every algorithm's mean learning curve on `dataset` with a ±std band."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cells = [report.cells[(dataset, a)] for a in algo_order([a for d, a in report.cells if d == dataset])]
    normalized = all(c.curve_normalized for c in cells)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
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
                    label=f"{cell.algo.upper()} ({len(cell.normalized or cell.raw)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, lw=0)
            p = paper_score(dataset, cell.algo) if normalized else None
            if p is not None:
                ax.axhline(p, color=color, ls="--", lw=1, label=f"{cell.algo.upper()} paper: {p:g}")
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
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)


def write_report(root: Path, out: Optional[Path] = None) -> dict[str, Any]:
    """Writes report.md, report.csv and curves/<dataset>.png for the runs under `root`.

    Returns {"markdown": path, "csv": path, "figures": [paths], "report": Report}.
    Raises:
      UserError: `root` is not a directory or holds no finished run.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give the folder that holds the run directories")
    report = collect(root)
    if not report.cells:
        hint = f" ({len(report.unfinished)} unfinished)" if report.unfinished else ""
        raise UserError(f"no finished run (a folder with results.json) under {root}{hint}; "
                        f"give the folder of a sweep or of experiments.run --out directories")
    out = Path(out) if out is not None else root
    md, cv = out / "report.md", out / "report.csv"
    with atomic_open(md, "w") as f:
        f.write(markdown(report))
    with atomic_open(cv, "w") as f:
        f.write(csv_text(report))
    figures = []
    for dataset in sorted({d for d, _ in report.cells}):
        path = out / "curves" / f"{safe_name(dataset)}.png"
        plot_curves(report, dataset, path)
        figures.append(path)
    return {"markdown": md, "csv": cv, "figures": figures, "report": report}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report",
        description="Table-1-style report (markdown, CSV, learning curves) of every finished run "
                    "directory under DIR.")
    parser.add_argument("dir", metavar="DIR", help="folder holding run directories (searched recursively)")
    parser.add_argument("--out", default=None, help="where to write report.md, report.csv, curves/ (default DIR)")
    args = parser.parse_args(argv)
    try:
        written = write_report(Path(args.dir), Path(args.out) if args.out else None)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(written["markdown"].read_text())
    print(f"wrote {written['markdown']}, {written['csv']} and {len(written['figures'])} figure(s) "
          f"in {written['markdown'].parent / 'curves'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
