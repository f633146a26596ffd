"""Offline install of the carried wheels (standard library only: it runs before tyro is there).

The wheels folder (`benchmarks/device/wheels/`, made here by `python -m benchmarks.device.wheels`)
holds the wheels of what the project needs and the GPU machine lacks, and `requirements.txt`:
one pinned top-level requirement a line (e.g. `tyro==1.0.17`). Each line whose distribution is
not installed yet is installed by its own `pip install --no-index --find-links <wheels>`, so one
that fails does not stop the others; where pip may not write the environment it retries once with
`--user`. tyro goes first: the script's own command line needs it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import site
import subprocess
import sys
import time
from pathlib import Path

WHEELS = Path(__file__).resolve().parent / "wheels"
REQUIREMENTS = "requirements.txt"


def requirement_name(line: str) -> str:
    """The distribution name of a requirement line: 'gymnasium[mujoco]==1.4.0' -> 'gymnasium'."""
    return re.split(r"[\[<>=!~;\s]", line.strip(), maxsplit=1)[0]


def is_installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def read_requirements(wheels: Path) -> list[str]:
    lines = (wheels / REQUIREMENTS).read_text().splitlines()
    reqs = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
    return sorted(reqs, key=lambda r: requirement_name(r) != "tyro")  # tyro first


def _pip(req: str, wheels: Path, user: bool) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
           "--disable-pip-version-check", "--no-input", *(["--user"] if user else []), req]
    return subprocess.run(cmd, capture_output=True, text=True)


def install(wheels: Path = WHEELS) -> dict:
    """Installs every requirement of `wheels`/requirements.txt that is not installed yet.

    Returns:
      the stage record: {"status": "ok" | "failed" | "skipped", "seconds", "installed",
      "already", "failed": {requirement: last lines of pip's output}, "note"}.
    """
    t0 = time.perf_counter()
    rec: dict = {"status": "ok", "wheels": str(wheels), "installed": [], "already": [], "failed": {}, "note": ""}
    if not (wheels / REQUIREMENTS).is_file():
        rec.update(status="skipped", note=f"no {wheels / REQUIREMENTS}: nothing carried to install "
                                          f"(make it with `python -m benchmarks.device.wheels`)")
        rec["seconds"] = time.perf_counter() - t0
        return rec
    for req in read_requirements(wheels):
        if is_installed(requirement_name(req)):
            rec["already"].append(req)
            continue
        proc = _pip(req, wheels, user=False)
        if proc.returncode != 0:  # e.g. a read-only environment: into the user's site-packages
            proc = _pip(req, wheels, user=True)
            if proc.returncode == 0:
                site.addsitedir(site.getusersitepackages())
        if proc.returncode == 0:
            rec["installed"].append(req)
        else:
            rec["failed"][req] = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
    importlib.invalidate_caches()
    if rec["failed"]:
        rec["status"] = "failed"
        rec["note"] = f"not installed: {', '.join(rec['failed'])}; the stages that need them fail, the others run"
    rec["seconds"] = time.perf_counter() - t0
    return rec
