"""Fault injection for the filesystem tests: the n-th file a writer opens hits a full disk.

`full_disk(real_open, on_call=n)` wraps a module's `atomic_open` (patch the name the writer
module imported, e.g. `monkeypatch.setattr(policy_lib, "atomic_open", full_disk(...))`). On its
n-th call the real `atomic_open` runs (temporary file beside the target, fsync, rename), but the
file object it yields accepts `after_bytes` bytes and then raises `OSError(ENOSPC)` from
`write`, with no file name, as the kernel does: what a real full disk does midway through a
file. Every other call is untouched. `opener.calls` lists the paths opened.
"""

from __future__ import annotations

import contextlib
import errno
import os


class _FullDiskFile:
    def __init__(self, f, budget: int):
        self._f, self._left = f, budget

    def write(self, data):
        if len(data) > self._left:
            self._f.write(data[: self._left])  # a partial write, then the disk is full
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def full_disk(real_open, *, on_call: int = 1, after_bytes: int = 64):
    calls: list[str] = []

    @contextlib.contextmanager
    def opener(path, mode="wb"):
        calls.append(os.fspath(path))
        faulty = len(calls) == on_call
        with real_open(path, mode) as f:
            yield _FullDiskFile(f, after_bytes) if faulty else f

    opener.calls = calls
    return opener


ORBAX_ENOSPC = ("RESOURCE_EXHAUSTED: Error writing \"leaf_00000/0\" in OCDBT database at local file \"{tmp}\": "
                "Failed to write 1272616 bytes to file 14: No space left on device [os_error_code='28']")


def orbax_full_disk(real_save, *, on_call: int = 1):
    """A stand-in for `orbax.checkpoint.CheckpointManager.save` whose n-th call leaves a
    half-written temporary step directory and raises what orbax raises on a full disk (a
    ValueError quoting tensorstore's errno; measured on a 300 KiB tmpfs)."""
    calls: list[int] = []

    def save(self, step, *a, **k):
        calls.append(int(step))
        if len(calls) != on_call:
            return real_save(self, step, *a, **k)
        tmp = os.path.join(os.fspath(self.directory), f"{step}.orbax-checkpoint-tmp-1234", "state")
        os.makedirs(tmp)
        with open(os.path.join(tmp, "manifest.ocdbt"), "wb") as f:
            f.write(b"half")
        raise ValueError(ORBAX_ENOSPC.format(tmp=tmp))

    save.calls = calls
    return save

