#!/usr/bin/env python
"""Check the package's import layering; exit 1 and one line per problem if it is broken.

    python tools/check_imports.py [--package DIR]   # default: the repository's multitrain/

Rules (every import counts, including those inside functions):
  * multitrain.decoding and multitrain.transforms import none of multitrain.data,
    multitrain.preparation and multitrain.engine;
  * multitrain.data imports neither multitrain.preparation nor multitrain.engine;
  * multitrain.models does not import multitrain.engine;
  * multitrain.config imports no other multitrain subpackage (it is a leaf);
  * no import cycle among multitrain's modules.
The source is parsed, not imported, so the check needs no dependency installed.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Dict, List, Set

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# subpackage -> the subpackages it must not import (the arrows point down only)
FORBIDDEN = {
    "decoding": ("data", "preparation", "engine"),
    "transforms": ("data", "preparation", "engine"),
    "data": ("preparation", "engine"),
    "models": ("engine",),
}
LEAF = "config"  # the subpackage that imports no other one


def module_files(package_dir: str) -> Dict[str, str]:
    """{dotted module name: file} for every .py file under `package_dir`."""
    top = os.path.basename(os.path.normpath(package_dir))
    out = {}
    for folder, _dirs, files in os.walk(package_dir):
        rel = os.path.relpath(folder, package_dir)
        parts = [top] + ([] if rel == "." else rel.split(os.sep))
        for name in files:
            if name.endswith(".py"):
                mod = parts if name == "__init__.py" else parts + [name[:-3]]
                out[".".join(mod)] = os.path.join(folder, name)
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a (possibly relative) `from X import ...` refers to."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: str, known: Set[str]) -> Set[str]:
    """The modules of `known` that `module` (file `path`) imports."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    targets: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    found = set()
    for name in targets:  # `import a.b.c` of a non-module attribute: its closest module
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def check(package_dir: str) -> List[str]:
    """One line per broken rule (empty when the layering holds)."""
    files = module_files(package_dir)
    top = os.path.basename(os.path.normpath(package_dir))
    graph = {m: imports_of(m, p, set(files)) for m, p in files.items()}
    problems = []
    for module in sorted(graph):
        sub = _subpackage(module)
        for target in sorted(graph[module]):
            tsub = _subpackage(target)
            if tsub in FORBIDDEN.get(sub, ()):
                problems.append(f"{files[module]}: {module} imports {target} "
                                f"({top}.{sub} must not depend on {top}.{tsub})")
            if sub == LEAF and tsub != LEAF:
                problems.append(f"{files[module]}: {module} imports {target} "
                                f"({top}.{LEAF} imports no other {top} subpackage)")
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " <-> ".join(cycle))
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--package", default=os.path.join(REPO, "multitrain"),
                   help="the package folder to check")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.package, "__init__.py")):
        print(f"check_imports: {args.package} is not a package folder", file=sys.stderr)
        return 2
    problems = check(args.package)
    for line in problems:
        print(line)
    if not problems:
        print(f"imports of {args.package}: layering holds, no cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
