"""benchmarks.flops: FLOPs from the jaxpr, loops times their trip counts (exact answers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import flops


def test_matmul_is_two_mnk():
    a, b = jnp.ones((8, 5)), jnp.ones((5, 3))
    assert flops.count_flops(jnp.dot, a, b) == 2 * 8 * 3 * 5
    x = jax.ShapeDtypeStruct((4, 8, 5), jnp.float32)  # batched: 4 x (8 x 5 @ 5 x 3)
    assert flops.count_flops(lambda x, b: jnp.einsum("bij,jk->bik", x, b), x, b) == 2 * 4 * 8 * 3 * 5


def test_scan_and_map_bodies_count_once_per_trip_unlike_xla():
    w = jnp.ones((16, 16))

    def scanned(x, length):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=length)[0]

    x = jnp.ones((4, 16))
    one = flops.count_flops(lambda x: scanned(x, 1), x)
    assert one == 2 * 4 * 16 * 16
    assert flops.count_flops(lambda x: scanned(x, 7), x) == 7 * one
    # XLA's own count (the benchmark's old source) sees the body once whatever the length
    xla = [jax.jit(lambda x, n=n: scanned(x, n)).lower(x).compile().cost_analysis() for n in (1, 7)]
    xla = [c[0] if isinstance(c, (list, tuple)) else c for c in xla]
    assert xla[1]["flops"] < 2 * xla[0]["flops"]


@pytest.mark.parametrize("chunk", [8, 16, 64])
def test_chunked_mlp_agrees_with_one_batch_within_5_percent(chunk):
    """The shape of the library's chunked soft value: lax.map over state chunks of an MLP."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    w1, w2 = jax.random.normal(k1, (17, 64)), jax.random.normal(k2, (64, 1))

    def mlp(x):
        return jnp.tanh(x @ w1) @ w2

    x = jnp.ones((256, 17))
    one_batch = flops.count_flops(mlp, x)
    chunked = flops.count_flops(lambda x: jax.lax.map(mlp, x.reshape(-1, chunk, 17)).reshape(-1, 1), x)
    assert abs(chunked - one_batch) <= 0.05 * one_batch
    dense = 2 * 256 * 17 * 64 + 2 * 256 * 64 * 1
    assert dense <= one_batch <= dense + 256 * 64 * 2  # matmuls plus one op per tanh element


def test_grad_cond_and_calls_are_followed():
    w = jnp.ones((8, 8))
    f = jax.jit(lambda x: jnp.sum(x @ w))
    x = jnp.ones((2, 8))
    fwd = flops.count_flops(f, x)
    assert fwd >= 2 * 2 * 8 * 8  # through the pjit call
    assert flops.count_flops(jax.grad(f), x) >= 2 * fwd - 2 * 2 * 8  # backward: at least one more matmul
    g = lambda p, x: jax.lax.cond(p, lambda x: x @ w @ w, lambda x: x, x)
    assert flops.count_flops(g, True, x) == 2 * (2 * 2 * 8 * 8)  # the costlier branch


def test_interleaved_reference_reports_best_and_spread():
    fn = jax.jit(lambda x: x @ x)
    x = jnp.ones((64, 64))
    jax.block_until_ready(fn(x))
    r = flops.interleaved_reference(lambda: fn(x), matmul_n=128, rounds=3)
    assert len(r["timed_rounds_s"]) == 3 and len(r["matmul_rounds_flops_per_s"]) == 4
    assert r["timed_s"] == min(r["timed_rounds_s"])
    assert r["matmul_flops_per_s"] == pytest.approx(max(r["matmul_rounds_flops_per_s"]))
    assert r["noisy"] == (r["spread"] > r["noisy_threshold"])
    assert np.isfinite(flops.utilization(2 * 64 ** 3, r["timed_s"], r["matmul_flops_per_s"]))
