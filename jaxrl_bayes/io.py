"""Atomic file writes: the one place that writes a file by temporary name + fsync + rename.

Everything the project writes that a later run trusts (dynamics pools, configs, results,
collected datasets' side files, checkpoint metadata) goes through `atomic_open`, so an
interrupted write leaves the previous file intact and never a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Opens a temporary file beside `path`; on a clean exit fsyncs it and renames it to `path`.

    On any exception (Ctrl-C included) the temporary file is removed and `path` is untouched;
    an `OSError` of the write (a full disk: ENOSPC, a quota: EDQUOT, ...) names `path` as its
    `filename` (an error from inside `f.write` names no file otherwise).

    Args:
      path: the final file name; missing parent directories are created.
      mode: "wb" or "w" (text mode writes UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports modes 'wb' and 'w', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path) + ".", dir=directory)
    except OSError as e:
        e.filename = path  # not the random temporary name
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass  # already gone (or the file system refuses even that)
        if isinstance(e, OSError) and (e.filename is None or e.filename == tmp):
            e.filename = path
        raise
