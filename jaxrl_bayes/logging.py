"""Metric sinks for training runs: JSON lines and CSV always; TensorBoard and wandb optional.

A *row* is a flat dict for one training chunk: `chunk`, `step`, wall-clock fields, each
training metric (mean over seeds; per-seed values under `<name>/seeds`; vector metrics such as
`worst_pick_frac` as lists), and evaluation scores when the chunk was evaluated. Sinks:

- `JsonlSink`: `metrics.jsonl`, one JSON object per line (every entry, lists included).
- `CsvSink`: `metrics.csv`, scalar entries only, one column per name in first-seen order; the
  whole file is rewritten atomically after every row, so new columns (evaluation scores appear
  later than losses) and resumed runs never leave a ragged or half-written file.
- `TensorBoardSink`: scalars through `tensorboardX` (imported only when this sink is made).
- `WandbSink`: `wandb.log` (imported only when this sink is made).

Neither optional package is required: asking for a sink whose package is missing raises
`MissingSinkPackage` saying what to install (`pip install tensorboardX` / `pip install wandb`,
or `pip install jaxrl_bayes[logging]`). Non-finite numbers are written as `null` (JSON) or empty
(CSV), so every file stays strict JSON / plain CSV.

This module prints nothing; it is library code (no CLI).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any, Iterable, Mapping, Optional, Protocol, Sequence

import numpy as np

from jaxrl_bayes.checkpoint import atomic_write_text


class MissingSinkPackage(ImportError):
    """An optional logging sink was requested but its package is not installed."""


class MetricSink(Protocol):
    def write(self, row: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- row helpers


def to_json_value(x: Any) -> Any:
    """Converts numpy/JAX scalars and arrays to JSON values; non-finite floats become None."""
    if isinstance(x, Mapping):
        return {str(k): to_json_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json_value(v) for v in x]
    if isinstance(x, (str, bool)) or x is None:
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.bool_):
        return bool(x)
    arr = np.asarray(x)
    if arr.ndim == 0:
        return to_json_value(arr.item())
    return [to_json_value(v) for v in arr.tolist()]


def _mode(values: np.ndarray) -> np.ndarray:
    """Per column of an integer [S, k] array: the most frequent value (the smallest among ties)."""
    out = np.empty(values.shape[1], dtype=values.dtype)
    for j in range(values.shape[1]):
        vals, counts = np.unique(values[:, j], return_counts=True)
        out[j] = vals[np.argmax(counts)]  # np.unique sorts, argmax takes the first maximum
    return out


def summarize_chunk_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Turns one chunk's vmapped metrics into row entries.

    Args:
      metrics: name -> array with a leading seed axis S: shape [S] for scalar metrics,
        [S, *k] for vector metrics (e.g. `worst_pick_frac` [S, N]).
    Returns:
      dict: `name` -> mean over seeds (a float for [S], a nested list of shape k for [S, *k]);
      for S > 1 also `name/seeds` -> the per-seed values (list). Non-finite values -> None.
      Integer metrics are indices (e.g. `posterior_argmax`, a member): a mean of indices names
      no member, so their entry is the mode over seeds (the smallest index among ties).
    """
    row: dict[str, Any] = {}
    for name, value in metrics.items():
        raw = np.asarray(value)
        arr = raw.astype(np.float64)
        if arr.ndim == 0:
            row[name] = to_json_value(arr)
            continue
        if np.issubdtype(raw.dtype, np.integer):
            row[name] = to_json_value(_mode(raw.reshape(raw.shape[0], -1)).reshape(raw.shape[1:]))
        else:
            row[name] = to_json_value(arr.mean(axis=0))
        if arr.shape[0] > 1:
            row[f"{name}/seeds"] = to_json_value(arr)
    return row


def scalar_items(row: Mapping[str, Any]) -> dict[str, float]:
    """The entries of `row` that are plain numbers (what CSV and TensorBoard record)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, bool):
            out[k] = float(v)
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out[k] = v
    return out


# ----------------------------------------------------------------------------- sinks


class JsonlSink:
    """Appends one JSON object per row to `path`.

    Args:
      path: the `.jsonl` file.
      history: rows already logged (a resumed run); the file is rewritten atomically with
        exactly these rows first, dropping anything logged after the checkpoint.
    """

    def __init__(self, path: str | os.PathLike, history: Sequence[Mapping[str, Any]] = ()):
        self.path = os.fspath(path)
        atomic_write_text(self.path, "".join(_json_line(r) for r in history))
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        try:
            self._f.write(_json_line(row))
            self._f.flush()
        except OSError as e:  # a full disk: name the file (a resumed run rewrites it from history)
            if e.filename is None:
                e.filename = self.path
            raise

    def close(self) -> None:
        if not self._f.closed:
            try:
                self._f.close()
            except OSError:
                pass  # only a row whose write already failed (and raised) was still buffered


def _json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(to_json_value(row), allow_nan=False) + "\n"


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows a `JsonlSink` wrote to `path`, in order: [] for a missing file; a line cut by
    an interrupted write (or anything not a JSON object) is skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class CsvSink:
    """Keeps scalar entries of every row and rewrites `path` atomically after each row.

    Args:
      path: the `.csv` file.
      history: rows already logged (a resumed run).
    """

    def __init__(self, path: str | os.PathLike, history: Sequence[Mapping[str, Any]] = ()):
        self.path = os.fspath(path)
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        for r in history:
            self._add(r)
        self._flush()

    def _add(self, row: Mapping[str, Any]) -> None:
        scalars = scalar_items(to_json_value(dict(row)))
        for k in scalars:
            if k not in self._columns:
                self._columns.append(k)
        self._rows.append(scalars)

    def _flush(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, restval="", lineterminator="\n")
        writer.writeheader()
        for r in self._rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        atomic_write_text(self.path, buf.getvalue() if self._columns else "")

    def write(self, row: Mapping[str, Any]) -> None:
        self._add(row)
        self._flush()

    def close(self) -> None:
        pass


class TensorBoardSink:
    """Scalars (and vector entries as `name/i`) to a TensorBoard event file via tensorboardX.

    Args:
      logdir: directory for the event files.
      step_key: the row entry used as the global step.
    """

    def __init__(self, logdir: str | os.PathLike, step_key: str = "step"):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise MissingSinkPackage(
                "the TensorBoard sink needs the optional package tensorboardX: "
                "`pip install tensorboardX` (or `pip install jaxrl_bayes[logging]`), "
                "or turn the sink off (it is off by default)"
            ) from e
        self._writer = SummaryWriter(os.fspath(logdir))
        self._step_key = step_key

    def write(self, row: Mapping[str, Any]) -> None:
        step = int(row.get(self._step_key, 0))
        for name, value in _flat_numbers(row):
            if name != self._step_key:
                self._writer.add_scalar(name, value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """Rows to Weights & Biases (`wandb.log`); the run id is stable so a resume continues it.

    Args:
      project: wandb project name.
      name: run name (shown in the UI).
      run_id: stable id (e.g. derived from the run directory) for `resume="allow"`.
      config: the resolved config dict.
      directory: where wandb keeps its local files.
      step_key: the row entry used as the step.
    """

    def __init__(self, project: str, name: str, run_id: str, config: Mapping[str, Any],
                 directory: str | os.PathLike, step_key: str = "step"):
        try:
            import wandb
        except ImportError as e:
            raise MissingSinkPackage(
                "the wandb sink needs the optional package wandb: `pip install wandb` "
                "(or `pip install jaxrl_bayes[logging]`), or turn the sink off (it is off by default)"
            ) from e
        self._wandb = wandb
        self._run = wandb.init(project=project, name=name, id=run_id, resume="allow",
                               config=dict(config), dir=os.fspath(directory))
        self._step_key = step_key

    def write(self, row: Mapping[str, Any]) -> None:
        step = int(row.get(self._step_key, 0))
        self._run.log({k: v for k, v in _flat_numbers(row) if k != self._step_key}, step=step)

    def close(self) -> None:
        self._run.finish()


def _flat_numbers(row: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    """(name, number) pairs; lists become name/0, name/1, ... (per-seed lists are skipped)."""
    for name, value in to_json_value(dict(row)).items():
        if name.endswith("/seeds"):
            continue
        if isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, (int, float)):
            yield name, float(value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            for i, v in enumerate(value):
                yield f"{name}/{i}", float(v)


# ----------------------------------------------------------------------------- logger


class MetricLogger:
    """Fans rows out to several sinks.

    Args:
      sinks: the sinks; `write` calls each in order, `close` closes all.
    """

    def __init__(self, sinks: Sequence[MetricSink]):
        self.sinks = list(sinks)

    def write(self, row: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(row)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> "MetricLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_metric_logger(
    run_dir: str | os.PathLike,
    *,
    history: Sequence[Mapping[str, Any]] = (),
    tensorboard: bool = False,
    wandb: bool = False,
    wandb_project: str = "jaxrl_bayes",
    run_name: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
) -> MetricLogger:
    """The standard sinks of a run directory.

    Args:
      run_dir: the run directory: `metrics.jsonl`, `metrics.csv`, `tensorboard/` go there.
      history: rows logged before (a resumed run), re-written first.
      tensorboard, wandb: turn the optional sinks on (both off by default).
      wandb_project, run_name, config: passed to wandb.
    Returns:
      a MetricLogger. Raises MissingSinkPackage when an optional sink's package is missing.
    """
    run_dir = os.fspath(run_dir)
    sinks: list[MetricSink] = [
        JsonlSink(os.path.join(run_dir, "metrics.jsonl"), history),
        CsvSink(os.path.join(run_dir, "metrics.csv"), history),
    ]
    if tensorboard:
        sinks.append(TensorBoardSink(os.path.join(run_dir, "tensorboard")))
    if wandb:
        name = run_name or os.path.basename(os.path.abspath(run_dir))
        run_id = "".join(c if c.isalnum() else "-" for c in os.path.abspath(run_dir))[-64:].strip("-")
        sinks.append(WandbSink(wandb_project, name, run_id, config or {}, run_dir))
    return MetricLogger(sinks)
