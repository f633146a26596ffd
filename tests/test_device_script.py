"""Tests of benchmarks/device: the GPU machine's one call, run here as its CPU dry run,
its time bounds and failure handling, the offline wheel install, and the wheel gathering's pieces.
No test here asks for a speed: the dry run's figures mean nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from benchmarks.device import install, script, wheels
from jaxrl_bayes.algos.timescales import budget_rates

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_runs_every_stage_and_writes_json_and_table(tmp_path, capsys):
    """The same script the GPU machine runs, at tiny sizes without the install or the GPU check:
    probe, PSPO throughput (one seed, R = 1), a short RRPI paper-preset run on a generated
    hopper-shaped file; device.json and device.md agree with the stages' own files."""
    out = tmp_path / "out"
    assert script.main(["--dry-run", "--out", str(out)]) == 0
    rec = json.loads((out / "device.json").read_text())
    assert rec["dry_run"] is True and rec["install"]["status"] == "skipped"
    assert list(rec["stages"]) == ["probe", "throughput-pspo", "rrpi-run"]
    assert {n: s["status"] for n, s in rec["stages"].items()} == dict.fromkeys(rec["stages"], "ok")

    probe = rec["stages"]["probe"]["results"]
    assert probe["platform"] == jax.devices()[0].platform and probe["versions"]["jax"] == jax.__version__
    assert set(probe["matmul"]) == {"float32", "float32_highest", "bfloat16"}
    assert probe["matmul"]["bfloat16"]["dtype"] == "bfloat16" and probe["matmul"]["bfloat16"]["n"] == 256

    # the throughput figures are those of benchmarks.throughput's own JSON, plus the bf16 utilization
    tp = rec["summary"]["throughput"]["pspo"]
    saved = json.loads((out / "stages" / "throughput-pspo" / "throughput.json").read_text())
    (row,) = saved["train_step"]
    assert (row["algo"], row["size"], row["R"]) == ("pspo", "tiny", 1)
    assert tp["step_ms"] == pytest.approx(1e3 * row["step_s"])
    assert tp["utilization_bf16"] == pytest.approx(row["flops_per_s"] / probe["matmul"]["bfloat16"]["flops_per_s"])
    assert tp["utilization_fp32"] == pytest.approx(row["utilization"])
    (goal,) = rec["summary"]["goals"]  # one seed only: no seeds goal
    assert goal["goal"].startswith("PSPO <= 1 ms") and goal["met"] == (tp["step_ms"] <= 1.0)

    # the run: paper preset, hopper evaluation, 2 chunks of 20 steps, the first one compiling
    run = rec["summary"]["run"]
    kept = out / "stages" / "rrpi-run" / "run"
    cfg = json.loads((kept / "config.json").read_text())
    assert (cfg["run"]["algo"], cfg["run"]["preset"], cfg["run"]["eval_env"]) == ("rrpi", "paper", "Hopper-v4")
    # not overridden: the paper preset's batch, the budget rule's rate for the run's 40 steps, PMDB's scheme
    assert cfg["dynamics"]["batch_size"] == 256 and cfg["agent"]["rollout"]["kind"] == "persistent"
    assert cfg["agent"]["optim"]["policy_lr"] == budget_rates(cfg["run"]["total_steps"])["policy_lr"]
    assert [c["includes_compile"] for c in run["chunks"]] == [True, False] and run["steps_per_chunk"] == 20
    assert run["train_steps_per_s"] == pytest.approx(20 / run["chunks"][1]["chunk_s"])
    assert json.loads((kept / "results.json").read_text())["train_steps_per_s"] == run["train_steps_per_s"]
    assert not (kept / "checkpoints").exists()  # only the small files come back

    md = (out / "device.md").read_text()
    assert "CPU DRY RUN" in md and "| throughput-pspo | ok |" in md and "| rrpi-run | ok |" in md
    assert f"| pspo | {tp['step_ms']:.3g} |" in md and "| float32 | 256 |" in md
    assert md == capsys.readouterr().out.rstrip("\n") + "\n"
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp_")]


def test_the_gpu_commands_parse_to_the_paper_sizes(tmp_path, capsys):
    """The GPU profile's commands (too big to run here) are accepted by benchmarks.throughput and
    experiments.run, and resolve to the paper sizes, 1 and 8 seeds, and the paper preset."""
    from benchmarks import throughput
    from benchmarks.device import worker
    from experiments import run as run_mod

    stages = script.build_stages(script.GPU, tmp_path / "out", tmp_path / "work", gpu_only=True)
    assert list(stages) == ["probe", "throughput-pspo", "throughput-rrpi", "throughput-pmdb", "rrpi-run"]
    for algo in script.ALGOS:
        (cmd,) = stages[f"throughput-{algo}"].commands
        assert cmd[1:3] == ["-m", "benchmarks.throughput"]
        o = throughput.parse_options(cmd[3:])
        assert (o.algos, o.sizes, o.seeds, o.steps, o.devices) == ((algo,), ("paper",), (1, 8), 20, ())
        assert not o.scaling and o.matmul_n == 8192
    make_file, run_cmd = stages["rrpi-run"].commands
    assert make_file[1:4] == ["-m", "benchmarks.device.worker", "hopper-file"] and make_file[5] == "20000"
    data = worker.hopper_file(make_file[4], 1000)  # the same file, smaller
    capsys.readouterr()
    assert run_mod.main([*run_cmd[3:], "--show-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["run"]["algo"], cfg["run"]["preset"], cfg["run"]["dataset"]) == ("rrpi", "paper", data)
    assert (cfg["run"]["total_steps"], cfg["agent"]["steps_per_chunk"], cfg["dynamics"]["max_epochs"]) == (3000, 1000, 3)
    assert (cfg["agent"]["num_active"], cfg["dynamics"]["num_members"]) == (10, 100)  # the hopper paper preset
    assert cfg["_sources"]["dynamics.num_members"].startswith("preset locomotion:paper")  # the robots share it


def _throughput_json(algo, step_s, flops, chunk_1, chunk_8):
    """A benchmarks.throughput JSON of one paper-size row with 1 and 8 seeds (the keys the script reads)."""
    return {"train_step": [{
        "algo": algo, "size": "paper", "R": 20, "step_s": step_s, "steps_per_s": 1 / step_s,
        "step_estimate": "marginal", "flops_per_step": flops, "flops_per_s": flops / step_s,
        "matmul_flops_per_s": 4e13, "utilization": flops / step_s / 4e13, "noisy": False,
        "seeds": {"1": {"chunk_s": chunk_1, "first_call_s": 9.0}, "8": {"chunk_s": chunk_8, "first_call_s": 12.0}}}],
        "dynamics": {"paper": {"member_samples_per_s": 1e7}}, "environment": {"device_kind": "NVIDIA H200"}}


def test_summary_checks_both_goals_against_the_figures(tmp_path):
    """PSPO at 0.8 ms meets the 1 ms goal, PMDB's 8 seeds at 3.5x one seed miss the 3x goal;
    utilization against the probe's bf16 matmul; the markdown table says so."""
    stages = {"probe": {"status": "ok", "seconds": 5.0, "results": {
        "platform": "gpu", "device_kind": "NVIDIA H200", "num_devices": 1, "versions": {"jax": "0.11.0"},
        "matmul": {"bfloat16": {"n": 8192, "flops_per_s": 8e14}, "float32": {"n": 8192, "flops_per_s": 4e14}}}}}
    for algo, step_s, c1, c8 in (("pspo", 8e-4, 0.02, 0.04), ("pmdb", 4e-3, 0.1, 0.35)):
        d = tmp_path / algo
        d.mkdir()
        (d / "throughput.json").write_text(json.dumps(_throughput_json(algo, step_s, 1e9, c1, c8)))
        stages[f"throughput-{algo}"] = {"status": "ok", "seconds": 60.0, "results": script.collect_throughput(d)}
    stages["rrpi-run"] = {"status": "timeout", "seconds": 150.0, "results": None}
    record = {"stages": stages, "dry_run": False, "argv": [], "started": "now",
              "install": {"status": "ok", "seconds": 3.0, "installed": ["tyro==1.0.17"]}}
    md = script.write_outputs(record, tmp_path)
    summary = json.loads((tmp_path / "device.json").read_text())["summary"]
    assert [(g["goal"].split(" ")[0], g["value"], g["met"]) for g in summary["goals"]] == [
        ("PSPO", "0.8 ms", True), ("PSPO:", "2.00x", True), ("PMDB:", "3.50x", False)]
    assert summary["throughput"]["pmdb"]["utilization_bf16"] == pytest.approx(1e9 / 4e-3 / 8e14)
    assert summary["run"] is None
    assert "| pspo | 0.8 | 1.25e+03 | 1 | 1.25 TFLOP/s | 3 % | 0 % | 20 | 40 | 2.00x |" in md
    assert "| PMDB: 8 vmapped seeds <= 3x the cost of one | paper | 3.50x | no |" in md
    assert "| rrpi-run | timeout | 150.0 |" in md and "NVIDIA H200 (gpu) x1" in md and "DRY RUN" not in md


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_stage_that_fails_or_overruns_is_recorded_and_its_processes_killed(tmp_path):
    env = dict(os.environ)
    pid_file = tmp_path / "grandchild.pid"
    sleeper = _py("import subprocess, sys, time; "
                  "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                  f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    t0 = time.perf_counter()
    rec = script.run_stage(script.Stage("slow", "run", [sleeper, _py("print('never')")], lambda d: {}),
                           tmp_path / "slow", timeout=5, env=env)
    assert rec["status"] == "timeout" and rec["returncode"] is None and time.perf_counter() - t0 < 30
    assert "stopped after the stage's 5 s" in "\n".join(rec["log_tail"]) and "never" not in (tmp_path / "slow" / "log.txt").read_text()
    state = Path(f"/proc/{int(pid_file.read_text())}/status")

    def gone():
        try:
            return "zombie" in state.read_text()
        except FileNotFoundError:
            return True

    deadline = time.perf_counter() + 10  # SIGKILL is delivered asynchronously
    while not gone() and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert gone()  # the whole process group was killed, not only the stage's own process

    rec = script.run_stage(script.Stage("bad", "run", [_py("import sys; sys.exit('broken input')"), _py("print('never')")],
                                        lambda d: {}), tmp_path / "bad", timeout=60, env=env)
    assert rec["status"] == "failed" and rec["returncode"] == 1 and "broken input" in rec["log_tail"][-1]

    def unreadable(d):
        raise FileNotFoundError("no result.json")

    rec = script.run_stage(script.Stage("empty", "run", [_py("pass")], unreadable), tmp_path / "empty", 60, env)
    assert rec["status"] == "failed" and "no result.json" in rec["error"]


def test_failed_and_overrunning_stages_do_not_stop_the_others(tmp_path, monkeypatch, capsys):
    """main with stand-in stages: the first fails, the second overruns its bound, the third runs;
    a fourth finds the budget spent. device.json records each; the exit status is 1."""
    probe = tmp_path / "probe.json"

    def stages(profile, out, work, gpu_only):
        def ok(name):
            return script.Stage(name, "run", [_py(f"open({str(tmp_path / name)!r}, 'w').write('ran')")],
                                lambda d: {"ran": True})

        return {"probe": script.Stage("probe", "probe", [_py(f"open({str(probe)!r}, 'w').write('{{\"platform\": \"cpu\"}}')")],
                                      lambda d: json.loads(probe.read_text())),
                "throughput-a": script.Stage("throughput-a", "run", [_py("raise SystemExit(3)")], lambda d: {}),
                "throughput-b": script.Stage("throughput-b", "slow", [_py("import time; time.sleep(120)")], lambda d: {}),
                "throughput-c": ok("throughput-c"), "rrpi-run": ok("rrpi-run")}

    def profile(slow_s, budget_s):
        return script.Profile("tiny", ("a", "b", "c"), (1,), 1, 1, 8, 10, (),
                              {"probe": 60, "run": 60, "slow": slow_s}, budget_s)

    monkeypatch.setattr(script, "DRY", profile(600, 300))
    monkeypatch.setattr(script, "build_stages", stages)
    out = tmp_path / "out"
    assert script.main(["--dry-run", "--out", str(out), "--stages", "throughput-a", "throughput-b", "throughput-c",
                        "--stage-timeout-s", "2"]) == 1
    rec = json.loads((out / "device.json").read_text())
    assert {n: s["status"] for n, s in rec["stages"].items()} == {
        "probe": "ok", "throughput-a": "failed", "throughput-b": "timeout", "throughput-c": "ok"}
    assert rec["stages"]["throughput-a"]["returncode"] == 3 and (tmp_path / "throughput-c").read_text() == "ran"
    assert rec["stages"]["throughput-b"]["timeout_s"] == 2
    assert not (tmp_path / "rrpi-run").exists()  # not among --stages

    # a stage bounded by what is left of the budget; the later ones are skipped and say why
    monkeypatch.setattr(script, "DRY", profile(600, 300))
    out2 = tmp_path / "out2"
    t0 = time.perf_counter()
    assert script.main(["--dry-run", "--out", str(out2), "--budget-s", "12"]) == 1
    assert time.perf_counter() - t0 < 60
    rec = json.loads((out2 / "device.json").read_text())
    assert rec["stages"]["throughput-b"]["status"] == "timeout" and rec["stages"]["throughput-b"]["timeout_s"] < 12
    for name in ("throughput-c", "rrpi-run"):
        assert rec["stages"][name] == {"status": "skipped", "note": "the --budget-s 12 s was spent"}
    md = (out2 / "device.md").read_text()
    assert "| throughput-a | failed |" in md and "| rrpi-run | skipped | 0.0 | the --budget-s 12 s was spent |" in md


@pytest.mark.skipif(jax.devices()[0].platform == "gpu", reason="this machine has a GPU")
def test_without_a_gpu_the_script_refuses_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert script.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: JAX sees no GPU (platform cpu)") and "--dry-run" in err[-1]
    assert [l for l in err if l.startswith("error:")] == [err[-1]]
    rec = json.loads((out / "device.json").read_text())
    assert rec["stages"]["probe"]["status"] == "ok"
    assert rec["stages"]["probe"]["results"]["matmul"] == {}  # the GPU-sized matmuls are skipped on a CPU
    assert rec["stages"]["throughput-pmdb"] == {"status": "skipped", "note": "no GPU"}


@pytest.mark.parametrize("argv, words", [
    (["--dry-run"], "no output folder: give --out DIR"),
    (["--dry-run", "--out", "x", "--stages", "throughput-dqn"], "unknown stage 'throughput-dqn'"),
    (["--dry-run", "--out", "x", "--budget-s", "0"], "--budget-s must be > 0"),
    (["--dry-run", "--out", "x", "--stage-timeout-s", "-1"], "--stage-timeout-s must be > 0, got -1"),
    (["--dry-run", "--out", "x", "--budget", "1"], "unknown option --budget"),
])
def test_bad_options_give_one_line_and_exit_2(argv, words, monkeypatch, capsys):
    monkeypatch.delenv("OUT", raising=False)
    assert script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]


def test_install_is_offline_per_requirement_and_skips_what_is_installed(tmp_path):
    (tmp_path / "requirements.txt").write_text("# comment\nnumpy\njaxrl-bayes-no-such-package==1.0\n")
    rec = install.install(tmp_path)
    assert rec["status"] == "failed" and rec["already"] == ["numpy"]
    assert list(rec["failed"]) == ["jaxrl-bayes-no-such-package==1.0"] and rec["installed"] == []
    assert "jaxrl-bayes-no-such-package" in rec["note"]
    assert install.install(tmp_path / "missing")["status"] == "skipped"


def test_install_reads_requirements_tyro_first(tmp_path):
    (tmp_path / "requirements.txt").write_text("gymnasium[mujoco]==1.4.0\n\nmujoco==4.0.0\ntyro==1.0.17\nfilelock>=3\n")
    reqs = install.read_requirements(tmp_path)
    assert reqs == ["tyro==1.0.17", "gymnasium[mujoco]==1.4.0", "mujoco==4.0.0", "filelock>=3"]
    assert [install.requirement_name(r) for r in reqs] == ["tyro", "gymnasium", "mujoco", "filelock"]


def test_wheel_names_and_pins():
    assert wheels.wheel_project("typing_extensions-4.16.0-py3-none-any.whl") == "typing-extensions"
    assert wheels.wheel_project("mujoco_core-4.0.0-cp312-cp312-manylinux_2_28_x86_64.whl") == "mujoco-core"
    assert wheels.normalize("PyYAML") == "pyyaml" and wheels.normalize("Farama.Notifications") == "farama-notifications"
    import importlib.metadata

    assert wheels.pinned("numpy") == f"numpy=={importlib.metadata.version('numpy')}"
    assert wheels.pinned("tyro") == f"tyro=={importlib.metadata.version('tyro')}"
    assert wheels.pinned("gymnasium[mujoco]") == f"gymnasium[mujoco]=={importlib.metadata.version('gymnasium')}"
    assert wheels.pinned("numpy>=2") == "numpy>=2" and wheels.pinned("no-such-dist-here") == "no-such-dist-here"
    reqs = wheels.project_requirements()
    assert "tyro" in reqs and "jax" in reqs


def test_the_wheels_folder_and_xla_cache_are_ignored_by_git():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["benchmarks/device/wheels/x.whl", "benchmarks/device/.xla_cache/a", "benchmarks/device/.wheels-abc/y"]
    proc = subprocess.run(["git", "check-ignore", *paths], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.split() == paths
