"""`python -m benchmarks.device.wheels`: the wheels the GPU machine lacks, into an ignored folder.

    python -m benchmarks.device.wheels          # -> benchmarks/device/wheels/ (ignored by git)

The GPU machine (Python 3.12, x86-64, no network) has JAX with CUDA, flax, optax, chex,
orbax-checkpoint, h5py, matplotlib, tqdm and pytest installed (`--present`), and so everything
those depend on. This command:

1. resolves, for Python 3.12 on manylinux x86-64, what `--present` installs (`pip install
   --dry-run --report`, nothing downloaded but metadata): the GPU machine's packages;
2. takes the project's requirements (pyproject.toml) that are not among them (today
   gymnasium[mujoco], mujoco, minari, tyro, filelock), pinned to the versions installed here
   (the versions the suite passes with), and `pip download --only-binary=:all: --python-version
   3.12 --platform manylinux...` them with their dependencies, constrained to the versions
   installed here;
3. drops the downloaded wheels of packages the GPU machine has, and writes `requirements.txt`
   (the pinned top-level requirements, which `benchmarks.device.install` installs offline) and
   `manifest.json` (files, sizes, what was dropped and why, the commands).

It fails with one line when the folder exceeds `--limit-mib` (the device tool carries 64 MiB in
all). Needs the package index (here: PyPI); run it again after changing pyproject.toml.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Optional, Sequence

from benchmarks.device.install import REQUIREMENTS, WHEELS, requirement_name
from jaxrl_bayes.errors import UserError
from jaxrl_bayes.io import atomic_open

REPO = Path(__file__).resolve().parents[2]
PROG = "python -m benchmarks.device.wheels"
# What the GPU machine has installed; JAX's CUDA plugin adds nothing the project needs.
PRESENT = ("jax", "flax", "optax", "chex", "orbax-checkpoint", "h5py", "matplotlib", "tqdm", "pytest")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64")


@dataclasses.dataclass(frozen=True)
class Args:
    """Download the wheels of what the project needs and the GPU machine lacks (Python 3.12,
    manylinux x86-64) into a folder to carry along with the device call."""

    out: str = str(WHEELS)  # the folder (replaced); ignored by git
    python_version: str = "3.12"  # the GPU machine's Python
    platforms: tuple[str, ...] = PLATFORMS  # wheel platform tags the GPU machine accepts
    present: tuple[str, ...] = PRESENT  # installed on the GPU machine (with everything they depend on)
    limit_mib: float = 64.0  # fail when the folder is larger (the device tool carries 64 MiB in all)


def normalize(name: str) -> str:
    """PEP 503 name: 'Typing_Extensions' -> 'typing-extensions'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(filename: str) -> str:
    """The normalized project name of a wheel file name."""
    return normalize(filename.split("-", 1)[0])


def project_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    with open(pyproject, "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def pinned(req: str) -> str:
    """`req` pinned to the version installed here ('gymnasium[mujoco]' -> 'gymnasium[mujoco]==1.4.0');
    as given when it is not installed here or already carries a version."""
    name = requirement_name(req)
    if req.strip() != req.split(";")[0].strip() or re.search(r"[<>=!~]", req):
        return req
    try:
        return f"{req.strip()}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return req


def _target(args: Args) -> list[str]:
    abi = "cp" + args.python_version.replace(".", "")
    return ["--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp",
            "--abi", abi, *[a for p in args.platforms for a in ("--platform", p)]]


def _pip(cmd: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *cmd, "--disable-pip-version-check", "--no-input"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        last = [l for l in (proc.stderr + proc.stdout).strip().splitlines() if l.strip()][-1:] or ["?"]
        raise UserError(f"{what} failed (pip exit {proc.returncode}): {last[0].strip()}")


def present_packages(args: Args, scratch: Path) -> dict[str, str]:
    """{normalized name: version} of what `args.present` installs for the target Python/platform."""
    report = scratch / "present.json"
    _pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
          "--target", str(scratch / "never-written"), *_target(args), *args.present],
         f"resolving the GPU machine's packages ({' '.join(args.present)})")
    with open(report) as f:
        items = json.load(f)["install"]
    return {normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def local_constraints(path: Path) -> None:
    """Every distribution installed here, pinned: downloads keep the versions the suite passes with."""
    pins = sorted({f"{normalize(d.metadata['Name'])}=={d.version}" for d in importlib.metadata.distributions()
                   if d.metadata["Name"]})
    path.write_text("\n".join(pins) + "\n")


def gather(args: Args) -> dict:
    """Downloads, prunes and writes the folder (see module doc); returns its manifest."""
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".wheels-", dir=out.parent))
    try:
        present = present_packages(args, scratch)
        wanted = [r for r in project_requirements() if normalize(requirement_name(r)) not in present]
        top = [pinned(r) for r in wanted]
        constraints = scratch / "constraints.txt"
        local_constraints(constraints)
        new = scratch / "wheels"
        download = ["download", "--quiet", "--dest", str(new), "-c", str(constraints), *_target(args), *top]
        _pip(download, f"downloading {' '.join(top)}")
        kept, dropped = [], []
        for whl in sorted(new.iterdir()):
            if wheel_project(whl.name) in present:
                dropped.append({"file": whl.name, "why": f"the GPU machine has {wheel_project(whl.name)} "
                                                         f"{present[wheel_project(whl.name)]} (with {', '.join(args.present)})"})
                whl.unlink()
            else:
                kept.append({"file": whl.name, "bytes": whl.stat().st_size})
        total = sum(k["bytes"] for k in kept)
        manifest = {
            "python_version": args.python_version, "platforms": list(args.platforms), "present": list(args.present),
            "gpu_machine_packages": present, "requirements": top, "wheels": kept, "dropped": dropped,
            "total_bytes": total, "total_mib": total / 2**20,
            "download_command": shlex.join([sys.executable, "-m", "pip", *download]),
        }
        with atomic_open(new / REQUIREMENTS, "w") as f:
            f.write("# written by python -m benchmarks.device.wheels; installed offline by benchmarks.device.install\n")
            f.write("\n".join(top) + "\n")
        with atomic_open(new / "manifest.json", "w") as f:
            json.dump(manifest, f, indent=1)
        if total > args.limit_mib * 2**20:
            raise UserError(f"the wheels take {total / 2**20:.1f} MiB, more than --limit-mib {args.limit_mib:g} "
                            f"(the device tool carries 64 MiB in all); drop a requirement or carry less")
        old = scratch / "old"
        if out.exists():
            os.rename(out, old)
        os.rename(new, out)
        return manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from experiments import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.front_door(functools.partial(_main, argv), argv)


def _main(argv: list[str], ctx: Any) -> int:
    from experiments import cli

    args = cli.parse(Args, argv, prog=PROG)
    if args is None:
        return 0
    m = gather(args)
    for w in m["wheels"]:
        print(f"{w['bytes'] / 2**20:7.2f} MiB  {w['file']}")
    print(f"{len(m['wheels'])} wheels, {m['total_mib']:.1f} MiB in {Path(args.out).resolve()} "
          f"(requirements: {', '.join(m['requirements'])}; {len(m['dropped'])} dropped: the GPU machine has them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
