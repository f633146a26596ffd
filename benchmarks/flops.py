"""FLOPs a reader can trust: counted from the jaxpr (loops times their trip counts), and a dense
matmul reference measured interleaved with the timed work.

Why not XLA's `cost_analysis()` alone: XLA counts the body of a `while` loop (every `lax.scan`,
`lax.map`, `fori_loop`) ONCE, whatever its trip count. A train step whose soft value runs in
`value_chunk`-state chunks (`lax.map`) was therefore under-counted by the number of chunks, and
a part measured alone could exceed "100 %" of the step that contains it.

`count_flops(fn, *args)` walks the jaxpr of `fn` at these arguments:
- `dot_general`: 2 x (product of the output shape) x (contracted size) -- a multiply and an
  add per term, the convention of XLA and of every GFLOP/s figure for matmuls;
- `conv_general_dilated`: 2 x output size x (kernel size per output);
- elementwise arithmetic and transcendental ops: one FLOP per output element; reductions: one
  per input element; data movement (reshape, gather, slices, broadcasts, ...) none;
- `scan` bodies x their `length`; `while` bodies x `trip_hint` (default 1, i.e. XLA's count);
  `cond` the most expensive branch; calls (`pjit`, `custom_jvp_call`, `custom_vjp_call`,
  `remat`, `closed_call`) recurse.

`interleaved_reference(timed, matmul, rounds)` alternates a timed function with a dense matmul
and keeps the best of each, so both see the same machine state; the spread of the matmul
readings says whether the run was noisy.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np

_ELEMENTWISE = {
    "add", "sub", "mul", "div", "neg", "max", "min", "abs", "sign", "pow", "integer_pow", "sqrt", "rsqrt",
    "cbrt", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan", "atan2", "erf",
    "erfc", "erf_inv", "lgamma", "digamma", "square", "reciprocal", "rem", "floor", "ceil", "round",
    "select_n", "clamp", "nextafter", "asinh", "acosh", "atanh", "asin", "acos", "atan", "sinh", "cosh",
    "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor", "is_finite",
}
_REDUCTIONS = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "cumsum",
               "cumprod", "cummax", "cummin", "cumlogsumexp", "reduce_and", "reduce_or"}


def _size(aval) -> int:
    return int(np.prod(getattr(aval, "shape", ()), dtype=np.int64))


def _sub_jaxprs(eqn) -> list:
    out = []
    for v in eqn.params.values():
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(item, jex_core.ClosedJaxpr):
                out.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                out.append(item)
    return out


def jaxpr_flops(jaxpr, trip_hint: int = 1) -> float:
    """FLOPs of a (closed) jaxpr, loops multiplied by their trip counts (see module doc)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            k = int(np.prod([lhs.shape[d] for d in lhs_contract], dtype=np.int64)) if lhs_contract else 1
            total += 2.0 * _size(eqn.outvars[0].aval) * k
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval
            out_features = rhs.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += 2.0 * _size(eqn.outvars[0].aval) * _size(rhs) / max(out_features, 1)
        elif name == "scan":
            total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"], trip_hint)
        elif name == "while":
            body = jaxpr_flops(eqn.params["body_jaxpr"], trip_hint) + jaxpr_flops(eqn.params["cond_jaxpr"], trip_hint)
            total += trip_hint * body
        elif name == "cond":
            total += max(jaxpr_flops(b, trip_hint) for b in eqn.params["branches"])
        elif name in _ELEMENTWISE:
            total += sum(_size(v.aval) for v in eqn.outvars)
        elif name in _REDUCTIONS:
            total += sum(_size(v.aval) for v in eqn.invars[:1])
        else:
            total += sum(jaxpr_flops(sub, trip_hint) for sub in _sub_jaxprs(eqn))
    return float(total)


def count_flops(fn: Callable, *args, trip_hint: int = 1, **kwargs) -> float:
    """FLOPs of `fn(*args, **kwargs)` from its jaxpr (abstract evaluation: nothing runs).

    Args:
      fn: any JAX-traceable function (jitted or not).
      *args, **kwargs: arrays or `jax.ShapeDtypeStruct`s.
      trip_hint: trip count assumed for `while` loops (their count is not static).
    Returns:
      the FLOP count (float).
    """
    return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs), trip_hint)


# ----------------------------------------------------------------------------- interleaved reference


def matmul_fn(n: int) -> tuple[Callable[[], Any], float]:
    """A jitted dense float32 n x n matmul (compiled here) and its FLOPs (2 n^3)."""
    a = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(2), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    jax.block_until_ready(f(a, b))
    return (lambda: f(a, b)), 2.0 * n ** 3


def _best(fn: Callable[[], Any], reps: int) -> float:
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved_reference(timed: Callable[[], Any], *, matmul_n: int = 1024, rounds: int = 5,
                          reps_per_round: int = 1, matmul_reps: int = 3,
                          noisy_spread: float = 0.2) -> dict:
    """Times `timed` and a dense matmul alternately; both best-of-all-rounds.

    Args:
      timed: a compiled, warmed-up function; each call is ended by block_until_ready.
      matmul_n: size of the reference matmul.
      rounds: alternations; reps_per_round / matmul_reps: calls per round (best kept).
      noisy_spread: the run is flagged noisy when the matmul's slowest round is more than this
        fraction slower than its fastest ((max - min) / min of the per-round best times).
    Returns:
      {"timed_s": best time of `timed`, "timed_rounds_s": [...], "matmul_flops_per_s": best
      reference FLOP/s, "matmul_rounds_flops_per_s": [...], "spread": ..., "noisy": bool,
      "noisy_threshold": noisy_spread, "matmul_n": n}
    """
    ref, ref_flops = matmul_fn(matmul_n)
    timed_rounds, ref_rounds = [], []
    for _ in range(rounds):
        ref_rounds.append(_best(ref, matmul_reps))
        timed_rounds.append(_best(timed, reps_per_round))
    ref_rounds.append(_best(ref, matmul_reps))  # the timed rounds are bracketed on both sides
    spread = (max(ref_rounds) - min(ref_rounds)) / min(ref_rounds)
    return {"timed_s": min(timed_rounds), "timed_rounds_s": timed_rounds,
            "matmul_flops_per_s": ref_flops / min(ref_rounds),
            "matmul_rounds_flops_per_s": [ref_flops / t for t in ref_rounds],
            "spread": spread, "noisy": bool(spread > noisy_spread), "noisy_threshold": noisy_spread,
            "matmul_n": matmul_n}


def utilization(flops: float, seconds: float, reference_flops_per_s: float) -> float:
    """Achieved FLOP/s as a fraction of the reference matmul's (in [0, 1] for a sound count)."""
    return flops / seconds / reference_flops_per_s
