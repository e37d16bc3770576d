"""The module graph of `adapter/`: no import circles, and the pure core imports only the core.

Read from the source with `ast` (nothing is imported), every `import`/`from ... import` counted,
also those inside functions and under `TYPE_CHECKING`: a circle hidden in a function body or a
type-only import is still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "adapter"

Graph = Mapping[str, frozenset[str]]


def module_name(path: Path, root: Path) -> str:
    """`adapter/hl7/ack.py` -> `adapter.hl7.ack`; a package's `__init__.py` is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.Module, here: str, is_package: bool) -> Iterator[str]:
    """Every module name this file imports, relative imports resolved."""
    package = here if is_package else here.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            # `from adapter.hl7 import ack` imports the module adapter.hl7.ack
            yield from (f"{base}.{alias.name}" for alias in node.names)


def module_graph(root: Path) -> dict[str, frozenset[str]]:
    """Module -> the modules of the same package it imports (edges to unknown names dropped)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, frozenset[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = _imported(tree, name, path.name == "__init__.py")
        graph[name] = frozenset(t for t in targets if t in files and t != name)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _is_package(graph: Graph, name: str) -> bool:
    return any(other.startswith(f"{name}.") for other in graph)


def core_leaks(graph: Graph) -> list[tuple[str, str]]:
    """(core module, non-core adapter module it imports): the core must stay pure.

    Importing a package only for its `__init__` (`adapter`) is no leak. Not even the pure
    `adapter.hl7` is allowed: it builds from the core's values, so the arrow goes hl7 -> core.
    """
    allowed = ("adapter.core",)
    return sorted(
        (module, target)
        for module, targets in graph.items()
        if module == "adapter.core" or module.startswith("adapter.core.")
        for target in targets
        if not (target in allowed or target.startswith(tuple(f"{a}." for a in allowed)))
        and not (_is_package(graph, target) and target == "adapter")
    )


class TestTheDetectorItself:
    """The checks below are only worth something if they can fail: shown on made-up graphs."""

    def test_a_two_module_circle_is_found(self) -> None:
        """a -> b -> a is one circle; c, importing a, is not part of it."""
        graph = {"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset({"a"})}
        assert cycles(graph) == [["a", "b"]]

    def test_a_longer_circle_is_found_whole(self) -> None:
        """a -> b -> c -> a is reported as the three modules."""
        graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}
        assert cycles(graph) == [["a", "b", "c"]]

    def test_a_tree_has_no_circle(self) -> None:
        graph = {"a": frozenset({"b", "c"}), "b": frozenset({"c"}), "c": frozenset()}
        assert cycles(graph) == []

    def test_a_core_module_importing_the_service_or_the_protocol_is_a_leak(self) -> None:
        """Core -> core is fine; core -> service and core -> hl7 are not."""
        graph = {
            "adapter.core.coder": frozenset({"adapter.web.app", "adapter.core.model"}),
            "adapter.core.model": frozenset({"adapter.hl7.hl7_time"}),
            "adapter.web.app": frozenset(),
            "adapter.hl7.hl7_time": frozenset(),
        }
        assert core_leaks(graph) == [
            ("adapter.core.coder", "adapter.web.app"),
            ("adapter.core.model", "adapter.hl7.hl7_time"),
        ]

    def test_imports_inside_functions_and_relative_imports_are_edges(self, tmp_path: Path) -> None:
        """A deferred import (the usual way a circle is hidden) still counts."""
        package = tmp_path / "pkg"
        (package / "sub").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "sub" / "__init__.py").write_text("")
        (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
        (package / "sub" / "b.py").write_text("from .. import a\n")
        graph = module_graph(package)
        assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


@pytest.fixture(name="graph", scope="module")
def _graph() -> dict[str, frozenset[str]]:
    return module_graph(PACKAGE)


def test_adapter_has_no_import_circles(graph: Graph) -> None:
    """Every module can be read knowing only what it imports, never what imports it."""
    assert cycles(graph) == []


def test_the_core_imports_nothing_outside_the_core(graph: Graph) -> None:
    """adapter/core is pure: no service, store, config, reader or protocol module behind it."""
    assert core_leaks(graph) == []


def test_the_hl7_protocol_package_imports_only_itself_and_the_core(graph: Graph) -> None:
    """adapter/hl7 is sans-I/O: used by readers, server, client and HTTP route alike.

    It may build from the core's values (the DFT builder reads a coded encounter), never from
    the service, the store, the settings or a reader.
    """
    allowed = ("adapter.hl7.", "adapter.core.")  # the dots: adapter.hl7_answers is the shell
    leaks = sorted(
        (module, target)
        for module, targets in graph.items()
        if module == "adapter.hl7" or module.startswith("adapter.hl7.")
        for target in targets
        if not target.startswith(allowed)
        and target not in ("adapter", "adapter.hl7", "adapter.core")
    )
    assert leaks == []


# Use cases take ports and values: never a request, a route module or the app's state.
USECASE_FORBIDDEN = (
    "aiohttp",
    "adapter.web",  # the HTTP edge: the app, its state, the API routes, the workbench
    "adapter.listeners",  # the MLLP server and the accept loop
    "adapter.cli",
    "adapter.metrics",  # counted through usecases/ports.py:CodingMetrics
    "adapter.outbox",  # DFTs queued through usecases/ports.py:DftOutlet
)


def edge_imports(path: Path, root: Path) -> list[str]:
    """The imports of one file that a use case must not have (see USECASE_FORBIDDEN)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    found = _imported(tree, name, path.name == "__init__.py")
    return sorted({target for target in found if target.startswith(USECASE_FORBIDDEN)})


def test_a_use_case_importing_aiohttp_or_a_route_is_found(tmp_path: Path) -> None:
    package = tmp_path / "adapter" / "usecases"
    package.mkdir(parents=True)
    bad = package / "bad.py"
    bad.write_text("from aiohttp import web\nfrom adapter.web.routes import review\n")
    assert edge_imports(bad, tmp_path / "adapter") == [
        "adapter.web.routes",
        "adapter.web.routes.review",
        "aiohttp",
        "aiohttp.web",
    ]


def test_use_cases_import_no_http_edge_nor_the_app_state() -> None:
    """adapter/usecases is what the HTTP API, the workbench and the CLI share: over ports."""
    leaks = {
        str(path.relative_to(ROOT)): edge_imports(path, PACKAGE)
        for path in sorted((PACKAGE / "usecases").rglob("*.py"))
    }
    assert {path: found for path, found in leaks.items() if found} == {}


# The HTTP edge stands on top: the command lines start it, nothing under it reaches up into it
# (service/app.py importing web/ was an arrow running back up; the listeners, the workers, the
# use cases and the store are what the edge uses, never the other way round).
WEB = "adapter.web"
CLI = "adapter.cli"  # the command lines: `serve` starts the edge


def web_reached_from_below(graph: Graph) -> list[tuple[str, str]]:
    """(module outside the edge and the command lines, the adapter.web module it imports)."""
    return sorted(
        (module, target)
        for module, targets in graph.items()
        if not module.startswith((f"{WEB}.", f"{CLI}.")) and module not in (WEB, CLI)
        for target in targets
        if target == WEB or target.startswith(f"{WEB}.")
    )


def test_a_shell_module_importing_the_http_edge_is_found() -> None:
    """service -> web is found; web -> service and a command line -> web are not."""
    graph = {
        "adapter.usecases.ingest": frozenset({"adapter.web.state"}),
        "adapter.web.state": frozenset({"adapter.usecases.ingest"}),
        "adapter.cli.service": frozenset({"adapter.web.app"}),
        "adapter.web.app": frozenset(),
    }
    assert web_reached_from_below(graph) == [("adapter.usecases.ingest", "adapter.web.state")]


def test_only_the_command_lines_import_the_http_edge(graph: Graph) -> None:
    """adapter/web (app, state, routes, pages) is imported by itself and the CLIs that serve it."""
    assert web_reached_from_below(graph) == []
