"""Tests of `python -m experiments.run` through the real modules at tiny sizes.

One tiny RRPI run on liquidation-random-v0 (10 chunks of 20 steps) is trained once per module
(`finished`); the other tests copy its run directory, or share its dynamics-pool cache
($JAXRL_BAYES_CACHE) and XLA compilation cache, so only the first run trains a pool and most
later ones compile nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import cli, config, results, rundir
from experiments import run as run_mod
from jaxrl_bayes import checkpoint as ckpt_lib
from jaxrl_bayes import networks
from jaxrl_bayes import policy as policy_lib

REPO = Path(__file__).resolve().parents[1]

# short rollouts on every dataset (the locomotion presets' persistent scheme would refuse rollout_batch)
TINY = ["--agent.rollout", "short", "--run.total_steps", "200", "--agent.steps_per_chunk", "20", "--dynamics.max_epochs", "2",
        "--dynamics.hidden", "32", "32", "--agent.num_active", "3", "--agent.rollout.batch", "50",
        "--agent.real_batch", "32", "--agent.model_batch", "32", "--agent.num_candidates", "4",
        "--agent.sampling.num_next_samples", "2", "--agent.critic_hidden", "32", "32", "--agent.policy_hidden", "32", "32",
        "--agent.buffer_capacity", "1000", "--dynamics.num_members", "3",
        "--run.eval_episodes", "20", "--run.final_eval_episodes", "20", "--run.eval_every_chunks", "1",
        "--run.no_progress"]
# bc trains no model: the model fields of TINY would be refused ("has no effect on --algo bc")
TINY_BC = ["--run.total_steps", "200", "--agent.steps_per_chunk", "20", "--agent.policy_hidden", "32", "32",
           "--run.eval_episodes", "20", "--run.final_eval_episodes", "20", "--run.eval_every_chunks", "1",
           "--run.no_progress"]


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """One dynamics-pool cache for the module, also for subprocesses (which inherit the session's
    XLA compilation cache, tests/conftest.py); every compilation of the module goes into that cache."""
    root = tmp_path_factory.mktemp("caches")
    env = {"JAXRL_BAYES_CACHE": str(root / "pools"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    old = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    yield {**os.environ, **env, "PYTHONPATH": str(REPO)}
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old)
    mp.undo()


@pytest.fixture(scope="module")
def finished(caches, tmp_path_factory):
    """The run directory of `python -m experiments.run` (RRPI, liquidation) at tiny sizes, and its stdout."""
    out = tmp_path_factory.mktemp("finished") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert run_mod.main([*TINY, "--out", str(out)]) == 0
    return out, buf.getvalue()


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _before_the_last_chunk(ref: Path, dst: Path) -> Path:
    """A copy of the finished run `ref` as it was before its last chunk: the checkpoint at chunk
    9 of 10, no results.json, no policy files."""
    out = _copy_run(ref, dst)
    (out / "results.json").unlink()
    shutil.rmtree(out / "checkpoints" / "10")
    for p in out.glob("policy_seed*.npz"):
        p.unlink()
    return out


def _final_leaves(run_dir):
    """The leaves of the newest checkpoint, read back with the shapes recorded in its meta."""
    with ckpt_lib.Checkpointer(Path(run_dir) / "checkpoints", None) as ck:
        step = ck.latest_step()
        leaves, user = ck.restore_leaves(step)
    return step, [np.asarray(x) for x in leaves], user


def _rows(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _strip_times(rows):
    return [{k: v for k, v in r.items() if k not in ("chunk_time_s", "steps_per_s", "wall_time_s", "includes_compile")}
            for r in rows]


def _any_checkpoint(run_dir):
    d = Path(run_dir) / "checkpoints"
    return d.is_dir() and any(p.name.isdigit() for p in d.iterdir())


def _resume_and_compare(ref: Path, out: Path) -> None:
    """Resumes `out` and checks it ends bit-identical to the uninterrupted run `ref`."""
    assert run_mod.main(["--resume", str(out)]) == 0
    _, la, _ = _final_leaves(ref)
    step, lb, _ = _final_leaves(out)
    assert step == 10 and len(la) == len(lb) and all(x.tobytes() == y.tobytes() for x, y in zip(la, lb))
    a, b = (json.loads((d / "results.json").read_text()) for d in (ref, out))
    assert a["per_seed"] == b["per_seed"]
    assert [r["chunk"] for r in _rows(out)] == list(range(1, 11))  # no duplicated or missing chunk
    assert _strip_times(_rows(ref)) == _strip_times(_rows(out))


def _show_config(capsys, *argv):
    capsys.readouterr()
    assert run_mod.main(["--show-config", *argv]) == 0
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------- the command line


def test_resolution_order_defaults_algo_preset_cli_with_sources(capsys):
    rrpi = _show_config(capsys)
    assert rrpi["agent"]["targets"]["kth"] == 1 and rrpi["agent"]["data_action_std"] == 0.1  # dataclass defaults
    assert "agent.data_action_std" not in rrpi["_sources"]
    assert rrpi["run"]["total_steps"] == 12000 and rrpi["agent"]["num_active"] == 7  # liquidation cpu preset
    assert rrpi["_sources"]["run.total_steps"].startswith("preset liquidation:cpu (measured")
    # the time-scale rates follow the run's budget: PMDB's 2M-step values stretched by 2M / 12000, capped;
    # the critic's step size, which the rule never scales, is the preset's
    assert rrpi["agent"]["optim"]["ref_tau"] == pytest.approx(1e-5 * 2_000_000 / 12000)
    assert (rrpi["agent"]["optim"]["tau"], rrpi["agent"]["optim"]["policy_lr"], rrpi["agent"]["optim"]["critic_lr"]) == (0.02, 3e-4, 1e-3)
    assert rrpi["_sources"]["agent.optim.ref_tau"].startswith("budget rule for run.total_steps = 12000")
    assert rrpi["_sources"]["agent.optim.critic_lr"].startswith("preset liquidation:cpu (measured")
    longer = _show_config(capsys, "--run.total_steps", "1000000", "--agent.optim.tau", "0.005")
    assert longer["agent"]["optim"]["ref_tau"] == pytest.approx(2e-5) and longer["agent"]["optim"]["policy_lr"] == pytest.approx(6e-5)
    assert longer["agent"]["optim"]["tau"] == 0.005 and longer["_sources"]["agent.optim.tau"] == "command line"
    # algorithm default (pmdb: kth 2, num_active 10) < preset (num_active 7) < command line
    pmdb = _show_config(capsys, "--algo", "pmdb")
    assert (pmdb["agent"]["targets"]["kth"], pmdb["agent"]["num_active"]) == (2, 7)
    assert pmdb["_sources"]["agent.targets.kth"] == "algorithm pmdb" and pmdb["_sources"]["run.algo"] == "command line"
    cli_ = _show_config(capsys, "--algo", "pmdb", "--agent.targets.kth", "3", "--run.total_steps", "50000")
    assert (cli_["agent"]["targets"]["kth"], cli_["run"]["total_steps"]) == (3, 50000)
    assert cli_["_sources"]["agent.targets.kth"] == cli_["_sources"]["run.total_steps"] == "command line"
    paper = _show_config(capsys, "--preset", "paper")
    assert paper["run"]["preset"] == "paper" and paper["run"]["total_steps"] != 12000


def test_cli_values_are_typed():
    parsed = run_mod.parse_command_line(
        ["--dynamics.hidden", "16", "32", "64", "--dynamics.num_elites", "None", "--agent.targets.no_value_clip",
         "--run.tensorboard", "--agent.optim.policy_lr", "3e-4", "--seeds", "4", "--algo", "pspo",
         "--run.no-progress", "--agent.targets.kth=2"])
    _, cfg, sources = parsed
    assert cfg.dynamics.hidden == (16, 32, 64) and cfg.dynamics.num_elites is None
    assert cfg.agent.targets.value_clip is False and cfg.run.tensorboard is True and cfg.run.progress is False
    assert (cfg.agent.optim.policy_lr, cfg.run.seeds, cfg.run.algo, cfg.agent.targets.kth) == (3e-4, 4, "pspo", 2)
    assert {k for k, v in sources.items() if v == "command line"} == {
        "dynamics.hidden", "dynamics.num_elites", "agent.targets.value_clip", "run.tensorboard", "agent.optim.policy_lr",
        "run.seeds", "run.algo", "run.progress", "agent.targets.kth"}
    for bad, phrase in ((["--run.total_steps", "1.5"], "--run.total_steps"),
                        (["--agent.kht", "3"], "did you mean --agent.targets.kth?"),
                        (["--dynamics.hidden", "4", "x"], "--dynamics.hidden")):
        with pytest.raises(cli.UsageError, match=phrase.replace("?", r"\?")) as e:
            run_mod.parse_command_line(bad)
        assert "\n" not in str(e.value)


def test_help_lists_every_section_and_field(capsys):
    assert run_mod.main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--algo", "--dataset", "--seeds", "--preset", "--out", "--resume", "--force", "--list",
                 "--show_config", "--eval_env", "--ref_min_score", "--run.total_steps", "--dynamics.hidden",
                 "--agent.discount", "--agent.steps_per_chunk"):
        assert flag in out, flag
    assert "rrpi, pmdb" in out
    assert "(default: 12000)" in out  # the preset's value is the default shown


def test_list_names_algorithms_datasets_presets(capsys):
    assert run_mod.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "algorithms: rrpi, pmdb, rrpi-random, pspo" in out and "walker2d-medium-replay-v2" in out
    assert "presets for liquidation: cpu, paper" in out


def test_preset_files_give_a_source_for_every_value_and_fit_the_configs():
    files = sorted(config.CONFIGS_DIR.glob("*.json"))
    assert {"liquidation", "hopper", "walker2d", "halfcheetah", "locomotion"} <= {p.stem for p in files}
    for path in files:
        data = json.loads(path.read_text())
        presets = {k: data.get(k, {}) for k in config.available_presets()[path.stem]}  # a base's presets included
        assert {"cpu", "paper"} <= set(presets), path
        for pname, preset in presets.items():
            sections = [(k, v) for k, v in preset.items() if not k.startswith("_") and not k.startswith("algo:")]
            sections += [(f"{k}/{s}", v2) for k, v in preset.items() if k.startswith("algo:")
                         for s, v2 in v.items() if not s.startswith("_")]
            for sname, section in sections:
                for field, entry in section.items():
                    if not field.startswith("_"):
                        assert set(entry) == {"value", "_source"} and entry["_source"].strip(), (path, pname, field)
            for algo in ("rrpi", "pmdb", "pspo", "pspo-noreg", "bc"):
                values = config.load_preset(path.stem, pname, algo, explicit=True).values
                for s in ("run", "dynamics"):  # every field exists and has the field's type
                    config.build_section(s, values[s], f"{path.stem}:{pname}")
                # the agent section as a run resolves it: on the algorithm's config, values for members
                # of a choice that it does not choose skipped (`belief.lam` is PSPO's), every other path
                # existing with the field's type
                agent = config.build_agent(values["agent"], path.stem, base=config.algos.algo_config(algo), preset=True)
                assert agent.algo.kind == config.algos.algo_config(algo).algo.kind


def test_seed_keys_and_evaluation_seeds_do_not_depend_on_the_number_of_seeds():
    k1, k3 = run_mod.seed_keys(0, 1), run_mod.seed_keys(0, 3)
    assert k1.shape == (1, 2) and k3.shape == (3, 2) and np.array_equal(k1[0], k3[0])
    assert not np.array_equal(k3[0], k3[1])
    assert np.array_equal(k3[1], jax.random.fold_in(jax.random.PRNGKey(0), 1))
    assert results.eval_seed(final=True) != results.eval_seed(final=False)


# ----------------------------------------------------------------------------- a real run


def test_run_writes_every_artifact(finished):
    out, stdout = finished
    names = set(os.listdir(out))
    assert {"config.json", "metrics.jsonl", "metrics.csv", "checkpoints", "results.json", "learning_curve.png",
            "dynamics.json", "run.log", "policy_seed0.npz"} <= names
    assert ".lock" not in names and not [n for n in names if n.startswith(".tmp")]
    assert sorted(os.listdir(out / "checkpoints")) == ["10", "8", "9"]  # the last 3 kept
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["total_steps"] == 200 and cfg["dynamics"]["hidden"] == [32, 32]
    assert cfg["agent"]["discount"] == 1.0  # from the liquidation cpu preset
    # the rates the budget rule set (none given on the command line), recorded for the report
    assert cfg["_derived"] == {f"agent.optim.{r}": "run.total_steps" for r in ("policy_lr", "ref_tau", "tau", "avg_tau")}
    rows = _rows(out)
    assert [r["chunk"] for r in rows] == list(range(1, 11)) and [r["step"] for r in rows][-1] == 200
    assert all("eval/normalized_mean" in r for r in rows)
    assert len((out / "metrics.csv").read_text().splitlines()) == 11
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "training dynamics pool" in (out / "run.log").read_text()

    res = json.loads((out / "results.json").read_text())
    assert (res["algo"], res["dataset"], res["total_steps"], res["eval_episodes"]) == (
        "rrpi", "liquidation-random-v0", 200, 20)
    assert np.isfinite(res["per_seed"][0]["raw_return"])
    final = [r for r in rows if r["chunk"] == 10][0]
    assert res["raw_return"]["mean"] == pytest.approx(final["eval/raw_mean"])
    assert res["normalized_score"]["mean"] == pytest.approx(
        100 * (res["raw_return"]["mean"] - res["ref_min_score"]) / (res["ref_max_score"] - res["ref_min_score"]))
    assert res["device"]["platform"] == "cpu" and res["wall_time_s"] > 0
    # the behaviour policy's score: the dataset's complete episodes (the generator's 80 %-hold policy)
    b = res["behaviour"]
    assert b["episodes"] > 10_000 and 95 < b["raw_return"] < 102
    assert b["normalized_score"] == pytest.approx(100 * b["raw_return"] / 135.0)
    assert "behaviour policy (the data" in stdout
    assert "normalized" in stdout and "DP optimum" in stdout and "policy_seed0.npz" in stdout.strip().splitlines()[-1]
    # the last half of the curve: the periodic evaluations at steps 100..180 (the one at 200 is the final)
    half = [r["eval/normalized_mean"] for r in rows if 100 <= r["step"] < 200]
    spread = res["per_seed"][0]["last_half_curve"]
    assert spread["points"] == len(half) == 5 and spread["first_step"] == 100
    assert spread["min"] == pytest.approx(min(half)) and spread["max"] == pytest.approx(max(half))
    assert spread["final_within"] == (min(half) <= res["per_seed"][0]["normalized_score"] <= max(half))
    assert res["last_half_curve"]["final_within"] == int(spread["final_within"]) and res["last_half_curve"]["seeds"] == 1
    assert "last half of the curve (5 evaluations from step 100" in stdout


def test_results_name_the_code_that_trained_not_the_checkout_at_the_end(finished, tmp_path, monkeypatch):
    """The checkout moves (a commit, a pull) while a run trains: results.json records the commit
    taken when the run started, not the one found when it wrote its results."""
    out = _before_the_last_chunk(finished[0], tmp_path / "run")
    checkout = {"commit": "a" * 40, "dirty": False}
    monkeypatch.setattr(results, "git_state", lambda path: dict(checkout))
    trained = run_mod.ChunkHook.__call__

    def chunk_then_commit(self, *args, **kwargs):  # the checkout moves once a chunk has trained
        trained(self, *args, **kwargs)
        checkout["commit"] = "b" * 40

    monkeypatch.setattr(run_mod.ChunkHook, "__call__", chunk_then_commit)
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_mod.main(["--resume", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["provenance"]["git_commit"] == "a" * 40


def _saved_action_scale(out: Path) -> float:
    return json.loads((out / "config.json").read_text())["agent"]["action_scale"]


def test_policy_file_is_the_final_checkpoints_policy(finished):
    """The deployable policy: exactly the final checkpoint's TrainState.policy with the dataset's
    normalizers; load_policy(...).act is clip(c tanh(mean), -1, 1) of that network (a numpy MLP by
    hand), c the run's action_scale."""
    from jaxrl_bayes.data import registry

    out, _ = finished
    res = json.loads((out / "results.json").read_text())
    assert res["policy_files"] == ["policy_seed0.npz"] and res["per_seed"][0]["policy_file"] == "policy_seed0.npz"
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
    obs = np.asarray(ds.observations[::997][:128], np.float64)
    x = (obs - np.asarray(ds.obs_mean, np.float32)) / np.asarray(ds.obs_std, np.float32)
    b0, k0, b1, k1, b2, k2 = (np.asarray(a, np.float64) for a in ckpt_leaves)  # Dense_0..2: bias, kernel
    c = deployed.module.action_scale
    assert c == _saved_action_scale(out) == 3.0  # the liquidation cpu preset's
    hand = np.clip(c * np.tanh((np.maximum(np.maximum(x @ k0 + b0, 0) @ k1 + b1, 0) @ k2 + b2)[:, :1]), -1, 1)
    np.testing.assert_allclose(np.asarray(deployed.act(obs.astype(np.float32))), hand, atol=1e-5)


def test_crash_leaves_no_results_and_resume_finishes_identically(finished, tmp_path, monkeypatch, capsys):
    """A crash in the final evaluation leaves checkpoints but no results.json (and no temp
    files); --resume then finishes bit-identically to the uninterrupted run."""
    ref, _ = finished
    out = _before_the_last_chunk(ref, tmp_path / "crash")
    real_eval = results.evaluate_seeds

    def crash_at_the_end(*a, final, **k):
        if final:
            raise RuntimeError("simulated crash during the final evaluation")
        return real_eval(*a, final=final, **k)

    monkeypatch.setattr(results, "evaluate_seeds", crash_at_the_end)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_mod.main(["--resume", str(out)])
    assert not (out / "results.json").exists() and not [p for p in os.listdir(out) if p.startswith(".tmp")]
    assert ckpt_lib.latest_step(out / "checkpoints") == 9
    assert "resumed from the checkpoint at chunk 9/10" in (out / "run.log").read_text()
    monkeypatch.setattr(results, "evaluate_seeds", real_eval)

    _resume_and_compare(ref, out)


def test_a_run_started_before_a_field_existed_resumes_exactly(finished, tmp_path):
    """A run written by code without `agent.critic_layer_norm` (its config.json and its
    checkpoints' hash lack the field) resumes with today's code, at the field's default, and
    finishes bit-identically."""
    ref, _ = finished
    out = _before_the_last_chunk(ref, tmp_path / "older")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["agent"].pop("critic_layer_norm") is False
    (out / "config.json").write_text(json.dumps(cfg))
    older_hash = config.config_hash(cfg)  # what the older code computed: its fields only
    assert older_hash != config.config_hash(json.loads((ref / "config.json").read_text()))
    for meta in (out / "checkpoints").glob("*/meta/metadata"):
        m = json.loads(meta.read_text())
        m["user"]["config_hash"] = older_hash
        meta.write_text(json.dumps(m))
    _resume_and_compare(ref, out)


def test_resume_with_another_config_refuses_and_lists_fields(finished, tmp_path, capsys):
    out = _copy_run(finished[0], tmp_path / "run")
    (out / "results.json").unlink()  # an unfinished run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run_mod.main(["--resume", str(out), "--run.total_steps", "400", "--agent.discount", "0.5",
                         "--run.no_progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: refusing to resume")
    assert "run.total_steps (saved 200, given 400)" in err and "agent.discount (saved 1.0, given 0.5)" in err
    assert "progress" not in err  # fields that change nothing computed are not differences
    # a new run into an unfinished run's directory points to --resume
    assert run_mod.main([*TINY, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_second_run_reuses_the_pool_and_force_replaces_a_finished_run(finished, tmp_path, monkeypatch, capsys):
    """Another seed on the same data loads the cached pool (train_pool is never called);
    without --force a finished run is kept, with --force it is replaced."""
    from jaxrl_bayes import dynamics

    out = _copy_run(finished[0], tmp_path / "run")
    before = (out / "results.json").read_bytes()
    args = [*TINY, "--run.seed", "1", "--run.total_steps", "40", "--out", str(out)]
    assert run_mod.main(args) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before

    def no_training(*a, **k):
        raise AssertionError("the cached pool should have been used")

    monkeypatch.setattr(dynamics, "train_pool", no_training)
    assert run_mod.main([*args, "--force"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (res["total_steps"], res["dynamics_pool"]["reused"]) == (40, True)
    assert "reused cached dynamics pool" in (out / "run.log").read_text()
    d0 = json.loads((finished[0] / "dynamics.json").read_text())
    assert res["dynamics_pool"]["pool_sha256"] == d0["pool_sha256"] and d0["reused"] is False
    assert Path(d0["cache_dir"]).parent == Path(os.environ["JAXRL_BAYES_CACHE"]) / "dynamics"
    assert json.loads((out / "config.json").read_text())["run"]["seed"] == 1


def test_failed_start_leaves_no_run_directory(finished, tmp_path, monkeypatch):
    """A crash before the first checkpoint removes the new run directory; the cached pool stays."""
    from jaxrl_bayes import algos

    def stop(*a, **k):
        raise _Stop

    monkeypatch.setattr(algos, "make_trainer", stop)
    out = tmp_path / "run"
    pools_before = sorted(Path(os.environ["JAXRL_BAYES_CACHE"]).rglob("*"))
    with pytest.raises(_Stop):
        run_mod.main([*TINY, "--out", str(out)])
    assert not out.exists()
    assert sorted(Path(os.environ["JAXRL_BAYES_CACHE"]).rglob("*")) == pools_before
    # a directory that is not a run is never replaced, even with --force
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert run_mod.main([*TINY, "--out", str(other), "--force"]) == 2
    assert (other / "keep.txt").read_text() == "mine"


def test_missing_optional_sink_package_fails_before_anything_is_written(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorboardX") is not None:
        pytest.skip("tensorboardX is installed here")
    out = tmp_path / "tb"
    assert run_mod.main(["--out", str(out), "--run.tensorboard"]) == 2
    assert "pip install tensorboardX" in capsys.readouterr().err and not out.exists()


def test_sigint_checkpoints_and_resume_is_exact(finished, caches, tmp_path):
    """SIGINT to a subprocess once its first checkpoint exists: exit 130 with the resume command;
    --resume then ends with the same parameters, results and metrics as the uninterrupted run."""
    ref, _ = finished
    out = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *TINY, "--out", str(out)], cwd=REPO,
                            env=caches, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not _any_checkpoint(out):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, stderr
    assert f"Resume with: python -m experiments.run --resume {out}" in stderr and "Traceback" not in stderr
    assert ckpt_lib.latest_step(out / "checkpoints") < 10 and not (out / "results.json").exists()

    _resume_and_compare(ref, out)


def test_local_file_without_an_evaluation_environment_trains_and_says_so(caches, tmp_path, capsys):
    """A D4RL-schema file of the user's own, no --eval-env: training runs (BC, which trains no
    dynamics pool), evaluation is skipped and the summary says why; the behaviour score is
    given raw (no reference scores)."""
    import h5py

    n, rng = 300, np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 4)).astype(np.float32)
    with h5py.File(tmp_path / "mine.hdf5", "w") as f:
        f["observations"], f["next_observations"] = obs[:-1], obs[1:]
        f["actions"] = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        f["rewards"] = np.ones(n, np.float32)
        f["terminals"] = np.arange(n) % 100 == 99  # three episodes of 100 steps
    out = tmp_path / "run"
    pools_before = sorted(Path(os.environ["JAXRL_BAYES_CACHE"]).rglob("*"))
    assert run_mod.main([*TINY_BC, "--algo", "bc", "--dataset", str(tmp_path / "mine.hdf5"), "--run.total_steps", "40",
                         "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["raw_return"] is None and res["normalized_score"] is None and res["eval_episodes"] == 0
    assert "no evaluation environment" in res["evaluation_note"] and "--eval-env" in stdout
    assert res["behaviour"] == {"episodes": 3, "raw_return": 100.0, "raw_return_std": 0.0, "normalized_score": None}
    assert res["policy_files"] == ["policy_seed0.npz"] and res["algo"] == "bc" and res["total_steps"] == 40
    assert res["dynamics_pool"]["reused"] is None and "without a dynamics pool" in res["dynamics_pool"]["note"]
    assert sorted(Path(os.environ["JAXRL_BAYES_CACHE"]).rglob("*")) == pools_before  # no pool trained
    assert [r["chunk"] for r in _rows(out)] == [1, 2] and all(np.isfinite(r["bc_loss"]) for r in _rows(out))


def test_learning_curve_panels_follow_the_metrics_present(tmp_path):
    """(a) always; (b) with q_model_mean / the Monte Carlo value; (c) with posterior diagnostics."""
    import struct

    from experiments.plotting import plot_learning_curve

    evals = [{"step": s, "raw": [10.0 + s], "normalized": [20.0 + s]} for s in (10, 20)]
    history = [{"step": s, "q_model_mean": 1.0 + s, "eval/mc_value_mean": 0.5 * s, "posterior_entropy": 1.0,
                "posterior_max": 0.4} for s in (10, 20)]

    def height(path):
        return struct.unpack(">I", path.read_bytes()[20:24])[0]  # PNG IHDR height

    cases = {"a": ([], True, 1), "ab": ([{k: r[k] for k in ("step", "q_model_mean")} for r in history], True, 2),
             "abc": (history, True, 3), "ab-not-pspo": (history, False, 2)}
    for name, (rows, posterior, panels) in cases.items():
        path = tmp_path / f"{name}.png"
        plot_learning_curve(evals, path, title=name, references=[("paper", 90.0)], history=rows,
                            behaviour={"raw_return": 5.0, "normalized_score": 12.0, "episodes": 3},
                            bc=("BC", 40.0), posterior=posterior)
        assert height(path) == round(3.6 * 110) * panels, name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_local_file_with_eval_env_reports_scores_and_the_monte_carlo_value(caches, tmp_path, capsys):
    """A hopper-width file of the user's own with --eval-env and reference scores: normalized
    scores, and evaluation rows carrying the discounted Monte Carlo return of the evaluation
    episodes in the learner's reward units (recomputed here from the exported policy file)."""
    import h5py

    from jaxrl_bayes.data.dataset import reward_normalizer
    from jaxrl_bayes.evaluation import gym_episodes, value_in_learning_units

    n, rng = 300, np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 11)).astype(np.float32)
    with h5py.File(tmp_path / "hopper_mine.hdf5", "w") as f:
        f["observations"], f["next_observations"] = obs[:-1], obs[1:]
        f["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 3, n).astype(np.float32)
        f["terminals"] = np.arange(n) % 100 == 99
    out = tmp_path / "run"
    # PMDB's persistent paths (the locomotion presets' scheme), so the paths' end rate is reported
    # each followed by one value; the locomotion preset's mean successors read no number of next-state samples
    dropped = {"--agent.rollout", "--agent.rollout.batch", "--agent.sampling.num_next_samples"}
    persistent = [a for i, a in enumerate(TINY) if a not in dropped and (i == 0 or TINY[i - 1] not in dropped)]
    assert run_mod.main([*persistent, "--dataset", str(tmp_path / "hopper_mine.hdf5"), "--eval-env", "Hopper-v4",
                         "--ref-min-score", "0", "--ref-max-score", "200", "--run.total_steps", "20",
                         "--agent.rollout", "persistent", "--agent.rollout.horizon", "50",
                         "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    row = _rows(out)[-1]
    cfg = json.loads((out / "config.json").read_text())["agent"]
    policy = policy_lib.load_policy(out / "policy_seed0.npz")
    eps = gym_episodes("Hopper-v4", policy_lib.act_fn_for(policy.module), 20, results.eval_seed(final=True),
                       params=policy.bundle, discount=cfg["discount"])
    rewards = np.asarray(h5py.File(tmp_path / "hopper_mine.hdf5")["rewards"])
    shift, scale = reward_normalizer(float(rewards.min()), float(rewards.max()), cfg["reward_normalization"])
    assert res["raw_return"]["mean"] == pytest.approx(eps.returns.mean(), rel=1e-6)
    assert res["normalized_score"]["mean"] == pytest.approx(eps.returns.mean() / 2, rel=1e-6)
    assert row["eval/mc_value_mean"] == pytest.approx(
        value_in_learning_units(eps.discounted_returns, eps.lengths, cfg["discount"], shift, scale).mean(), rel=1e-5)
    assert "q_model_mean" in row and res["behaviour"]["episodes"] == 3
    # the critic's value at the same episodes' first states, one per seed, beside their return
    assert np.isfinite(row["eval/q_start_mean"]) and 0.0 <= row["eval/q_start_mean"] <= 1.0 / (1.0 - cfg["discount"])
    assert res["per_seed"][0]["q_start"] == pytest.approx(row["eval/q_start_mean"])
    assert res["per_seed"][0]["mc_value"] == pytest.approx(row["eval/mc_value_mean"])
    # experiments.evaluate repeats the evaluation from what the policy file records (file, env, references)
    from experiments import evaluate as evaluate_mod

    capsys.readouterr()
    assert evaluate_mod.main(["--policy", str(out), "--episodes", "20", "--seed", str(results.eval_seed(True))]) == 0
    printed = capsys.readouterr().out
    assert f"{eps.returns.mean():10.3f}" in printed and f"{eps.returns.mean() / 2:10.2f}" in printed
    # experiments.diagnose reads the run: its pool rolled along the file's stretches, Q against the MC return
    from experiments import diagnose as diagnose_mod

    before = sorted(p.name for p in out.iterdir())
    assert diagnose_mod.main(["--run-dir", str(out), "--horizon", "3", "--segments", "40"]) == 0
    report = json.loads((out / "diagnosis.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(before + ["diagnosis.json"])
    assert report["model_error"]["members"] == 3 and len(report["model_error"]["obs_rmse_in_data_std"]["median"]) == 3
    assert report["value_vs_return"][-1]["mc_value_mean"] == pytest.approx(row["eval/mc_value_mean"])
    pt = report["pool_training"]  # the pool this run trained records its held-out curve, one point per epoch
    assert len(pt["val_mse_curve"]) == pt["epochs"] >= 1 and pt["max_epochs"] == cfg_dyn_max_epochs(out)
    assert report["value_vs_return"][-1]["q_start_mean"] == pytest.approx(row["eval/q_start_mean"])
    # the pool's terminations against the file's logged ones: shares, on both kinds of transitions
    # the pool along the policy's own real episodes: the final evaluation's first 10 episodes
    op = report["on_policy"]
    assert op["returns"] == pytest.approx(eps.returns[:10].tolist(), rel=1e-5)
    assert op["steps"] == int(sum(op["lengths"])) and op["state_error_median"] > 0.0
    ended = sum(length < 1000 for length in op["lengths"])  # a Hopper episode ends by a fall or at 1000 steps
    assert op["real_terminal"]["transitions"] == ended and op["real_nonterminal"]["transitions"] == op["steps"] - ended
    tc = report["terminations"]  # the file ends 3 episodes
    assert tc["logged_terminal"]["transitions"] == 3 and tc["logged_nonterminal"]["transitions"] == n - 3
    for kind in ("logged_nonterminal", "logged_terminal"):
        r = tc[kind]
        assert 0.0 <= r["drawn_mean_member"] <= r["drawn_worst_member"] <= 1.0
        assert 0.0 <= r["mean_successor_mean_member"] <= r["mean_successor_worst_member"] <= 1.0
    # the greedy gain at the same evaluation: never negative, below the value bound
    assert report["value_vs_return"][-1]["greedy_gain"] == pytest.approx(row["greedy_gain"])
    assert 0.0 <= row["greedy_gain"] <= 1.0 / (1.0 - cfg["discount"])
    printed = capsys.readouterr().out
    assert "Q first states / MC" in printed and "greedy gain" in printed and "false falls" in printed
    # how often the model's paths end, beside how often the policy's real steps do
    assert (f"paths ended on {row['rollout_restart_frac']:.4f} of their steps in the last chunk "
            f"({1.0 - row['rollout_valid_frac']:.4f} outside the data's box" in printed
            and f"against {op['real_terminal_rate']:.4f} of the policy's real steps" in printed)


def cfg_dyn_max_epochs(run_dir):
    return json.loads((run_dir / "config.json").read_text())["dynamics"]["max_epochs"]


def test_diagnose_says_whether_the_pool_converged(tmp_path):
    """A planted pool record: stopped at its 8-epoch cap, its best held-out MSE before the last 5
    epochs 0.4 and within them 0.3, so it still fell 25 %: not converged. An early stop is not."""
    from experiments import diagnose as diagnose_mod

    cdir = tmp_path / "cache"
    cdir.mkdir()
    pool_file = cdir / "pool.npz"
    assert diagnose_mod.pool_training(pool_file) is None  # no record beside the pool: nothing to say
    info = {"dynamics": {"max_epochs": 8}, "report": {
        "epochs": 8, "stopped_early": False, "val_mse": [0.25, 0.35], "val_nll": [-1.0, -2.0],
        "val_mse_curve": [1.0, 0.5, 0.4, 0.45, 0.4, 0.42, 0.41, 0.3]}}
    (cdir / "info.json").write_text(json.dumps(info))
    pt = diagnose_mod.pool_training(pool_file)
    assert pt["epochs"] == 8 and pt["max_epochs"] == 8 and pt["stopped_early"] is False
    assert pt["val_mse_mean"] == pytest.approx(0.3) and pt["val_nll_mean"] == pytest.approx(-1.5)
    assert pt["last_epochs_drop"] == pytest.approx(0.25)
    report = {"run_dir": "r", "algo": "rrpi", "dataset": "d", "pool_training": pt, "model_error": None,
              "value_vs_return": [], "training": {},
              "real_weight": 0.5, "real_batch": 4, "model_batch": 4, "discount": 0.99}
    text = diagnose_mod.markdown(report)
    assert "8 of at most 8 epochs, ran to the cap" in text and "fell 25.0 %: the model had not converged" in text
    info["report"].update(stopped_early=True, epochs=10,
                          val_mse_curve=[1.0, 0.5, 0.4, 0.45, 0.41, 0.42, 0.41, 0.43, 0.44, 0.45])
    (cdir / "info.json").write_text(json.dumps(info))
    pt = diagnose_mod.pool_training(pool_file)  # best 0.4 before the last 5, 0.41 within: no longer falling
    assert pt["last_epochs_drop"] == pytest.approx(0.0)
    text = diagnose_mod.markdown({**report, "pool_training": pt})
    assert "stopped early" in text and "not converged" not in text
    # the pool's own patience and threshold: 2 epochs, best 0.5 before them and 0.497 within them
    # (0.6 % < the 1 % an epoch must gain to count as an improvement): converged, though at the cap
    info["dynamics"]["max_epochs_since_update"] = 2
    info["report"].update(stopped_early=False, epochs=4, val_mse_curve=[1.0, 0.5, 0.52, 0.497])
    (cdir / "info.json").write_text(json.dumps(info))
    pt = diagnose_mod.pool_training(pool_file)
    assert pt["patience"] == 2 and pt["last_epochs_drop"] == pytest.approx(0.006)
    text = diagnose_mod.markdown({**report, "pool_training": pt})
    assert "Over its last 2 epochs the held-out MSE fell 0.6 %" in text and "not converged" not in text


def test_diagnose_reads_a_bc_run_as_one_without_a_model(tmp_path):
    """bc writes dynamics.json without a pool file: no model to diagnose, not a missing pool."""
    from experiments import diagnose as diagnose_mod

    (tmp_path / "dynamics.json").write_text(json.dumps({"note": "bc trains without a dynamics pool", "reused": None}))
    assert diagnose_mod._pool_file(tmp_path) is None
    (tmp_path / "dynamics.json").write_text(json.dumps({"pool_file": str(tmp_path / "gone.npz")}))
    with pytest.raises(diagnose_mod.UserError, match="is gone"):
        diagnose_mod._pool_file(tmp_path)


def test_bc_score_comes_from_a_finished_bc_run_of_the_same_dataset_beside_the_run(tmp_path):
    def result(name, algo, dataset, score):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"algo": algo, "dataset": dataset,
             "normalized_score": None if score is None else {"mean": score, "std": 0.0}}))

    result("bc-20260101-000000", "bc", "hopper-medium-v2", 40.0)
    result("bc-20260102-000000", "bc", "hopper-medium-v2", 42.0)  # the newest wins
    result("bc-20260103-000000", "bc", "walker2d-medium-v2", 50.0)  # other data
    result("bcx-no-references", "bc", "hopper-medium-v2", None)
    (tmp_path / "rrpi-1").mkdir()
    assert rundir.bc_score_beside(tmp_path / "rrpi-1", "hopper-medium-v2") == ("BC (bc-20260102-000000)", 42.0)
    assert rundir.bc_score_beside(tmp_path / "rrpi-1", "halfcheetah-medium-v2") is None


def test_full_disk_at_a_checkpoint_then_at_a_policy_file_loses_nothing_and_resume_is_exact(
        finished, tmp_path, monkeypatch, capsys):
    """ENOSPC while the chunk-10 checkpoint is written (orbax's own error, injected on the 2nd
    save), then, resumed, while the policy file is written (the injected write fails midway):
    each ends in one line and exit 74 naming the file and the resume command, leaves the
    checkpoints saved before intact and no temporary file; resumed with space back, the run
    ends bit-identical to the uninterrupted one, policy included."""
    import orbax.checkpoint as ocp

    from tests.faults import full_disk, orbax_full_disk

    ref, _ = finished
    out = _copy_run(ref, tmp_path / "full")
    (out / "results.json").unlink()
    for p in out.glob("policy_seed*.npz"):
        p.unlink()
    for step in ("9", "10"):
        shutil.rmtree(out / "checkpoints" / step)
    _, at8, _ = _final_leaves(out)

    def leftovers():
        return [p for p in out.rglob("*") if "tmp" in p.name]

    capsys.readouterr()
    monkeypatch.setattr(ocp.CheckpointManager, "save", orbax_full_disk(ocp.CheckpointManager.save, on_call=2))
    assert run_mod.main(["--resume", str(out)]) == 74
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: {out / 'checkpoints' / '10'}: no space left on device; free some space, then resume "
                   f"with `python -m experiments.run --resume {out}` (the checkpoints saved before are intact)")
    assert ckpt_lib.latest_step(out / "checkpoints") == 9 and not leftovers()
    assert "Traceback" in (out / "run.log").read_text()  # the details are kept there
    monkeypatch.undo()

    policy_writer = full_disk(policy_lib.atomic_open, on_call=1)
    monkeypatch.setattr(policy_lib, "atomic_open", policy_writer)
    assert run_mod.main(["--resume", str(out)]) == 74
    err = capsys.readouterr().err
    assert [l for l in err.splitlines() if l.startswith("error:")] == [
        f"error: {out / 'policy_seed0.npz'}: no space left on device; free some space, then resume "
        f"with `python -m experiments.run --resume {out}` (the checkpoints saved before are intact)"]
    assert "Traceback" not in err and policy_writer.calls == [str(out / "policy_seed0.npz")]
    assert not (out / "policy_seed0.npz").exists() and not (out / "results.json").exists() and not leftovers()
    _, at10, _ = _final_leaves(out)
    _, ref10, _ = _final_leaves(ref)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(at10, ref10))
    assert len(at8) == len(at10)
    monkeypatch.undo()

    _resume_and_compare(ref, out)
    a, b = (policy_lib.load_policy(d / "policy_seed0.npz") for d in (ref, out))
    assert all(np.asarray(x).tobytes() == np.asarray(y).tobytes()
               for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)))


def test_eval_deployments_score_the_other_policy_on_the_same_episodes(caches, tmp_path):
    """--run.eval_deployments scores pi_ref beside pi on the same episodes, per seed in results.json:
    a run that deploys pi_ref (same seed, so the same training) scores exactly what the pi run
    reported for its reference, and the other way round."""
    short = [*TINY, "--run.total_steps", "40", "--run.eval_deployments", "--run.eval_every_chunks", "0"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_mod.main([*short, "--out", str(tmp_path / "pi")]) == 0
        assert run_mod.main([*short, "--agent.deploy", "reference", "--out", str(tmp_path / "ref")]) == 0
    pi, ref = (json.loads((tmp_path / d / "results.json").read_text())["per_seed"][0] for d in ("pi", "ref"))
    assert set(pi["deployments"]) == {"reference"} and set(ref["deployments"]) == {"policy"}
    assert pi["deployments"]["reference"]["raw_return"] == pytest.approx(ref["raw_return"], rel=1e-9)
    assert ref["deployments"]["policy"]["raw_return"] == pytest.approx(pi["raw_return"], rel=1e-9)
    assert pi["deployments"]["reference"]["normalized_score"] == pytest.approx(ref["normalized_score"], rel=1e-9)
    assert "eval/reference/normalized_mean" in _rows(tmp_path / "pi")[-1]


def test_a_robot_preset_is_its_base_with_its_own_values_on_top(tmp_path):
    (tmp_path / "shared.json").write_text(json.dumps({
        "cpu": {"run": {"total_steps": {"value": 300, "_source": "base"}},
                "dynamics": {"max_epochs": {"value": 7, "_source": "base"}}},
        "paper": {"dynamics": {"max_epochs": {"value": 9, "_source": "base"}}}}))
    (tmp_path / "robot.json").write_text(json.dumps({
        "_base": "shared", "paper": {"dynamics": {"max_epochs": {"value": 11, "_source": "own"}}}}))
    cpu = config.load_preset("robot", "cpu", "rrpi", explicit=True, configs_dir=tmp_path)
    assert cpu.values["run"] == {"total_steps": 300} and cpu.values["dynamics"] == {"max_epochs": 7}
    assert cpu.sources["dynamics.max_epochs"] == "preset shared:cpu (base)"
    paper = config.load_preset("robot", "paper", "rrpi", explicit=True, configs_dir=tmp_path)
    assert paper.values["dynamics"] == {"max_epochs": 11} and paper.sources["dynamics.max_epochs"] == "preset robot:paper (own)"
    assert config.available_presets(tmp_path) == {"robot": ["paper", "cpu"], "shared": ["cpu", "paper"]}
    (tmp_path / "shared.json").write_text("{not json")
    with pytest.raises(config.UsageError, match=r"shared.json \(the _base of .*robot.json\) is not valid JSON"):
        config.load_preset("robot", "cpu", "rrpi", explicit=True, configs_dir=tmp_path)
    (tmp_path / "robot.json").write_text(json.dumps({"_base": "missing"}))
    with pytest.raises(config.UsageError, match="_base 'missing' names no other preset file"):
        config.load_preset("robot", "cpu", "rrpi", explicit=True, configs_dir=tmp_path)


def test_every_locomotion_robot_runs_the_same_algorithm():
    """One preset for every robot: the resolved agents differ in nothing, at either scale."""
    for preset in ("cpu", "paper"):
        for algo in ("rrpi", "pspo", "pmdb", "bc"):
            agents = {robot: config.build_agent(config.load_preset(robot, preset, algo, explicit=True).values["agent"],
                                                robot, base=config.algos.algo_config(algo), preset=True)
                      for robot in ("hopper", "walker2d", "halfcheetah")}
            assert agents["hopper"] == agents["walker2d"] == agents["halfcheetah"], (preset, algo)
            runs = {robot: config.load_preset(robot, preset, algo, explicit=True).values["run"] for robot in agents}
            assert runs["hopper"] == runs["walker2d"] == runs["halfcheetah"], (preset, algo)


def test_the_locomotion_paper_preset_runs_the_cpu_presets_algorithm():
    """The scales differ (sizes, steps, the rates that follow them); the switches that make the algorithm do not."""
    def switches(agent):
        return (agent.algo, agent.rollout.kind, getattr(agent.rollout, "explore", None), agent.sampling.successor,
                agent.sampling.reward, agent.targets.selector, agent.targets.kth, agent.targets.box_terminal,
                agent.reward_normalization, agent.belief.kind, agent.temperature.kind, agent.deploy)
    for algo in ("rrpi", "pspo", "pmdb", "bc", "bc-top10"):
        cpu, paper = (config.build_agent(config.load_preset("hopper", p, algo, explicit=True).values["agent"], p,
                                         base=config.algos.algo_config(algo), preset=True) for p in ("cpu", "paper"))
        assert switches(cpu) == switches(paper), algo
