"""Every error a user can cause at the front door: one line `error: ...` on stderr,
exit status 2, no traceback, and nothing written (what existed is byte-identical).

Data cases use small D4RL-schema hdf5 files written here and passed as `--dataset PATH`. The
CLI runs in-process through `main(argv)`; the width-mismatch and unknown-option cases also run
as real subprocesses to show that no traceback reaches the terminal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from experiments import diagnose as diagnose_mod
from experiments import evaluate as evaluate_mod
from experiments import run as run_mod
from jaxrl_bayes import dynamics
from jaxrl_bayes import policy as policy_lib

REPO = Path(__file__).resolve().parents[1]
HOPPER, WALKER = (11, 3), (17, 6)
KEYS = ("observations", "actions", "rewards", "next_observations")


def write_d4rl(path: Path, n: int = 200, widths=HOPPER, *, seed: int = 0, drop=(), edit=None) -> Path:
    """A D4RL-schema hdf5 file of `n` rows; `edit(arrays)` changes the arrays before writing."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, widths[0])).astype(np.float32)
    arrays = {"observations": obs, "actions": rng.uniform(-1, 1, (n, widths[1])).astype(np.float32),
              "rewards": rng.normal(size=n).astype(np.float32),
              "next_observations": (obs + 0.01).astype(np.float32),
              "terminals": np.zeros(n, bool), "timeouts": (np.arange(n) % 50 == 49)}
    if edit is not None:
        edit(arrays)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if k not in drop:
                f.create_dataset(k, data=v)
    return path


def _poison(key, value):
    def edit(a):
        a[key] = a[key].copy()
        a[key].flat[7] = value
    return edit


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is


def _run_dir(root: Path, name: str, *, finished: bool = False, lock_pid: int | None = None) -> Path:
    """A run directory holding the resolved default config (no training needed)."""
    d = root / name
    d.mkdir()
    cfg = run_mod.parse_command_line([])[1]
    (d / "config.json").write_text(json.dumps(cfg.to_json()))
    if finished:
        (d / "results.json").write_text("{}")
    if lock_pid is not None:
        (d / ".lock").write_text(str(lock_pid))
    return d


def _policy_file(root: Path, widths=HOPPER) -> Path:
    import jax

    module = policy_lib.policy_module(widths[1], (8,))
    params = module.init(jax.random.PRNGKey(0), np.zeros((1, widths[0]), np.float32))
    return policy_lib.save_policy(root / "policy_seed0.npz", params, obs_mean=np.zeros(widths[0]),
                                  obs_std=np.ones(widths[0]), action_dim=widths[1], hidden=(8,),
                                  meta={"dataset": "liquidation-random-v0"})


# case -> (setup(tmp) -> argv, phrase in the message); "evaluate:" argv go to experiments.evaluate
CASES = {
    "unknown-algorithm": (lambda t: ["--algo", "rrpj"], "did you mean 'rrpi'"),
    "unknown-dataset": (lambda t: ["--dataset", "hoper-medium-v2"], "Did you mean 'hopper-medium-v2'"),
    "unknown-preset": (lambda t: ["--preset", "gpu"], "unknown preset 'gpu'"),
    "unknown-field": (lambda t: ["--agent.kht", "3"], "did you mean --agent.targets.kth?"),
    "bad-value": (lambda t: ["--run.total_steps", "many"], "--run.total_steps"),
    "registry-refuses-value": (lambda t: ["--agent.targets.selector", "best"], "is not a registered selector"),
    "field-without-effect": (lambda t: ["--algo", "bc", "--agent.targets.selector", "worst"],
                             "--agent.targets.selector has no effect on --algo bc"),
    "behaviour-fit-without-behaviour": (lambda t: ["--algo", "rrpi", "--agent.behaviour.steps", "100"],
                                        "--agent.behaviour.steps has no effect on --algo rrpi"),
    "other-member-field": (lambda t: ["--algo", "rrpi", "--agent.rollout.explore", "0.1"],
                           "--agent.rollout.explore is a field of --agent.rollout persistent, not of 'short'"),
    "pspo-field-on-rrpi": (lambda t: ["--algo", "rrpi", "--agent.algo.behaviour_weight", "0.5"],
                           "--agent.algo.behaviour_weight is a field of --agent.algo pspo, not of 'rrpi'"),
    "bc-field-on-pspo": (lambda t: ["--algo", "pspo", "--agent.algo.holdout", "0.5"],
                         "--agent.algo.holdout is a field of --agent.algo bc, not of 'pspo'"),
    "pspo-alpha-on-fixed-temperature": (lambda t: ["--algo", "pspo", "--agent.temperature", "fixed",
                                                   "--agent.temperature.alpha", "0.5"],
                                        "--agent.temperature.alpha has no effect on --algo pspo"),
    "init-from-behaviour-without-fit": (lambda t: ["--algo", "rrpi", "--agent.behaviour.init_policy"],
                                        "behaviour.init_policy starts pi at pi_beta, which needs steps >= 1"),
    "dynamics-field-without-model": (lambda t: ["--algo", "bc", "--dynamics.max_epochs", "3"],
                                     "--dynamics.max_epochs has no effect on --algo bc"),
    "wrong-widths": (lambda t: ["--dataset", str(write_d4rl(t / "walker.hdf5")), "--eval-env", "Walker2d-v4"],
                     "has observations of width 11 and actions of width 3, but the evaluation environment "
                     "Walker2d-v4 expects 17 and 6"),
    "wrong-widths-registry-name": (
        lambda t: ["--dataset", "walker2d-full-replay-v2"], "walker2d_full_replay-v2.hdf5) has observations of width 11"),
    **{f"{bad}-in-{key}": ((lambda t, k=key, v=value: ["--dataset", str(write_d4rl(t / "d.hdf5", edit=_poison(k, v))),
                                                         "--eval-env", "Hopper-v4"]),
                         f"key '{key}' has 1 non-finite values ({'1 NaN, 0 inf' if bad == 'nan' else '0 NaN, 1 inf'})")
       for key in KEYS for bad, value in (("nan", np.nan), ("inf", np.inf))},
    "missing-key": (lambda t: ["--dataset", str(write_d4rl(t / "d.hdf5", drop=("actions",)))], "lacks the D4RL key(s) ['actions']"),
    "wrong-rank": (lambda t: ["--dataset", str(write_d4rl(
        t / "d.hdf5", edit=lambda a: a.__setitem__("rewards", np.zeros((200, 2), np.float32))))], "key 'rewards' has shape (200, 2)"),
    "truncated-file": (lambda t: ["--dataset", str(_truncate(write_d4rl(t / "d.hdf5")))], "truncated or corrupt"),
    "empty-file": (lambda t: ["--dataset", str(_touch(t / "d.hdf5"))], "truncated or corrupt"),
    "zero-transitions": (lambda t: ["--dataset", str(write_d4rl(t / "d.hdf5", n=0))], "is empty (0 rows)"),
    "too-few-rows": (lambda t: ["--dataset", str(write_d4rl(t / "d.hdf5", n=5))], "has 5 transition(s), fewer than the 10 that training needs"),
    "resume-another-config": (lambda t: ["--resume", str(_run_dir(t, "r")), "--agent.targets.kth", "3"],
                              "agent.targets.kth (saved 1, given 3)"),
    "resume-another-preset": (lambda t: ["--resume", str(_run_dir(t, "r")), "--preset", "paper"],
                              "run.preset (saved 'cpu', given 'paper')"),
    "resume-finished-run": (lambda t: ["--resume", str(_run_dir(t, "r", finished=True))], "finished"),
    "resume-not-a-run": (lambda t: ["--resume", str(t)], "not a run directory"),
    "occupied-directory": (lambda t: ["--out", str(_run_dir(t, "r", lock_pid=os.getppid()))], "in use by process"),
    "unfinished-directory": (lambda t: ["--out", str(_run_dir(t, "r"))], "--resume"),
    "evaluate-other-widths": (lambda t: ["evaluate:", "--policy", str(_policy_file(t))], "maps observations of width 11"),
    "evaluate-corrupt-policy": (lambda t: ["evaluate:", "--policy", str(_garbage(t / "policy_seed0.npz"))],
                                "is not a readable .npz policy file"),
    "evaluate-unknown-option": (lambda t: ["evaluate:", "--polcy", "x"], "did you mean --policy?"),
    "diagnose-not-a-run": (lambda t: ["diagnose:", "--run-dir", str(t)], "is not a run directory"),
    "diagnose-bad-horizon": (lambda t: ["diagnose:", "--run-dir", str(t), "--horizon", "0"], "must be >= 1"),
    "minari-id-absent-offline": (lambda t: ["--dataset", "mujoco/nothing/here-v0"], "is not in the local store"),
    "unreachable-download": (lambda t: ["--dataset", "hopper-medium-v2"], "could not be downloaded from http://127.0.0.1"),
}


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 not really a zip file")
    return path


@pytest.fixture
def world(tmp_path, monkeypatch):
    """An isolated working directory, caches and data directories (nothing reaches the network)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for var, sub in (("JAXRL_BAYES_CACHE", "cache"), ("D4RL_DATASET_DIR", "d4rl"), ("MINARI_DATASETS_PATH", "minari")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("JAXRL_BAYES_D4RL_URL", f"http://127.0.0.1:{_closed_port()}/d4rl")
    # a hopper-width file under a walker2d name, as a user might place it
    write_d4rl(tmp_path / "d4rl" / "walker2d_full_replay-v2.hdf5")

    def no_training(*a, **k):
        raise AssertionError("a bad input reached dynamics-pool training")

    monkeypatch.setattr(dynamics, "train_pool", no_training)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_end_in_one_line_and_exit_2(case, world, capsys):
    setup, phrase = CASES[case]
    argv = setup(world / "work")
    before = _tree(world)
    capsys.readouterr()
    if argv[0] == "evaluate:":
        code = evaluate_mod.main(argv[1:])
    elif argv[0] == "diagnose:":
        code = diagnose_mod.main(argv[1:])
    else:
        code = run_mod.main([*argv, "--run.no_progress"])
    out, err = capsys.readouterr()
    lines = [l for l in err.splitlines() if not l[:2].isdigit()]  # log lines start with a time
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in err
    assert _tree(world) == before


@pytest.mark.parametrize("argv, phrase", [
    (["--dataset", "{tmp}/walker.hdf5", "--eval-env", "Walker2d-v4"], "expects 17 and 6"),
    (["--agent.kht", "3"], "did you mean --agent.targets.kth?"),
    (["--run.total_steps", "0"], "run.total_steps=0 must be >= 1"),  # was a traceback of the budget rule
])
def test_no_traceback_reaches_the_terminal(argv, phrase, tmp_path):
    write_d4rl(tmp_path / "walker.hdf5")
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAXRL_BAYES_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "experiments.run", *[a.format(tmp=tmp_path) for a in argv]],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stderr.splitlines() if not l[:2].isdigit()]
    assert r.returncode == 2 and len(lines) == 1 and phrase in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walker.hdf5"]


# ----------------------------------------------------------------------------- numeric ranges
# (field named in the error, argv): every numeric field out of its range, refused while the
# command line is read, before any run directory, pool cache entry or training.
OUT_OF_RANGE = [
    ("total_steps", ["--run.total_steps", "0"]),
    ("total_steps", ["--run.total_steps", "-5"]),
    ("seeds", ["--run.seeds", "0"]),
    ("eval_episodes", ["--run.eval_episodes", "-1"]),
    ("eval_every_chunks", ["--run.eval_every_chunks", "-1"]),
    ("final_eval_episodes", ["--run.final_eval_episodes", "-1"]),
    ("checkpoint_every_chunks", ["--run.checkpoint_every_chunks", "0"]),
    ("keep_checkpoints", ["--run.keep_checkpoints", "0"]),
    ("seed", ["--run.seed", "-1"]),
    ("dynamics_seed", ["--run.dynamics_seed", str(2**32)]),
    ("bc_score", ["--run.bc_score", "nan"]),
    ("ref_min_score", ["--dataset", "{tmp}/d.hdf5", "--eval-env", "Hopper-v4", "--ref-min-score", "nan",
                       "--ref-max-score", "100"]),
    ("steps_per_chunk", ["--agent.steps_per_chunk", "0"]),
    ("tau", ["--agent.optim.tau", "2"]),
    ("tau", ["--agent.optim.tau", "0"]),
    ("ref_tau", ["--agent.optim.ref_tau", "2"]),
    ("policy_lr", ["--agent.optim.policy_lr", "-1"]),
    ("critic_lr", ["--agent.optim.critic_lr", "nan"]),
    ("critic_lr", ["--agent.optim.critic_lr", "inf"]),
    ("real_weight", ["--agent.targets.real_weight", "1.5"]),
    ("data_action_std", ["--agent.data_action_std", "0"]),
    ("target_kl", ["--agent.temperature.target_kl", "0"]),
    ("temperature", ["--agent.temperature.alpha", "nan"]),
    ("value_max", ["--agent.targets.value_max", "-1"]),
    ("obs_bound_std", ["--agent.obs_bound_std", "-1"]),
    ("value_chunk", ["--agent.value_chunk", "-1"]),
    ("rollout.samples", ["--agent.rollout.samples", "0"]),
    ("num_active", ["--agent.num_active", "0"]),
    ("critic_hidden", ["--agent.critic_hidden", "0"]),
    ("policy_hidden", ["--agent.policy_hidden", "32", "0"]),
    ("lam", ["--algo", "pspo", "--agent.belief.lam", "0"]),
    ("trust_epsilon", ["--algo", "pspo", "--agent.algo.trust_epsilon", "0"]),
    ("trust_eta", ["--algo", "pspo", "--agent.algo.trust_eta", "nan"]),
    ("trust_rate", ["--algo", "pspo", "--agent.algo.trust_rate", "-1"]),
    ("behaviour_weight", ["--algo", "pspo", "--agent.algo.behaviour_weight", "-0.1"]),
    ("behaviour.steps", ["--algo", "pspo", "--agent.behaviour.steps", "-1"]),
    ("behaviour.lr", ["--algo", "bc", "--agent.behaviour.lr", "0"]),
    ("max_epochs", ["--dynamics.max_epochs", "0"]),
    ("learning_rate", ["--dynamics.learning_rate", "0"]),
    ("weight_decay", ["--dynamics.weight_decay", "-1"]),
    ("logstd_bound_coef", ["--dynamics.logstd_bound_coef", "nan"]),
    ("init_max_logstd", ["--dynamics.init_max_logstd", "inf"]),
]


@pytest.mark.parametrize("field, argv", OUT_OF_RANGE, ids=[" ".join(a[-2:]) for _, a in OUT_OF_RANGE])
def test_out_of_range_numbers_end_in_one_line_before_any_work(field, argv, world, capsys):
    """The real command (not --show-config): one line naming the field, exit 2, and no run
    directory, pool cache entry or training (`world` makes pool training fail the test)."""
    work = world / "work"
    write_d4rl(world / "d.hdf5")
    out = work / "r"
    before = _tree(world)
    capsys.readouterr()
    code = run_mod.main([*(a.format(tmp=world) for a in argv), "--out", str(out), "--run.no_progress"])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if not l[:2].isdigit()]  # log lines start with a time
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(rf"(?<![a-z_]){field}\b", lines[0]), lines[0]
    assert "Traceback" not in err
    assert not out.exists() and not any((world / "cache").iterdir())
    assert _tree(world) == before


# ----------------------------------------------------------------------------- filesystem faults
# case -> (setup(tmp, monkeypatch) -> (entry point, argv), exit status, the whole error line).
# A read-only place that refuses even root: /sys (sysfs), EPERM as root, EACCES otherwise.
RO = "/sys/jaxrl_bayes_test"
_RO_WHY = "operation not permitted" if os.geteuid() == 0 else "permission denied"
_RO_LINE = f"error: {RO}: {_RO_WHY}; make it writable for you or choose another location, then run the same command again"


def _inside_a_file(t: Path) -> str:
    (t / "results").touch()
    return "results/run1"


def _unreadable_policy(t, mp):
    import errno

    path = t / "policy_seed0.npz"

    def denied(p, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(p))

    mp.setattr(policy_lib, "load_policy", denied)
    return "evaluate", ["--policy", str(path)]


FS_CASES = {
    # the example: refused before anything is made, as a bad --out (exit 2)
    "run-out-inside-a-file": (lambda t, mp: ("run", ["--out", _inside_a_file(t)]), 2,
                              "error: --out results/run1 is inside results, which is a file, not a directory; "
                              "choose another --out"),
    "run-out-read-only": (lambda t, mp: ("run", ["--out", RO + "/run1"]), 74, _RO_LINE),  # names the folder it could not make
    "run-cache-read-only": (
        lambda t, mp: (mp.setenv("JAXRL_BAYES_CACHE", RO), ("run", ["--out", str(t / "r")]))[1], 74,
        f"error: {RO}: {_RO_WHY}; make it writable for you or choose another location; the dynamics-pool cache is "
        f"{RO} (set JAXRL_BAYES_CACHE to use another folder), then run the same command again"),
    "sweep-out-inside-a-file": (lambda t, mp: ("sweep", ["--algos", "rrpi", "--datasets", "x", "--out",
                                                         _inside_a_file(t)]), 2,
                                "error: --out results/run1 is inside results, which is a file, not a directory; "
                                "choose another --out"),
    "sweep-out-read-only": (lambda t, mp: ("sweep", ["--algos", "rrpi", "--datasets", "x", "--out", RO]), 74, _RO_LINE),
    "collect-work-dir-read-only": (lambda t, mp: ("collect", ["--levels", "random", "--work-dir", RO,
                                                              "--no-progress"]), 74,
                                   _RO_LINE.replace("then run the same command again", "then rerun the same command "
                                                    "with --resume (what was written is intact)")),
    "evaluate-unreadable-policy": (_unreadable_policy, 74, None),
    "benchmark-out-read-only": (lambda t, mp: ("benchmark", ["--quick", "--out", RO]), 74, _RO_LINE),
}


def _entry_point(name: str, argv: list[str]) -> int:
    from benchmarks import throughput
    from experiments import collect as collect_mod
    from experiments import sweep as sweep_mod

    main = {"run": run_mod.main, "sweep": sweep_mod.main, "collect": collect_mod.main,
            "evaluate": evaluate_mod.main, "benchmark": throughput.main}[name]
    return main([*argv, "--run.no_progress"] if name == "run" else argv)


@pytest.mark.parametrize("case", list(FS_CASES))
def test_filesystem_faults_end_in_one_line(case, world, capsys, monkeypatch):
    """A path that cannot be written at each entry point: one line naming it, what is wrong and
    what to do; exit 2 when refused up front as a bad option, 74 when the file system refused;
    nothing left behind."""
    setup, code, want = FS_CASES[case]
    entry, argv = setup(world / "work", monkeypatch)
    before = _tree(world)
    capsys.readouterr()
    got = _entry_point(entry, argv)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert got == code and len(lines) == 1, err
    if want is not None:
        assert lines[0] == want
    else:
        assert lines[0].startswith(f"error: {world / 'work' / 'policy_seed0.npz'}: permission denied; ")
    assert "Traceback" not in err
    assert _tree(world) == before


@pytest.mark.parametrize("out, code", [("results/run1", 2), (RO + "/run1", 74)])
def test_an_out_inside_a_file_in_a_real_process(out, code, tmp_path):
    """`touch results; python -m experiments.run --out results/run1`, and a
    read-only --out: one line on stderr, no traceback, nothing made."""
    (tmp_path / "results").touch()
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAXRL_BAYES_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "experiments.run", "--out", out], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stderr.splitlines() if not l[:2].isdigit()]
    assert r.returncode == code and len(lines) == 1 and lines[0].startswith(f"error: {'--out ' + out if code == 2 else RO}"), r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
