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


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every module an `import` or `from ... import` in `path` names (at any depth: function-level
    imports too), relative imports resolved against `module`; `from a import b` gives a and a.b."""
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_data_does_not_import_evaluation():
    """The data package reads datasets; building evaluators and scores from its facts is
    `jaxrl_bayes.evaluation`'s job, so nothing under jaxrl_bayes/data/ imports it."""
    data = ROOT / "jaxrl_bayes" / "data"
    files = sorted(data.rglob("*.py"))
    assert files
    offenders = []
    for path in files:
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names = _imported_modules(path, module)
        if any(n == "jaxrl_bayes.evaluation" or n.startswith("jaxrl_bayes.evaluation.") for n in names):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"modules under jaxrl_bayes/data/ that import jaxrl_bayes.evaluation: {offenders}"


def test_liquidation_does_not_import_evaluation():
    """The evaluation harness builds the liquidation evaluator from `jaxrl_bayes.envs.liquidation`;
    the environment scores its own returns with `jaxrl_bayes.scores.normalized_score`, so it never
    imports `jaxrl_bayes.evaluation` back (the two once imported each other inside functions)."""
    path = ROOT / "jaxrl_bayes" / "envs" / "liquidation.py"
    names = _imported_modules(path, "jaxrl_bayes.envs.liquidation")
    assert not any(n == "jaxrl_bayes.evaluation" or n.startswith("jaxrl_bayes.evaluation.") for n in names)
    assert "jaxrl_bayes.scores" in names
