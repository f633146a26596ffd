"""experiments.report on run directories made here with known numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import report
from experiments.plotting import paper_references


def _run(root: Path, name: str, dataset: str, algo: str, normalized, raw, *, curve=(), extra=None,
         finished=True, gaps=None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"run": {"dataset": dataset, "algo": algo}}))
    rows = []
    for step, seeds in curve:
        row = {"chunk": len(rows) + 1, "step": step, "eval/normalized_mean": float(np.mean(seeds))}
        if len(seeds) > 1:
            row["eval/normalized/seeds"] = list(seeds)
        rows.append(row)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut by a cra')
    if finished:
        results = {"dataset": dataset, "algo": algo, "preset": "cpu", "seeds": len(raw), "total_steps": 100,
                   "per_seed": [{"seed_index": i, "raw_return": r, "normalized_score": n,
                                 "optimality_gap": None if gaps is None else gaps[i]}
                                for i, (r, n) in enumerate(zip(raw, normalized))]}
        results.update(extra or {})
        (d / "results.json").write_text(json.dumps(results))
    return d


HMR = "hopper-medium-replay-v2"
LIQ = "liquidation-random-v0"


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "sweep"
    _run(root, "a/rrpi-1", HMR, "rrpi", [50.0, 60.0], [1600.0, 1900.0], curve=[(10, [10.0, 20.0]), (20, [50.0, 60.0])])
    _run(root, "b/rrpi-2", HMR, "rrpi", [70.0], [2300.0], curve=[(10, [30.0]), (20, [70.0])])
    _run(root, "bc", HMR, "bc", [40.0], [1300.0], curve=[(20, [40.0])],
         extra={"behaviour": {"normalized_score": 13.0, "raw_return": 400.0}})
    _run(root, "liq", LIQ, "pspo", [95.0, 97.0], [128.0, 131.0], curve=[(5, [90.0, 92.0])],
         gaps=[6.0, 4.0], extra={"eval_seed": 7, "eval_episodes": 10_000,
                                 "optimum": {"gap_units": "normalized", "normalized_score": 101.0, "raw_return": 136.35}})
    _run(root, "own", "mydata", "rrpi", [None, None], [1.0, 3.0])
    _run(root, "stopped", HMR, "pspo", [1.0], [1.0], finished=False)
    return root


def _table(md: str, title: str = "## Per dataset") -> dict[tuple[str, str], dict[str, str]]:
    """The rows of the markdown table under `title`, keyed by their first two cells."""
    lines = md.split(title, 1)[1].splitlines()[1:]
    lines = [l for l in lines[: next((i for i, l in enumerate(lines) if l.startswith("## ")), len(lines))]
             if l.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[(cells[0], cells[1])] = dict(zip(header, cells))
    return rows


def _percentile_ci(x, statistic=np.mean):
    """scipy's own 95 % percentile bootstrap (the oracle for the report's intervals)."""
    import scipy.stats

    ci = scipy.stats.bootstrap((np.asarray(x, np.float64),), statistic, n_resamples=10_000, method="percentile",
                               rng=np.random.default_rng(0)).confidence_interval
    return f"[{ci.low:.1f}, {ci.high:.1f}]"


def test_table_pools_seeds_over_run_dirs_with_intervals_papers_and_behaviour(runs):
    written = report.write_report(runs)
    md = written["markdown"].read_text()
    rows = _table(md)
    paper_rrpi = paper_references(HMR, "rrpi")[0][1]
    # rrpi on HMR: seeds 50, 60 (run a) and 70 (run b): mean 60 (IQM of 3 = the mean), population std sqrt(200/3)
    r = rows[(HMR, "RRPI")]
    assert r["seeds"] == "3" and r["std"] == f"{np.sqrt(200 / 3):.1f}" == "8.2"
    assert r["mean [95 % CI]"] == f"60.0 {_percentile_ci([50, 60, 70])}" == r["IQM [95 % CI]"]
    assert r["paper"] == f"{paper_rrpi:.1f}"
    assert rows[(HMR, "BC")]["mean [95 % CI]"] == "40.0"  # one seed: no interval
    assert rows[(HMR, "behaviour (the data)")]["mean [95 % CI]"] == "13.0"
    liq = rows[(LIQ, "PSPO")]
    assert liq["mean [95 % CI]"] == f"96.0 {_percentile_ci([95, 97])}" == "96.0 [95.0, 97.0]"
    assert liq["episodes"] == "10,000" and liq["gap to optimum, mean [95 % CI]"] == "5.00 [4.00, 6.00]"
    assert liq["paper"] == f"{paper_references(LIQ, 'pspo')[0][1]:.1f}"
    note = [k[1] for k in rows if k[0] == LIQ and k[1].startswith("*")][0]
    ceiling = [x for x in paper_references(LIQ, "pspo") if "ceiling" in x[0]][0]
    assert f"{ceiling[0]} {ceiling[1]:.1f}" in note and "the optimum on the same evaluation episodes 101.00" in note
    assert "paired evaluation: every run met the same 10,000 episodes, evaluation seed 7" in note
    assert rows[("mydata", "RRPI")]["mean [95 % CI]"] == "2.0 [1.0, 3.0] *raw*"
    assert (LIQ, "RRPI") not in rows and (HMR, "PSPO") not in rows  # the stopped run is not counted
    assert "Unfinished runs" in md and str(runs / "stopped") in md
    hmr_note = [k[1] for k in rows if k[0] == HMR and k[1].startswith("*")][0]
    assert "not paired" in hmr_note  # those runs record no evaluation seed
    # the Table-1-style grid: mean ± population std (seed count), the papers' columns, behaviour
    grid = _table(md, "## Overview")
    assert grid[(HMR, "13.0")]["RRPI"] == "60.0 ± 8.2 (3)" and grid[(HMR, "13.0")]["RRPI (paper)"] == f"{paper_rrpi:.1f}"
    assert grid[(HMR, "13.0")]["BC"] == "40.0 ± 0.0 (1)" and grid[("mydata", "")]["RRPI"] == "2.0 ± 1.0 (2) *raw*"


def test_probability_of_improvement_and_aggregates(tmp_path):
    root = tmp_path / "runs"
    seed = {"eval_seed": 3, "eval_episodes": 50}
    _run(root, "p", HMR, "pspo", [70.0, 80.0, 90.0], [1.0] * 3, extra=seed)
    _run(root, "pa", HMR, "pspo-avg", [10.0, 20.0, 30.0], [1.0] * 3, extra=seed)
    _run(root, "pn", HMR, "pspo-noreg", [70.0, 80.0, 90.0], [1.0] * 3, extra=seed)
    _run(root, "b", HMR, "bc", [50.0, 60.0], [1.0] * 2, extra=seed)
    _run(root, "r", HMR, "rrpi", [120.0, 100.0, 110.0, 105.0], [1.0] * 4, extra=seed)
    written = report.write_report(root)
    md = written["markdown"].read_text()
    pairs = _table(md, "## Probability of improvement")
    # fully separated runs: P = 1 with the interval [1, 1]; identical runs: P = 1/2
    assert pairs[("PSPO", "PSPO-AVG")]["P(X > Y) [95 % CI]"] == "1.00 [1.00, 1.00]"
    assert pairs[("PSPO", "PSPO-AVG")]["mean(X) - mean(Y) [95 % CI]"].startswith("60.00 [")
    assert pairs[("PSPO", "PSPO-NOREG")]["P(X > Y) [95 % CI]"].startswith("0.50 [")
    assert pairs[("PSPO", "PSPO-NOREG")]["mean(X) - mean(Y) [95 % CI]"].startswith("0.00 [")
    # 70, 80, 90 against 50, 60: all 6 pairs won
    assert pairs[("PSPO", "BC")]["P(X > Y) [95 % CI]"] == "1.00 [1.00, 1.00]"
    assert pairs[("PSPO-AVG", "BC")]["P(X > Y) [95 % CI]"] == "0.00 [0.00, 0.00]"  # every method against BC
    assert pairs[("RRPI", "BC")]["P(X > Y) [95 % CI]"] == "1.00 [1.00, 1.00]"
    assert not any("RRPI-RANDOM" in k for k in pairs) and ("BC", "BC") not in pairs
    assert pairs[("PSPO", "PSPO-AVG")]["seeds X / Y"] == "3 / 3"
    agg = _table(md, "## Across datasets")
    # rrpi: 100, 105, 110, 120 -> IQM cuts one from each end: mean(105, 110); no run below 100: gap 0
    assert agg[("RRPI", "1")]["IQM [95 % CI]"].startswith("107.5 [")
    assert agg[("RRPI", "1")]["optimality gap [95 % CI]"] == "0.0 [0.0, 0.0]"
    assert agg[("PSPO-AVG", "1")]["optimality gap [95 % CI]"].startswith("80.0 [")
    comp = list(csv.DictReader(written["comparisons_csv"].open()))
    poi = [c for c in comp if c["statistic"] == "probability_of_improvement" and (c["x"], c["y"]) == ("pspo", "pspo-avg")]
    assert len(poi) == 1 and float(poi[0]["point"]) == 1.0 == float(poi[0]["low"]) == float(poi[0]["high"])
    assert written["profile"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_seeds_of_different_commits_are_pooled_only_when_allowed(tmp_path, capsys):
    root = tmp_path / "runs"
    _run(root, "a", HMR, "rrpi", [50.0], [1.0], extra={"provenance": {"git_commit": "a" * 40, "git_dirty": False}})
    _run(root, "b", HMR, "rrpi", [60.0], [1.0], extra={"provenance": {"git_commit": "b" * 40, "git_dirty": True,
                                                                      "versions": {"jax": "0.10.2"}}})
    assert report.main([str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to pool the seeds of rrpi" in err and "--allow-mixed" in err
    assert not (root / "report.md").exists()
    assert report.main([str(root), "--allow-mixed"]) == 0
    md = (root / "report.md").read_text()
    assert f"seeds pooled across git commits (--allow-mixed)**: {HMR} / rrpi: commits {'a' * 12}, {'b' * 12}" in md
    assert f"commit {'b' * 12} with uncommitted changes; jax 0.10.2: 1 run(s)" in md
    assert _table(md)[(HMR, "RRPI")]["seeds"] == "2"


def test_csv_has_the_same_numbers(runs):
    written = report.write_report(runs, out=runs / "out")
    rows = list(csv.DictReader(written["csv"].open()))
    by = {(r["dataset"], r["algo"]): r for r in rows}
    r = by[(HMR, "rrpi")]
    assert int(r["seeds"]) == 3 and float(r["normalized_mean"]) == pytest.approx(60.0)
    assert f"[{float(r['normalized_mean_low']):.1f}, {float(r['normalized_mean_high']):.1f}]" == _percentile_ci([50, 60, 70])
    assert float(r["normalized_iqm"]) == pytest.approx(60.0)
    assert float(r["normalized_std"]) == pytest.approx(np.std([50, 60, 70]))
    assert float(r["raw_mean"]) == pytest.approx(np.mean([1600, 1900, 2300]))
    assert float(r["paper"]) == paper_references(HMR, "rrpi")[0][1]
    assert len(r["runs"].split(";")) == 2 and r["commits"] == "unknown"
    liq = by[(LIQ, "pspo")]
    assert liq["episodes"] == "10000" and float(liq["gap_mean"]) == 5.0 and float(liq["gap_mean_low"]) == 4.0
    assert liq["gap_units"] == "normalized" and float(liq["optimum"]) == 101.0
    assert by[(HMR, "bc")]["normalized_mean_low"] == ""  # one seed: no interval
    b = by[(HMR, "behaviour")]
    assert float(b["normalized_mean"]) == 13.0 and float(b["raw_mean"]) == 400.0
    assert by[("mydata", "rrpi")]["normalized_mean"] == "" and float(by[("mydata", "rrpi")]["raw_mean"]) == 2.0
    assert not (runs / "report.md").exists()  # --out elsewhere leaves DIR untouched


def test_curves_pool_seeds_per_step_and_one_figure_per_dataset(runs):
    written = report.write_report(runs)
    cell = written["report"].cells[(HMR, "rrpi")]
    assert cell.curve == {10: [10.0, 20.0, 30.0], 20: [50.0, 60.0, 70.0]}
    names = sorted(p.name for p in written["figures"])
    assert names == sorted(f"{report.safe_name(d)}.png" for d in (HMR, LIQ, "mydata"))
    for p in written["figures"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_and_clear_errors(runs, tmp_path, capsys):
    assert report.main([str(runs), "--out", str(tmp_path / "elsewhere")]) == 0
    assert f"| {HMR} | RRPI | 3 |" in capsys.readouterr().out and (tmp_path / "elsewhere" / "report.md").is_file()
    assert report.main(["--help"]) == 0
    assert "--allow-mixed" in capsys.readouterr().out
    assert report.main([str(runs), "--allow-mixd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow_mixed" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.main([str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no finished run" in err
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_behaviour_score_accepts_flat_keys():
    assert report.behaviour_score({"behaviour_normalized_score": 12.5}) == {"normalized": 12.5, "raw": None}
    assert report.behaviour_score({"behaviour": {"normalized_score": {"mean": 3.0}}})["normalized"] == 3.0
    assert report.behaviour_score({}) == {"normalized": None, "raw": None}
