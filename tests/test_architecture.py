"""The shape of the code: no import circle in `src/dso`, benchmarks imported only by themselves and the
`dso bench` command, web3 only by the contract client."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "dso"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (SRC / relative).with_suffix(".py").is_file() or (SRC / relative / "__init__.py").is_file()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path) -> set[str]:
    """Every module `path` imports when it runs (module level or inside functions; not under TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if _is_module(submodule) else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def graph() -> dict[str, set[str]]:
    edges = {}
    for path in sorted(ROOT.rglob("*.py")):
        edges[module_name(path)] = imports(path)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle among dso's modules, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(edges):
        if state.get(start):
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(m for m in edges[start] if m in edges))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            if not children:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            child = children.pop()
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, sorted(m for m in edges[child] if m in edges)))
    return None


def test_no_import_circle_in_src() -> None:
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()) or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_product_code_never_imports_the_benchmarks() -> None:
    # the sharing experiment and the main job replay the hand-written tips of dso.bench.tips as a specialist's lessons
    allowed = ("dso.bench", "dso.cli.bench", "dso.sharing", "dso.demo")
    offenders = {
        module: sorted(m for m in imported if m == "dso.bench" or m.startswith("dso.bench."))
        for module, imported in graph().items()
        if not module.startswith(allowed)
    }
    assert {m: found for m, found in offenders.items() if found} == {}


def test_only_the_contract_client_imports_web3() -> None:
    users = sorted(m for m, imported in graph().items() if any(i == "web3" or i.startswith("web3.") for i in imported))
    assert users == ["dso.chain.client"]


def test_only_the_flower_apps_and_their_command_import_flower() -> None:
    """Flower is an optional extra: the core never imports it; `dso flower` imports it when it runs."""
    edges = graph()
    users = sorted(m for m, imported in edges.items() if any(i == "flwr" or i.startswith("flwr.") for i in imported))
    assert users == ["dso.cli.flower", "dso.flower.app"]
    outside = {
        m
        for m, found in edges.items()
        if not m.startswith("dso.flower") and any(i.startswith("dso.flower") for i in found)
    }
    assert outside == {"dso.cli.flower"}
