"""No import cycles inside picochat/.

The rule, kept simple on purpose:
- every .py file under picochat/ is a node, named like its module (picochat/data/shards.py is
  picochat.data.shards; a package's __init__.py is the package itself, picochat.data);
- an edge is any `import picochat...` or `from picochat... import ...` in the file, at module
  level or inside a function or class (a lazy import is still a dependency);
- `from picochat.x import y` is an edge to picochat.x.y when that is a module, else to picochat.x;
- importing picochat.a.b is an edge to picochat.a.b only, not also to picochat.a's __init__
  (Python runs it, but counting it would make every submodule depend on its package);
- relative imports are resolved against the file's package the same way.
A cycle is a strongly connected component of more than one node, or a module importing itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "picochat"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imported(path: Path, modules: dict[str, Path], root: Path = ROOT) -> set[str]:
    """The picochat modules a file imports, by the rule in the module docstring."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base not in modules:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported(path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan's algorithm; picochat has under a
    hundred modules, so the recursion stays shallow)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:   # node is the root of a component: pop it
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The shortest path a -> ... -> a inside a component (breadth first), for the message."""
    members, start = set(component), component[0]
    paths, frontier = {start: [start]}, [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    return component


def test_the_rule_resolves_imports_as_documented(tmp_path):
    root = tmp_path / "picochat"
    files = {"__init__.py": "", "rundir.py": "", "data/__init__.py": "", "data/shards.py": "",
             "data/corpus.py": ("from picochat.data import shards\nfrom picochat.rundir import RunDir\n"
                                "def f():\n    from . import shards\n    import picochat.rundir\n"
                                "    from .. import rundir\n    from picochat.data import NAME\n")}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    modules = all_modules(root)
    assert imported(root / "data" / "corpus.py", modules, root) == {
        "picochat.data.shards", "picochat.rundir", "picochat.data"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert one_cycle({"a": {"b", "c"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c"]) == ["a", "c", "a"]


def test_no_import_cycles():
    graph = import_graph()
    found = [one_cycle(graph, c) for c in cycles(graph)]
    assert not found, "import cycles in picochat/:\n" + "\n".join(" -> ".join(c) for c in found)
