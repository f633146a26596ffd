"""Tests of benchmarks/throughput.py: the --quick run's output structure (never a speed),
option checking, and the chunked soft-value helper against an exact answer; and the command
lines of benchmarks/devices.py and benchmarks/value_chunking.py."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import throughput
from jaxrl_bayes.algos.common import chunked_value_fn


def test_chunked_value_fn_equals_unchunked_on_a_deterministic_value():
    # value_fn ignores its key: V(s) = sum(s) + 1, so chunking must not change any entry,
    # including the padded last chunk (2 * 3 * 5 = 30 states, chunks of 7 -> 2 padded rows).
    calls = []

    def value_fn(key, states):
        calls.append(states.shape)
        return jnp.sum(states, axis=-1) + 1.0

    states = jnp.arange(2 * 3 * 5 * 4, dtype=jnp.float32).reshape(2, 3, 5, 4)
    got = jax.jit(chunked_value_fn(value_fn, 7))(jax.random.PRNGKey(0), states)
    expected = states.sum(-1) + 1.0
    assert got.shape == (2, 3, 5)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert calls == [(7, 4)]  # traced once, on one chunk of 7 states


def test_chunked_value_fn_small_input_is_one_call():
    def value_fn(key, states):
        return states[..., 0] * 2.0

    states = jnp.ones((3, 2))
    got = chunked_value_fn(value_fn, 8)(jax.random.PRNGKey(0), states)
    np.testing.assert_array_equal(np.asarray(got), 2.0 * np.ones(3))


@pytest.mark.parametrize("argv, line", [
    (["--sizes", "huge"], "error: invalid choice 'huge' for argument '--sizes'."),
    (["--algos", "dqn"], "error: unknown algorithm 'dqn' (choose from ["),
    (["--algos", "pmdbb"], "error: unknown algorithm 'pmdbb' (choose from ["),
    (["--scaling-algo", "psop"], "error: --scaling-algo: unknown algorithm 'psop' (choose from ["),
    (["--no-scaling", "--scaling-algo", "dqn"], "error: --scaling-algo: unknown algorithm 'dqn' (choose from ["),
    (["--variants", "fast"], "error: invalid choice 'fast' for argument '--variants'."),
    (["--sizes", "tiny", "--scaling-size", "paper"], "error: --scaling-size 'paper' must be one of --sizes ['tiny']"),
    (["--steps", "0", "--no-scaling"], "error: --steps, --reps, --scaling-steps and --seeds must be >= 1"),
    (["--devices", "2", "3"], "error: --devices [2, 3]: each count must divide the largest"),
    (["--chunk-statez", "8"], "error: unknown option --chunk-statez; did you mean --chunk_states?"),
    (["--sizes"], "error: --sizes needs at least one value (leave an option out for its default)"),
    (["--no-scaling", "--algos", "--seeds"], "error: --algos, --seeds need at least one value each"),
    (["--quick", "--variants"], "error: --variants needs at least one value ("),
    (["--no-scaling", "--scaling-size", "small"],
     "error: --scaling-size has no effect with --no-scaling: drop it, or drop --no-scaling\n"),
    (["--chunk-states", "64"], "error: --chunk-states has no effect without chunked in --variants: drop it, or "),
])
def test_bad_options_end_in_one_line_and_exit_2(argv, line, capsys):
    """Its tyro options (experiments/cli.py): a bad option is one line and exit status 2, before
    anything is built; the checks after parsing raise BenchmarkError, a cli.UsageError."""
    assert throughput.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1
    with pytest.raises(throughput.cli.UsageError):
        throughput.parse_options(argv)
    assert throughput.main(["--help"]) == 0 and "usage: python -m benchmarks.throughput" in capsys.readouterr().out


def test_quick_sets_the_tiny_sizes_but_keeps_given_algos_and_sizes():
    """--quick's values, the same flags spelled with - or _, and --devices with no count."""
    o = throughput.parse_options(["--quick"])
    assert (o.algos, o.sizes, o.steps, o.reps, o.seeds, o.matmul_n) == (("pmdb", "pspo"), ("tiny",), 2, 2, (1, 2), 512)
    assert (o.scaling_size, o.scaling_steps, o.scaling_grid) == ("tiny", 2, {"num_candidates": (2, 4)})
    assert o.devices == (1, 2, 4) and o.parts and o.rollouts and o.scaling
    o = throughput.parse_options(["--quick", "--algos=rrpi", "--sizes", "small", "tiny", "--scaling-size=small",
                                  "--no-parts", "--no_rollouts", "--devices"])
    assert (o.algos, o.sizes, o.scaling_size, o.devices) == (("rrpi",), ("small", "tiny"), "small", ())
    assert not o.parts and not o.rollouts
    o = throughput.parse_options(["--chunk-states", "8", "--matmul_n", "64", "--variants", "fused", "chunked"])
    assert (o.chunk_states, o.matmul_n, o.variants) == (8, 64, ("fused", "chunked"))
    assert o == throughput.Options(chunk_states=8, matmul_n=64, variants=("fused", "chunked"))
    assert o.scaling_grid == throughput.DEFAULT_SCALING
    assert throughput.parse_options(["--help"]) is None


def test_algorithm_names_are_checked_against_the_registry_with_the_closest_one():
    """--algos and --scaling-algo are refused at parse time (not after minutes of benchmarking),
    naming the closest registered algorithm; every registered one is accepted."""
    from jaxrl_bayes.algos import ALGORITHMS

    with pytest.raises(throughput.BenchmarkError, match=r"unknown algorithm 'pmdbb' .*did you mean 'pmdb'\?$"):
        throughput.parse_options(["--algos", "pmdbb"])
    with pytest.raises(throughput.BenchmarkError, match=r"^--scaling-algo: unknown algorithm 'psop' .*did you mean 'pspo'\?$"):
        throughput.parse_options(["--scaling-algo", "psop"])
    for name in ALGORITHMS:
        assert throughput.parse_options(["--algos", name, "--scaling-algo", name]).scaling_algo == name


def test_options_given_beside_quick_keep_their_values():
    """--quick sets only what the command line leaves out: no given value is silently replaced."""
    o = throughput.parse_options(["--quick", "--steps", "5", "--reps=4", "--seeds", "1", "3", "--matmul-n", "256",
                                  "--scaling_steps", "3", "--sizes", "tiny", "small", "--scaling-size", "small"])
    assert (o.steps, o.reps, o.seeds, o.matmul_n, o.scaling_steps) == (5, 4, (1, 3), 256, 3)
    assert (o.algos, o.sizes, o.scaling_size) == (("pmdb", "pspo"), ("tiny", "small"), "small")
    assert o.scaling_grid == {"num_candidates": (2, 4)}  # still --quick's
    # one given, the rest --quick's
    o = throughput.parse_options(["--quick", "--reps", "1"])
    assert (o.steps, o.reps, o.seeds, o.matmul_n, o.scaling_steps, o.scaling_size) == (2, 1, (1, 2), 512, 2, "tiny")
    # a given value equal to the default is given all the same
    assert throughput.parse_options(["--quick", "--steps", "5"]).steps == 5 == throughput.Options().steps


def test_scaling_options_given_with_no_scaling_are_refused():
    """--no-scaling draws no curves: a given --scaling-size, --scaling-algo or --scaling-steps
    would do nothing, so it is refused in one line (spelled either way, a default value too);
    left out, or with the curves on, they are accepted."""
    for argv, flags in [(["--scaling-size", "paper"], "--scaling-size has"),
                        (["--scaling_steps=3"], "--scaling-steps has"),
                        (["--scaling-algo", "pmdb"], "--scaling-algo has"),  # the default, given
                        (["--scaling-steps", "3", "--scaling-size", "small", "--scaling-algo", "pspo"],
                         "--scaling-size, --scaling-algo, --scaling-steps have"),
                        (["--quick", "--scaling-steps", "2"], "--scaling-steps has")]:
        with pytest.raises(throughput.BenchmarkError) as e:
            throughput.parse_options(["--no-scaling", *argv])
        assert str(e.value).startswith(f"{flags} no effect with --no-scaling: drop ")
        assert str(e.value).endswith(", or drop --no-scaling") and "\n" not in str(e.value)
        assert throughput.parse_options(argv).scaling  # the curves on: taken
    assert not throughput.parse_options(["--no-scaling"]).scaling
    assert not throughput.parse_options(["--quick", "--no-scaling"]).scaling  # --quick's scaling values: not given


def test_chunk_states_without_the_chunked_variant_is_refused():
    """--chunk-states sizes the chunked variant's chunks only: given without chunked in --variants
    (the default is fused alone) it would do nothing, so it is refused in one line."""
    for argv in (["--chunk-states", "64"], ["--chunk_states=256"], ["--quick", "--chunk-states", "8"],
                 ["--variants", "fused", "--chunk-states", "64"]):
        with pytest.raises(throughput.BenchmarkError, match=r"^--chunk-states has no effect without chunked in "
                                                            r"--variants: drop it, or pass --variants chunked"):
            throughput.parse_options(argv)
    for variants in (["chunked"], ["fused", "chunked"], ["chunked", "fused"]):
        o = throughput.parse_options(["--chunk-states", "64", "--variants", *variants])
        assert o.chunk_states == 64 and "chunked" in o.variants
    assert throughput.parse_options(["--variants", "chunked"]).chunk_states == 256  # left out: the default


def test_the_scaling_size_is_the_first_of_the_sizes_unless_given():
    """--scaling-size left out is the first of --sizes (also with --quick); given, it must be one of them."""
    assert throughput.parse_options([]).scaling_size == "small"  # of small, paper
    assert throughput.parse_options(["--sizes", "paper", "tiny"]).scaling_size == "paper"
    assert throughput.parse_options(["--sizes", "paper", "tiny", "--scaling-size", "tiny"]).scaling_size == "tiny"
    assert throughput.parse_options(["--quick", "--sizes", "paper"]).scaling_size == "paper"
    assert throughput.Options(sizes=("tiny",)).scaling_size == "tiny"  # built without the parser too
    with pytest.raises(throughput.BenchmarkError, match="--scaling-size 'small' must be one of --sizes"):
        throughput.parse_options(["--quick", "--scaling-size", "small"])  # --quick's sizes are tiny only


# Every `python -m benchmarks.throughput` command line of the docs, as written there.
DOCUMENTED_COMMANDS = {
    "README.md": ["--quick", "--algos pmdb pspo rrpi --sizes paper --steps 3",
                  "--sizes cpu-hopper --algos pmdb --no-scaling"],
    "docs/throughput.md": ["--sizes cpu-hopper --algos pmdb rrpi pspo --no-scaling --steps 20 --reps 3 --seeds 1 3"],
    "the module docstring": ["", "--quick", "--algos pmdb --sizes paper --steps 3 --reps 2 --seeds 1"],
}


@pytest.mark.parametrize("doc", sorted(DOCUMENTED_COMMANDS))
def test_the_documented_command_lines_parse(doc):
    """The README's and the module docstring's examples are accepted (parsed and checked, not run)."""
    import shlex

    if doc == "the module docstring":
        text = throughput.__doc__
    else:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), doc)) as f:
            text = f.read()
    text = " ".join(text.split())  # a command line broken over two lines reads as one
    prefix = "python -m benchmarks.throughput"
    assert text.count(prefix) == len(DOCUMENTED_COMMANDS[doc]), f"{doc}'s examples changed: update this list"
    for args in DOCUMENTED_COMMANDS[doc]:
        assert f"{prefix} {args}".strip() in text
        o = throughput.parse_options(shlex.split(args))
        assert o is not None and (not o.scaling or o.scaling_size in o.sizes), args


def test_the_value_chunking_docstring_example_parses():
    from benchmarks import value_chunking

    line = value_chunking.__doc__.split("python -m benchmarks.value_chunking", 1)[1].splitlines()[0]
    o = value_chunking.parse_options(line.split())  # parsed and checked, not run
    assert (o.algo, o.size, o.chunks, o.rounds) == ("pmdb", "paper", (64, 256, 1024), 3)


def test_value_chunking_offers_the_throughput_sizes():
    """One SizeName (benchmarks.throughput's), so the two choose from the same SIZES."""
    import typing

    from benchmarks import value_chunking

    assert typing.get_type_hints(value_chunking.Options)["size"] is throughput.SizeName
    assert set(typing.get_args(throughput.SizeName)) == set(throughput.SIZES)


@pytest.mark.parametrize("module, argv, line", [
    ("devices", ["--seeds", "3", "--devices", "2"],
     "error: --seeds 3 must be a multiple of every --devices count (not of [2])"),
    ("devices", ["--devices"], "error: --devices needs at least one device count"),
    ("devices", ["--seedz", "2"], "error: unknown option --seedz; did you mean --seeds?"),
    ("value_chunking", ["--chunks"], "error: --chunks needs at least one chunk size"),
    ("value_chunking", ["--size", "huge"], "error: invalid choice 'huge' for argument '--size'."),
    ("value_chunking", ["--algo", "pmbd"], "error: --algo: unknown algorithm 'pmbd' (choose from ["),
])
def test_devices_and_value_chunking_options_end_in_one_line_and_exit_2(module, argv, line, capsys):
    """Their tyro options (experiments/cli.py): a bad option is one line and exit status 2,
    before anything is built."""
    import importlib

    main = importlib.import_module(f"benchmarks.{module}").main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1
    assert main(["--help"]) == 0 and "usage: python -m benchmarks." in capsys.readouterr().out


def test_value_chunking_algo_is_checked_against_the_registry_at_parse_time():
    """--algo is refused before the dynamics pool trains (not minutes later, in make_trainer),
    naming the closest registered algorithm; every registered one is accepted."""
    from benchmarks import value_chunking
    from jaxrl_bayes.algos import ALGORITHMS

    with pytest.raises(value_chunking.cli.UsageError,
                       match=r"^--algo: unknown algorithm 'pmbd' \(choose from \[.*\]\); did you mean 'pmdb'\?$"):
        value_chunking.parse_options(["--algo", "pmbd"])
    with pytest.raises(value_chunking.cli.UsageError, match=r"^--algo: unknown algorithm 'dqn' .*\)$"):
        value_chunking.parse_options(["--algo", "dqn"])  # nothing close: no guess
    for name in ALGORITHMS:
        assert value_chunking.parse_options(["--algo", name]).algo == name
    assert value_chunking.parse_options(["--help"]) is None


@pytest.mark.parametrize("argv, message", [
    (["--chunks", "0", "64"], r"^--chunks are states per chunk, each >= 1 \(got \[0, 64\]\)$"),
    (["--steps", "0"], r"^--steps must be >= 1 \(got 0\)$"),
    (["--rounds", "0", "--steps", "-1"], r"^--steps must be >= 1 \(got -1\); --rounds must be >= 1 \(got 0\)$"),
])
def test_value_chunking_counts_are_checked_at_parse_time(argv, message):
    """Counts that would time nothing, divide by zero or pass fused off as chunked are refused
    before the dynamics pool trains, all problems on one line."""
    from benchmarks import value_chunking

    with pytest.raises(value_chunking.cli.UsageError, match=message):
        value_chunking.parse_options(argv)


def test_devices_worker_flag_is_internal(capsys):
    """devices_row runs `python -m benchmarks.devices --worker SPEC`: read before the options,
    never shown by --help."""
    from benchmarks import devices

    assert devices._worker_spec([devices.WORKER, '{"seeds": 1}']) == '{"seeds": 1}'
    assert devices._worker_spec([devices.WORKER + '={"seeds": 1}']) == '{"seeds": 1}'
    assert devices._worker_spec(["--seeds", "2"]) is None
    assert devices.main(["--help"]) == 0 and "--worker" not in capsys.readouterr().out


def test_quick_run_writes_json_markdown_and_plots(tmp_path):
    out = str(tmp_path / "bench")
    # the devices row (one process per device count) is covered by tests/test_sharding.py
    argv = ["--quick", "--algos", "pspo", "--scaling-algo", "pspo", "--out", out, "--silent", "--devices"]
    result = throughput.run(throughput.parse_options(argv), argv)

    files = sorted(os.listdir(out))
    assert {"throughput.json", "throughput.md", "scaling.png", "seeds.png"} <= set(files)
    assert not [f for f in files if f.startswith(".tmp_")]  # atomic writes left nothing behind
    for png in ("scaling.png", "seeds.png"):
        with open(os.path.join(out, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    with open(os.path.join(out, "throughput.json")) as f:
        saved = json.load(f)
    env = saved["environment"]
    assert env["device_kind"] and env["platform"] == jax.devices()[0].platform
    assert set(env["versions"]) >= {"jax", "jaxlib", "flax", "optax"}
    assert env["versions"]["jax"] == jax.__version__
    assert len(env["load_average_start"]) == 3 and len(saved["load_average_end"]) == 3
    assert saved["matmul"]["flops_per_s"] > 0
    assert isinstance(saved["xla_scan_counts_body_once"], bool)

    (step,) = saved["train_step"]
    assert step["algo"] == "pspo" and step["size"] == "tiny" and step["R"] == 2
    for key in ("step_s", "steps_per_s", "flops_per_step", "flops_per_step_xla", "flops_per_s", "utilization",
                "matmul_flops_per_s", "noisy", "one_step_per_call_s", "dispatch", "step_estimate"):
        assert key in step, key
    assert step["flops_per_step"] > 0 and step["step_s"] > 0
    # utilization is against the matmul timed in rounds between the row's chunks
    ref = step["reference"]
    assert len(ref["timed_rounds_s"]) == 2 and len(ref["matmul_rounds_flops_per_s"]) == 3
    assert step["matmul_flops_per_s"] == max(ref["matmul_rounds_flops_per_s"])
    assert step["utilization"] == pytest.approx(step["flops_per_s"] / step["matmul_flops_per_s"])
    assert step["noisy"] == (ref["spread"] > 0.2)
    assert step["steps_per_s"] == pytest.approx(1.0 / step["step_s"])
    assert set(step["seeds"]) == {"1", "2"}
    assert step["seeds"]["2"]["steps_per_s"] == pytest.approx(2 * 2 / step["seeds"]["2"]["chunk_s"])
    assert set(step["dispatch"]) >= {"R_calls_of_1_step_s", "one_call_of_R_steps_s", "speedup"}
    # the config really is the tiny PSPO one
    assert step["config"]["num_active"] == throughput.SIZES["tiny"].num_active
    assert step["config"]["targets"]["selector"] == "posterior"

    (parts,) = saved["parts"]
    assert set(parts["parts"]) == {"model_target", "real_target", "belief_update"}
    (ro,) = saved["rollout"]
    tiny = throughput.SIZES["tiny"]
    assert (ro["rollout_batch"], ro["horizon"]) == (tiny.rollout_batch, tiny.rollout_horizon)
    assert ro["transitions_per_s"] == pytest.approx(tiny.rollout_batch * tiny.rollout_horizon / ro["s"])
    assert saved["dynamics"]["tiny"]["member_samples_per_s"] > 0
    curves = saved["scaling"]["curves"]
    assert [r["value"] for r in curves["num_candidates"]] == [2, 4]
    # more candidates never means fewer FLOPs (XLA's own count, not a speed)
    assert curves["num_candidates"][1]["flops_per_step"] > curves["num_candidates"][0]["flops_per_step"]
    assert any(r["ms_per_step"] == 112.1 and "OTHER HARDWARE" in r["what"] for r in saved["reference_rows"])

    with open(os.path.join(out, "throughput.md")) as f:
        md = f.read()
    assert "| algo | size | variant | step ms |" in md
    assert "| pspo | tiny | fused |" in md
    assert "OTHER HARDWARE" in md and "112.1" in md
    assert env["device_kind"] in md and f"jax {jax.__version__}" in md
    assert result["out_dir"] == out


def test_parts_flops_of_the_chunked_variant_agree_with_the_one_batch_variant():
    """A part whose soft value runs in lax.map chunks is counted per chunk, so its
    FLOPs equal the one-batch variant's (XLA's own count sees one chunk: far below)."""
    size = throughput.SIZES["tiny"]
    dataset = throughput.synthetic_dataset(size.num_data)
    pool, _ = throughput.dynamics_bench(dataset, size, size.num_active)
    bench = throughput.Bench(size, dataset, pool, reps=1, peak=1.0, counts_once=True, chunk_states=2)
    fused = throughput.bench_parts(bench, "pspo", "fused")
    chunked = throughput.bench_parts(bench, "pspo", "chunked")
    assert set(fused) == set(chunked) == {"model_target", "real_target", "belief_update"}
    for name in fused:
        assert abs(chunked[name]["flops"] - fused[name]["flops"]) <= 0.05 * fused[name]["flops"], name
    assert chunked["model_target"]["flops_xla"] < 0.8 * fused["model_target"]["flops_xla"]  # the old undercount


def test_step_flops_are_the_chunks_marginal_flops_and_equal_one_train_step():
    """A chunk adds a rollout refill and its diagnostics once; the per-step FLOPs that divide the
    marginal step time must leave them out: (F(R) - F(1)) / (R - 1) equals the FLOPs of exactly
    one `train.train_step`, and the R = 1 chunk costs more than one step."""
    import functools

    from benchmarks.flops import count_flops
    from jaxrl_bayes.algos import train

    size = throughput.SIZES["tiny"]
    dataset = throughput.synthetic_dataset(size.num_data)
    pool, _ = throughput.dynamics_bench(dataset, size, size.num_active)
    bench = throughput.Bench(size, dataset, pool, reps=1, peak=1.0, counts_once=True)
    one, three = bench.step_trainer("pmdb", 1), bench.step_trainer("pmdb", 3)
    states = bench.states(three, 1)
    # traced, not compiled: the same count `Bench.chunk` records
    f1, f3 = (count_flops(t.run_chunk_seeds_jit, states, t.data) for t in (one, three))
    state = jax.tree_util.tree_map(lambda x: x[0], states)
    step = count_flops(functools.partial(train.train_step, three.learner), state, three.data)
    # the scan also stacks each step's metrics (a handful of elementwise ops): equal to 1e-4
    assert (f3 - f1) / 2 == pytest.approx(step, rel=1e-4)
    assert f1 > 1.05 * step
