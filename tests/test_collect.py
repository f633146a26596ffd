"""Tests of D4RL-protocol dataset generation (jaxrl_bayes.collect, experiments.collect).

One tiny SAC run on Hopper-v4 (2 envs, 50-step episodes so that time limits occur) writes
every level; the checks use independent facts: Hopper's termination rule
(`jaxrl_bayes.termination`), Hopper's reset distribution (init_qpos/qvel plus U(-5e-3, 5e-3)
noise), the time limit, and the definitions of the levels.
"""

import json
import os
import warnings

import jax
import numpy as np
import pytest

import jaxrl_bayes.collect as gen
from jaxrl_bayes import sac
from jaxrl_bayes.data import registry
from jaxrl_bayes.termination import hopper_termination

warnings.filterwarnings("ignore", message=".*out of date.*")

T_MAX = 50
NUM_ENVS = 2
SIZE = 600
SAC_STEPS = 2000


def _config(**kw):
    base = dict(env="hopper", sac=sac.SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32),
                                                batch_size=64),
                num_envs=NUM_ENVS, sac_steps=SAC_STEPS, start_steps=500, update_after=500,
                steps_per_epoch=500, eval_every=1000, eval_episodes=2, medium_return=0.0,
                dataset_size=SIZE, max_episode_steps=T_MAX, checkpoint_every=1000, seed=0,
                confirm_episodes=2)
    base.update(kw)
    return gen.CollectConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("collect")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        results, train = gen.generate(_config(), gen.LEVELS, root / "work",
                                      hdf5_dir=root / "hdf5")
        loaded = {r.level: _minari_arrays(r.dataset_id) for r in results}
        yield {"root": root, "results": {r.level: r for r in results}, "train": train,
               "loaded": loaded, "mp": mp}


def _minari_arrays(ds_id):
    import minari

    ds = minari.load_dataset(ds_id)
    eps = list(ds.iterate_episodes())
    return {
        "episodes": [dict(obs=np.asarray(e.observations), act=np.asarray(e.actions),
                          rew=np.asarray(e.rewards), term=np.asarray(e.terminations),
                          trunc=np.asarray(e.truncations)) for e in eps],
        "metadata": ds.storage.metadata,
        "total_steps": ds.total_steps,
    }


def test_every_level_written_with_expected_sizes(run):
    train = run["train"]
    assert train.medium_index == 1000  # first evaluation (threshold 0 is reached at once)
    [check] = train.confirmations  # ... and confirmed at once
    assert (check.env_steps, check.crossing_episodes, check.confirm_episodes) == (1000, 2, 2)
    assert check.accepted and check.confirm_mean >= 0.0
    expected = {"random": SIZE, "medium": SIZE, "expert": SIZE, "medium-expert": 2 * SIZE,
                "medium-replay": train.medium_index, "full-replay": SAC_STEPS}
    for level in gen.LEVELS:
        r = run["results"][level]
        assert r.dataset_id == f"jaxrl_bayes/hopper/{level}-v0"
        assert r.path.is_dir() and r.hdf5_path.is_file()
        assert run["loaded"][level]["total_steps"] == expected[level]
        assert r.summary["transitions"] == expected[level]


def test_metadata_has_env_spec_and_behaviour_return(run):
    for level in gen.LEVELS:
        md = run["loaded"][level]["metadata"]
        assert "Hopper-v4" in md["env_spec"] and "Hopper-v4" in md["eval_env_spec"]
        assert md["ref_min_score"] == pytest.approx(-20.272305)
        assert md["ref_max_score"] == pytest.approx(3234.3)
        extra = md["jaxrl_bayes"]
        rets = [ep["rew"].sum() for ep in run["loaded"][level]["episodes"]]
        assert min(rets) - 1e-3 <= extra["behavior_return_mean"] <= max(rets) + 1e-3
        assert extra["behavior_normalized_score"] == pytest.approx(
            100 * (extra["behavior_return_mean"] + 20.272305) / (3234.3 + 20.272305))
    assert run["loaded"]["expert"]["metadata"]["jaxrl_bayes"]["policy_env_steps"] == SAC_STEPS
    check = run["train"].confirmations[0]._asdict()
    for level in ("medium", "medium-replay"):
        assert run["loaded"][level]["metadata"]["jaxrl_bayes"]["medium_confirmation"] == check


def test_terminals_and_timeouts_where_the_environment_put_them(run):
    full_timeouts = falls = 0
    for level in gen.LEVELS:
        episodes = run["loaded"][level]["episodes"]
        obs = np.concatenate([ep["obs"][:-1] for ep in episodes])
        next_obs = np.concatenate([ep["obs"][1:] for ep in episodes])
        act = np.concatenate([ep["act"] for ep in episodes])
        # Hopper's own rule on the recorded next observation decides every terminal.
        fell = np.asarray(hopper_termination(obs, act, next_obs))
        np.testing.assert_array_equal(np.concatenate([ep["term"] for ep in episodes]), fell)
        cut = 0
        for ep in episodes:
            n = len(ep["act"])
            assert not ep["term"][:-1].any() and not ep["trunc"][:-1].any()
            assert n <= T_MAX
            if ep["trunc"][-1]:
                assert not ep["term"][-1]
                full_timeouts += n == T_MAX
                cut += n != T_MAX  # a timeout before the limit: cut by the dataset's end
            else:
                assert ep["term"][-1]
                falls += 1
            # Every episode starts from Hopper's reset distribution (no bogus reset rows).
            start = np.zeros(11)
            start[0] = 1.25
            assert np.all(np.abs(ep["obs"][0] - start) <= 5e-3 + 1e-6), ep["obs"][0]
        parts = 2 if level == "medium-expert" else 1
        assert cut <= NUM_ENVS * parts
    assert falls > 0 and full_timeouts > 0  # both kinds of episode end occur


def test_replay_levels_are_the_sac_stream(run):
    train = run["train"]
    stream = train.stream
    for level, n in (("medium-replay", train.medium_index), ("full-replay", SAC_STEPS)):
        eps = run["loaded"][level]["episodes"]
        rewards = np.concatenate([ep["rew"] for ep in eps])
        # Same multiset of transitions as the first n recorded steps (regrouped by episode).
        np.testing.assert_allclose(np.sort(rewards), np.sort(stream["rewards"][:n]), rtol=1e-6)
    full = np.concatenate([ep["rew"] for ep in run["loaded"]["full-replay"]["episodes"]])
    med = np.concatenate([ep["rew"] for ep in run["loaded"]["medium-replay"]["episodes"]])
    assert len(med) < len(full)


def test_medium_expert_is_medium_then_expert(run):
    loaded = run["loaded"]
    me = loaded["medium-expert"]["episodes"]
    parts = loaded["medium"]["episodes"] + loaded["expert"]["episodes"]
    assert len(me) == len(parts)
    for a, b in zip(me, parts):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_hdf5_export_matches_minari(run):
    from jaxrl_bayes.data.d4rl import load_hdf5

    for level in gen.LEVELS:
        h = load_hdf5(run["results"][level].hdf5_path)
        eps = run["loaded"][level]["episodes"]
        np.testing.assert_array_equal(h["observations"],
                                      np.concatenate([ep["obs"][:-1] for ep in eps]))
        np.testing.assert_array_equal(h["next_observations"],
                                      np.concatenate([ep["obs"][1:] for ep in eps]))
        np.testing.assert_array_equal(h["terminals"], np.concatenate([ep["term"] for ep in eps]))
        np.testing.assert_array_equal(h["timeouts"], np.concatenate([ep["trunc"] for ep in eps]))
        np.testing.assert_array_equal(h["rewards"], np.concatenate([ep["rew"] for ep in eps]))


def test_every_level_loads_through_the_registry(run):
    for level in gen.LEVELS:
        r = run["results"][level]
        ds = registry.load_dataset(r.dataset_id)
        assert ds.size == r.summary["transitions"]
        eps = run["loaded"][level]["episodes"]
        np.testing.assert_allclose(np.asarray(ds.rewards),
                                   np.concatenate([ep["rew"] for ep in eps]), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(ds.terminals),
                                      np.concatenate([ep["term"] for ep in eps]).astype(float))


def test_existing_dataset_is_not_overwritten(run, tmp_path):
    with pytest.raises(FileExistsError, match="--overwrite"):
        gen.generate(_config(), ["random"], tmp_path / "w")
    with pytest.raises(gen.DatasetExistsError, match="--overwrite"):  # the hdf5 export too
        gen.generate(_config(), ["random"], tmp_path / "w", namespace="other",
                     hdf5_dir=run["root"] / "hdf5")


def test_hdf5_export_is_a_local_dataset_with_its_env(run):
    """The exported file records its env, so `--dataset path.hdf5` needs no --eval-env."""
    from jaxrl_bayes.data.d4rl import load_hdf5

    path = run["results"]["random"].hdf5_path
    spec = registry.get_spec(str(path))
    assert (spec.source, spec.family, spec.eval_env_id) == ("hdf5", "hopper", "Hopper-v4")
    assert spec.ref_max_score == pytest.approx(3234.3)
    raw = load_hdf5(path)
    assert spec.load().size == SIZE - int(raw["timeouts"].sum())  # D4RL's view drops timeouts


def test_resume_continues_exactly(tmp_path):
    """1000 steps, then resumed to 2000, equals 2000 steps in one go (MuJoCo state restored)."""
    cfg = _config(eval_every=10**6, checkpoint_every=500, medium_return=None)
    straight = gen.train_sac(cfg, tmp_path / "a")
    first = gen.train_sac(_config(eval_every=10**6, checkpoint_every=500, sac_steps=1000),
                          tmp_path / "b")
    assert first.env_steps == 1000
    with pytest.raises(gen.GenerateError, match="resume"):
        gen.train_sac(cfg, tmp_path / "b")
    resumed = gen.train_sac(cfg, tmp_path / "b", resume=True)
    assert (tmp_path / "b" / "checkpoints" / "2000").is_dir()  # orbax, named by env steps
    for k in straight.stream:
        np.testing.assert_allclose(resumed.stream[k], straight.stream[k], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(resumed.final_params),
                    jax.tree_util.tree_leaves(straight.final_params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(gen.GenerateError, match="seed"):
        gen.train_sac(_config(seed=1), tmp_path / "b", resume=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "checkpoint.npz").write_bytes(b"old")  # the pre-orbax format
    with pytest.raises(gen.GenerateError, match="old npz format"):
        gen.train_sac(cfg, tmp_path / "c", resume=True)


def test_bad_input_errors():
    with pytest.raises(gen.GenerateError, match="unknown level"):
        gen.parse_levels("medium,expertt")
    with pytest.raises(gen.GenerateError, match="unknown environment"):
        gen.resolve_env("hoper")
    with pytest.raises(gen.GenerateError, match="confirm_episodes must be >= 0"):
        _config(confirm_episodes=-1)
    with pytest.raises(gen.GenerateError, match="medium-return"):
        gen.CollectConfig(env="Pendulum-v1").medium_threshold()
    assert gen.CollectConfig(env="walker2d").medium_threshold() == pytest.approx(4592.3 / 3)


def test_cli_random_level(tmp_path, monkeypatch, capsys):
    from experiments import collect

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    argv = ["--env", "hopper", "--levels", "random", "--dataset-size", "300", "--num-envs", "2",
            "--work-dir", str(tmp_path / "w"), "--no-progress", "--hdf5-dir", str(tmp_path / "h")]
    assert collect.main(argv) == 0
    out = capsys.readouterr().out
    assert "jaxrl_bayes/hopper/random-v0" in out and "300" in out
    assert (tmp_path / "h" / "hopper_random-v0.hdf5").is_file()
    assert collect.main(argv) == 2  # exists: refuses without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert collect.main(argv + ["--overwrite"]) == 0
    capsys.readouterr()
    assert collect.main(["--levels", "bogus", "--work-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown level(s) ['bogus']") and err.count("\n") == 1
    assert "Traceback" not in err
    assert collect.main(["--levels", "bogus", "--debug"]) == 2  # --debug: the traceback too
    assert "Traceback" in capsys.readouterr().err
    assert collect.main(["--sac-stepz", "5"]) == 2
    assert capsys.readouterr().err == "error: unknown option --sac-stepz; did you mean --sac_steps?\n"


class _PlantedEvals:
    """Stands in for `evaluation.evaluate_gym`: returns the planted means in call order (spread
    -1..1 over the episodes) and records (num_episodes, seed) of each call."""

    def __init__(self, means):
        self.means, self.calls = list(means), []

    def __call__(self, env, act_fn, num_episodes, seed, params=None):
        self.calls.append((num_episodes, seed))
        return self.means.pop(0) + np.linspace(-1.0, 1.0, num_episodes)


# Threshold 5; evaluations at 500, 1000, 1500 env steps: 2 (below), 10 (crossing) confirmed by
# 0 (rejected), 10 (crossing) confirmed by 8 (medium).
_PLANTED = [2.0, 10.0, 0.0, 10.0, 8.0]
_CLI = ["--env", "hopper", "--levels", "medium-replay", "--num-envs", "2", "--hidden", "32",
        "--batch-size", "64", "--start-steps", "1000000", "--update-after", "1000000",
        "--steps-per-epoch", "500", "--eval-every", "500", "--eval-episodes", "2",
        "--confirm-episodes", "3", "--medium-return", "5", "--max-episode-steps", str(T_MAX),
        "--checkpoint-every", "500", "--no-progress"]


def test_medium_needs_a_confirming_evaluation(tmp_path, monkeypatch, capsys):
    """A crossing whose confirmation fails is not medium; the next confirmed one is, straight
    or resumed right after the failed confirmation; confirm_episodes=0 takes the first."""
    from experiments import collect
    from jaxrl_bayes import evaluation
    from jaxrl_bayes.data.d4rl import load_hdf5

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    runs = {}
    for name, sac_steps in (("straight", [3000]), ("resumed", [1000, 3000])):
        planted = _PlantedEvals(_PLANTED)
        monkeypatch.setattr(evaluation, "evaluate_gym", planted)
        work = tmp_path / name
        for i, n in enumerate(sac_steps):
            argv = _CLI + ["--sac-steps", str(n), "--work-dir", str(work), "--namespace", name,
                           "--hdf5-dir", str(work / "h5")] + (["--resume"] if i else [])
            code = collect.main(argv)
            out, err = capsys.readouterr()
            if n == 1000:  # stopped after the rejected candidate: no medium yet
                assert code == 2 and "no SAC policy reached the medium threshold" in err
                meta = gen.load_checkpoint_meta(work)
                assert meta["medium_index"] is None
                assert [c["accepted"] for c in meta["confirmations"]] == [False]
        assert code == 0, err
        assert planted.means == []
        runs[name] = dict(out=out, calls=planted.calls, meta=gen.load_checkpoint_meta(work),
                          summary=json.loads((work / "summary.json").read_text()),
                          h5=load_hdf5(work / "h5" / "hopper_medium_replay-v0.hdf5"))
    straight, resumed = runs["straight"], runs["resumed"]
    assert [n for n, _ in straight["calls"]] == [2, 2, 3, 2, 3]
    routine = {s + k for n, s in straight["calls"] if n == 2 for k in range(n)}
    confirm = {s + k for n, s in straight["calls"] if n == 3 for k in range(n)}
    assert len(confirm) == 6 and not routine & confirm  # other episodes each time
    expected = [gen.Confirmation(1000, 10.0, 1.0, 2, 0.0, np.sqrt(2 / 3), 3, False)._asdict(),
                gen.Confirmation(1500, 10.0, 1.0, 2, 8.0, np.sqrt(2 / 3), 3, True)._asdict()]
    for r in (straight, resumed):
        assert r["summary"]["medium_index"] == 1500
        assert r["summary"]["levels"]["medium-replay"]["transitions"] == 1500
        # one approx per record: pytest >= 9 refuses approx over nested structures
        assert [pytest.approx(c) for c in expected] == r["summary"]["confirmations"]
        assert r["meta"]["confirmations"] == r["summary"]["confirmations"]
        assert "1000:      10.0 +- 1.0 (2 episodes), confirming 0.0 +- 0.8 (3 episodes): " \
               "rejected" in r["out"]
        assert "1500:      10.0 +- 1.0 (2 episodes), confirming 8.0 +- 0.8 (3 episodes): " \
               "medium" in r["out"]
    assert resumed["calls"] == straight["calls"]  # same evaluations, same episode seeds
    for k in straight["h5"]:
        np.testing.assert_array_equal(resumed["h5"][k], straight["h5"][k])

    planted = _PlantedEvals(_PLANTED[:2])
    monkeypatch.setattr(evaluation, "evaluate_gym", planted)
    cfg = _config(sac_steps=3000, start_steps=10**6, update_after=10**6, eval_every=500,
                  medium_return=5.0, confirm_episodes=0)
    first = gen.train_sac(cfg, stop_at_medium=True)
    assert (first.medium_index, first.medium_eval, first.confirmations) == (1000, 10.0, [])
    assert [n for n, _ in planted.calls] == [2, 2]


def test_full_disk_while_exporting_hdf5_loses_nothing_and_resume_writes_the_same_data(
        tmp_path, monkeypatch, capsys):
    """ENOSPC midway through the hdf5 file (after the Minari dataset was written): one line,
    exit 74, no partial file; --resume then writes the same data as an uninterrupted run; an
    --overwrite that hits a full disk keeps the previous file byte for byte."""
    from experiments import collect
    from tests.faults import full_disk
    from jaxrl_bayes.collect import writers
    from jaxrl_bayes.data.d4rl import load_hdf5

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    base = ["--env", "hopper", "--levels", "random", "--dataset-size", "300", "--num-envs", "2", "--no-progress"]
    ref = base + ["--namespace", "ref", "--work-dir", str(tmp_path / "wr"), "--hdf5-dir", str(tmp_path / "href")]
    argv = base + ["--namespace", "x", "--work-dir", str(tmp_path / "w"), "--hdf5-dir", str(tmp_path / "h")]
    assert collect.main(ref) == 0
    target = tmp_path / "h" / "hopper_random-v0.hdf5"
    real_open = writers.atomic_open
    monkeypatch.setattr(writers, "atomic_open", full_disk(real_open, on_call=1, after_bytes=4096))
    capsys.readouterr()
    assert collect.main(argv) == 74
    err = capsys.readouterr().err
    assert [l for l in err.splitlines() if l.startswith("error:")] == [
        f"error: {target}: no space left on device; free some space, then rerun the same command with "
        f"--resume (what was written is intact)"]
    assert "Traceback" not in err and os.listdir(tmp_path / "h") == []  # no partial or temporary file
    monkeypatch.setattr(writers, "atomic_open", real_open)
    assert collect.main(argv) == 2  # without --resume the dataset written before the fault is refused
    assert "--overwrite" in capsys.readouterr().err
    assert collect.main(argv + ["--resume"]) == 0
    a, b = load_hdf5(tmp_path / "href" / target.name), load_hdf5(target)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    before = target.read_bytes()
    monkeypatch.setattr(writers, "atomic_open", full_disk(real_open, on_call=1, after_bytes=4096))
    assert collect.main(argv + ["--overwrite"]) == 74
    assert target.read_bytes() == before and os.listdir(tmp_path / "h") == [target.name]
    monkeypatch.setattr(writers, "atomic_open", real_open)

    # the Minari store: HDF5 would crash the process on a full disk, so too little free space
    # is refused before writing; a temporary directory a crashed write left is removed
    import shutil
    import subprocess

    store = tmp_path / "minari" / "x" / "hopper"
    dead = subprocess.Popen(["true"])
    dead.wait()
    (store / f".random-v0.tmp-{dead.pid}-0badc0de" / "data").mkdir(parents=True)
    minari_before = sorted((p.relative_to(store), p.stat().st_size) for p in (store / "random-v0").rglob("*"))
    real_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=100_000))
    capsys.readouterr()
    assert collect.main(argv + ["--overwrite"]) == 74
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: {store / 'random-v0'}: no space left on device; free some space; the dataset "
                           f"needs about ") and line.endswith(" MB there, 0.1 MB are free, then rerun the same "
                                                          "command with --resume (what was written is intact)")
    assert sorted(os.listdir(store)) == ["namespace_metadata.json", "random-v0"]  # the crashed write's temp is gone
    assert sorted((p.relative_to(store), p.stat().st_size) for p in (store / "random-v0").rglob("*")) == minari_before
