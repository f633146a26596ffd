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
         finished=True) -> Path:
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
                   "per_seed": [{"seed_index": i, "raw_return": r, "normalized_score": n}
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
    _run(root, "liq", LIQ, "pspo", [95.0, 97.0], [128.0, 131.0], curve=[(5, [90.0, 92.0])])
    _run(root, "own", "mydata", "rrpi", [None, None], [1.0, 3.0])
    _run(root, "stopped", HMR, "pspo", [1.0], [1.0], finished=False)
    return root


def _table(md: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    lines = [l for l in md.splitlines() if l.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return header, rows


def test_table_pools_seeds_over_run_dirs_and_shows_papers_and_behaviour(runs):
    written = report.write_report(runs)
    md = written["markdown"].read_text()
    header, rows = _table(md)
    paper_rrpi = paper_references(HMR, "rrpi")[0][1]
    # rrpi on HMR: seeds 50, 60 (run a) and 70 (run b): mean 60, population std sqrt(200/3)
    assert rows[HMR]["RRPI"] == f"60.0 ± {np.sqrt(200 / 3):.1f} (3)" == "60.0 ± 8.2 (3)"
    assert rows[HMR]["RRPI (paper)"] == f"{paper_rrpi:.1f}"
    assert rows[HMR]["BC"] == "40.0 ± 0.0 (1)"
    assert rows[HMR]["behaviour"] == "13.0"
    assert rows[LIQ]["PSPO"] == "96.0 ± 1.0 (2)"
    liq_refs = paper_references(LIQ, "pspo")
    assert rows[LIQ]["PSPO (paper)"] == f"{liq_refs[0][1]:.1f}"
    ceiling = [r for r in liq_refs if "ceiling" in r[0]]
    assert rows[LIQ]["other references"] == f"{ceiling[0][0]} {ceiling[0][1]:.1f}"
    assert rows["mydata"]["RRPI"] == "2.0 ± 1.0 (2) *raw*"
    assert rows[LIQ]["RRPI"] == "" and rows[HMR]["PSPO"] == ""  # the stopped run is not counted
    assert header.index("BC") < header.index("RRPI") < header.index("PSPO")
    assert "Unfinished runs" in md and str(runs / "stopped") in md


def test_csv_has_the_same_numbers(runs):
    written = report.write_report(runs, out=runs / "out")
    rows = list(csv.DictReader(written["csv"].open()))
    by = {(r["dataset"], r["algo"]): r for r in rows}
    r = by[(HMR, "rrpi")]
    assert int(r["seeds"]) == 3 and float(r["normalized_mean"]) == pytest.approx(60.0)
    assert float(r["normalized_std"]) == pytest.approx(np.std([50, 60, 70]))
    assert float(r["raw_mean"]) == pytest.approx(np.mean([1600, 1900, 2300]))
    assert float(r["paper"]) == paper_references(HMR, "rrpi")[0][1]
    assert len(r["runs"].split(";")) == 2
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
    assert report.main([str(runs)]) == 0
    assert "60.0 ± 8.2 (3)" in capsys.readouterr().out
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
