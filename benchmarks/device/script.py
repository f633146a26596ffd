"""The GPU machine's one call: paper-size figures, each stage bounded in time.

    python3 -m benchmarks.device                  # on the GPU machine: output in $OUT
    python -m benchmarks.device --dry-run --out D  # CPU dry run at tiny sizes (the test suite runs it)
    python3 -m benchmarks.device --stages throughput-pmdb --stage-timeout-s 300   # rerun one, longer

In order, within `--budget-s` (default 450 s on the GPU; a stage gets at most what is left):

0. **install**: the carried wheels (`benchmarks/device/wheels/`, made by `python -m
   benchmarks.device.wheels`) installed offline, each requirement on its own
   (`benchmarks.device.install`); not in a dry run.
1. **probe**: JAX's devices and versions, and dense matmul references measured in this run:
   float32 at the default precision (what the train step runs at), float32 "highest" and
   bfloat16. Without a GPU the script stops here with one line (exit 2), unless `--dry-run`.
2. **throughput-pspo, throughput-rrpi, throughput-pmdb**: `python -m benchmarks.throughput` at the
   paper sizes, one algorithm each: step time (marginal over a chunk of R steps), FLOPs per step
   (counted from the jaxpr), utilization against a float32 matmul timed interleaved with the
   steps, 1 and 8 seeds vmapped. Utilization against the probe's bfloat16 matmul is added here.
3. **rrpi-run**: `python -m experiments.run --algo rrpi --preset paper` for 3 chunks of 1,000
   steps on a generated hopper-shaped file (20,000 transitions, `benchmarks.synthetic`;
   evaluated in Hopper-v4, 2 episodes), the pool trained for 3 epochs only: train steps/s.

Each stage is a subprocess with its own time bound; one that fails or runs out of time is
recorded as such and the next one runs. Output in the output folder: `device.json` (every
stage's status, seconds, command and the figures), `device.md` (the tables), `stages/<name>/`
(each stage's log and own files). Exit status 0 when every stage ran to the end, 1 when some
failed, timed out or were skipped, 2 on a bad option or no GPU.

The dry run (`--dry-run`) is the same script at tiny sizes (throughput of PSPO only, one seed,
R = 1: one compiled chunk instead of three, 20 s of CPU instead of 50; a 40-step run on 2,000
transitions), without the wheel install or the GPU check, with XLA's optimizations off
(`JAX_DISABLE_MOST_OPTIMIZATIONS`: compiling is most of its time); its figures mean nothing.
On the GPU the compiled programs are cached in `benchmarks/device/.xla_cache/` (ignored by git),
so a rerun on the same, still warm machine compiles less.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from benchmarks.device import install as install_mod
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open

REPO = Path(__file__).resolve().parents[2]
PROG = "python -m benchmarks.device"
XLA_CACHE = REPO / "benchmarks" / "device" / ".xla_cache"
ALGOS = ("pspo", "rrpi", "pmdb")
RUN_STAGE = "rrpi-run"
EVAL_ENV = "Hopper-v4"
PSPO_GOAL_MS = 1.0  # the papers' figure: <= 1 ms per PSPO iteration at paper sizes
SEEDS_GOAL_RATIO = 3.0  # 8 vmapped seeds for <= 3x the cost of one


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes and time bounds of one kind of run (the GPU's, or the CPU dry run's)."""

    size: str  # benchmarks.throughput size
    algos: tuple[str, ...]  # one throughput stage each
    seeds: tuple[int, ...]
    steps: int  # R
    reps: int
    matmul_n: int
    run_data: int  # transitions of the generated hopper-shaped file
    run_args: tuple[str, ...]  # experiments.run options on top of --algo rrpi --preset paper
    timeout_s: dict  # stage kind -> seconds
    budget_s: float


GPU = Profile(
    size="paper", algos=ALGOS, seeds=(1, 8), steps=20, reps=3, matmul_n=8192, run_data=20_000,
    run_args=("--run.total_steps", "3000", "--dynamics.max_epochs", "3", "--run.eval_episodes", "2",
              "--run.checkpoint_every_chunks", "1000"),
    timeout_s={"probe": 60, "throughput": 110, "run": 150}, budget_s=450)

DRY = Profile(
    size="tiny", algos=("pspo",), seeds=(1,), steps=1, reps=1, matmul_n=256, run_data=2000,
    run_args=("--run.total_steps", "40", "--agent.steps_per_chunk", "20", "--run.eval_episodes", "1",
              "--run.checkpoint_every_chunks", "1000", "--dynamics.num_members", "3", "--dynamics.hidden", "16",
              "--dynamics.max_epochs", "1", "--agent.num_active", "2",
              "--agent.num_candidates", "2", "--agent.real_batch", "8", "--agent.model_batch", "8",
              "--agent.critic_hidden", "16", "--agent.policy_hidden", "16",
              "--agent.rollout.horizon", "2", "--agent.buffer_capacity", "256"),
    timeout_s={"probe": 180, "throughput": 900, "run": 900}, budget_s=2400)


@dataclasses.dataclass(frozen=True)
class Args:
    """Paper-size throughput of PSPO, RRPI and PMDB and a short RRPI paper-preset run on the GPU
    machine, each stage bounded in time; results as device.json and device.md."""

    out: str = ""  # output folder (default: $OUT, the folder the device tool brings back)
    dry_run: bool = False  # CPU dry run: tiny sizes, no wheel install, no GPU check (the test suite runs it)
    stages: tuple[str, ...] = ()  # only these stages (default: all); the probe always runs
    budget_s: Optional[float] = None  # time bound of the whole script (default: 450 s; dry run 2400 s)
    stage_timeout_s: Optional[float] = None  # bound of each stage but the probe (default: throughput 110 s, run 150 s)


class NoGPUError(UserError):
    """JAX sees no GPU and this is not a dry run."""


# ----------------------------------------------------------------------------- stages


@dataclasses.dataclass
class Stage:
    name: str
    kind: str  # key of Profile.timeout_s
    commands: list  # argv lists, run in order within the stage's time
    collect: Callable[[Path], dict]  # the stage's figures, read from its folder (also after a failure)


def stage_names(profile: Profile) -> list[str]:
    return [f"throughput-{a}" for a in profile.algos] + [RUN_STAGE]


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def build_stages(profile: Profile, out: Path, work: Path, gpu_only: bool) -> dict[str, Stage]:
    """Every stage of `profile` (the probe first), writing under `out`/stages/<name>/; with
    `gpu_only`, a probe that finds no GPU skips its matmuls."""
    stages = {"probe": Stage("probe", "probe", [_py("-m", "benchmarks.device.worker", "probe",
                                                    str(out / "stages" / "probe" / "probe.json"),
                                                    str(profile.matmul_n), str(profile.reps + 2),
                                                    "1" if gpu_only else "0")],
                             lambda d: _read_json(d / "probe.json"))}
    for algo in profile.algos:
        d = out / "stages" / f"throughput-{algo}"
        cmd = _py("-m", "benchmarks.throughput", "--algos", algo, "--sizes", profile.size,
                  "--steps", str(profile.steps), "--reps", str(profile.reps),
                  "--seeds", *map(str, profile.seeds), "--no-scaling", "--no-parts", "--no-rollouts",
                  "--matmul-n", str(profile.matmul_n), "--out", str(d), "--devices")
        stages[f"throughput-{algo}"] = Stage(f"throughput-{algo}", "throughput", [cmd], collect_throughput)
    data, run_dir = work / "hopper_synthetic.hdf5", work / "rrpi-run"
    stages[RUN_STAGE] = Stage(RUN_STAGE, "run", [
        _py("-m", "benchmarks.device.worker", "hopper-file", str(data), str(profile.run_data)),
        _py("-m", "experiments.run", "--algo", "rrpi", "--preset", "paper", "--dataset", str(data),
            "--eval-env", EVAL_ENV, "--out", str(run_dir), "--run.no_progress", *profile.run_args),
    ], functools.partial(collect_run, run_dir))
    return stages


def child_env(dry_run: bool, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MPLBACKEND"] = "Agg"
    env["JAXRL_BAYES_CACHE"] = str(work / "cache")  # the run's dynamics pool: not in ~/.cache
    if dry_run:
        env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"  # a dry run's figures mean nothing; compiling is its time
    else:
        env.setdefault("JAX_COMPILATION_CACHE_DIR", str(XLA_CACHE))
    return env


def run_stage(stage: Stage, stage_dir: Path, timeout: float, env: dict[str, str]) -> dict:
    """Runs the stage's commands in order, all within `timeout` seconds; a command still running
    then is killed with its process group. Never raises for the stage's own failure.

    Returns:
      {"status": "ok" | "failed" | "timeout", "seconds", "timeout_s", "commands", "returncode",
      "log", "log_tail" (last lines, unless ok), "results" (the stage's figures), "error"}.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    log = stage_dir / "log.txt"
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"status": "ok", "timeout_s": round(timeout, 1), "returncode": 0,
                           "commands": [shlex.join(c) for c in stage.commands], "log": str(log)}
    with open(log, "w", encoding="utf-8") as f:
        for cmd in stage.commands:
            left = timeout - (time.perf_counter() - t0)
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            if left <= 0:
                rec.update(status="timeout", returncode=None)
                break
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                f.write(f"\n[benchmarks.device] stopped after the stage's {timeout:.0f} s\n")
                rec.update(status="timeout", returncode=None)
                break
            if rc != 0:
                rec.update(status="failed", returncode=rc)
                break
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    try:
        rec["results"] = stage.collect(stage_dir)
    except Exception as e:  # noqa: BLE001 - a stage that wrote nothing readable
        rec["results"] = None
        if rec["status"] == "ok":
            rec["status"] = "failed"
        rec["error"] = f"reading its results: {type(e).__name__}: {e}"
    if rec["status"] != "ok":
        rec["log_tail"] = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    return rec


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- figures


def collect_throughput(stage_dir: Path) -> dict:
    """The figures of one algorithm's `benchmarks.throughput` run (its throughput.json)."""
    saved = _read_json(stage_dir / "throughput.json")
    (row,) = saved["train_step"]
    seeds = {int(s): v for s, v in row.get("seeds", {}).items()}
    out = {
        "algo": row["algo"], "size": row["size"], "R": row["R"], "step_ms": 1e3 * row["step_s"],
        "steps_per_s": row["steps_per_s"], "step_estimate": row["step_estimate"],
        "flops_per_step": row["flops_per_step"], "flops_per_s": row["flops_per_s"],
        "matmul_fp32_interleaved_flops_per_s": row["matmul_flops_per_s"],
        "utilization_fp32": row["utilization"], "noisy": row["noisy"],
        "chunk_ms": {str(s): 1e3 * v["chunk_s"] for s, v in sorted(seeds.items())},
        "first_call_s": {str(s): v["first_call_s"] for s, v in sorted(seeds.items())},
        "dynamics_member_samples_per_s": saved["dynamics"][row["size"]]["member_samples_per_s"],
        "device_kind": saved["environment"]["device_kind"],
    }
    if len(seeds) > 1 and 1 in seeds:
        top = max(seeds)
        out["seeds_ratio"] = {"seeds": top, "cost_vs_one": seeds[top]["chunk_s"] / seeds[1]["chunk_s"]}
    return out


def collect_run(run_dir: Path, stage_dir: Path) -> dict:
    """The short run's figures (its results.json and metrics.jsonl), and a copy of its small files."""
    keep = stage_dir / "run"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "metrics.jsonl", "config.json", "dynamics.json", "run.log"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, keep / name)
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    res = _read_json(run_dir / "results.json")
    cfg = _read_json(run_dir / "config.json")
    pool = res.get("dynamics_pool") or {}
    timed = [r for r in rows if not r.get("includes_compile")]
    return {
        "train_steps_per_s": res["train_steps_per_s"],
        "steps_per_chunk": cfg["agent"]["steps_per_chunk"], "total_steps": res["total_steps"],
        "chunks": [{"chunk": r["chunk"], "chunk_s": r["chunk_time_s"], "includes_compile": r["includes_compile"]}
                   for r in rows],
        "chunks_timed": len(timed),
        "pool_train_s": pool.get("train_seconds"), "pool_members": cfg["dynamics"]["num_members"],
        "pool_epochs": cfg["dynamics"]["max_epochs"],
        "setup_s": res.get("setup_time_s_last_segment"), "wall_s": res.get("wall_time_s"),
        "device": res.get("device"),
    }


def summarize(record: dict) -> dict:
    """The headline figures and the two performance goals, from the stages' results."""
    stages = record["stages"]
    probe = (stages.get("probe") or {}).get("results") or {}
    bf16 = (probe.get("matmul") or {}).get("bfloat16", {}).get("flops_per_s")
    rows = {}
    for name, st in stages.items():
        if name.startswith("throughput-") and (st.get("results") or {}).get("flops_per_s") is not None:
            r = dict(st["results"])
            r["utilization_bf16"] = r["flops_per_s"] / bf16 if bf16 else None
            rows[r["algo"]] = r
    goals = []
    pspo = rows.get("pspo")
    if pspo is not None:
        goals.append({"goal": f"PSPO <= {PSPO_GOAL_MS:g} ms per iteration at paper sizes", "size": pspo["size"],
                      "value": f"{pspo['step_ms']:.3g} ms", "met": pspo["step_ms"] <= PSPO_GOAL_MS})
    for algo, r in rows.items():
        if "seeds_ratio" in r:
            s = r["seeds_ratio"]
            goals.append({"goal": f"{algo.upper()}: {s['seeds']} vmapped seeds <= {SEEDS_GOAL_RATIO:g}x the cost of one",
                          "size": r["size"], "value": f"{s['cost_vs_one']:.2f}x",
                          "met": s["cost_vs_one"] <= SEEDS_GOAL_RATIO})
    run = (stages.get(RUN_STAGE) or {}).get("results")
    return {"throughput": rows, "goals": goals, "run": run if run and "train_steps_per_s" in run else None}


def _si(x: Optional[float], unit: str = "") -> str:
    if x is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".strip()


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def markdown(record: dict) -> str:
    probe = (record["stages"].get("probe") or {}).get("results") or {}
    summary = record["summary"]
    versions = probe.get("versions") or {}
    device = f"{probe.get('device_kind', '?')} ({probe.get('platform', '?')}) x{probe.get('num_devices', '?')}"
    lines = [f"# jaxrl_bayes device run: {device}", ""]
    if record["dry_run"]:
        lines += ["**CPU DRY RUN at tiny sizes: it checks that the script works; its figures mean nothing.**", ""]
    lines += [f"{record['started']}; `{PROG} {shlex.join(record['argv'])}`; "
              + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".", "",
              "| stage | status | seconds | note |", "|---|---|---|---|"]
    inst = record["install"]
    lines.append(f"| install | {inst['status']} | {inst.get('seconds', 0):.1f} | "
                 f"{inst.get('note') or ('installed ' + ', '.join(inst.get('installed') or []) or '-')} |")
    for name, st in record["stages"].items():
        note = st.get("note") or st.get("error") or (f"exit {st['returncode']}" if st.get("returncode") else "")
        lines.append(f"| {name} | {st['status']} | {st.get('seconds', 0):.1f} | {note or '-'} |")
    if probe.get("matmul"):
        lines += ["", "Dense matmul references, this run (best of the calls):", "",
                  "| matmul | n | FLOP/s |", "|---|---|---|"]
        for key, m in probe["matmul"].items():
            lines.append(f"| {key} | {m['n']} | {_si(m['flops_per_s'], 'FLOP/s')} |")
    rows = summary["throughput"]
    if rows:
        any_row = next(iter(rows.values()))
        s_top = max((int(s) for r in rows.values() for s in r["chunk_ms"]), default=1)
        lines += ["", f"## Train step ({any_row['size']} sizes; `benchmarks.throughput`, R = {any_row['R']})", "",
                  f"| algo | step ms | steps/s | GFLOP/step | FLOP/s | utilization vs fp32 matmul (interleaved) | "
                  f"vs bf16 matmul | chunk ms, 1 seed | chunk ms, {s_top} seeds | {s_top} seeds / 1 seed |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for algo, r in rows.items():
            ratio = r.get("seeds_ratio")
            lines.append(
                f"| {algo} | {r['step_ms']:.3g} | {r['steps_per_s']:.3g} | {r['flops_per_step'] / 1e9:.3g} | "
                f"{_si(r['flops_per_s'], 'FLOP/s')} | {_pct(r['utilization_fp32'])}{' (noisy)' if r['noisy'] else ''} | "
                f"{_pct(r['utilization_bf16'])} | {r['chunk_ms'].get('1', float('nan')):.3g} | "
                f"{r['chunk_ms'].get(str(s_top), float('nan')):.3g} | "
                f"{'-' if not ratio else format(ratio['cost_vs_one'], '.2f') + 'x'} |")
    if summary["goals"]:
        lines += ["", "| goal | size | measured | met |", "|---|---|---|---|"]
        lines += [f"| {g['goal']} | {g['size']} | {g['value']} | {'yes' if g['met'] else 'no'} |"
                  for g in summary["goals"]]
    run = summary["run"]
    if run:
        lines += ["", f"## RRPI, `experiments.run --algo rrpi --preset paper`, generated hopper-shaped file", "",
                  "| train steps/s | chunks timed (of steps) | pool (members, epochs) trained in s | setup s | wall s |",
                  "|---|---|---|---|---|"]
        sps = run["train_steps_per_s"]
        lines.append(f"| {'-' if sps is None else format(sps, '.4g')} | {run['chunks_timed']} "
                     f"({run['steps_per_chunk']}) | ({run['pool_members']}, {run['pool_epochs']}) "
                     f"{_fmt_s(run['pool_train_s'])} | {_fmt_s(run['setup_s'])} | {_fmt_s(run['wall_s'])} |")
    lines += ["", "Step ms: marginal (T(R) - T(1)) / (R - 1) of chunks of R and 1 train steps; FLOPs counted "
              "from the jaxpr; the fp32 utilization is against a float32 matmul timed in rounds alternating "
              "with the steps, the bf16 one against the probe's bfloat16 matmul. Train steps/s of the run: "
              "chunk time only (the compiling chunk, evaluation and checkpoints excluded).", ""]
    return "\n".join(lines)


def _fmt_s(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1f}"


# ----------------------------------------------------------------------------- main


def write_outputs(record: dict, out: Path) -> str:
    """Writes device.json and device.md; a summary that cannot be made is recorded, never fatal."""
    try:
        record["summary"] = summarize(record)
        md = markdown(record)
    except Exception as e:  # noqa: BLE001 - the stages' records must reach the disk regardless
        record["summary"] = {"throughput": {}, "goals": [], "run": None}
        record["summary_error"] = f"{type(e).__name__}: {e}"
        md = markdown(record) + f"\nThe summary failed ({record['summary_error']}); see device.json.\n"
    with atomic_open(out / "device.json", "w") as f:
        json.dump(record, f, indent=1, default=str)
    with atomic_open(out / "device.md", "w") as f:
        f.write(md)
    return md


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: the wheel install first (tyro may be among the wheels), then the stages."""
    argv = list(sys.argv[1:] if argv is None else argv)
    skip = any(a.split("=", 1)[0] in ("--dry-run", "--dry_run", "-h", "--help") for a in argv)
    inst = ({"status": "skipped", "note": "dry run: no wheel install", "seconds": 0.0} if skip
            else install_mod.install())
    try:
        from experiments import cli
    except ImportError as e:
        print(f"error: {e}; install it, or carry benchmarks/device/wheels (python -m benchmarks.device.wheels): "
              f"{inst.get('note') or inst.get('status')}", file=sys.stderr)
        return 2
    return cli.front_door(functools.partial(_main, argv, inst), argv)


def _main(argv: list[str], inst: dict, ctx: Any) -> int:
    from experiments import cli

    args = cli.parse(Args, argv, prog=PROG)
    if args is None:
        return 0
    out_s = args.out or os.environ.get("OUT", "")
    if not out_s:
        raise cli.UsageError("no output folder: give --out DIR (on the device machine $OUT is used)")
    profile = DRY if args.dry_run else GPU
    known = stage_names(profile)
    bad = [s for s in args.stages if s not in known]
    if bad:
        raise cli.UsageError(f"unknown stage {bad[0]!r} for this run; choose from {', '.join(known)}")
    for flag, value in (("--budget-s", args.budget_s), ("--stage-timeout-s", args.stage_timeout_s)):
        if value is not None and value <= 0:
            raise cli.UsageError(f"{flag} must be > 0, got {value:g}")
    chosen = [s for s in known if not args.stages or s in args.stages]
    budget = args.budget_s or profile.budget_s
    out = Path(out_s)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    deadline = t0 + budget
    record: dict[str, Any] = {
        "script": PROG, "argv": argv, "dry_run": args.dry_run, "budget_s": budget,
        "profile": dataclasses.asdict(profile),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "install": inst, "stages": {}}
    log = functools.partial(print, file=sys.stderr, flush=True)
    work = Path(tempfile.mkdtemp(prefix="jaxrl_bayes_device_"))
    try:
        env = child_env(args.dry_run, work)
        stages = build_stages(profile, out, work, gpu_only=not args.dry_run)
        for name in ["probe", *chosen]:
            left = deadline - time.perf_counter()
            if left < 5:
                record["stages"][name] = {"status": "skipped", "note": f"the --budget-s {budget:g} s was spent"}
                log(f"[device] {name}: skipped (budget spent)")
                continue
            bound = profile.timeout_s[stages[name].kind]
            if args.stage_timeout_s is not None and name != "probe":
                bound = args.stage_timeout_s
            timeout = min(bound, left)
            log(f"[device] {name}: up to {timeout:.0f} s ...")
            rec = run_stage(stages[name], out / "stages" / name, timeout, env)
            record["stages"][name] = rec
            log(f"[device] {name}: {rec['status']} in {rec['seconds']:.1f} s")
            if name == "probe" and not args.dry_run:
                platform = (rec.get("results") or {}).get("platform")
                if platform != "gpu":
                    for later in chosen:
                        record["stages"][later] = {"status": "skipped", "note": "no GPU"}
                    record["elapsed_s"] = round(time.perf_counter() - t0, 1)
                    write_outputs(record, out)
                    raise NoGPUError(f"JAX sees no GPU (platform {platform or 'unknown: the probe ' + rec['status']}); "
                                     f"this script is for the GPU machine: use --dry-run for the CPU dry run "
                                     f"(details in {out / 'device.json'})")
        record["elapsed_s"] = round(time.perf_counter() - t0, 1)
        md = write_outputs(record, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(md)
    log(f"[device] written to {out / 'device.json'} and {out / 'device.md'} ({record['elapsed_s']:.0f} s)")
    return 0 if all(st["status"] == "ok" for st in record["stages"].values()) else 1
