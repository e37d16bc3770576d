"""Declared dependencies equal what the code imports (pyproject.toml against an ast walk).

Why: a dependency declared and never imported (aiosqlite was) costs every install and
every security review; one imported and not declared (multidict, through aiohttp) works
until the library that brought it along drops it. `[project] dependencies` must equal
what `adapter/` imports; the `test` extra must equal what `tests/` and `bench/` import
beyond that, plus the tools that are run rather than imported. Import names are mapped to
distributions by `importlib.metadata.packages_distributions()` of this environment.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from adapter import icd10

ROOT = Path(__file__).resolve().parents[1]

# Run, not imported: in the `test` extra for `make test`.
TOOLS = {
    "pytest-asyncio": "pytest plugin (asyncio_mode = auto in pyproject)",
    "ruff": "lint and format check in make test",
    "mypy": "strict type check in make test",
    "types-tqdm": "tqdm's type stubs, for mypy",
}
# Imported when present, with a fallback; on purpose not declared.
OPTIONAL = {
    "cryptography": "tests/tls_fixtures.py falls back to the openssl CLI",
    "atheris": "bench/fuzz_atheris.py only, installed by hand (docs/fuzzing.md)",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_names(directory: Path) -> set[str]:
    """Top-level module names imported anywhere under `directory` (also inside functions
    and `pytest.importorskip("x")`), minus the standard library and our own modules."""
    names: set[str] = set()
    for path in directory.rglob("*.py"):
        if "node_modules" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "importorskip"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and not _ours(n, directory)}


def _ours(name: str, directory: Path) -> bool:
    bench = ROOT / "bench"  # scripts and the harness, imported as top-level modules
    local = (ROOT / name, directory / f"{name}.py", directory / name, bench / f"{name}.py")
    local += (bench / name,)
    return name in ("adapter", "tests", "bench") or any(p.exists() for p in local)


def distributions(names: set[str]) -> tuple[set[str], set[str]]:
    """(distributions providing `names`, names no installed distribution provides)."""
    index = importlib.metadata.packages_distributions()
    found: set[str] = set()
    unknown: set[str] = set()
    for name in names:
        dists = index.get(name)
        if dists:
            found.add(canonical(dists[0]))
        else:
            unknown.add(name)
    return found, unknown


def declared() -> tuple[set[str], set[str]]:
    """(runtime dependencies, `test` extra) of pyproject.toml, canonical names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {canonical(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in requirements}  # type: ignore[index]

    return names(project["dependencies"]), names(project["optional-dependencies"]["test"])


def service_extras() -> set[str]:
    """What the service's own extras (every optional group but `test`) add: imported by
    `adapter/` only when asked for (`uvloop`: ADAPTER_EVENT_LOOP=uvloop)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = project["optional-dependencies"]
    return {
        canonical(re.match(r"[A-Za-z0-9._-]+", r)[0])  # type: ignore[index]
        for name, requirements in groups.items()
        if name != "test"
        for r in requirements
    }


def runtime_imports() -> set[str]:
    found, unknown = distributions(imported_names(ROOT / "adapter"))
    assert not unknown, f"adapter/ imports {sorted(unknown)}, provided by nothing installed"
    # Used as data, not imported: icd10 reads the code list the package ships (D21).
    data_only, _ = distributions({icd10.PACKAGE_NAME})
    return found | data_only


def test_runtime_dependencies_are_exactly_what_adapter_imports() -> None:
    runtime, _ = declared()
    extras = service_extras()
    needed = runtime_imports()
    assert sorted(needed - runtime - extras) == [], "imported by adapter/ but not declared"
    assert sorted(runtime - needed) == [], "in dependencies but never imported by adapter/"
    assert sorted(extras - needed) == [], "in a service extra but never imported by adapter/"


def test_test_extra_is_what_tests_and_bench_import_beyond_runtime_plus_the_tools() -> None:
    runtime, test = declared()
    names = imported_names(ROOT / "tests") | imported_names(ROOT / "bench")
    found, unknown = distributions(names - set(OPTIONAL))
    assert not unknown, f"tests/bench import {sorted(unknown)}, provided by nothing installed"
    # the service's extras too: the suite runs the service with them (tests/test_event_loop.py)
    needed = (found - runtime) | {canonical(t) for t in TOOLS} | service_extras()
    assert sorted(needed - test) == [], "imported by tests/bench but not in the test extra"
    assert sorted(test - needed) == [], "in the test extra but neither imported nor a tool"


def test_no_distribution_is_declared_twice() -> None:
    runtime, test = declared()
    assert sorted(runtime & test) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import yarl\n", {"yarl"}),
        ("def f():\n    from multidict import MultiDict\n", {"multidict"}),
        ("import pytest\nfhirpy = pytest.importorskip('fhirpy')\n", {"pytest", "fhirpy"}),
        ("import json\nfrom . import sibling\n", set()),
    ],
)
def test_the_walk_sees_top_level_lazy_and_importorskip_imports(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    (tmp_path / "module.py").write_text(source, encoding="utf-8")
    assert imported_names(tmp_path) == expected
