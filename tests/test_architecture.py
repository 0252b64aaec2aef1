"""Architecture rules of the code base (issue #15), checked on the source text only (``ast``; nothing is imported
or run):

* no import cycle among the project's modules (``monst3r``, ``croco``, ``third_party``; ``demo.py``,
  ``launch.py`` and the ``viser/`` scripts take part as leaves), imports inside functions included;
* no file in ``monst3r/`` longer than :data:`MAX_FILE_LINES` lines;
* no function longer than :data:`MAX_FUNCTION_LINES` lines, except argument parsers (:func:`is_argument_parser`);
* no private name (``_x``, not ``__x__``) of a project module imported or read by another file (the packages, the
  scripts, ``tests/``, ``bench/`` and ``data/``): what another file needs is public.

How an import counts (the same as ``arch_check.py``): ``import a.b.c`` and ``from a.b import c`` depend on the
longest project module that prefixes the name; ``from pkg import sub`` depends on the submodule ``pkg.sub`` when
there is one, ``from pkg import name`` on ``pkg/__init__.py``; relative imports are resolved against the
importing module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("monst3r", "croco", "third_party")
#: entry-point scripts: nodes of the import graph that nothing imports
SCRIPTS = ("demo.py", "launch.py", "viser/*.py")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the packages and the scripts."""
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO_ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    for pattern in SCRIPTS:
        for path in sorted(REPO_ROOT.glob(pattern)):
            mods["script:" + path.relative_to(REPO_ROOT).as_posix()] = path
    return mods


MODULES = _module_files()
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def _resolve(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """Project modules that one import statement of ``module`` depends on."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            if MODULES[module].name != "__init__.py":
                parts = parts[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of its code)."""
    return {name: set().union(*[_resolve(name, node) for node in ast.walk(tree)
                                if isinstance(node, (ast.Import, ast.ImportFrom))]) - {name}
            for name, tree in TREES.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return sorted(cycles)


def is_argument_parser(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """The one exemption from the function-length rule: a function that builds a command-line parser, i.e. its
    name contains ``parser`` (``get_args_parser``, ``_build_parser``) or at least half of its statements are
    ``.add_argument(...)`` calls."""
    if "parser" in func.name:
        return True
    statements = [n for n in ast.walk(func) if isinstance(n, ast.stmt) and n is not func]
    add_argument = [n for n in statements if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
                    and isinstance(n.value.func, ast.Attribute) and n.value.func.attr == "add_argument"]
    return 2 * len(add_argument) >= len(statements) > 0


def test_no_import_cycle():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles)


def test_no_long_file_in_monst3r():
    too_long = sorted((len(path.read_text().splitlines()), path.relative_to(REPO_ROOT).as_posix())
                      for path in (REPO_ROOT / "monst3r").rglob("*.py"))
    too_long = [f"{rel} ({n} lines)" for n, rel in reversed(too_long) if n > MAX_FILE_LINES]
    assert not too_long, f"files in monst3r/ over {MAX_FILE_LINES} lines: " + ", ".join(too_long)


def test_no_long_function():
    too_long = []
    for name, tree in TREES.items():
        rel = MODULES[name].relative_to(REPO_ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and not is_argument_parser(node):
                    too_long.append((n, f"{rel}:{node.lineno} {node.name} ({n} lines)"))
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (argument parsers exempt): " + ", ".join(
        text for _, text in sorted(too_long, reverse=True))


@pytest.mark.parametrize("source, expected", [
    ("def get_args_parser():\n" + "    x = 1\n" * 100, True),
    ("def build():\n    p = make()\n" + "    p.add_argument('--a')\n" * 90 + "    return p\n", True),
    ("def run():\n    p = make()\n" + "    p.add_argument('--a')\n" * 40 + "    x = 1\n" * 50, False),
])
def test_argument_parser_exemption_is_narrow(source, expected):
    assert is_argument_parser(ast.parse(source).body[0]) is expected


def test_cycle_finder_and_import_rules():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    # `from monst3r.datasets.synthetic import SyntheticScene` depends on the package's __init__, and the
    # package's __init__ on its submodules; scripts are leaves
    assert "monst3r.datasets.synthetic.scene" in graph["monst3r.datasets.synthetic"]
    assert not any(dep.startswith("script:") for deps in graph.values() for dep in deps)


def private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, text)`` of each private name of a project module that ``tree`` imports (``from m import _x``) or
    reads from an imported project module (``import m.n as k; k._x``)."""
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
                elif f"{node.module}.{alias.name}" in MODULES:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name.split(".")[0] for alias in node.names
                           if alias.name.split(".")[0] in PACKAGES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_no_private_name_used_across_files():
    files = [*MODULES.values(), *(path for folder in ("tests", "bench", "data")
                                  for path in sorted((REPO_ROOT / folder).glob("*.py")))]
    bad = [f"{path.relative_to(REPO_ROOT).as_posix()}:{line} {text}" for path in files
           for line, text in private_uses(ast.parse(path.read_text(), filename=str(path)))]
    assert not bad, "private names used across files (make them public): " + ", ".join(bad)
    assert private_uses(ast.parse("from monst3r.eval.depth import _save\nfrom croco.models import dpt_block\n"
                                  "dpt_block._X\nimport monst3r.io as io\nio._y\nobj._z\n")) == [
        (1, "from monst3r.eval.depth import _save"), (3, "dpt_block._X"), (5, "io._y")]
