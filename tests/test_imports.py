"""The imports of cproxy point one way (DESIGN.md §2, docs/ARCHITECTURE.md).

Read from the source with `ast`, so imports under ``if TYPE_CHECKING:`` and inside
functions count too: a circle hidden from the interpreter is still a circle to a reader.

- no circle among cproxy's modules (cproxy/server/ in particular);
- nothing in cproxy/cache/, cproxy/http/ or cproxy/origin/ imports cproxy/server/;
- no module imports a private (``_name``) name of another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "cproxy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for each cproxy import in ``path``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("cproxy")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("cproxy")
        ):
            found.append((node.module, [a.name for a in node.names]))
    return found


def edges() -> dict[str, set[str]]:
    """Module -> the cproxy modules it imports (a name that is a submodule counts as it)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, names in imports_of(path):
            subs = {f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES}
            graph[name] |= subs or ({target} if target in MODULES else set())
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_checker_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle() -> None:
    graph = edges()
    # A package's __init__ re-exports its submodules; a submodule importing a sibling
    # through the package face is an edge to the sibling, already counted above.
    for name in list(graph):
        if MODULES[name].name == "__init__.py":
            graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


@pytest.mark.parametrize("lower", ["cproxy.cache", "cproxy.http", "cproxy.origin"])
def test_lower_layers_never_import_the_server(lower: str) -> None:
    graph = edges()
    bad = {
        (name, target)
        for name, targets in graph.items()
        if name == lower or name.startswith(lower + ".")
        for target in targets
        if target == "cproxy.server" or target.startswith("cproxy.server.")
    }
    assert not bad


def test_no_private_name_is_imported_from_another_module() -> None:
    bad = [
        f"{name} takes {n} from {target}"
        for name, path in MODULES.items()
        for target, names in imports_of(path)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad
