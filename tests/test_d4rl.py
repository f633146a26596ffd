"""D4RL files: naming, hdf5 reading, and downloads from a local HTTP server (no network)."""

import hashlib
import http.server
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from jaxrl_bayes.data import d4rl
from jaxrl_bayes.data.dataset import DatasetError
from jaxrl_bayes.errors import UserError

NAME = "hopper-medium-replay-v2"
FILE = "hopper_medium_replay-v2.hdf5"


def write_d4rl_file(path, obs_dim=11, act_dim=3, rows=12, next_obs=False, nan_key=None):
    """A tiny file in the D4RL schema; obs[i] = i + 0.01 * column, fall at row 2, timeout at 4."""
    obs = np.arange(rows)[:, None] + 0.01 * np.arange(obs_dim)[None, :]
    act = np.full((rows, act_dim), 0.5, np.float32)
    rew = np.arange(rows, dtype=np.float32)
    term = np.zeros(rows, bool)
    term[2] = True
    tout = np.zeros(rows, bool)
    tout[4] = True
    data = {"observations": obs, "actions": act, "rewards": rew, "terminals": term,
            "timeouts": tout}
    if next_obs:
        data["next_observations"] = obs + 0.5
    if nan_key:
        data[nan_key] = data[nan_key].astype(np.float32)
        data[nan_key].flat[3] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
        f.create_dataset("infos/qpos", data=np.zeros((rows, 2)))
        f.create_dataset("metadata/algorithm", data="SAC")
    return data


def test_names_urls_and_dirs(monkeypatch, tmp_path):
    assert d4rl.file_name("walker2d-medium-replay-v2") == "walker2d_medium_replay-v2.hdf5"
    assert d4rl.file_name("halfcheetah-full-replay-v2") == "halfcheetah_full_replay-v2.hdf5"
    assert d4rl.file_name("hopper-random-v2") == "hopper_random-v2.hdf5"
    assert len(d4rl.NAMES) == 18
    monkeypatch.delenv(d4rl.BASE_URL_ENV, raising=False)
    monkeypatch.delenv(d4rl.DATASET_DIR_ENV, raising=False)
    assert d4rl.file_url("walker2d-medium-replay-v2") == (
        "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/"
        "walker2d_medium_replay-v2.hdf5")
    assert d4rl.dataset_dir() == Path.home() / ".d4rl" / "datasets"
    monkeypatch.setenv(d4rl.BASE_URL_ENV, "http://mirror.example/d4rl/")
    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(tmp_path))
    assert d4rl.file_url(NAME) == f"http://mirror.example/d4rl/{FILE}"
    assert d4rl.file_url(NAME, "http://other") == f"http://other/{FILE}"
    assert d4rl.file_path(NAME) == tmp_path / FILE
    with pytest.raises(ValueError, match="not a D4RL v2"):
        d4rl.file_name("hopper-medium-v0")


def test_hdf5_without_next_observations_gives_the_expected_transitions(tmp_path):
    path = tmp_path / FILE
    raw = write_d4rl_file(path, obs_dim=2, act_dim=1, rows=7)
    # Rows 0..6: episode 0-2 falls at row 2, episode 3-4 times out at row 4 (dropped), episode
    # 5-6 is cut by the file's end (row 6 dropped: no next observation without the key).
    ds = d4rl.Dataset.from_arrays(**d4rl.load_hdf5(path), name=NAME, min_transitions=1)
    expected_obs = [[0, 0.01], [1, 1.01], [2, 2.01], [3, 3.01], [5, 5.01]]
    # D4RL: next observation = observations[i + 1], also for the terminal row 2.
    expected_next = [[1, 1.01], [2, 2.01], [3, 3.01], [4, 4.01], [6, 6.01]]
    np.testing.assert_allclose(ds.observations, expected_obs, rtol=1e-6)
    np.testing.assert_allclose(ds.next_observations, expected_next, rtol=1e-6)
    np.testing.assert_array_equal(ds.rewards, [0, 1, 2, 3, 5])
    np.testing.assert_array_equal(ds.terminals, [0, 0, 1, 0, 0])
    np.testing.assert_allclose(ds.actions, np.full((5, 1), 0.5))
    np.testing.assert_allclose(ds.start_observations, [[0, 0.01], [3, 3.01], [5, 5.01]],
                               rtol=1e-6)
    assert raw["observations"].shape == (7, 2)


def test_hdf5_errors_name_the_problem(tmp_path, monkeypatch):
    nan_path = tmp_path / "nan.hdf5"
    write_d4rl_file(nan_path, nan_key="rewards")
    with pytest.raises(DatasetError, match=r"nan\.hdf5': key 'rewards' has 1 non-finite values "
                                           r"\(1 NaN, 0 inf\) at rows \[3\]"):
        d4rl.load_file(nan_path)

    missing = tmp_path / "missing.hdf5"
    with h5py.File(missing, "w") as f:
        f.create_dataset("observations", data=np.zeros((3, 2)))
        f.create_dataset("actions", data=np.zeros((3, 1)))
        f.create_dataset("rewards", data=np.zeros(3))
    with pytest.raises(DatasetError, match=r"lacks the D4RL key\(s\) \['terminals'\]"):
        d4rl.load_hdf5(missing)

    truncated = tmp_path / "truncated.hdf5"
    write_d4rl_file(truncated, rows=2000)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"truncated\.hdf5.*truncated or corrupt; replace it"):
        d4rl.load_hdf5(truncated)
    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(tmp_path))  # the same file in the D4RL cache
    truncated.rename(d4rl.file_path("hopper-random-v2"))  # no known size: h5py finds the damage
    with pytest.raises(DatasetError, match=r"truncated or corrupt; delete it and run again to "
                                           r"re-download it$"):
        d4rl.load("hopper-random-v2", progress=False)

    with pytest.raises(FileNotFoundError):
        d4rl.load_hdf5(tmp_path / "absent.hdf5")


class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "ok"  # ok | wrong | drop | missing
    payload = b""
    requests = 0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests += 1
        if self.mode == "missing":
            self.send_error(404)
            return
        body = self.payload
        if self.mode == "wrong":
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        if self.mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves one D4RL-schema file; D4RL_DATASET_DIR and the base URL point here."""
    src = tmp_path / "src" / FILE
    write_d4rl_file(src, rows=40, next_obs=True)
    handler = type("Handler", (_Handler,), {"payload": src.read_bytes(), "mode": "ok"})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    cache = tmp_path / "cache"
    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(cache))
    monkeypatch.setenv(d4rl.BASE_URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/d4rl")
    payload = handler.payload
    monkeypatch.setitem(d4rl.KNOWN_FILES, FILE,
                        (len(payload), hashlib.sha256(payload).hexdigest()))
    yield handler, cache
    httpd.shutdown()
    httpd.server_close()


def test_download_success_then_cached(server):
    handler, cache = server
    ds = d4rl.load(NAME, progress=False)
    assert (cache / FILE).read_bytes() == handler.payload
    assert list(cache.iterdir()) == [cache / FILE]  # no temporary file left
    assert ds.size == 39 and ds.obs_dim == 11  # 40 rows minus the timeout row 4
    d4rl.load(NAME, progress=False)
    assert handler.requests == 1  # the second load used the cache


def test_hash_mismatch_keeps_nothing(server, monkeypatch):
    handler, cache = server
    monkeypatch.setitem(d4rl.KNOWN_FILES, FILE, (len(handler.payload), "0" * 64))
    with pytest.raises(d4rl.ChecksumError, match=r"SHA-256 .* differs .* not kept"):
        d4rl.ensure_file(NAME, progress=False)
    assert list(cache.iterdir()) == []
    handler.mode = "wrong"  # right size and known hash, wrong bytes
    monkeypatch.setitem(d4rl.KNOWN_FILES, FILE, (len(handler.payload),
                                                 hashlib.sha256(handler.payload).hexdigest()))
    with pytest.raises(d4rl.ChecksumError):
        d4rl.ensure_file(NAME, progress=False)
    assert list(cache.iterdir()) == []


def test_unknown_hash_warns_with_the_digest(server, monkeypatch):
    handler, cache = server
    monkeypatch.delitem(d4rl.KNOWN_FILES, FILE)
    with pytest.warns(UserWarning, match=hashlib.sha256(handler.payload).hexdigest()):
        d4rl.ensure_file(NAME, progress=False)
    assert (cache / FILE).exists()


def test_dropped_connection_leaves_no_partial_file(server, monkeypatch):
    handler, cache = server
    handler.mode = "drop"
    monkeypatch.delitem(d4rl.KNOWN_FILES, FILE)  # only Content-Length can reveal the loss
    with pytest.raises(d4rl.D4RLDownloadError) as info:
        d4rl.load(NAME, progress=False)
    assert FILE in str(info.value)
    assert list(cache.iterdir()) == []
    handler.mode = "ok"  # a later load downloads again instead of trusting a partial file
    with pytest.warns(UserWarning, match="no known SHA-256"):
        ds = d4rl.load(NAME, progress=False)
    assert ds.size == 39 and handler.requests == 2


def test_offline_error_says_what_to_do(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(d4rl.BASE_URL_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(d4rl.D4RLDownloadError) as info:
        d4rl.ensure_file("walker2d-medium-replay-v2", progress=False)
    msg = str(info.value)
    assert "walker2d_medium_replay-v2.hdf5" in msg
    assert f"http://127.0.0.1:{port}/walker2d_medium_replay-v2.hdf5" in msg
    assert str(tmp_path / "walker2d_medium_replay-v2.hdf5") in msg
    assert "python -m experiments.collect --env walker2d --levels medium-replay" in msg
    assert "\n" not in msg and isinstance(info.value, UserError)
    assert "jaxrl_bayes/walker2d/medium-replay-v0" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []


def test_cached_file_of_wrong_size_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(tmp_path))
    (tmp_path / FILE).write_bytes(b"x" * 100)
    with pytest.raises(d4rl.ChecksumError, match=r"100 bytes, expected 75854457.*Delete it"):
        d4rl.ensure_file(NAME, progress=False)
