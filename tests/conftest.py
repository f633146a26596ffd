"""One persistent XLA compilation cache for the whole test session.

Many tests compile the same programs (the same tiny train step, built by different tests, by the
two xdist workers and by the `python -m experiments.*` subprocesses some tests start); with one
on-disk cache each is compiled once. The cache changes no result: a hit loads the executable a
miss would have built. The directory is made by the first process that loads this file (the
xdist controller, before its workers start, so they and their subprocesses inherit it) and removed
when that process ends. A cache directory set by the caller is used as given and kept.
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


def pytest_unconfigure(config):
    if _OWNED is not None:
        shutil.rmtree(_OWNED, ignore_errors=True)
