"""One validation on every load path, each error class one line; local files as datasets."""

import warnings

import h5py
import numpy as np
import pytest

from jaxrl_bayes import evaluation, termination
from jaxrl_bayes.data import d4rl, registry
from jaxrl_bayes.data.dataset import MIN_TRANSITIONS, DatasetError
from jaxrl_bayes.errors import UserError

warnings.filterwarnings("ignore", message=".*is out of date.*")
pytestmark = pytest.mark.filterwarnings("ignore:no termination rule known")

ROWS = 30


def hopper_rows(rows=ROWS, obs_dim=11, act_dim=3):
    """D4RL-schema rows: obs[i] = i + 0.01 * column, a fall at row 9, a timeout at row 19."""
    obs = np.arange(rows)[:, None] + 0.01 * np.arange(obs_dim)[None, :]
    term = np.arange(rows) == 9
    tout = np.arange(rows) == 19
    return {"observations": obs.astype(np.float32), "actions": np.full((rows, act_dim), 0.5, np.float32),
            "rewards": np.arange(rows, dtype=np.float32), "terminals": term, "timeouts": tout,
            "next_observations": (obs + 0.5).astype(np.float32)}


def write(path, data, attrs=None):
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def one_line_error(fn, match):
    with pytest.raises(UserError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def load_path(path, **kw):
    return lambda: registry.get_spec(str(path), **kw).load()


# ----------------------------------------------------------------------------- error classes


def test_wrong_widths_against_the_eval_env(tmp_path):
    path = write(tmp_path / "mine.hdf5", hopper_rows())
    msg = one_line_error(load_path(path, eval_env="Walker2d-v4"),
                         r"has observations of width 11 and actions of width 3, but the "
                         r"evaluation environment Walker2d-v4 expects 17 and 6")
    assert str(path) in msg


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "next_observations"])
@pytest.mark.parametrize("bad, counts", [(np.nan, "1 NaN, 0 inf"), (np.inf, "0 NaN, 1 inf")])
def test_non_finite_values_name_key_count_and_row(tmp_path, key, bad, counts):
    data = hopper_rows()
    data[key].reshape(ROWS, -1)[7, 0] = bad
    path = write(tmp_path / "bad.hdf5", data)
    one_line_error(load_path(path, eval_env="Hopper-v4"),
                   rf"bad\.hdf5': key '{key}' has 1 non-finite values \({counts}\) at rows \[7\]")


def test_missing_key(tmp_path):
    data = hopper_rows()
    del data["rewards"]
    path = write(tmp_path / "m.hdf5", data)
    one_line_error(load_path(path), r"lacks the D4RL key\(s\) \['rewards'\]")


def test_wrong_rank_dtype_and_lengths(tmp_path):
    data = hopper_rows()
    data["rewards"] = data["rewards"].reshape(ROWS, 1, 1)
    one_line_error(load_path(write(tmp_path / "r.hdf5", data)),
                   r"key 'rewards' has shape \(30, 1, 1\), expected 1 dimension")
    data = hopper_rows()
    data["actions"] = np.array([b"x"] * ROWS)
    one_line_error(load_path(write(tmp_path / "d.hdf5", data)),
                   r"key 'actions' has dtype \|S1, expected real numbers")
    data = hopper_rows()
    data["terminals"] = data["terminals"][:-1]
    one_line_error(load_path(write(tmp_path / "l.hdf5", data)), r"keys have unequal lengths")
    data = hopper_rows()
    data["next_observations"] = data["next_observations"][:, :5]
    one_line_error(load_path(write(tmp_path / "w.hdf5", data)),
                   r"next_observations width 5 != observations width 11")


def test_empty_zero_transitions_and_too_few(tmp_path):
    one_line_error(load_path(write(tmp_path / "e.hdf5", hopper_rows(rows=0))), r"is empty \(0 rows\)")
    data = hopper_rows()
    data["timeouts"][:] = True
    one_line_error(load_path(write(tmp_path / "z.hdf5", data)), r"no transition left")
    few = hopper_rows(rows=MIN_TRANSITIONS)  # the fall at row 9 is kept, nothing dropped
    assert registry.get_spec(str(write(tmp_path / "ok.hdf5", few))).load().size == MIN_TRANSITIONS
    few = hopper_rows(rows=MIN_TRANSITIONS - 1)
    one_line_error(load_path(write(tmp_path / "f.hdf5", few)),
                   rf"has {MIN_TRANSITIONS - 1} transition\(s\), fewer than the {MIN_TRANSITIONS}")


def test_truncated_empty_and_absent_files(tmp_path):
    path = write(tmp_path / "t.hdf5", hopper_rows(rows=3000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = one_line_error(load_path(path), r"cannot read .*t\.hdf5 .*truncated or corrupt")
    assert msg.startswith(f"cannot read {path} (")
    (tmp_path / "empty.hdf5").write_bytes(b"")
    one_line_error(load_path(tmp_path / "empty.hdf5"), r"truncated or corrupt")
    with pytest.raises(FileNotFoundError, match="no file or directory"):
        registry.get_spec(str(tmp_path / "absent.hdf5"))
    with pytest.raises(UserError, match="not a Minari dataset directory"):
        registry.get_spec(str(tmp_path))


def test_registry_names_validate_through_spec_load(tmp_path, monkeypatch):
    """The D4RL path goes through the same validation: NaN in a cached D4RL file."""
    monkeypatch.setenv(d4rl.DATASET_DIR_ENV, str(tmp_path))
    data = hopper_rows()
    data["rewards"][4] = np.nan
    path = write(tmp_path / "hopper_medium-v2.hdf5", data)
    one_line_error(registry.get_spec("hopper-medium-v2").load,
                   rf"^dataset 'hopper-medium-v2' \({path}\): key 'rewards' has 1 non-finite")


# ----------------------------------------------------------------------------- local files


def test_local_hdf5_with_an_eval_env(tmp_path):
    path = write(tmp_path / "mine.hdf5", hopper_rows())
    spec = registry.get_spec(str(path), eval_env="Hopper-v4")
    assert (spec.name, spec.source, spec.family, spec.eval_env_id) == (str(path), "hdf5", "hopper", "Hopper-v4")
    assert (spec.ref_min_score, spec.ref_max_score) == (d4rl.REF_MIN_SCORE["hopper"], d4rl.REF_MAX_SCORE["hopper"])
    assert spec.termination_fn is termination.TERMINATION_FNS["hopper"]
    assert (spec.obs_dim, spec.act_dim) == (11, 3)  # from Hopper-v4's spaces
    ds = spec.load()
    assert ds.size == ROWS - 1 and ds.obs_dim == 11  # the timeout row is dropped (D4RL's view)
    returns = evaluation.evaluate_on(spec, lambda o: np.zeros((o.shape[0], 3), np.float32), num_episodes=1)
    assert returns.shape == (1,) and np.isfinite(returns).all()
    given = registry.spec_for_path(path, eval_env="Hopper-v4", ref_min_score=0.0, ref_max_score=10.0)
    np.testing.assert_allclose(evaluation.normalize_for(given, [5.0]), [50.0])


def test_local_hdf5_env_from_its_metadata(tmp_path):
    attr = registry.get_spec(str(write(tmp_path / "a.hdf5", hopper_rows(), {"env_id": "Hopper-v5"})))
    assert (attr.eval_env_id, attr.family) == ("Hopper-v5", "hopper")
    assert (attr.ref_min_score, attr.ref_max_score) == (None, None)  # v5 is not D4RL's MDP
    data = hopper_rows() | {"metadata/env_id": "Hopper-v4"}
    meta = registry.get_spec(str(write(tmp_path / "b.hdf5", data)))
    assert meta.eval_env_id == "Hopper-v4" and meta.ref_max_score == d4rl.REF_MAX_SCORE["hopper"]
    # the argument wins over the file's record, and widths are checked against it
    with pytest.raises(DatasetError, match="Walker2d-v4 expects 17 and 6"):
        registry.get_spec(str(tmp_path / "a.hdf5"), eval_env="Walker2d-v4").load()


def test_local_hdf5_without_env_trains_but_cannot_evaluate(tmp_path):
    path = write(tmp_path / "robot.h5", hopper_rows(obs_dim=4, act_dim=2))
    with pytest.warns(UserWarning, match="never terminate"):
        spec = registry.get_spec(str(path))
    assert (spec.family, spec.eval_env_id, evaluation.evaluator_for(spec)) == ("other", None, None)
    assert (spec.obs_dim, spec.act_dim) == (None, None)
    assert (spec.ref_min_score, spec.ref_max_score) == (None, None)
    assert spec.termination_fn is termination.no_termination
    assert spec.load().obs_dim == 4
    one_line_error(lambda: evaluation.evaluate_on(spec, lambda o: o), "has no evaluation environment")


def test_local_file_argument_errors(tmp_path):
    path = str(write(tmp_path / "mine.hdf5", hopper_rows()))
    one_line_error(lambda: registry.get_spec(path, eval_env="Hoper-v4"), r"Did you mean 'Hopper-v4'")
    one_line_error(lambda: registry.get_spec(path, eval_env="Hopper-v4", ref_min_score=1.0),
                   "give both ref_min_score and ref_max_score")
    one_line_error(lambda: registry.get_spec(path, ref_min_score=0.0, ref_max_score=1.0),
                   "reference scores need an evaluation environment")
    one_line_error(lambda: registry.get_spec("hopper-medium-v2", eval_env="Hopper-v4"),
                   "apply only to a local file path")
    one_line_error(lambda: registry.get_spec("hopper-medium"), r"Did you mean 'hopper-medium-v2'")


def test_local_minari_directory(tmp_path, monkeypatch):
    from tests.test_minari import collect

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
    rec = collect("test/hopper/local-v0", episodes=2)
    directory = tmp_path / "store" / "test" / "hopper" / "local-v0"
    spec = registry.get_spec(str(directory))
    assert (spec.source, spec.family, spec.eval_env_id) == ("minari-dir", "hopper", "Hopper-v4")
    ds = spec.load()
    assert ds.size == len(rec["act"])
    np.testing.assert_allclose(ds.actions, rec["act"])
    with pytest.raises(DatasetError, match="HalfCheetah-v4 expects 17 and 6"):
        registry.get_spec(str(directory / "data"), eval_env="HalfCheetah-v4").load()
