"""Same seeds, same weights: short runs of rrpi, pspo, persistent pmdb and %BC on a tiny task,
checked against parameter checksums recorded (float32) with the flat AgentConfig of the code
before the component configs existed. The config is built both from the flat names (the
migration table) and from the nested components."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_bayes import dynamics, termination
from jaxrl_bayes.algos import (
    Bc, BehaviourFit, Fixed, ModelSampling, Persistent, Profile, Pspo, Short, Targets,
    algo_config, make_trainer,
)
from jaxrl_bayes.algos.timescales import Optimiser
from jaxrl_bayes.data.toy import stay_near_zero

SMALL = dict(num_active=3, critic_hidden=(16, 16), policy_hidden=(16, 16), real_batch=16, model_batch=16,
             num_candidates=4, num_next_samples=2, rollout_horizon=3, buffer_capacity=256,
             steps_per_chunk=5, value_chunk=8)
# name -> (named algorithm, flat overrides on SMALL)
CASES = {
    "rrpi": ("rrpi", dict(rollout_batch=8)),
    "pspo": ("pspo", dict(rollout_batch=8, bc_steps=10, trust_rate=0.1, consistency_batch=8)),
    "persistent-pmdb": ("pmdb", dict(rollout_scheme="persistent", rollout_horizon=7, common_noise=False,
                                     auto_temperature=False, temperature=0.2, real_target="robust")),
    "bc": ("bc-top10", dict(bc_holdout=0.2)),
}
# recorded with the flat config: (sum of the policy's and critic's leaves, the first value of the first 3 leaves)
EXPECTED = {
    "rrpi": (-14.1221342086792, (0.0007805963396094739, 0.1883472353219986, 0.0007446494419127703)),
    "pspo": (-14.134937286376953, (0.0007347350474447012, 0.18822675943374634, 0.0006994596915319562)),
    "persistent-pmdb": (-14.221046447753906, (0.00022273232752922922, 0.18809562921524048, 0.0001285059843212366)),
    "bc": (-3.2777671813964844, (0.008443678729236126, 0.17951218783855438, -6.100063546909951e-05)),
}


SHARED = dict(num_active=3, critic_hidden=(16, 16), policy_hidden=(16, 16), real_batch=16, model_batch=16,
              num_candidates=4, buffer_capacity=256, steps_per_chunk=5, value_chunk=8)
# the same configurations by component
NESTED = {
    "rrpi": ("rrpi", dict(SHARED, rollout=Short(batch=8, horizon=3), sampling=ModelSampling(num_next_samples=2))),
    "pspo": ("pspo", dict(SHARED, rollout=Short(batch=8, horizon=3), sampling=ModelSampling(num_next_samples=2),
                          targets=Targets(selector="posterior"), belief=Profile(batch=8),
                          behaviour=BehaviourFit(steps=10), algo=Pspo(trust_rate=0.1))),
    "persistent-pmdb": ("pmdb", dict(SHARED, rollout=Persistent(horizon=7),
                                     sampling=ModelSampling(num_next_samples=2, common_noise=False),
                                     targets=Targets(kth=2, real_target="robust"), temperature=Fixed(alpha=0.2))),
    "bc": ("bc", dict(policy_hidden=(16, 16), steps_per_chunk=5, algo=Bc(top_fraction=0.1, holdout=0.2))),
}


@pytest.fixture(scope="module", autouse=True)
def optimized_xla():
    """The checksums were recorded from programs compiled as users compile them, with XLA's
    optimizations (the suite turns most of them off, tests/conftest.py; they change float rounding)."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(scope="module")
def task():
    ds = stay_near_zero()
    pool, _ = dynamics.train_pool(jax.random.PRNGKey(0), ds.observations, ds.actions, ds.rewards,
                                  ds.next_observations,
                                  dynamics.DynamicsConfig(num_members=3, hidden=(16, 16), max_epochs=2, batch_size=128))
    return ds, pool


def flat_overrides(case: str) -> tuple[str, dict]:
    name, over = CASES[case]
    kw = {**SMALL, **over}
    if name.startswith("bc"):
        kw = {k: v for k, v in kw.items() if k in ("policy_hidden", "steps_per_chunk", "bc_holdout")}
    return name, kw


def checksums(config, task):
    ds, pool = task
    trainer = make_trainer(config, ds, pool, termination.no_termination)
    states = trainer.init_seeds(jax.random.split(jax.random.PRNGKey(1), 2))
    for _ in range(2):
        states, _ = trainer.run_chunk_seeds(states)
    leaves = jax.tree_util.tree_leaves((states.policy, getattr(states, "critic", None)))
    total = float(sum(jnp.sum(x.astype(jnp.float32)) for x in leaves))
    return total, tuple(float(np.asarray(leaf, np.float32).ravel()[0]) for leaf in leaves[:3])


@pytest.mark.parametrize("case", list(CASES))
def test_same_seeds_give_the_recorded_weights(case, task):
    name, kw = flat_overrides(case)
    assert checksums(algo_config(name, total_steps=10_000, **kw), task) == EXPECTED[case]


@pytest.mark.parametrize("case", list(CASES))
def test_the_nested_components_build_the_same_config_as_the_flat_names(case):
    name, kw = flat_overrides(case)
    nested_name, nested = NESTED[case]
    assert algo_config(nested_name, total_steps=10_000, **nested) == algo_config(name, total_steps=10_000, **kw)


# the agent section of a config.json written before the components (pmdb, persistent paths, a
# fixed temperature), and its config hash as that code computed it (its checkpoints hold it)
OLD_AGENT = {
    "action_scale": 1.0, "algo": "rrpi", "auto_temperature": False, "backup": "selected", "bc_batch": 256,
    "bc_holdout": 0.1, "bc_lr": 0.001, "bc_steps": 0, "bc_top_fraction": 1.0, "behaviour_weight": 0.1,
    "belief": "uniform", "box_terminal": False, "buffer_capacity": 100000, "common_noise": True,
    "consistency": "observed", "consistency_batch": 32, "consistency_samples": 2, "critic_hidden": [256, 256, 256],
    "critic_layer_norm": False, "critic_lr": 0.0003, "data_action_std": 0.1, "deploy": "policy", "discount": 0.99,
    "init_from_behaviour": False, "kth": 2, "lam": 1.0, "model_batch": 128, "model_reward": "sample",
    "model_successor": "sample", "num_active": 10, "num_candidates": 20, "num_next_samples": 10,
    "obs_bound_std": 10.0, "policy_hidden": [256, 256], "policy_lr": 0.0003, "real_batch": 128, "real_target": "data",
    "real_weight": 0.5, "ref_tau": 0.002, "reward_normalization": "pmdb", "rollout_batch": 1000,
    "rollout_explore": 0.1, "rollout_horizon": 1000, "rollout_samples": 1, "rollout_scheme": "persistent",
    "selector": "worst", "steps_per_chunk": 1000, "target_kl": 5.0, "tau": 0.02, "temperature": 0.2,
    "trust_epsilon": 0.05, "trust_eta": 0.1, "trust_rate": 0.0, "value_chunk": 64, "value_clip": True,
    "value_max": None}
OLD_HASH = "92c1cc7a1ecf1805"


def test_a_run_dir_with_the_flat_agent_names_reads_and_keeps_its_config_hash(tmp_path):
    import json

    from experiments import config
    from jaxrl_bayes.algos import Persistent
    from jaxrl_bayes.dynamics import DynamicsConfig

    old = {"run": json.loads(json.dumps(config.components.to_json(config.RunConfig(algo="pmdb")))),
           "dynamics": json.loads(json.dumps(config.components.to_json(DynamicsConfig()))), "agent": OLD_AGENT}
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = config.read_run_config(tmp_path)
    want = algo_config("pmdb", total_steps=10_000, rollout=Persistent(horizon=1000), temperature=Fixed(alpha=0.2))
    # a config from before the moving-average deployment has no avg_tau: the default, unread by its deploy
    want = dataclasses.replace(want, optim=dataclasses.replace(want.optim, avg_tau=Optimiser().avg_tau))
    assert "optim.avg_tau" in want.unread_paths()
    assert cfg.agent == want
    assert config.config_hash(cfg.to_json(), saved=old) == OLD_HASH  # --resume finds its checkpoints' hash
    assert config.derived_fields({"_derived": {"agent.ref_tau": "run.total_steps"}}) == {"agent.optim.ref_tau"}


# flat PSPO and BC sections (their own knobs now under the algorithm's choice, `agent.algo.*`),
# with the config hash that the code before that change computed for them
OLD_ALGO_AGENTS = {
    "pspo": (dict(OLD_AGENT, algo="pspo", behaviour_weight=0.01, trust_rate=0.1, belief="profile",
                  selector="posterior", bc_steps=5000, auto_temperature=True), "1b8b0e193d1afd4a"),
    "pspo-fixed": (dict(OLD_AGENT, algo="pspo", behaviour_weight=0.0, trust_eta=0.3, belief="profile",
                        selector="posterior", bc_steps=5000), "398b1aab17af85cf"),
    "bc": (dict(OLD_AGENT, algo="bc", bc_top_fraction=0.1, bc_holdout=0.2, bc_lr=0.002), "cf84deb1308723d1"),
}


@pytest.mark.parametrize("case", list(OLD_ALGO_AGENTS))
def test_flat_pspo_and_bc_sections_read_at_the_algorithm_choice_and_keep_their_hash(case, tmp_path):
    import json

    from experiments import config
    from jaxrl_bayes.dynamics import DynamicsConfig

    agent, want_hash = OLD_ALGO_AGENTS[case]
    old = {"run": json.loads(json.dumps(config.components.to_json(config.RunConfig(algo=case.split("-")[0])))),
           "dynamics": json.loads(json.dumps(config.components.to_json(DynamicsConfig()))), "agent": agent}
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = config.read_run_config(tmp_path)
    want = {"pspo": Pspo(behaviour_weight=0.01, trust_rate=0.1), "pspo-fixed": Pspo(behaviour_weight=0.0, trust_eta=0.3),
            "bc": Bc(top_fraction=0.1, holdout=0.2)}[case]
    assert cfg.agent.algo == want and not {"pspo", "bc"} & set(cfg.to_json()["agent"])
    assert config.config_hash(cfg.to_json(), saved=old) == want_hash


def _with_algo_sections(saved: dict) -> dict:
    """A config.json of today in the layout before the algorithm was a choice: "algo" the kind,
    PSPO's and BC's knobs in "pspo" and "bc" sections (both present, at their defaults unless
    the algorithm set them)."""
    agent = dict(saved["agent"])
    fields = {k: v for k, v in agent["algo"].items() if k not in ("kind", "loss")}  # loss came after that layout
    kind = agent["algo"]["kind"]
    pspo = {"behaviour_weight": 0.1, "trust_eta": 0.1, "trust_epsilon": 0.05, "trust_rate": 0.0}
    bc = {"top_fraction": 1.0, "holdout": 0.1}
    (pspo if kind == "pspo" else bc if kind == "bc" else {}).update(fields)
    agent.update(algo=kind, pspo=pspo, bc=bc)
    return {**saved, "agent": agent}


# hashes that the code of that layout computed for these config.json files (its checkpoints hold them)
ALGO_SECTION_HASHES = {"rrpi": "196f50a16fd9f426", "pspo-noreg": "cdabf3ff70f8aca9", "bc-top10": "e4f78476dca2601e"}


def _liquidation_preset_then(configs_dir) -> None:
    """Writes the liquidation presets as they were when ALGO_SECTION_HASHES were recorded: the
    `cpu` preset at 6,000 steps, without its action_scale and critic step size."""
    import json

    from experiments import config

    presets = json.loads((config.CONFIGS_DIR / "liquidation.json").read_text())
    cpu = presets["cpu"]
    cpu["run"]["total_steps"]["value"] = 6000
    for field in ("action_scale", "optim.critic_lr"):
        del cpu["agent"][field]
    (configs_dir / "liquidation.json").write_text(json.dumps(presets))


@pytest.mark.parametrize("algo", sorted(ALGO_SECTION_HASHES))
def test_a_run_dir_with_pspo_and_bc_sections_reads_and_keeps_its_config_hash(algo, tmp_path, monkeypatch):
    import functools

    from experiments import config, run as run_mod

    (tmp_path / "configs").mkdir()
    _liquidation_preset_then(tmp_path / "configs")
    monkeypatch.setattr(config, "load_preset", functools.partial(config.load_preset, configs_dir=tmp_path / "configs"))
    _, cfg, sources = run_mod.parse_command_line(["--algo", algo])
    old = _with_algo_sections(config.saved_json(cfg, sources))
    (tmp_path / "config.json").write_text(__import__("json").dumps(old))
    read = config.read_run_config(tmp_path)
    assert read.agent == cfg.agent  # its algorithm's section at algo.*, the other one dropped
    assert config.config_hash(read.to_json(), saved=old) == ALGO_SECTION_HASHES[algo]
