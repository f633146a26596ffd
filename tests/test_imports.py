"""Every module of the library, the experiments and the benchmarks imports on its own.

Each module is imported first, with no project module loaded before it, in one fresh
interpreter: an import cycle (module A importing a name from B while B, loaded through A,
still needs A) fails only for the module a user happens to import first, which the rest of
the suite, importing in its own order, never does. `python -m experiments.collect` once failed
so.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxrl_bayes", "experiments", "benchmarks")

CHECK = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m.split(".")[0] in {packages!r}]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages([str(ROOT / pkg)], prefix=pkg + ".")]
    return names


def test_every_module_imports_first():
    names = _modules()
    assert {"jaxrl_bayes.evaluation", "experiments.collect", "jaxrl_bayes.data.registry"} <= set(names)
    r = subprocess.run([sys.executable, "-c", CHECK.format(packages=set(PACKAGES)), *names],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"modules that fail when imported first:\n{r.stdout}{r.stderr[-2000:]}"
