"""Compilation settings of the test session: one persistent XLA cache, most XLA optimizations off.

Many tests compile the same programs (the same tiny train step, built by different tests, by the
two xdist workers and by the `python -m experiments.*` subprocesses some tests start); with one
on-disk cache each is compiled once. The cache changes no result: a hit loads the executable a
miss would have built. The directory is made by the first process that loads this file (the
xdist controller, before its workers start, so they and their subprocesses inherit it) and removed
when that process ends. A cache directory set by the caller is used as given and kept.

Most tests compile far more than they run (tiny networks, a few steps), so the session compiles
with most of XLA's optimizations off (`JAX_DISABLE_MOST_OPTIMIZATIONS=1`, inherited by the
subprocesses): the whole suite takes about 40 % less time. The programs compute the same thing;
only float rounding may differ, so a test that compares against numbers recorded from the
optimized programs users run turns the optimizations back on (tests/test_config_equivalence.py).
`JAX_DISABLE_MOST_OPTIMIZATIONS=0 pytest` runs every test as users compile.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_OWNED: str | None = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWNED = tempfile.mkdtemp(prefix="jaxrl_bayes-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWNED
    # compilations under half a second are cheaper to redo than to write and read back
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def pytest_unconfigure(config):
    if _OWNED is not None:
        shutil.rmtree(_OWNED, ignore_errors=True)
