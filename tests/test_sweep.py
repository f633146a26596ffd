"""experiments.sweep on a local Ray: 2 algorithms x 2 seeds at tiny sizes on the embedded
`liquidation-random-v0` and on a dataset file that does not exist, the report checked against
the run directories' results.json; a second sweep skips the finished trials and reports a
failing one without stopping.

Algorithms: bc and bc-top10, which read none of the model options every trial is given, so the
sweep passes them only what they read, and which train no dynamics pool. A model-based algorithm
and a local Gymnasium-evaluated file go through the same `experiments.run` as any trial
(tests/test_run_cli.py runs both); which options each algorithm keeps (under a hopper preset too)
and which trial of a dataset trains its pool are checked without Ray below.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the sweep runs on Ray: pip install -e '.[sweep]'")

from experiments import sweep  # noqa: E402

# tiny runs (as tests/test_run_cli.py's TINY): 2 chunks of 10 steps, 2 evaluation episodes
TINY = ["--run.total_steps", "20", "--agent.steps_per_chunk", "10", "--dynamics.max_epochs", "1",
        "--dynamics.hidden", "16", "16", "--agent.critic_hidden", "16", "16", "--agent.policy_hidden", "16", "16",
        "--dynamics.num_members", "3", "--agent.num_active", "3",
        "--agent.rollout.batch", "16", "--agent.real_batch", "16", "--agent.model_batch", "16",
        "--agent.num_candidates", "4", "--agent.sampling.num_next_samples", "2",
        "--agent.buffer_capacity", "500", "--agent.value_chunk", "0", "--agent.rollout.horizon", "1",
        "--dynamics.batch_size", "2048", "--run.eval_episodes", "2", "--run.eval_every_chunks", "1",
        "--run.final_eval_episodes", "2",
        "--agent.rollout", "short"]  # the hopper preset's persistent scheme would refuse rollout_batch
ALGOS = ["bc", "bc-top10"]


def _hopper_file(path: Path) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    n = 400
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=obs)
        f.create_dataset("actions", data=rng.uniform(-1, 1, (n, 3)).astype(np.float32))
        f.create_dataset("rewards", data=rng.uniform(0, 3, n).astype(np.float32))
        f.create_dataset("next_observations", data=obs + 0.01 * rng.normal(size=(n, 11)).astype(np.float32))
        f.create_dataset("terminals", data=np.arange(n) % 100 == 99)
        f.create_dataset("timeouts", data=np.zeros(n, bool))
        f.attrs["env_id"] = "Hopper-v4"
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One sweep: bc and bc-top10 on liquidation (2 trials that finish), plus a dataset path that
    does not exist (2 trials that fail, each reported, stopping nothing)."""
    import os

    root = tmp_path_factory.mktemp("sweep")
    # the local Ray's workers inherit these (and the session's XLA compilation cache, tests/conftest.py)
    env = {"JAXRL_BAYES_CACHE": str(root / "cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    datasets = ["liquidation-random-v0"]
    missing = str(root / "no-such-file.hdf5")
    out = root / "out"
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = sweep.main(["--algos", *ALGOS, "--datasets", *datasets, missing, "--seeds", "2",
                               "--preset", "cpu", "--num-cpus", "1", "--out", str(out), "--", *TINY])
        yield code, out, datasets, missing, printed.getvalue()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_sweep_runs_every_trial_and_the_report_matches_the_run_dirs(swept):
    """Each of the 4 finished trials is in report.csv / report.md with its results.json's numbers."""
    code, out, datasets, missing, printed = swept
    assert code == 1  # the two trials on the missing file failed
    logs = {p.name: p.read_text() for p in (out / "logs").glob("*.log")}
    for a in ALGOS:
        assert "no file or directory" in logs[f"{sweep.safe_name(missing)}__{a}.log"]
        assert not (out / sweep.safe_name(missing) / a / "results.json").exists()
    rows = {(r["dataset"], r["algo"]): r for r in csv.DictReader((out / "report.csv").open())}
    md = (out / "report.md").read_text()
    for d in datasets:
        for a in ALGOS:
            run_dir = out / sweep.safe_name(d) / a
            res = json.loads((run_dir / "results.json").read_text())
            assert (res["algo"], res["dataset"], res["seeds"], res["total_steps"]) == (a, d, 2, 20)
            norm = [s["normalized_score"] for s in res["per_seed"]]
            row = rows[(d, a)]
            assert int(row["seeds"]) == 2
            assert float(row["normalized_mean"]) == pytest.approx(np.mean(norm), abs=1e-9)
            assert float(row["normalized_std"]) == pytest.approx(np.std(norm), abs=1e-9)
            assert row["runs"] == str(run_dir)
            assert f"{np.mean(norm):.1f} ± {np.std(norm):.1f} (2)" in md
            b = res["behaviour"]["normalized_score"]  # the data's own score, in its own column
            assert rows[(d, "behaviour")]["normalized_mean"] == str(b)
            assert f"| {d} | {b:.1f} |" in md
    assert sorted(p.name for p in (out / "curves").iterdir()) == sorted(
        f"{sweep.safe_name(d)}.png" for d in datasets)
    # each got the options it reads (tiny policy, 10-step chunks), and the sweep said what it left out
    for a in ALGOS:
        cfg = json.loads((out / sweep.safe_name(datasets[0]) / a / "config.json").read_text())
        assert cfg["agent"]["policy_hidden"] == [16, 16] and cfg["agent"]["steps_per_chunk"] == 10
        assert f"{a} trials: --dynamics.max_epochs, --dynamics.hidden" in printed


def test_second_sweep_skips_finished_trials_without_starting_ray(swept, capsys, monkeypatch):
    code, out, datasets, *_ = swept
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*/results.json")}
    assert len(before) == len(ALGOS) * len(datasets)
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("nothing to run: Ray must not start"))
    code = sweep.main(["--algos", *ALGOS, "--datasets", *datasets, "--seeds", "2", "--out", str(out), "--", *TINY])
    text = capsys.readouterr().out
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/results.json")} == before  # untouched
    status = {(l.split()[0], l.split()[1]): l.split()[2] for l in text.splitlines() if l.split()[:1] in [[a] for a in ALGOS]}
    assert status == {(a, d): "skipped" for a in ALGOS for d in datasets}
    assert (out / "report.md").is_file()


def test_each_trial_gets_the_extra_options_its_algorithm_reads():
    extra = ["--run.total_steps=20", "--dynamics.hidden", "16", "16", "--agent.num-candidates", "4",
             "--agent.policy_hidden", "8", "8", "--agent.behaviour.batch", "64"]
    # rrpi fits no pi_beta unless it starts from one, so bc_batch has no effect on it by default
    assert sweep.options_for("rrpi", extra) == (extra[:-2], ["--agent.behaviour.batch"])
    assert sweep.options_for("rrpi", extra + ["--agent.behaviour.init_policy"]) == (
        extra + ["--agent.behaviour.init_policy"], [])
    # one spelling rule for both checks: dashes, the boolean's no- form, the flag last or first
    for flag in (["--agent.behaviour.init-policy"], ["--agent.behaviour.init_policy", "--agent.behaviour.no-init-policy"]):
        kept, dropped = sweep.options_for("rrpi", extra + flag)
        assert dropped == ([] if flag[-1] == "--agent.behaviour.init-policy" else ["--agent.behaviour.batch"])
        assert kept[-len(flag):] == flag  # the boolean itself is an option rrpi reads
    assert sweep.options_for("rrpi", ["--agent.rollout=short", "--agent.rollout.batch", "8"]) == (
        ["--agent.rollout=short", "--agent.rollout.batch", "8"], [])
    assert sweep.options_for("bc", extra) == (
        ["--run.total_steps=20", "--agent.policy_hidden", "8", "8", "--agent.behaviour.batch", "64"],
        ["--dynamics.hidden", "--agent.num-candidates"])
    # an algorithm's own knobs hang off its choice: each trial gets those of its algorithm
    own = ["--agent.algo.behaviour_weight", "0.01", "--agent.algo.holdout", "0.2"]
    assert sweep.options_for("pspo", own) == (own[:2], ["--agent.algo.holdout"])
    assert sweep.options_for("bc", own) == (own[2:], ["--agent.algo.behaviour_weight"])
    assert sweep.options_for("rrpi", own) == ([], ["--agent.algo.behaviour_weight", "--agent.algo.holdout"])
    assert sweep.options_for("pspo-noreg", ["--agent.algo.trust_rate", "0.1"]) == ([], ["--agent.algo.trust_rate"])
    t = sweep.plan(Path("out"), ["bc"], ["liquidation-random-v0"])[0]
    assert sweep.trial_argv(t, 1, "cpu", extra)[-6:] == ["--run.total_steps=20", "--agent.policy_hidden", "8", "8",
                                                          "--agent.behaviour.batch", "64"]


def test_trials_of_a_dataset_wait_for_the_one_that_trains_its_pool(tmp_path):
    trials = sweep.plan(tmp_path, ["rrpi", "pmdb", "pspo"], ["a", "b"])
    leaders, followers = sweep._leaders(trials)
    assert [t.algo for t in leaders.values()] == ["rrpi", "rrpi"]
    assert {d: [t.algo for t in ts] for d, ts in followers.items()} == {"a": ["pmdb", "pspo"], "b": ["pmdb", "pspo"]}
    lead = leaders["a"]
    assert not sweep._pool_ready(lead, {"ref": lead})  # running, no pool yet
    Path(lead.run_dir).mkdir(parents=True)
    (Path(lead.run_dir) / "dynamics.json").write_text("{}")
    assert sweep._pool_ready(lead, {"ref": lead})  # its pool is cached
    assert sweep._pool_ready(leaders["b"], {})  # ended (finished or failed)
    # no trial of a dataset trains a pool: none waits
    assert sweep._leaders(sweep.plan(tmp_path, ["bc", "bc-top10"], ["a"])) == ({}, {})


def test_usage_errors_are_one_line(capsys, tmp_path):
    assert sweep.main(["--algos", "rrpi", "nope", "--datasets", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown algorithm(s) nope" in err
    assert sweep.main(["--algos", "rrpi", "--datasets", "x", "--seeds", "0", "--out", str(tmp_path)]) == 2


def test_gpu_memory_fraction_follows_the_share():
    assert sweep.mem_fraction(0.0) is None and sweep.mem_fraction(1.0) is None and sweep.mem_fraction(2) is None
    assert sweep.mem_fraction(0.5) == pytest.approx(0.45)
    assert sweep.mem_fraction(0.25) == pytest.approx(0.225)
    assert sweep.mem_fraction(0.9) == sweep.JAX_DEFAULT_MEM_FRACTION  # capped at JAX's default


def test_trial_argv_is_the_run_command_and_resumes_unfinished_runs(tmp_path):
    t = sweep.plan(tmp_path, ["pmdb"], ["liquidation-random-v0"])[0]
    assert t.run_dir == str(tmp_path / "liquidation-random-v0" / "pmdb")
    argv = sweep.trial_argv(t, 4, "cpu", ["--run.total_steps", "10"])
    assert argv[:8] == ["--algo", "pmdb", "--dataset", "liquidation-random-v0", "--seeds", "4", "--preset", "cpu"]
    assert argv[8:] == ["--out", t.run_dir, "--run.total_steps", "10"]
    # the options the sweep already chose for the trial are passed as they are
    assert sweep.trial_argv(t, 4, "cpu", ["--run.total_steps", "10"], ["--run.total_steps", "20"])[8:] == [
        "--out", t.run_dir, "--run.total_steps", "20"]
    Path(t.run_dir).mkdir(parents=True)
    (Path(t.run_dir) / "config.json").write_text("{}")
    assert sweep.trial_argv(t, 4, "cpu", []) == ["--resume", t.run_dir]


def test_trials_are_checked_against_the_preset_their_run_resolves(tmp_path):
    """The hopper presets run the persistent rollout scheme, which never reads rollout_batch: a
    hopper trial is not passed it (experiments.run would refuse it), a liquidation trial (short
    scheme) is, and an extra option that picks the short scheme itself brings it back."""
    hopper = str(_hopper_file(tmp_path / "tiny-hopper.hdf5"))
    extra = ["--agent.rollout.batch", "16", "--agent.num_candidates", "4"]
    assert sweep.options_for("rrpi", extra, hopper, "cpu") == (["--agent.num_candidates", "4"], ["--agent.rollout.batch"])
    assert sweep.options_for("rrpi", extra, "liquidation-random-v0", "cpu") == (extra, [])
    short = ["--agent.rollout", "short", *extra]
    assert sweep.options_for("rrpi", short, hopper, "cpu") == (short, [])
    assert sweep.options_for("rrpi", ["--agent.rollout=short", *extra], hopper, "cpu")[1] == []
    # a dataset that cannot be resolved: the algorithm's defaults decide, the trial reports the file
    assert sweep.options_for("rrpi", extra, str(tmp_path / "missing.hdf5"), "cpu") == (extra, [])


class _FakeRay:
    """Just enough of Ray for the sweep's driver: every task's arguments are kept, and every task
    ends finished without running."""

    def __init__(self):
        self.calls = []

    def remote(self, **_):
        fake = self

        class Task:
            def options(self, **_):
                return self

            def remote(self, *args):
                fake.calls.append(args)
                return len(fake.calls) - 1

        return lambda fn: Task()

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return {"status": "finished", "error": None, "seconds": 1.0}


@pytest.mark.parametrize("address", [None, "ray://head:10001"])
def test_each_trial_is_checked_once_and_its_task_gets_the_kept_options(address, tmp_path, monkeypatch, capsys):
    """The sweep checks a trial's extra options against its preset once (`options_for`): what it
    prints as left out and what the trial's task is passed come from that one check. A Ray
    client's driver may not see the dataset files: there each trial checks its own (None)."""
    hopper = str(_hopper_file(tmp_path / "tiny-hopper.hdf5"))
    datasets = [hopper, "liquidation-random-v0"]
    extra = ["--agent.rollout.batch", "16", "--agent.num_candidates", "4"]
    checks, check = [], sweep.options_for
    monkeypatch.setattr(sweep, "options_for", lambda *a: checks.append(a) or check(*a))
    fake = _FakeRay()
    monkeypatch.setattr(sweep, "_ray_init", lambda *a: (fake, False))
    algos = ["rrpi", "bc"]
    outcomes = sweep.sweep(algos, datasets, seeds=1, preset="cpu", out=tmp_path / "out", address=address,
                           extra=extra, report=False)
    assert sorted((a, d) for a, _, d, _ in checks) == sorted((a, d) for a in algos for d in datasets)
    assert sorted((t.algo, t.dataset) for t in outcomes) == sorted((a, d) for a in algos for d in datasets)
    assert {o["status"] for o in outcomes.values()} == {"finished"}
    passed = {(t.algo, t.dataset): (list(rest), kept) for t, _, _, rest, kept in fake.calls}
    if address is None:
        assert passed == {("rrpi", hopper): (extra, ["--agent.num_candidates", "4"]),
                          ("rrpi", "liquidation-random-v0"): (extra, extra),
                          ("bc", hopper): (extra, []), ("bc", "liquidation-random-v0"): (extra, [])}
    else:
        assert passed == {k: (extra, None) for k in passed} and len(passed) == 4
    printed = capsys.readouterr().out
    assert f"rrpi trials on {hopper}: --agent.rollout.batch left out (no effect on rrpi there)" in printed
    assert "bc trials: --agent.rollout.batch, --agent.num_candidates left out (no effect on bc)" in printed
