"""Seeds sharded over devices (jaxrl_bayes.sharding) with forced CPU host devices.

`--xla_force_host_platform_device_count=N` must be set before JAX initializes, so every check
runs in a subprocess (`_WORKER` below) with N = 1 and 2 devices (2 seeds per device; one seed
per device is the same code path with a shorter shard, and a third compiling process cost the
suite about 35 s on 2 cores). Each worker trains the same
tiny liquidation RRPI learner for 4 seeds from the same keys for a few chunks and reports:
- the final parameters (compared here: N = 2 equals N = 1 to float tolerance);
- how many devices the state is spread over (`.sharding`);
- how many XLA compilations the chunks after the first caused (0: the chunk compiles once);
- a checkpoint save/restore of the sharded state (restored, placed again, trained on: equal to
  the uninterrupted run bit for bit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SEEDS = 4

_WORKER = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np

from jaxrl_bayes import dynamics, sharding
from jaxrl_bayes.algos import algo_config, make_trainer
from jaxrl_bayes.checkpoint import Checkpointer
from jaxrl_bayes.data.dataset import Dataset
from jaxrl_bayes.termination import liquidation_termination

out, num_seeds, shared = sys.argv[1], int(sys.argv[2]), sys.argv[3]
compiles = {"n": 0}
def listen(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        compiles["n"] += 1
jax.monitoring.register_event_duration_secs_listener(listen)

with np.load(shared + "/data.npz") as z:
    ds = Dataset.from_arrays(**{k: z[k] for k in z.files}, name="liquidation-tiny")
pool = dynamics.load_pool(shared + "/pool.npz")
agent = json.loads(open(shared + "/agent.json").read())
config = algo_config("rrpi", **{k: tuple(v) if isinstance(v, list) else v for k, v in agent.items()})
trainer = make_trainer(config, ds, pool, liquidation_termination)
keys = jax.random.split(jax.random.PRNGKey(11), num_seeds)

trainer, mesh = sharding.shard_trainer(trainer, num_seeds)
states = sharding.init_sharded(trainer, keys, mesh)
states, _ = trainer.run_chunk_seeds(states)          # compiles here
jax.block_until_ready(states)
before = compiles["n"]
states, _ = trainer.run_chunk_seeds(states)
jax.block_until_ready(states)
after_chunk = compiles["n"] - before

# checkpoint the sharded state after 2 chunks, run one more; restore, place again, run one more
ckpt = Checkpointer(out + "/ckpt")
ckpt.save(2, states, {"chunk": 2})
straight, _ = trainer.run_chunk_seeds(states)
restored, meta = ckpt.restore(jax.eval_shape(lambda: states))
restored = sharding.shard_seeds(restored, mesh)
jax.block_until_ready(restored)
before = compiles["n"]
resumed, _ = trainer.run_chunk_seeds(restored)
jax.block_until_ready(resumed)
after_restore = compiles["n"] - before
same = all(np.array_equal(np.asarray(a), np.asarray(b))
           for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)))

leaves = {f"p{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(straight.policy))}
leaves.update({f"c{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(straight.critic))})
np.savez(out + "/params.npz", **leaves)
spec = straight.policy
json.dump({
    "devices": jax.device_count(),
    "state_shards": sharding.num_shards(straight),
    "resumed_shards": sharding.num_shards(resumed),
    "data_shards": sharding.num_shards(trainer.data),
    "data_replicated": bool(jax.tree_util.tree_leaves(trainer.data)[0].sharding.is_fully_replicated),
    "compiles_after_first_chunk": after_chunk,
    "compiles_after_restore": after_restore,
    "resume_equal": same,
    "meta_chunk": meta["chunk"],
}, open(out + "/facts.json", "w"))
'''


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return env


AGENT = dict(num_active=3, critic_hidden=[16, 16], policy_hidden=[16, 16], real_batch=16, model_batch=16,
             num_candidates=4, num_next_samples=2, rollout_batch=16, rollout_horizon=2, buffer_capacity=256,
             steps_per_chunk=3, value_chunk=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One worker per device count, run side by side on one tiny liquidation dataset and
    dynamics pool made here: {N: (facts, params)}."""
    import jax

    from jaxrl_bayes import dynamics
    from jaxrl_bayes.envs import liquidation

    shared = tmp_path_factory.mktemp("shared")
    raw = liquidation.generate_dataset(seed=0, num_transitions=2000)
    np.savez(shared / "data.npz", **raw)
    pool, _ = dynamics.train_pool(jax.random.PRNGKey(0), raw["observations"], raw["actions"], raw["rewards"],
                                  raw["next_observations"],
                                  dynamics.DynamicsConfig(num_members=3, hidden=(16, 16), max_epochs=1, batch_size=256))
    dynamics.save_pool(pool, shared / "pool.npz")
    (shared / "agent.json").write_text(json.dumps(AGENT))
    procs = {}
    for n in (1, 2):
        out = tmp_path_factory.mktemp(f"dev{n}")
        procs[n] = (out, subprocess.Popen([sys.executable, "-c", _WORKER, str(out), str(SEEDS), str(shared)], cwd=REPO,
                                          env=_env(n), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for n, (out, proc) in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{n} devices:\n{err[-4000:]}"
        with np.load(out / "params.npz") as z:
            params = {k: z[k] for k in z.files}
        results[n] = (json.loads((out / "facts.json").read_text()), params)
    return results


@pytest.mark.parametrize("n", [2])
def test_sharded_seeds_equal_the_single_device_run(runs, n):
    facts, params = runs[n]
    _, ref = runs[1]
    assert facts["devices"] == n
    assert sorted(params) == sorted(ref)
    for name in ref:
        assert params[name].shape[0] == SEEDS
        np.testing.assert_allclose(params[name], ref[name], rtol=2e-5, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("n", [1, 2])
def test_state_is_sharded_data_replicated_and_the_chunk_compiles_once(runs, n):
    facts, _ = runs[n]
    assert facts["state_shards"] == n and facts["resumed_shards"] == n
    assert facts["data_shards"] == n and facts["data_replicated"]
    assert facts["compiles_after_first_chunk"] == 0
    assert facts["compiles_after_restore"] == 0


@pytest.mark.parametrize("n", [1, 2])
def test_checkpoint_of_a_sharded_state_resumes_exactly(runs, n):
    facts, _ = runs[n]
    assert facts["meta_chunk"] == 2 and facts["resume_equal"]


def test_seeds_not_divisible_by_devices_is_a_clear_user_error():
    import jax

    from jaxrl_bayes import sharding
    from jaxrl_bayes.errors import UserError

    devices = jax.local_devices()[:1] * 1
    assert sharding.seed_mesh(3, devices).devices.size == 1  # one device: any S
    fake = [devices[0]] * 4  # only the count matters for the check
    with pytest.raises(UserError, match=r"--seeds 6 cannot be split evenly over 4 devices.*--seeds 4 or 8"):
        sharding.seed_mesh(6, fake)
    with pytest.raises(UserError, match="--seeds 2 cannot be split evenly over 4 devices.*--seeds 4"):
        sharding.seed_mesh(2, fake)


def test_one_device_placement_is_a_no_op_on_values():
    import jax
    import jax.numpy as jnp

    from jaxrl_bayes import sharding

    mesh = sharding.seed_mesh(3, jax.local_devices()[:1])
    tree = {"a": jnp.arange(6.0).reshape(3, 2), "b": jnp.ones((3,), jnp.int32)}
    placed = sharding.shard_seeds(tree, mesh)
    assert sharding.num_shards(placed) == 1
    np.testing.assert_array_equal(np.asarray(placed["a"]), np.asarray(tree["a"]))
    assert placed["b"].dtype == jnp.int32


# a tiny experiments.run: 2 chunks of 10 steps, 2 evaluation episodes
RUN_TINY = ["--run.final_eval_episodes", "2", "--run.total_steps", "20", "--agent.steps_per_chunk", "10", "--dynamics.max_epochs", "1",
            "--dynamics.hidden", "16", "16", "--agent.critic_hidden", "16", "16", "--agent.policy_hidden", "16", "16",
            "--dynamics.num_members", "3", "--agent.num_active", "3", "--agent.rollout.batch", "16",
            "--agent.real_batch", "16", "--agent.model_batch", "16", "--agent.num_candidates", "4",
            "--agent.sampling.num_next_samples", "2", "--agent.buffer_capacity", "500", "--agent.value_chunk", "0",
            "--agent.rollout.horizon", "1", "--dynamics.batch_size", "2048", "--run.eval_episodes", "2"]


def test_experiments_run_lays_seeds_over_the_devices_and_refuses_uneven_seeds(tmp_path):
    env = {**_env(2), "JAXRL_BAYES_CACHE": str(tmp_path / "cache")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "experiments.run", *args, *RUN_TINY], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)

    bad = run("--seeds", "3", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2, bad.stderr[-3000:]
    err = bad.stderr.strip().splitlines()
    assert err[-1].startswith("error: --seeds 3 cannot be split evenly over 2 devices") and "--seeds 2 or 4" in err[-1]
    assert not list((tmp_path / "cache").glob("dynamics/*/pool.npz"))  # refused before any pool training

    good = run("--seeds", "2", "--out", str(tmp_path / "ok"))
    assert good.returncode == 0, good.stderr[-3000:]
    res = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert res["device"]["count"] == 2 and len(res["per_seed"]) == 2
    assert all(np.isfinite(s["raw_return"]) for s in res["per_seed"])
