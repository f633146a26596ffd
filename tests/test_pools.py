"""The dynamics-pool cache under filesystem faults and concurrency (experiments/pools.py).

- A full disk while the pool file is written leaves no partial entry; the retry trains the
  same pool (same bytes as a clean cache).
- Two real processes asking for one pool at once: one trains, the other says it is waiting
  and loads the written pool (training is gated on a file, so the overlap is certain).
- A trainer killed with SIGKILL while holding the entry's lock does not block the next one
  (the lock is an OS lock, released by the kernel).

A tiny dataset (200 rows) and pool (2 members of width 8, 1 epoch) keep each test to seconds.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import filelock
import numpy as np
import pytest

from experiments import pools
from jaxrl_bayes import dynamics

REPO = Path(__file__).resolve().parents[1]

# a process asking for the tiny pool: training waits until the file argv[1] exists
CLIENT = r'''
import json, logging, os, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
sys.path.insert(0, os.path.join(sys.argv[2], "tests"))
from test_pools import CONFIG, tiny_dataset
from experiments import pools
from jaxrl_bayes import dynamics
real = dynamics.train_pool
def gated(*a, **k):
    print("TRAINING", flush=True)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
    return real(*a, **k)
dynamics.train_pool = gated
pool, info = pools.get_or_train_pool(tiny_dataset(), "tiny", CONFIG, 0, progress=False)
print("INFO " + json.dumps(info), flush=True)
'''

CONFIG = dynamics.DynamicsConfig(num_members=2, hidden=(8,), max_epochs=1, batch_size=64, max_holdout=20)


def tiny_dataset(n: int = 200):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    return types.SimpleNamespace(name="tiny", observations=obs, actions=act,
                                 rewards=rng.normal(size=n).astype(np.float32),
                                 next_observations=(obs + 0.1 * act).astype(np.float32),
                                 terminals=np.zeros(n, np.float32))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(pools.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entry(cache: Path) -> Path:
    (entry,) = (cache / "dynamics").iterdir()
    return entry


def test_full_disk_while_caching_leaves_no_partial_pool_and_the_retry_trains_the_same_pool(
        cache, tmp_path, monkeypatch):
    """The retried pool equals, array for array, the one the failed save was writing (what an
    uninterrupted run would have cached)."""
    from tests.faults import full_disk

    writer = full_disk(dynamics.files.atomic_open, on_call=1, after_bytes=1000)
    monkeypatch.setattr(dynamics.files, "atomic_open", writer)  # where save_pool looks it up
    being_saved = []
    real_save = dynamics.save_pool
    monkeypatch.setattr(dynamics, "save_pool", lambda pool, path: (being_saved.append(pool), real_save(pool, path)))
    with pytest.raises(OSError) as info:
        pools.get_or_train_pool(tiny_dataset(), "tiny", CONFIG, 0, progress=False)
    entry = _entry(cache)
    e = info.value
    assert e.errno == errno.ENOSPC and e.filename == str(entry / "pool.npz") == writer.calls[0]
    assert e.__notes__ == [f"the dynamics-pool cache is {cache} (set JAXRL_BAYES_CACHE to use another folder)"]
    assert not (entry / "pool.npz").exists() and not [p for p in os.listdir(entry) if "tmp" in p]
    monkeypatch.undo()
    monkeypatch.setenv(pools.CACHE_ENV, str(cache))
    retried, retried_info = pools.get_or_train_pool(tiny_dataset(), "tiny", CONFIG, 0, progress=False)
    assert retried_info["reused"] is False
    want, got = (dynamics._pool_arrays(p) for p in (being_saved[0], retried))
    assert want.keys() == got.keys() and all(np.asarray(want[k]).tobytes() == np.asarray(got[k]).tobytes()
                                             for k in want)


def _start(gate: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), pools.CACHE_ENV: str(cache), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", CLIENT, str(gate), str(REPO)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _read_until(proc: subprocess.Popen, phrase: str, seen: list[str], timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if phrase in line:
            return line
    raise AssertionError(f"{phrase!r} never came; output:\n{''.join(seen)}")


def test_two_processes_train_one_pool(cache, tmp_path):
    gate = tmp_path / "go"
    first = _start(gate, cache)
    out_a: list[str] = []
    out_b: list[str] = []
    second = None
    try:
        _read_until(first, "TRAINING", out_a)  # holds the lock, training waits for the gate
        second = _start(gate, cache)
        _read_until(second, "waiting for the dynamics pool that another process is training", out_b)
        gate.touch()
        info_a = json.loads(_read_until(first, "INFO ", out_a)[5:])
        info_b = json.loads(_read_until(second, "INFO ", out_b)[5:])
        assert first.wait(60) == 0 and second.wait(60) == 0
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
    assert info_a["reused"] is False and info_b["reused"] is True and info_b["waited_s"] > 0
    assert info_a["pool_sha256"] == info_b["pool_sha256"]
    assert not any("TRAINING" in line for line in out_b)  # trained once
    assert "reused cached dynamics pool" in "".join(out_b)


def test_a_killed_trainer_does_not_block_the_pool(cache, tmp_path):
    trainer = _start(tmp_path / "never", cache)
    try:
        _read_until(trainer, "TRAINING", [])
        entry = _entry(cache)
        with pytest.raises(filelock.Timeout):  # held while it trains
            filelock.FileLock(str(entry / "pool.lock")).acquire(timeout=0.2)
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(30)
    assert trainer.returncode == -signal.SIGKILL and not (entry / "pool.npz").exists()
    lock = filelock.FileLock(str(entry / "pool.lock"))
    lock.acquire(timeout=10)  # released by the kernel when the process died
    lock.release()
    _, info = pools.get_or_train_pool(tiny_dataset(), "tiny", CONFIG, 0, progress=False)
    assert info["reused"] is False and "waited_s" not in info and (entry / "pool.npz").is_file()
