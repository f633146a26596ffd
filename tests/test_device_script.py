"""Tests of benchmarks/device (issue 24): the GPU machine's one call, run here as its CPU dry run,
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

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_runs_every_stage_and_writes_json_and_table(tmp_path, capsys):
    """The same script the GPU machine runs, at tiny sizes without the install or the GPU check:
    probe, PSPO throughput with 1 and 2 seeds, a short RRPI paper-preset run on a generated
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
    assert (row["algo"], row["size"], row["R"]) == ("pspo", "tiny", 2)
    assert tp["step_ms"] == pytest.approx(1e3 * row["step_s"])
    assert set(tp["chunk_ms"]) == {"1", "2"}
    assert tp["seeds_ratio"] == {"seeds": 2, "cost_vs_one": pytest.approx(
        row["seeds"]["2"]["chunk_s"] / row["seeds"]["1"]["chunk_s"])}
    assert tp["utilization_bf16"] == pytest.approx(row["flops_per_s"] / probe["matmul"]["bfloat16"]["flops_per_s"])
    assert tp["utilization_fp32"] == pytest.approx(row["utilization"])
    goals = {g["goal"].split(" ")[0]: g for g in rec["summary"]["goals"]}
    assert goals["PSPO"]["met"] == (tp["step_ms"] <= 1.0)
    assert goals["PSPO:"]["met"] == (tp["seeds_ratio"]["cost_vs_one"] <= 3.0)

    # the run: paper preset, hopper evaluation, 2 chunks of 20 steps, the first one compiling
    run = rec["summary"]["run"]
    kept = out / "stages" / "rrpi-run" / "run"
    cfg = json.loads((kept / "config.json").read_text())
    assert (cfg["run"]["algo"], cfg["run"]["preset"], cfg["run"]["eval_env"]) == ("rrpi", "paper", "Hopper-v4")
    assert cfg["dynamics"]["batch_size"] == 256 and cfg["agent"]["policy_lr"] == 3e-5  # not overridden: paper/algo values
    assert [c["includes_compile"] for c in run["chunks"]] == [True, False] and run["steps_per_chunk"] == 20
    assert run["train_steps_per_s"] == pytest.approx(20 / run["chunks"][1]["chunk_s"])
    assert json.loads((kept / "results.json").read_text())["train_steps_per_s"] == run["train_steps_per_s"]
    assert not (kept / "checkpoints").exists()  # only the small files come back

    md = (out / "device.md").read_text()
    assert "CPU DRY RUN" in md and "| throughput-pspo | ok |" in md and "| rrpi-run | ok |" in md
    assert f"| pspo | {tp['step_ms']:.3g} |" in md and "| float32 | 256 |" in md
    assert md == capsys.readouterr().out.rstrip("\n") + "\n"
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp_")]


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
    grandchild = int(pid_file.read_text())
    state = Path(f"/proc/{grandchild}/status")
    assert not state.exists() or "zombie" in state.read_text()  # the whole process group was killed

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

    monkeypatch.setattr(script, "DRY", profile(2, 300))
    monkeypatch.setattr(script, "build_stages", stages)
    out = tmp_path / "out"
    assert script.main(["--dry-run", "--out", str(out), "--stages", "throughput-a", "throughput-b", "throughput-c"]) == 1
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
