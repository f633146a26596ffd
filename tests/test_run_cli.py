"""Tests of `python -m experiments.run` (experiments/run.py).

Two layers:
- The CLI plumbing (config resolution, run directory, checkpoints, resume, interrupts, errors,
  dynamics cache) runs against a small fake library injected through `main(components=...)`:
  a trainer whose chunk is deterministic arithmetic on a PRNG key, an evaluator whose returns
  are an explicit function of the policy parameters. These tests need none of the lead's
  modules.
- The same behaviour through the real modules (`jaxrl_bayes.algos`, `.data.registry`,
  `.dynamics`) with tiny overrides; skipped until those modules exist.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import run as run_mod
from jaxrl_bayes import checkpoint as ckpt_lib

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the fake library


@dataclasses.dataclass(frozen=True)
class FakeDynamicsConfig:
    num_members: int = 3
    hidden: tuple[int, ...] = (8, 8)
    batch_size: int = 32
    max_epochs: int = 2
    num_elites: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class FakeAgentConfig:
    algo: str = "rrpi"
    steps_per_chunk: int = 5
    batch_size: int = 16
    gamma: float = 0.99
    lr: float = 0.1
    use_bc: bool = False


FAKE_ALGOS = {"rrpi": {}, "pspo": {"use_bc": True}, "pmdb": {"lr": 0.05}, "rrpi-random": {}}
COUNTS = {"train_pool": 0, "evaluate": 0, "evaluate_params": 0}
FAIL = {"final_eval": False}


def fake_algo_config(name, **overrides):
    if name not in FAKE_ALGOS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {list(FAKE_ALGOS)}")
    return FakeAgentConfig(**{"algo": name, **FAKE_ALGOS[name], **overrides})


class FakeDataset(NamedTuple):
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    name: str = "fake-v0"
    size: int = 64
    obs_dim: int = 2
    act_dim: int = 1

    def normalized_rewards(self):
        return (self.rewards - self.rewards.min()) / (np.ptp(self.rewards) + 1.0)


class FakeSpec:
    name = "fake-v0"
    family = "fakefam"
    ref_min_score = 0.0
    ref_max_score = 10.0

    def __init__(self, eval_delay: float = 0.0):
        self.eval_delay = eval_delay

    def load(self):
        rng = np.random.default_rng(0)
        obs = rng.normal(size=(64, 2)).astype(np.float32)
        return FakeDataset(obs, rng.uniform(-1, 1, (64, 1)).astype(np.float32),
                           rng.normal(size=64).astype(np.float32), obs + 0.1, np.zeros(64, bool))

    @staticmethod
    def termination_fn(obs, act, next_obs):
        return jnp.zeros(obs.shape[:-1], bool)

    def evaluate(self, act_fn, num_episodes, seed, params=None):
        COUNTS["evaluate"] += 1
        if self.eval_delay:
            time.sleep(self.eval_delay)
        if params is not None:  # the registry's params form: act_fn(params, obs)
            COUNTS["evaluate_params"] += 1
            return fake_returns(lambda o: act_fn(params, o), num_episodes, seed)
        return fake_returns(act_fn, num_episodes, seed)

    def normalize(self, returns):
        return 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def fake_returns(act_fn, num_episodes, seed):
    obs = np.random.default_rng(seed).normal(size=(num_episodes, 2)).astype(np.float32)
    return 5.0 + np.asarray(act_fn(obs))[:, 0].astype(np.float64)


class FakeState(NamedTuple):
    step: jax.Array
    policy_params: dict
    key: jax.Array


class Trainer(NamedTuple):
    init: object
    run_chunk: object
    act: object


def fake_make_trainer(config, dataset, pool, termination_fn):
    lr, spc = config.lr, config.steps_per_chunk
    bias = jnp.mean(pool["w"])

    def init(key):
        k1, k2 = jax.random.split(key)
        w = jax.random.normal(k1, (2,))
        if config.use_bc:  # stands in for behaviour cloning
            w = w * 0.5
        return FakeState(jnp.int32(0), {"w": w}, k2)

    def run_chunk(state):
        def body(_, s):
            key, sub = jax.random.split(s.key)
            w = s.policy_params["w"] * (1 - lr) + lr * (jax.random.normal(sub, (2,)) + bias)
            return FakeState(s.step + 1, {"w": w}, key)

        s = jax.lax.fori_loop(0, spc, body, state)
        return s, {"loss": jnp.sum(s.policy_params["w"] ** 2), "worst_pick_frac": jnp.full((3,), 1 / 3)}

    def act(params, obs):
        return jnp.tanh(obs[:, :1] * params["w"][0] + params["w"][1])

    return Trainer(init, run_chunk, act)


def fake_train_pool(key, observations, actions, rewards, next_observations, config, progress=False):
    COUNTS["train_pool"] += 1
    w = jax.random.normal(key, (config.num_members, 2)) * 0.01 + np.mean(observations)
    return {"w": w}, types.SimpleNamespace(epochs=config.max_epochs, val_mse=np.ones(config.num_members))


def fake_save_pool(pool, path):
    with open(path, "wb") as f:
        np.savez(f, w=np.asarray(pool["w"]))


def fake_load_pool(path):
    with np.load(path) as d:
        return {"w": jnp.asarray(d["w"])}


def fake_get_spec(name, eval_delay=0.0):
    if name != "fake-v0":
        raise ValueError(f"unknown dataset {name!r}; choose one of: fake-v0")
    spec = FakeSpec(eval_delay)
    if FAIL["final_eval"]:
        original = spec.evaluate

        def evaluate(act_fn, n, seed):
            if seed == run_mod.eval_seed(0, 0, final=True):
                raise RuntimeError("simulated crash during the final evaluation")
            return original(act_fn, n, seed)

        spec.evaluate = evaluate
    return spec


FAKE_PRESET = {
    "_doc": "test presets",
    "cpu": {
        "run": {"total_steps": {"value": 20, "_source": "test"},
                "eval_every_chunks": {"value": 2, "_source": "test"},
                "eval_episodes": {"value": 8, "_source": "test"}},
        "dynamics": {"hidden": {"value": [4, 4], "_source": "test"}},
        "agent": {"gamma": {"value": 0.9, "_source": "test"}},
        "algo:pmdb": {"agent": {"batch_size": {"value": 64, "_source": "test"}}},
    },
    "paper": {"run": {"total_steps": {"value": 100, "_source": "test"}}},
}


def make_fake_components(configs_dir, eval_delay=0.0):
    return run_mod.Components(
        get_spec=lambda name: fake_get_spec(name, eval_delay),
        list_datasets=lambda: ["fake-v0"],
        algorithms=tuple(FAKE_ALGOS),
        algo_config=fake_algo_config,
        make_trainer=fake_make_trainer,
        AgentConfig=FakeAgentConfig,
        DynamicsConfig=FakeDynamicsConfig,
        train_pool=fake_train_pool,
        save_pool=fake_save_pool,
        load_pool=fake_load_pool,
        configs_dir=Path(configs_dir),
    )


def fake_main(argv):
    """Entry point of the subprocess in the interrupt test."""
    comps = make_fake_components(os.environ["FAKE_CONFIGS_DIR"], float(os.environ.get("FAKE_EVAL_DELAY", "0")))
    return run_mod.main(argv, comps)


@pytest.fixture
def env(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fakefam.json").write_text(json.dumps(FAKE_PRESET))
    monkeypatch.setenv("JAXRL_BAYES_CACHE", str(tmp_path / "cache"))
    COUNTS.update(train_pool=0, evaluate=0, evaluate_params=0)
    FAIL["final_eval"] = False
    comps = make_fake_components(configs)
    return types.SimpleNamespace(tmp=tmp_path, configs=configs, comps=comps,
                                 main=lambda *argv: run_mod.main(list(argv), comps))


BASE = ["--dataset", "fake-v0", "--run.progress", "false"]


def _final_leaves(run_dir):
    """The leaves of the newest checkpoint, read back with the shapes recorded in its meta."""
    with ckpt_lib.Checkpointer(Path(run_dir) / "checkpoints", None) as ck:
        step = ck.latest_step()
        leaves, user = ck.restore_leaves(step)
    return step, [np.asarray(x) for x in leaves], user


def _any_checkpoint(run_dir):
    """True once a finished checkpoint step directory exists (the oldest ones get rotated away)."""
    d = Path(run_dir) / "checkpoints"
    return d.is_dir() and any(p.name.isdigit() for p in d.iterdir())


def _strip_times(rows):
    return [{k: v for k, v in r.items() if k not in ("chunk_time_s", "steps_per_s", "wall_time_s", "includes_compile")} for r in rows]


# ----------------------------------------------------------------------------- config resolution


def test_resolution_order_defaults_algo_preset_cli(env):
    c = env.comps
    rrpi = run_mod.resolve_config({"run": {"dataset": "fake-v0"}}, c)
    # dataclass default lr 0.1, preset gamma 0.9 (dataclass 0.99), preset run values
    assert (rrpi.agent.lr, rrpi.agent.gamma, rrpi.agent.batch_size) == (0.1, 0.9, 16)
    assert rrpi.run.total_steps == 20 and rrpi.run.eval_episodes == 8 and rrpi.dynamics.hidden == (4, 4)
    # algorithm default (pmdb lr 0.05) < preset's algo:pmdb section (batch 64) < CLI (gamma 0.95)
    pmdb = run_mod.resolve_config({"run": {"dataset": "fake-v0", "algo": "pmdb"}, "agent": {"gamma": 0.95}}, c)
    assert (pmdb.agent.algo, pmdb.agent.lr, pmdb.agent.batch_size, pmdb.agent.gamma) == ("pmdb", 0.05, 64, 0.95)
    # the preset's algo:pmdb section does not leak into other algorithms; paper preset
    paper = run_mod.resolve_config({"run": {"dataset": "fake-v0", "preset": "paper"}}, c)
    assert paper.run.total_steps == 100 and paper.agent.gamma == 0.99 and paper.dynamics.hidden == (8, 8)


def test_cli_overrides_are_type_aware(env):
    parser = run_mod.build_parser(env.comps)
    ns = parser.parse_args(["--dynamics.hidden", "16,32,64", "--dynamics.num_elites", "none", "--agent.use_bc",
                            "--run.tensorboard", "false", "--agent.lr", "3e-4", "--run.total_steps", "2e3",
                            "--seeds", "4", "--algo", "pspo"])
    over = run_mod._split_overrides(ns)
    assert over["dynamics"] == {"hidden": (16, 32, 64), "num_elites": None}
    assert over["agent"] == {"use_bc": True, "lr": 3e-4}
    assert over["run"] == {"tensorboard": False, "total_steps": 2000, "seeds": 4, "algo": "pspo"}
    assert run_mod._split_overrides(parser.parse_args(["--dynamics.num_elites", "5"]))["dynamics"] == {"num_elites": 5}
    for bad in (["--run.total_steps", "1.5"], ["--run.tensorboard", "maybe"], ["--agent.nope", "1"],
                ["--dynamics.hidden", "4,x"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(bad)
        assert e.value.code == 2


def test_help_lists_every_section_and_field(env, capsys):
    with pytest.raises(SystemExit):
        run_mod.main(["--help"], env.comps)
    out = capsys.readouterr().out
    for flag in ("--algo", "--dataset", "--seeds", "--preset", "--out", "--resume", "--force",
                 "--run.total_steps", "--dynamics.hidden", "--agent.gamma", "--agent.steps_per_chunk"):
        assert flag in out
    assert "rrpi, pspo, pmdb" in out and "fakefam: cpu, paper" in out


# ----------------------------------------------------------------------------- artifacts


def test_default_run_writes_every_artifact(env, capsys):
    out = env.tmp / "run"
    assert env.main(*BASE, "--seeds", "2", "--out", str(out)) == 0
    stdout = capsys.readouterr().out
    names = set(os.listdir(out))
    assert {"config.json", "metrics.jsonl", "metrics.csv", "checkpoints", "results.json", "learning_curve.png",
            "dynamics.json", "run.log"} <= names
    assert ".lock" not in names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["total_steps"] == 20 and cfg["agent"]["gamma"] == 0.9 and cfg["dynamics"]["hidden"] == [4, 4]
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == [1, 2, 3, 4] and [r["step"] for r in rows] == [5, 10, 15, 20]
    assert [("eval/normalized_mean" in r) for r in rows] == [False, True, False, True]
    assert rows[0]["worst_pick_frac"] == pytest.approx([1 / 3] * 3) and len(rows[0]["loss/seeds"]) == 2
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and "eval/normalized_mean" in csv_lines[0].split(",")
    # last k = 3 checkpoints kept, the final one at chunk 4
    assert sorted(os.listdir(out / "checkpoints")) == ["2", "3", "4"]
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == 2 and res["total_steps"] == 20 and res["eval_episodes"] == 8
    # independent check: re-evaluate the final checkpoint's policies with the fake evaluator
    step, leaves, meta = _final_leaves(out)
    assert step == 4 and meta["chunk"] == 4
    w = leaves[1]  # FakeState leaves in order: step, policy_params["w"], key
    assert w.shape == (2, 2) and list(leaves[0]) == [20, 20]
    for i in range(2):
        act = lambda o, wi=w[i]: np.tanh(o[:, :1] * wi[0] + wi[1])
        raw = fake_returns(act, 8, run_mod.eval_seed(0, i, final=True)).mean()
        assert res["per_seed"][i]["raw_return"] == pytest.approx(raw, rel=1e-6)
        assert res["per_seed"][i]["normalized_score"] == pytest.approx(10.0 * raw, rel=1e-6)
    norms = [s["normalized_score"] for s in res["per_seed"]]
    assert res["normalized_score"]["mean"] == pytest.approx(np.mean(norms))
    assert res["normalized_score"]["std"] == pytest.approx(np.std(norms))
    assert res["device"]["platform"] == "cpu" and res["wall_time_s"] > 0
    assert "mean" in stdout and "raw return" in stdout and str(out) in stdout
    # every evaluation (2 seeds x 2 evaluations) went through the params form
    assert COUNTS["evaluate"] == COUNTS["evaluate_params"] == 4
    # the fake trainer's policy has no deployable form: no policy files, and results say so
    assert res["policy_files"] == [] and not list(out.glob("policy_seed*.npz"))


def test_seed_i_is_independent_of_the_number_of_seeds(env):
    a, b = env.tmp / "a", env.tmp / "b"
    assert env.main(*BASE, "--seeds", "1", "--out", str(a)) == 0
    assert env.main(*BASE, "--seeds", "3", "--out", str(b)) == 0
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["per_seed"][0]["raw_return"] == rb["per_seed"][0]["raw_return"]
    assert rb["per_seed"][1]["raw_return"] != rb["per_seed"][0]["raw_return"]


# ----------------------------------------------------------------------------- dynamics cache


def test_second_run_on_same_data_reuses_the_dynamics_pool(env):
    assert env.main(*BASE, "--out", str(env.tmp / "r1")) == 0
    assert COUNTS["train_pool"] == 1
    assert "training dynamics pool" in (env.tmp / "r1" / "run.log").read_text()
    # another algorithm and another seed on the same data: no training
    assert env.main(*BASE, "--algo", "pspo", "--run.seed", "3", "--out", str(env.tmp / "r2")) == 0
    assert COUNTS["train_pool"] == 1
    log = (env.tmp / "r2" / "run.log").read_text()
    assert "reused cached dynamics pool" in log and "training dynamics pool" not in log
    d1 = json.loads((env.tmp / "r1" / "dynamics.json").read_text())
    d2 = json.loads((env.tmp / "r2" / "dynamics.json").read_text())
    assert (d1["reused"], d2["reused"]) == (False, True) and d1["pool_sha256"] == d2["pool_sha256"]
    assert Path(d1["cache_dir"]).parent == env.tmp / "cache" / "dynamics"
    # a different dynamics config is another cache entry
    assert env.main(*BASE, "--dynamics.num_members", "4", "--out", str(env.tmp / "r3")) == 0
    assert COUNTS["train_pool"] == 2


# ----------------------------------------------------------------------------- errors


def test_unknown_algorithm_dataset_preset_list_the_valid_names(env, capsys):
    assert env.main(*BASE, "--algo", "sac") == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'sac'" in err and "rrpi, pspo, pmdb, rrpi-random" in err
    assert env.main("--dataset", "hopper-nope-v2") == 2
    assert "fake-v0" in capsys.readouterr().err
    assert env.main(*BASE, "--preset", "gpu") == 2
    assert "unknown preset 'gpu'" in (err := capsys.readouterr().err) and "cpu, paper" in err
    assert env.main(*BASE, "--run.seeds", "0") == 2
    assert "run.seeds=0 must be >= 1" in capsys.readouterr().err
    assert not (env.tmp / "runs").exists()


def test_missing_optional_sink_package_fails_before_anything_is_written(env, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorboardX") is not None:
        pytest.skip("tensorboardX is installed here")
    out = env.tmp / "tb"
    assert env.main(*BASE, "--out", str(out), "--run.tensorboard") == 2
    assert "pip install tensorboardX" in capsys.readouterr().err and not out.exists()


def test_finished_run_is_not_overwritten_without_force(env, capsys):
    out = env.tmp / "run"
    assert env.main(*BASE, "--out", str(out)) == 0
    before = (out / "results.json").read_bytes()
    assert env.main(*BASE, "--out", str(out), "--run.seed", "1") == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before
    assert env.main(*BASE, "--out", str(out), "--run.seed", "1", "--force") == 0
    assert (out / "results.json").read_bytes() != before
    assert json.loads((out / "config.json").read_text())["run"]["seed"] == 1
    # a directory that is not a run is never replaced, even with --force
    other = env.tmp / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert env.main(*BASE, "--out", str(other), "--force") == 2
    assert "holds no run" in capsys.readouterr().err and (other / "keep.txt").read_text() == "mine"


def test_resume_with_a_different_config_refuses_and_lists_fields(env, capsys):
    out = env.tmp / "run"
    assert env.main(*BASE, "--out", str(out)) == 0
    (out / "results.json").unlink()  # make it an unfinished run
    capsys.readouterr()
    assert env.main("--resume", str(out), "--run.total_steps", "40", "--agent.gamma", "0.5",
                    "--run.progress", "false") == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err
    assert "run.total_steps: saved 20, given 40" in err and "agent.gamma: saved 0.9, given 0.5" in err
    assert "progress" not in err.split("refusing")[1]  # cosmetic fields are not differences
    # a new run into an unfinished run's directory points to --resume
    assert env.main(*BASE, "--out", str(out)) == 2
    assert "--resume" in capsys.readouterr().err
    # the same values (or none) resume fine
    assert env.main("--resume", str(out), "--run.total_steps", "20", "--run.progress", "false") == 0
    assert (out / "results.json").is_file()
    # resuming a finished run does nothing and says so
    assert env.main("--resume", str(out)) == 0
    assert "already holds a finished run" in capsys.readouterr().out
    assert env.main("--resume", str(env.tmp / "nowhere")) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_crash_leaves_no_results_and_resume_finishes_identically(env):
    ref, out = env.tmp / "ref", env.tmp / "crash"
    assert env.main(*BASE, "--seeds", "2", "--out", str(ref)) == 0
    FAIL["final_eval"] = True
    with pytest.raises(RuntimeError, match="simulated crash"):
        env.main(*BASE, "--seeds", "2", "--out", str(out))
    assert not (out / "results.json").exists()
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]
    assert ckpt_lib.latest_step(out / "checkpoints") == 3  # chunk 4 never finished
    FAIL["final_eval"] = False
    assert env.main("--resume", str(out), "--run.progress", "false") == 0
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert a["per_seed"] == b["per_seed"]
    _, la, _ = _final_leaves(ref)
    _, lb, _ = _final_leaves(out)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(la, lb))
    rows_a = [json.loads(l) for l in (ref / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert _strip_times(rows_a) == _strip_times(rows_b)


def test_sigint_then_resume_gives_the_same_final_parameters(env):
    """SIGINT to a subprocess once its first checkpoint exists; resume; compare bit for bit."""
    args = [*BASE, "--seeds", "2", "--run.total_steps", "60", "--run.eval_every_chunks", "1"]
    ref, out = env.tmp / "ref", env.tmp / "int"
    assert env.main(*args, "--out", str(ref)) == 0

    code = ("import sys, importlib.util; s = importlib.util.spec_from_file_location('t', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); sys.modules['t'] = m; s.loader.exec_module(m); sys.exit(m.fake_main(sys.argv[2:]))")
    penv = {**os.environ, "FAKE_CONFIGS_DIR": str(env.configs), "FAKE_EVAL_DELAY": "0.3",
            "JAXRL_BAYES_CACHE": str(env.tmp / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, __file__, *args, "--out", str(out)], cwd=REPO, env=penv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not _any_checkpoint(out):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"Resume with: python -m experiments.run --resume {out}" in stderr
    stopped = ckpt_lib.latest_step(out / "checkpoints")
    assert 1 <= stopped < 12 and not (out / "results.json").exists()

    assert env.main("--resume", str(out), "--run.progress", "false") == 0
    _, la, _ = _final_leaves(ref)
    step, lb, meta = _final_leaves(out)
    assert step == 12 and all(x.tobytes() == y.tobytes() for x, y in zip(la, lb))
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert a["per_seed"] == b["per_seed"]
    rows_b = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows_b] == list(range(1, 13))  # no duplicated or missing chunk


# ----------------------------------------------------------------------------- preset files


def test_preset_files_give_a_source_for_every_value():
    files = sorted(run_mod.CONFIGS_DIR.glob("*.json"))
    assert {"liquidation", "hopper", "walker2d", "halfcheetah"} <= {p.stem for p in files}
    for path in files:
        data = json.loads(path.read_text())
        presets = {k: v for k, v in data.items() if not k.startswith("_")}
        assert {"cpu", "paper"} <= set(presets), path
        for pname, preset in presets.items():
            sections = [(k, v) for k, v in preset.items() if not k.startswith("_") and not k.startswith("algo:")]
            sections += [(f"{k}/{s}", v2) for k, v in preset.items() if k.startswith("algo:")
                         for s, v2 in v.items() if not s.startswith("_")]
            for sname, section in sections:
                for field, entry in section.items():
                    if field.startswith("_"):
                        continue
                    assert set(entry) == {"value", "_source"} and entry["_source"].strip(), (path, pname, sname, field)


def _real_modules_available():
    try:
        import jaxrl_bayes.algos  # noqa: F401
        import jaxrl_bayes.data.registry  # noqa: F401
        import jaxrl_bayes.dynamics  # noqa: F401
    except ImportError:
        return False
    return hasattr(jaxrl_bayes.algos, "make_trainer")


real = pytest.mark.skipif(not _real_modules_available(), reason="jaxrl_bayes.algos / data.registry not written yet")


@real
def test_preset_files_match_the_real_config_fields():
    comps = run_mod.real_components()
    for family in ("liquidation", "hopper", "walker2d", "halfcheetah"):
        for preset in ("cpu", "paper"):
            values = run_mod.load_preset(family, preset, "pspo", comps.configs_dir, explicit=True)
            run_mod._check_fields(run_mod.RunConfig, values["run"], "run")
            run_mod._check_fields(comps.DynamicsConfig, values["dynamics"], "dynamics")
            run_mod._check_fields(comps.AgentConfig, values["agent"], "agent")


# ----------------------------------------------------------------------------- the real modules

TINY = ["--run.total_steps", "40", "--agent.steps_per_chunk", "20", "--dynamics.max_epochs", "2",
        "--dynamics.hidden", "32,32", "--agent.num_active", "3", "--agent.rollout_batch", "50",
        "--agent.real_batch", "32", "--agent.model_batch", "32", "--agent.num_candidates", "4",
        "--agent.num_next_samples", "2", "--agent.critic_hidden", "32,32", "--agent.policy_hidden", "32,32",
        "--agent.bc_steps", "20", "--agent.buffer_capacity", "1000",
        "--dynamics.num_members", "3", "--run.eval_episodes", "20", "--run.eval_every_chunks", "1",
        "--run.progress", "false"]


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def real_env(tmp_path_factory):
    """Environment of `python -m experiments.run` subprocesses: one dynamics cache and one
    persistent XLA compilation cache for the module, so only the first process compiles."""
    root = tmp_path_factory.mktemp("real")
    return {**os.environ, "JAXRL_BAYES_CACHE": str(root / "cache"), "PYTHONPATH": str(REPO),
            "JAX_COMPILATION_CACHE_DIR": str(root / "xla"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def _cli(penv, *args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=penv,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@real
def test_real_default_run_end_to_end_and_cached_pool(real_env, tmp_path, monkeypatch):
    """The no-argument command (tiny step counts and sizes) writes every artifact; a second run
    with another algorithm and seed on the same data loads the cached pool (train_pool is never
    called; that run is stopped once its trainer is being built)."""
    out = tmp_path / "run"
    r = _cli(real_env, *TINY, "--out", str(out))
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "results.json", "learning_curve.png",
                 "dynamics.json", "run.log"):
        assert (out / name).is_file(), name
    assert sorted(os.listdir(out / "checkpoints")) == ["1", "2"]
    res = json.loads((out / "results.json").read_text())
    assert res["algo"] == "rrpi" and res["dataset"] == "liquidation-random-v0" and res["total_steps"] == 40
    assert res["eval_episodes"] == 20 and len(res["per_seed"]) == 1
    assert np.isfinite(res["per_seed"][0]["raw_return"]) and res["normalized_score"] is not None
    assert "training dynamics pool" in (out / "run.log").read_text()
    assert "normalized" in r.stdout and "DP optimum" in r.stdout  # the summary table
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r_["chunk"] for r_ in rows] == [1, 2]

    # the deployable policy: exactly the final checkpoint's TrainState.policy, with the dataset's
    # normalizers; load_policy(...).act is tanh(mean) of that network (a numpy MLP by hand)
    import optax

    from jaxrl_bayes import networks
    from jaxrl_bayes import policy as policy_lib
    from jaxrl_bayes.data import registry

    assert res["policy_files"] == ["policy_seed0.npz"] and res["per_seed"][0]["policy_file"] == "policy_seed0.npz"
    assert "policy_seed0.npz" in r.stdout.strip().splitlines()[-1]
    deployed = policy_lib.load_policy(out / "policy_seed0.npz")
    assert (deployed.meta["algo"], deployed.meta["dataset"]) == ("rrpi", "liquidation-random-v0")
    assert deployed.meta["raw_return"] == res["per_seed"][0]["raw_return"] and deployed.header["hidden"] == [32, 32]
    _, leaves, _ = _final_leaves(out)
    # TrainState flattens field by field: critic, target_critic, critic_opt, then policy
    critic = jax.eval_shape(networks.TwinCritic((32, 32)).init, jax.random.PRNGKey(0), jnp.zeros((1, 3)),
                            jnp.zeros((1, 1)))
    start = 2 * len(jax.tree_util.tree_leaves(critic)) + len(jax.tree_util.tree_leaves(
        jax.eval_shape(optax.adam(1e-3).init, critic)))
    file_leaves = jax.tree_util.tree_leaves(deployed.params)
    ckpt_leaves = [x[0] for x in leaves[start:start + len(file_leaves)]]  # seed 0
    assert [x.shape for x in ckpt_leaves] == [x.shape for x in file_leaves]
    assert all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(ckpt_leaves, file_leaves))
    ds = registry.get_spec("liquidation-random-v0").load()
    np.testing.assert_array_equal(np.asarray(deployed.obs_mean), np.asarray(ds.obs_mean, np.float32))
    np.testing.assert_array_equal(np.asarray(deployed.obs_std), np.asarray(ds.obs_std, np.float32))
    obs = np.asarray(ds.observations[::997][:128], np.float64)
    x = (obs - np.asarray(ds.obs_mean, np.float32)) / np.asarray(ds.obs_std, np.float32)
    b0, k0, b1, k1, b2, k2 = (np.asarray(a, np.float64) for a in ckpt_leaves)  # Dense_0..2: bias, kernel
    hand = np.tanh((np.maximum(np.maximum(x @ k0 + b0, 0) @ k1 + b1, 0) @ k2 + b2)[:, :1])
    np.testing.assert_allclose(np.asarray(deployed.act(obs.astype(np.float32))), hand, atol=1e-5)

    # exact resume of the real TrainState: drop the last chunk and results, resume, compare
    step, before, _ = _final_leaves(out)
    results_before = json.loads((out / "results.json").read_text())
    (out / "results.json").unlink()
    shutil.rmtree(out / "checkpoints" / "2")
    r = _cli(real_env, "--resume", str(out))
    assert "resumed from the checkpoint at chunk 1/2" in (out / "run.log").read_text()
    step2, after, _ = _final_leaves(out)
    assert step == step2 == 2 and len(before) == len(after)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(before, after))
    assert json.loads((out / "results.json").read_text())["per_seed"] == results_before["per_seed"]

    import jaxrl_bayes.algos as algos
    import jaxrl_bayes.dynamics as dyn

    monkeypatch.setenv("JAXRL_BAYES_CACHE", real_env["JAXRL_BAYES_CACHE"])
    calls = {"n": 0}
    monkeypatch.setattr(dyn, "train_pool", lambda *a, **k: calls.__setitem__("n", calls["n"] + 1))

    def stop(*a, **k):
        raise _Stop

    monkeypatch.setattr(algos, "make_trainer", stop)
    out2 = tmp_path / "run2"
    with pytest.raises(_Stop):
        run_mod.main([*TINY, "--algo", "pspo", "--run.seed", "1", "--out", str(out2)])
    assert calls["n"] == 0 and "reused cached dynamics pool" in (out2 / "run.log").read_text()


@real
@pytest.mark.slow  # ~40 s; the fake SIGINT test and the resume check above cover it quickly
def test_real_sigint_and_resume_is_exact(real_env, tmp_path):
    args = [*TINY, "--run.total_steps", "200"]  # 10 chunks of 20 steps, evaluated after each
    ref, out = tmp_path / "ref", tmp_path / "int"
    _cli(real_env, *args, "--out", str(ref))
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *args, "--out", str(out)], cwd=REPO,
                            env=real_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not _any_checkpoint(out):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, stderr
    assert f"--resume {out}" in stderr
    assert ckpt_lib.latest_step(out / "checkpoints") < 10 and not (out / "results.json").exists()
    _cli(real_env, "--resume", str(out))
    _, la, _ = _final_leaves(ref)
    step, lb, _ = _final_leaves(out)
    assert step == 10 and len(la) == len(lb) and all(x.tobytes() == y.tobytes() for x, y in zip(la, lb))
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert a["per_seed"] == b["per_seed"]
    rows_a = [json.loads(l) for l in (ref / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert _strip_times(rows_a) == _strip_times(rows_b)
