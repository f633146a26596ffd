"""results.curve_spread: the last half of each deployment's learning curve, by hand."""

from __future__ import annotations

import pytest

from experiments import results


def _eval(step, pi, ref, final=False):
    return {"step": step, "final": final, "raw": [x * 10 for x in pi], "normalized": list(pi),
            "deployments": {"reference": {"raw": [x * 10 for x in ref], "normalized": list(ref), "mc_value": None}}}


def test_each_deployment_gets_its_own_last_half_spread():
    # two seeds; pi oscillates, the reference does not
    evals = [_eval(2000, [5, 6], [4, 4]), _eval(6000, [30, 10], [20, 11]), _eval(8000, [10, 40], [21, 12]),
             _eval(10000, [50, 20], [22, 13]), _eval(10000, [45, 25], [21.5, 14], final=True)]
    pi = results.curve_spread(evals, 10000, 2)
    ref = results.curve_spread(evals, 10000, 2, deployment="reference")
    assert [(s["min"], s["max"]) for s in pi["per_seed"]] == [(10, 50), (10, 40)]
    assert [(s["min"], s["max"]) for s in ref["per_seed"]] == [(20, 22), (11, 13)]
    assert pi["mean_range"] == pytest.approx(35.0) and ref["mean_range"] == pytest.approx(2.0)
    assert pi["final_within"] == 2 and ref["final_within"] == 1  # 14 lies above the second seed's [11, 13]
    assert pi["points"] == ref["points"] == 3 and pi["first_step"] == 6000
    assert results.curve_spread(evals, 10000, 2, deployment="average") is None  # never evaluated
