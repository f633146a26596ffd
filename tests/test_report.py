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
         finished=True, gaps=None, config=None) -> Path:
    """A run directory; `config`: config.json's sections beside run.dataset and run.algo."""
    d = root / name
    d.mkdir(parents=True)
    config = dict(config or {})
    (d / "config.json").write_text(json.dumps({**config, "run": {"dataset": dataset, "algo": algo,
                                                                 **config.get("run", {})}}))
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


def test_each_method_is_set_against_the_best_one_line_schedule_on_the_same_episodes(tmp_path):
    root = tmp_path / "runs"
    last_step = {"eval_seed": 3, "eval_episodes": 100,
                 "best_schedule": {"policy": "last_step", "normalized_score": 98.0, "raw_return": 132.0}}
    _run(root, "r1", LIQ, "rrpi", [99.0, 97.0], [1.0] * 2, extra=last_step)
    _run(root, "r2", LIQ, "rrpi", [100.0], [1.0], extra=last_step)  # pooled with r1: the same schedule
    _run(root, "p", LIQ, "pspo", [97.0, 96.0], [1.0] * 2, extra=last_step)
    _run(root, "a1", LIQ, "pspo-avg", [99.0], [1.0], extra=last_step)
    _run(root, "a2", LIQ, "pspo-avg", [99.0], [1.0], extra={"eval_seed": 3, "eval_episodes": 100})  # none recorded
    pairs = _table(report.write_report(root)["markdown"].read_text(), "## Probability of improvement")
    # 99, 97, 100 against the constant 98: 2 of 3 above; the difference 98.67 - 98
    assert pairs[("RRPI", "schedule: last_step")]["P(X > Y) [95 % CI]"].startswith("0.67 [0.00, 1.00]")
    assert pairs[("RRPI", "schedule: last_step")]["mean(X) - mean(Y) [95 % CI]"].startswith("0.67 [")
    assert pairs[("RRPI", "schedule: last_step")]["seeds X / Y"] == "3 / 0"
    assert pairs[("PSPO", "schedule: last_step")]["P(X > Y) [95 % CI]"] == "0.00 [0.00, 0.00]"
    assert ("PSPO-AVG", "schedule: last_step") not in pairs  # one of its runs has no schedule to compare with


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


# ----------------------------------------------------------------------------- variants

PERSISTENT = {"rollout_scheme": "persistent"}  # rrpi reads rollout_explore under this scheme only
EXPLORE_01, EXPLORE_10 = "rrpi (agent.rollout.explore=0.1)", "rrpi (agent.rollout.explore=1.0)"


def _full_config(dataset: str, algo: str) -> dict:
    """A complete config.json, as experiments.run writes it (every field)."""
    from experiments.config import Config, RunConfig
    from jaxrl_bayes import algos
    from jaxrl_bayes.dynamics import DynamicsConfig

    return Config(RunConfig(dataset=dataset, algo=algo), DynamicsConfig(), algos.algo_config(algo)).to_json()


@pytest.fixture
def variant_runs(tmp_path):
    root = tmp_path / "runs"
    seed = {"eval_seed": 3, "eval_episodes": 50}
    _run(root, "r1", HMR, "rrpi", [50.0, 60.0], [1600.0, 1900.0], extra=seed, curve=[(10, [50.0, 60.0])],
         config={"agent": {**PERSISTENT, "rollout_explore": 0.1}})
    _run(root, "r2", HMR, "rrpi", [20.0, 30.0], [700.0, 1000.0], extra=seed, curve=[(10, [20.0, 30.0])],
         config={"agent": {**PERSISTENT, "rollout_explore": 1.0}})
    # another base seed and another dynamics_seed: bookkeeping, pooled with r2
    _run(root, "r3", HMR, "rrpi", [40.0], [1300.0], extra=seed, curve=[(10, [40.0])],
         config={"run": {"seed": 1, "dynamics_seed": 4}, "agent": {**PERSISTENT, "rollout_explore": 1.0}})
    _run(root, "rr", HMR, "rrpi-random", [10.0, 15.0], [300.0, 450.0], extra=seed, config={"agent": PERSISTENT})
    # bc trains no dynamics model: its dynamics fields do not split it
    _run(root, "b1", HMR, "bc", [25.0], [800.0], extra=seed,
         config={"agent": {"algo": "bc"}, "dynamics": {"max_epochs": 5}})
    _run(root, "b2", HMR, "bc", [35.0], [1100.0], extra=seed,
         config={"agent": {"algo": "bc"}, "dynamics": {"max_epochs": 200}})
    _run(root, "p", HMR, "pspo", [45.0], [1400.0], extra=seed)
    return root


def test_configurations_of_one_algorithm_are_separate_rows(variant_runs):
    written = report.write_report(variant_runs)
    cells = written["report"].cells
    assert set(cells) == {(HMR, "bc"), (HMR, "pspo"), (HMR, EXPLORE_01), (HMR, EXPLORE_10), (HMR, "rrpi-random")}
    c01, c10 = cells[(HMR, EXPLORE_01)], cells[(HMR, EXPLORE_10)]
    assert (c01.algo, c01.variant, c01.normalized, c01.raw) == ("rrpi", {"agent.rollout.explore": 0.1},
                                                                [50.0, 60.0], [1600.0, 1900.0])
    assert (c10.algo, c10.variant, c10.normalized) == ("rrpi", {"agent.rollout.explore": 1.0}, [20.0, 30.0, 40.0])
    assert c10.run_dirs == [str(variant_runs / "r2"), str(variant_runs / "r3")]
    assert c10.curve == {10: [20.0, 30.0, 40.0]} and c01.curve == {10: [50.0, 60.0]}
    assert cells[(HMR, "bc")].normalized == [25.0, 35.0] and cells[(HMR, "bc")].variant == {}
    assert [r["algo"] for r in report.rows_of(written["report"])] == [
        "bc", EXPLORE_01, EXPLORE_10, "pspo", "rrpi-random"]  # a variant right after its algorithm

    md = written["markdown"].read_text()
    rows = _table(md)
    paper_rrpi = f"{paper_references(HMR, 'rrpi')[0][1]:.1f}"
    r10 = rows[(HMR, "RRPI (agent.rollout.explore=1.0)")]
    assert r10["seeds"] == "3" and r10["mean [95 % CI]"] == f"30.0 {_percentile_ci([20, 30, 40])}"
    assert r10["paper"] == paper_rrpi  # the algorithm's paper number
    r01 = rows[(HMR, "RRPI (agent.rollout.explore=0.1)")]
    assert r01["seeds"] == "2" and r01["mean [95 % CI]"] == f"55.0 {_percentile_ci([50, 60])}" == "55.0 [50.0, 60.0]"
    assert r01["paper"] == paper_rrpi and (HMR, "RRPI") not in rows
    grid = _table(md, "## Overview")
    assert list(grid[(HMR, "")]) == ["dataset", "behaviour", "BC", "RRPI (agent.rollout.explore=0.1)",
                      "RRPI (agent.rollout.explore=1.0)", "RRPI (paper)", "PSPO", "PSPO (paper)", "RRPI-RANDOM"]
    assert grid[(HMR, "")]["RRPI (agent.rollout.explore=1.0)"] == "30.0 ± 8.2 (3)"
    assert grid[(HMR, "")]["RRPI (paper)"] == paper_rrpi
    assert f"- {HMR} / {EXPLORE_10}: 2 run(s)" in md

    by = {(r["dataset"], r["algo"]): r for r in csv.DictReader(written["csv"].open())}
    assert by[(HMR, EXPLORE_10)]["variant"] == "agent.rollout.explore=1.0" and by[(HMR, "bc")]["variant"] == ""
    assert float(by[(HMR, EXPLORE_10)]["normalized_mean"]) == 30.0 and int(by[(HMR, EXPLORE_10)]["seeds"]) == 3
    assert float(by[(HMR, EXPLORE_01)]["paper"]) == paper_references(HMR, "rrpi")[0][1]


def test_every_variant_is_paired_against_bc_and_in_the_named_pairs(variant_runs):
    written = report.write_report(variant_runs)
    assert report.named_pairs([a for _, a in written["report"].cells]) == [
        (EXPLORE_01, "rrpi-random"), (EXPLORE_10, "rrpi-random"),
        (EXPLORE_01, "bc"), (EXPLORE_10, "bc"), ("pspo", "bc"), ("rrpi-random", "bc")]
    pairs = _table(written["markdown"].read_text(), "## Probability of improvement")
    v01, v10 = "RRPI (agent.rollout.explore=0.1)", "RRPI (agent.rollout.explore=1.0)"
    assert set(pairs) == {(v01, "RRPI-RANDOM"), (v10, "RRPI-RANDOM"), (v01, "BC"), (v10, "BC"), ("PSPO", "BC"),
                          ("RRPI-RANDOM", "BC")}
    # 50, 60 against bc's 25, 35: every pair won; 20, 30, 40 against 25, 35: 3 of 6 won
    assert pairs[(v01, "BC")]["P(X > Y) [95 % CI]"] == "1.00 [1.00, 1.00]"
    assert pairs[(v01, "BC")]["seeds X / Y"] == "2 / 2"
    assert pairs[(v01, "BC")]["mean(X) - mean(Y) [95 % CI]"].startswith("25.00 [")
    assert pairs[(v10, "BC")]["P(X > Y) [95 % CI]"].startswith("0.50 [")
    assert pairs[(v10, "BC")]["seeds X / Y"] == "3 / 2"
    assert pairs[(v10, "BC")]["mean(X) - mean(Y) [95 % CI]"].startswith("0.00 [")
    assert pairs[(v10, "RRPI-RANDOM")]["P(X > Y) [95 % CI]"] == "1.00 [1.00, 1.00]"
    comp = list(csv.DictReader(written["comparisons_csv"].open()))
    poi = {(c["x"], c["y"]): float(c["point"]) for c in comp if c["statistic"] == "probability_of_improvement"}
    assert poi[(EXPLORE_10, "bc")] == 0.5 and poi[(EXPLORE_01, "bc")] == 1.0
    agg = _table(written["markdown"].read_text(), "## Across datasets")
    assert agg[(v10, "1")]["mean [95 % CI]"].startswith("30.0 [") and agg[(v10, "1")]["runs"] == "3"


def test_git_commits_are_checked_per_row(tmp_path, capsys):
    root = tmp_path / "runs"
    prov = {c: {"provenance": {"git_commit": c * 40}} for c in "ab"}
    explore = {x: {"agent": {**PERSISTENT, "rollout_explore": x}} for x in (0.1, 1.0)}
    _run(root, "r1", HMR, "rrpi", [50.0], [1.0], extra=prov["a"], config=explore[0.1])
    _run(root, "r2", HMR, "rrpi", [20.0], [1.0], extra=prov["b"], config=explore[1.0])
    assert report.main([str(root)]) == 0  # one commit per row
    capsys.readouterr()
    _run(root, "r3", HMR, "rrpi", [60.0], [1.0], extra=prov["b"], config=explore[0.1])
    assert report.main([str(root)]) == 2
    assert f"refusing to pool the seeds of {EXPLORE_01} on {HMR}" in capsys.readouterr().err
    assert report.main([str(root), "--allow-mixed"]) == 0
    md = (root / "report.md").read_text()
    assert f"(--allow-mixed)**: {HMR} / {EXPLORE_01}: commits {'a' * 12}, {'b' * 12}" in md
    assert EXPLORE_10 + ": commits" not in md


def test_one_configuration_keeps_the_plain_name_and_a_missing_field_is_its_default(tmp_path):
    from jaxrl_bayes.dynamics import DynamicsConfig

    root = tmp_path / "runs"
    new = _full_config(HMR, "rrpi")
    assert new["dynamics"]["max_epochs"] == DynamicsConfig().max_epochs == 200
    old = json.loads(json.dumps(new))
    del old["dynamics"]["max_epochs"], old["agent"]["rollout"]["horizon"]  # a run from before these fields
    _run(root, "new", HMR, "rrpi", [50.0, 60.0], [1.0, 2.0], config=new)
    _run(root, "old", HMR, "rrpi", [70.0], [3.0], config=old)
    _run(root, "liq", LIQ, "rrpi", [80.0], [4.0], config={"dynamics": {"max_epochs": 5}})
    cells = report.collect(root).cells
    assert set(cells) == {(HMR, "rrpi"), (LIQ, "rrpi")}  # one configuration per dataset: the plain name
    assert cells[(HMR, "rrpi")].normalized == [50.0, 60.0, 70.0] and cells[(HMR, "rrpi")].variant == {}
    assert cells[(LIQ, "rrpi")].normalized == [80.0]
    # a third configuration splits them, and the old run sits with max_epochs = 200
    other = json.loads(json.dumps(new))
    other["dynamics"]["max_epochs"] = 50
    _run(root, "other", HMR, "rrpi", [10.0], [5.0], config=other)
    cells = report.collect(root).cells
    assert set(cells) == {(HMR, "rrpi (dynamics.max_epochs=200)"), (HMR, "rrpi (dynamics.max_epochs=50)"),
                          (LIQ, "rrpi")}
    assert cells[(HMR, "rrpi (dynamics.max_epochs=200)")].normalized == [50.0, 60.0, 70.0]
    assert cells[(HMR, "rrpi (dynamics.max_epochs=50)")].normalized == [10.0]


def test_rates_that_follow_the_budget_are_left_out_of_the_label(tmp_path):
    from experiments import config
    from jaxrl_bayes import algos
    from jaxrl_bayes.dynamics import DynamicsConfig

    root = tmp_path / "runs"

    def cfg(steps, **agent):
        """The config.json experiments.run writes for `--run.total_steps steps` and `agent` on its command line."""
        run = config.Config(config.RunConfig(dataset=HMR, total_steps=steps), DynamicsConfig(), algos.algo_config("rrpi", **agent))
        run, sources = config.with_budget_rates(run, {f"agent.optim.{k}" for k in agent})
        return config.saved_json(run, sources)

    _run(root, "short", HMR, "rrpi", [10.0], [1.0], config=cfg(20_000))
    _run(root, "long", HMR, "rrpi", [20.0], [2.0], config=cfg(100_000))
    cells = report.collect(root).cells  # ref_tau differs too (0.001, 0.0002): the budget rule's
    assert {a: c.normalized for (_, a), c in cells.items()} == {
        "rrpi (run.total_steps=20000)": [10.0], "rrpi (run.total_steps=100000)": [20.0]}
    _run(root, "tuned", HMR, "rrpi", [30.0], [3.0], config=cfg(100_000, ref_tau=0.0005))
    cells = report.collect(root).cells
    assert {a: c.normalized for (_, a), c in cells.items()} == {
        "rrpi (agent.optim.ref_tau=0.001, run.total_steps=20000)": [10.0],
        "rrpi (agent.optim.ref_tau=0.0002, run.total_steps=100000)": [20.0],
        "rrpi (agent.optim.ref_tau=0.0005, run.total_steps=100000)": [30.0]}


def test_a_run_whose_config_cannot_be_read_is_unreadable(tmp_path):
    root = tmp_path / "runs"
    _run(root, "good", HMR, "rrpi", [50.0], [1.0])
    _run(root, "unknown", HMR, "rrpi", [60.0], [1.0], config={"agent": {"no_such_field": 1}})
    (_run(root, "lost", HMR, "rrpi", [70.0], [1.0]) / "config.json").unlink()
    (_run(root, "garbled", HMR, "rrpi", [80.0], [1.0]) / "config.json").write_text("{not json")
    written = report.write_report(root)
    rep = written["report"]
    assert list(rep.cells) == [(HMR, "rrpi")] and rep.cells[(HMR, "rrpi")].normalized == [50.0]
    why = dict(rep.unreadable)
    assert sorted(why) == sorted(str(root / n) for n in ("unknown", "lost", "garbled"))
    assert "no_such_field" in why[str(root / "unknown")] and "does not exist" in why[str(root / "lost")]
    assert "Unreadable results.json or config.json (not in the table): 3" in written["markdown"].read_text()


def test_run_fields_are_sorted_into_method_and_bookkeeping():
    import dataclasses

    from experiments.config import RunConfig

    names = {f"run.{f.name}" for f in dataclasses.fields(RunConfig)}
    assert report.RUN_FIELDS_NOT_METHOD <= names  # no stale names
    assert names - report.RUN_FIELDS_NOT_METHOD == {"run.total_steps", "run.preset", "run.eval_env",
                                                    "run.ref_min_score", "run.ref_max_score"}
