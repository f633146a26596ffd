"""The budget rule of `jaxrl_bayes.algos.timescales`: rates keep PMDB's time constants per run."""

from __future__ import annotations

import functools
import math

import pytest

from experiments import config, run as run_mod
from jaxrl_bayes.algos import timescales
from jaxrl_bayes.errors import UserError


def test_pmdb_budget_gives_pmdb_rates_and_shorter_runs_the_same_time_constants():
    assert timescales.budget_rates(2_000_000) == {"ref_tau": 1e-5, "tau": 5e-3, "policy_lr": 3e-5, "critic_lr": 3e-4,
                                                  "avg_tau": 2e-6}
    assert timescales.budget_rates(4_000_000) == timescales.budget_rates(2_000_000)  # never slower than PMDB
    for steps in (10_000, 100_000, 1_000_000):
        r = timescales.budget_rates(steps)
        # the reference policy lives through PMDB's 2M * 1e-5 = 20 time constants at every budget
        assert steps * r["ref_tau"] == pytest.approx(20.0)
        assert steps * r["avg_tau"] == pytest.approx(4.0)  # the deployed average spans a quarter of the run
        assert r["tau"] == min(0.02, 5e-3 * 2_000_000 / steps) and r["policy_lr"] == min(3e-4, 3e-5 * 2_000_000 / steps)
    assert timescales.budget_rates(10)["ref_tau"] == 1.0  # capped: mu = the previous iterate


def test_reference_time_constants_and_refusal():
    assert timescales.reference_time_constants(1e-5, 10_000) == pytest.approx(-10_000 * math.log(1 - 1e-5))
    assert timescales.reference_time_constants(1.0, 1) == math.inf
    timescales.check_reference_moves(2e-3, 10_000)  # 20 time constants: fine
    with pytest.raises(UserError, match=r"moves the reference policy only 9\.5% .* budget rule's 0\.002"):
        timescales.check_reference_moves(1e-5, 10_000)  # the 1 - (1 - 1e-5)^10000 = 0.095


def test_cli_refuses_a_reference_that_cannot_move():
    with pytest.raises(UserError, match="agent.optim.ref_tau = 1e-05 moves the reference policy only"):
        run_mod.parse_command_line(["--agent.optim.ref_tau", "1e-5"])  # liquidation cpu: 6000 steps
    _, cfg, _ = run_mod.parse_command_line(["--agent.optim.ref_tau", "1e-3"])  # 6 time constants: accepted
    assert cfg.agent.optim.ref_tau == 1e-3


def test_presets_may_not_set_the_rates_the_budget_scales(tmp_path):
    (tmp_path / "liquidation.json").write_text(
        '{"cpu": {"agent": {"tau": {"value": 0.1, "_source": "x"}}}}')
    with pytest.raises(config.UsageError, match="may not set agent.optim.tau: it follows from run.total_steps"):
        config.load_preset("liquidation", "cpu", "rrpi", explicit=True, configs_dir=tmp_path)
    assert timescales.UNSCALED == ("critic_lr",)  # its cap is PMDB's value: the rule never scales it


def test_a_preset_critic_step_size_is_kept_and_the_rule_sets_the_rest(tmp_path, monkeypatch):
    (tmp_path / "liquidation.json").write_text(
        '{"cpu": {"run": {"total_steps": {"value": 6000, "_source": "x"}},'
        ' "agent": {"optim.critic_lr": {"value": 0.002, "_source": "measured"}}}}')
    monkeypatch.setattr(config, "load_preset", functools.partial(config.load_preset, configs_dir=tmp_path))
    _, cfg, sources = run_mod.parse_command_line([])
    rule = timescales.budget_rates(6000)
    assert cfg.agent.optim.critic_lr == 0.002 and rule["critic_lr"] != 0.002
    assert sources["agent.optim.critic_lr"].startswith("preset liquidation:cpu (measured")
    for r in set(timescales.RATES) - {"critic_lr"}:
        assert getattr(cfg.agent.optim, r) == pytest.approx(rule[r])
        assert sources[f"agent.optim.{r}"].startswith(config.BUDGET_RULE)
    _, cfg, _ = run_mod.parse_command_line(["--agent.optim.critic_lr", "0.0005"])  # the command line still wins
    assert cfg.agent.optim.critic_lr == 0.0005


def test_the_library_and_the_cli_give_the_same_rates_for_a_budget():
    from jaxrl_bayes import algos

    rates = tuple(timescales.RATES)
    for argv, algo, explicit in ((["--run.total_steps", "6000"], "rrpi", {}),
                                 (["--algo", "pspo", "--run.total_steps", "6000"], "pspo", {}),
                                 (["--run.total_steps", "6000", "--agent.optim.tau", "0.01"], "rrpi", {"tau": 0.01})):
        _, cli_cfg, sources = run_mod.parse_command_line(argv)
        # the liquidation preset sets critic_lr (timescales.UNSCALED): to the library it is explicit too
        by_preset = {r: getattr(cli_cfg.agent.optim, r) for r in rates if sources[f"agent.optim.{r}"].startswith("preset")}
        assert set(by_preset) <= set(timescales.UNSCALED)
        lib = algos.algo_config(algo, total_steps=6000, **explicit, **by_preset)
        assert {r: getattr(lib.optim, r) for r in rates} == {r: getattr(cli_cfg.agent.optim, r) for r in rates}
        # a rate set explicitly wins, in both; the others are the rule's, and the CLI names it as their source
        for r in set(rates) - set(by_preset):
            want = explicit[r] if r in explicit else timescales.budget_rates(6000)[r]
            assert getattr(lib.optim, r) == want
            assert sources[f"agent.optim.{r}"] == ("command line" if r in explicit else
                                             "budget rule for run.total_steps = 6000 (jaxrl_bayes.algos.timescales)")
    assert algos.algo_config("rrpi", total_steps=6000).optim.ref_tau == 1e-5 * 2_000_000 / 6000


def test_pmdbs_budget_gives_pmdbs_rates_in_the_library():
    from jaxrl_bayes import algos

    cfg = algos.algo_config("pmdb", total_steps=2_000_000)
    assert (cfg.optim.ref_tau, cfg.optim.tau, cfg.optim.policy_lr, cfg.optim.critic_lr) == (1e-5, 5e-3, 3e-5, 3e-4)
    assert cfg == algos.algo_config("pmdb")  # no budget: the dataclass's values, PMDB's for 2M steps
    assert algos.with_budget(algos.algo_config("rrpi"), 10_000, explicit={"tau"}).optim.tau == 5e-3  # kept
    with pytest.raises(UserError, match="agent.optim.ref_tau = 1e-05 moves the reference policy only"):
        algos.algo_config("rrpi", total_steps=6000, ref_tau=1e-5)
    algos.algo_config("bc", total_steps=10, ref_tau=1e-9)  # bc has no reference policy: nothing to refuse
    # a mu that starts at pi_beta and stays there is a behaviour-regularized update: warned, not refused
    with pytest.warns(UserWarning, match=r"mu stays near pi_beta"):
        cfg = algos.algo_config("rrpi", total_steps=6000, ref_tau=1e-9,
                                **{"behaviour.init_policy": True, "behaviour.steps": 100})
    assert cfg.optim.ref_tau == 1e-9


def test_a_new_runs_config_records_the_rates_that_follow_its_budget():
    _, cfg, sources = run_mod.parse_command_line(["--agent.optim.tau", "0.01"])
    saved = config.saved_json(cfg, sources)
    assert saved["agent"] == cfg.to_json()["agent"]  # the values as resolved
    assert saved[config.DERIVED] == {"agent.optim.policy_lr": "run.total_steps",
                                     "agent.optim.ref_tau": "run.total_steps",
                                     "agent.optim.avg_tau": "run.total_steps"}  # tau was given, critic_lr is the preset's
    assert config.derived_fields(saved) == frozenset(saved[config.DERIVED])
    assert config.derived_fields(cfg.to_json()) == frozenset()  # a config.json from before the record
    assert config.from_json(saved, "saved") == cfg  # --resume and the report read it as before


def test_cli_warns_instead_of_refusing_a_reference_fixed_at_the_behaviour_policy():
    with pytest.warns(UserWarning, match="mu stays near pi_beta"):
        _, cfg, _ = run_mod.parse_command_line(["--agent.optim.ref_tau", "1e-7", "--agent.behaviour.init_policy",
                                                "--agent.behaviour.steps", "100"])
    assert cfg.agent.optim.ref_tau == 1e-7 and cfg.agent.behaviour.init_policy
