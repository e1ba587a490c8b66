"""The package's import graph has no circle: every `import` of a lit_vision module, at module
level or inside a function, is an arrow, and no chain of arrows leads back to where it began.

A circle hidden inside a function works until someone moves that import to the top of its
file; this test reads the source (an AST walk, nothing is imported), so it sees both kinds.

`from P import x`, where P is a package, is also an arrow to P's `__init__` (even when `x` is a
submodule): Python runs that `__init__` first, and import-graph tools draw the line to P. So a
submodule that names a sibling through its own package (`from lit_vision.cli import
ckpt_path` inside `lit_vision.cli.entry`) closes a circle whenever the package's `__init__`
imports that submodule; naming the sibling directly (`lit_vision.cli.ckpt_path`) does not.

The same graph also keeps the layers in order: the command layer (`cli/`) and the benchmarks
(`bench/`) sit on top, and no module below them imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lit_vision"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, modules: set[str], packages: set[str], root: Path = PACKAGE) -> set[str]:
    """The modules of `modules` that `path` imports anywhere in its body. `from a import b`
    is an arrow to a.b when a.b is a module, and to a when a.b is not a module or a is one
    of `packages` (a package's __init__ runs before any name is taken from it)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
            if base in packages:
                found.add(base)
    # importlib.import_module("lit_vision.x") with a literal name is an import too.
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {module for module in found if module in modules and module != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    packages = {module_name(path, root) for path in paths if path.name == "__init__.py"}
    return {module_name(path, root): imported_modules(path, modules, packages, root) for path in paths}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle as [a, b, ..., a], or None. A package's __init__ importing its own
    submodules is not a circle with them unless a submodule imports the __init__ back."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if state.get(target) is None and (circle := visit(target)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if state.get(start) is None and (circle := visit(start)):
            return circle
    return None


def test_graph_sees_the_package():
    graph = import_graph()
    assert "lit_vision.errors" in graph and len(graph) > 50
    assert any(graph.values()), "no imports found: the walk is broken"


def test_finder_reports_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root / "pkg"


def test_from_package_import_submodule_is_an_arrow_to_the_package(tmp_path):
    # pkg/__init__ imports pkg.a; pkg.a takes its sibling b through the package: the arrow
    # a -> pkg closes pkg -> a -> pkg, though a names only b.
    through_package = _write_package(
        tmp_path / "through",
        {
            "pkg/__init__.py": "from pkg.a import f\n",
            "pkg/a.py": "def f():\n    from pkg import b\n    return b\n",
            "pkg/b.py": "",
            "pkg/sub/__init__.py": "from pkg.sub import c\n",
            "pkg/sub/c.py": "from .. import b\n",  # relative: an arrow to pkg as well
        },
    )
    graph = import_graph(through_package)
    assert graph["pkg.a"] == {"pkg", "pkg.b"}
    assert graph["pkg.sub.c"] == {"pkg", "pkg.b"}
    assert find_circle(graph) == ["pkg", "pkg.a", "pkg"]

    # Naming the submodule directly draws no arrow to the package.
    direct = _write_package(
        tmp_path / "direct",
        {
            "pkg/__init__.py": "from pkg.a import f\n",
            "pkg/a.py": "def f():\n    import pkg.b as b\n    from pkg.b import g\n    return b, g\n",
            "pkg/b.py": "def g():\n    pass\n",
        },
    )
    graph = import_graph(direct)
    assert graph["pkg.a"] == {"pkg.b"}
    assert find_circle(graph) is None


def test_no_import_circle():
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


# The command layer and the benchmarks sit on top: nothing else may reach up into them.
ENTRY_LAYERS = ("lit_vision.cli", "lit_vision.bench", "lit_vision.__main__")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Arrows from a module below the entry layers into one of them, as 'a -> b'."""
    def in_entry(module: str) -> bool:
        return any(module == layer or module.startswith(layer + ".") for layer in ENTRY_LAYERS)

    return sorted(f"{a} -> {b}" for a, targets in graph.items() if not in_entry(a) for b in targets if in_entry(b))


def test_finder_reports_an_upward_import():
    graph = {"lit_vision.studies.seeds": {"lit_vision.cli.ckpt_path"}, "lit_vision.cli.entry": {"lit_vision.studies.seeds"}}
    assert upward_imports(graph) == ["lit_vision.studies.seeds -> lit_vision.cli.ckpt_path"]


def test_nothing_below_the_command_layer_imports_it():
    arrows = upward_imports(import_graph())
    assert not arrows, "imports into the command layer from below: " + ", ".join(arrows)
