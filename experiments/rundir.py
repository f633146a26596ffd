"""Run directories: where a run writes, its lock, its log file, and reading its JSON files.

A run directory holds config.json (the resolved config), run.log, metrics.jsonl and metrics.csv
(one row per chunk), checkpoints/ (orbax, the newest `keep_checkpoints` kept), dynamics.json
(which cached pool was used), learning_curve.png, policy_seed{i}.npz and results.json, written
last and atomically (its presence marks a finished run).

A new run's directory is made only once its config and data have been checked, and removed
again if the run stops before its first checkpoint, so a failed start never blocks the same
command run again.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

from jaxrl_bayes.errors import UserError

logger = logging.getLogger("experiments.rundir")


class RunDirError(UserError):
    """The output or resume directory cannot be used as asked."""


def default_out(dataset: str, algo: str) -> Path:
    """runs/<dataset>/<algo>-<timestamp>[-i] (a path that does not exist yet)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset.strip("/"))
    base = Path("runs") / safe / f"{algo}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "results.json").is_file()


def check_new_run_dir(out: Path, force: bool) -> None:
    """Raises RunDirError unless `out` may hold a new run (nothing is changed here)."""
    check_out_path(out)
    if not out.exists():
        return
    if not any(out.iterdir()):
        return
    if not (out / "config.json").is_file():
        raise RunDirError(f"--out {out} is not empty and holds no run (no config.json); "
                          f"choose another --out (--force only replaces run directories)")
    pid = _lock_owner(out / ".lock")
    if pid:
        raise RunDirError(f"{out} is in use by process {pid}; wait for it or stop it")
    if not force:
        if is_finished(out):
            raise RunDirError(f"{out} already holds a finished run (results.json); choose another "
                              f"--out, or pass --force to overwrite it")
        raise RunDirError(f"{out} holds an unfinished run; continue it with "
                          f"`python -m experiments.run --resume {out}`, or pass --force to start over")


def check_out_path(out: Path, flag: str = "--out") -> None:
    """Raises RunDirError when `out`, or a folder above it, exists as something other than a
    folder (`touch results; --out results/run1`), before anything is made."""
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "exists and is not a directory" if p == out else f"is inside {p}, which is a file, not a directory"
                raise RunDirError(f"{flag} {out} {where}; choose another {flag}")
            return


def make_new_run_dir(out: Path, force: bool) -> None:
    """Makes `out` ready for a new run (`check_new_run_dir` first); --force replaces a previous
    run directory, never anything else."""
    check_new_run_dir(out, force)
    if out.is_dir() and any(out.iterdir()):
        logger.warning("--force: removing the previous run in %s", out)
        (out / "results.json").unlink(missing_ok=True)  # first: the dir no longer looks finished
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def remove_unstarted(run_dir: Path) -> None:
    """Removes a new run's directory that holds no checkpoint yet (a failed start)."""
    ckpts = run_dir / "checkpoints"
    if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_owner(path: Path) -> int:
    """The live process holding lock file `path` other than this one, else 0."""
    try:
        pid = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid and pid != os.getpid() and _alive(pid) else 0


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock file in the run directory (a stale lock of a dead process is taken over)."""
    path = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = _lock_owner(path)
            if pid:
                raise RunDirError(f"{run_dir} is in use by process {pid}; wait for it or stop it") from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise RunDirError(f"cannot lock {run_dir}")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def bc_score_beside(run_dir: Path, dataset: str) -> Optional[tuple[str, float]]:
    """(label, normalized score) of the newest finished `bc` run of `dataset` beside `run_dir`
    (its siblings named bc*), or None."""
    found = None
    for d in sorted(run_dir.parent.glob("bc*")):
        try:
            res = json.loads((d / "results.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if d != run_dir and res.get("algo") == "bc" and res.get("dataset") == dataset and res.get("normalized_score"):
            found = (f"BC ({d.name})", float(res["normalized_score"]["mean"]))
    return found


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{what} {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"{what} {path} is unreadable ({e})") from e


_LOGGERS = ("experiments", "jaxrl_bayes")


@contextlib.contextmanager
def _handlers(*handlers: logging.Handler) -> Iterator[None]:
    saved = []
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level, lg.propagate))
        lg.setLevel(logging.INFO)
        # not to the root logger: libraries (absl via orbax) put a stderr handler there, which
        # would print every line twice
        lg.propagate = False
        for h in handlers:
            lg.addHandler(h)
    try:
        yield
    finally:
        for lg, level, propagate in saved:
            for h in handlers:
                lg.removeHandler(h)
            lg.setLevel(level)
            lg.propagate = propagate
        for h in handlers:
            h.close()


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def console_logging() -> contextlib.AbstractContextManager:
    """INFO logs of `experiments` and `jaxrl_bayes` on the terminal (above the progress bar)."""
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    return _handlers(console)


class _RunLogHandler(logging.FileHandler):
    """A FileHandler that stays quiet when its disk is full: the failed write that matters is
    reported once by the front door, not as a "--- Logging error ---" block per log line."""

    def handleError(self, record):
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)


def file_logging(run_dir: Path) -> contextlib.AbstractContextManager:
    """The same logs appended to run_dir/run.log."""
    fh = _RunLogHandler(run_dir / "run.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return _handlers(fh)
