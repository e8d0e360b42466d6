"""The package layout: no import cycle among fastconv's own modules at import time,
the packages' modules each import first in a fresh interpreter, and the public paths
import and expose what the documentation's API pages name.

The import graph is static (`ast`): the imports a module runs when it is imported
(module level and class bodies; not function bodies, not ``if TYPE_CHECKING:``).
Importing ``a.b.c`` runs ``a`` and ``a.b`` first, so an edge to ``a.b.c`` is also one
to each package on the way, except the importer's own ancestors (already running);
an import that names an ancestor (``from a.b import name``, ``name`` not a module)
is an edge to it.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fastconv"
API_PAGES = ROOT / "docs" / "api"
PUBLIC = ["fastconv.functional", "fastconv.nn", "fastconv.optim", "fastconv.models", "fastconv.data",
          "fastconv.checkpoint", "fastconv.viz", "fastconv.train", "fastconv.distributed", "fastconv.system",
          "fastconv.env"]
# Packages grouping modules by concern: their modules import siblings, never the
# package itself, and each imports first in a fresh interpreter.
PACKAGES = ["fastconv.functional", "fastconv.checkpoint", "fastconv.system", "fastconv.cli"]


def module_files() -> dict[str, Path]:
    """Dotted name -> file of every module under fastconv/."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _import_time_imports(tree: ast.Module):
    """The Import / ImportFrom nodes that run when the module is imported."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            pending.extend(ast.iter_child_nodes(node))


def _targets(name: str, is_package: bool, node, modules) -> list[str]:
    """The modules an import statement of module ``name`` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = name if is_package else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            anchor = anchor.rpartition(".")[0]
        base = f"{anchor}.{base}" if node.module else anchor
    # ``from package import name``: the submodule when there is one, else the package
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the fastconv modules its import runs (directly)."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        edges = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _import_time_imports(tree):
            for target in _targets(name, path.name == "__init__.py", node, modules):
                if target in modules and target != name:
                    edges.add(target)       # named: even the importer's own package
                parts = target.split(".")
                for end in range(1, len(parts)):
                    prefix = ".".join(parts[:end])
                    if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                        edges.add(prefix)   # run on the way
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
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
                    work.append((child, iter(sorted(graph.get(child, ())))))
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
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(sorted(component))
    return found


# ------------------------------------------------------------------ the graph itself
def test_the_graph_sees_imports_and_cycles():
    graph = import_graph()
    assert "fastconv.functional.conv" in graph["fastconv.functional"]
    assert {"fastconv.functional", "fastconv.functional.arguments"} <= graph["fastconv.nn.layers"]
    assert "fastconv.functional" not in graph["fastconv.functional.conv"]   # its own package
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_fastconvs_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(cycle) for cycle in found)


def _package_modules():
    return [name for name in module_files() for package in PACKAGES
            if name == package or name.startswith(package + ".")]


def test_no_package_module_imports_its_own_package():
    """Inside a package, siblings import each other, never the package's __init__."""
    graph = import_graph()
    for name in _package_modules():
        for target in graph[name]:
            assert not name.startswith(target + "."), f"{name} imports its package {target}"


@pytest.mark.parametrize("module", _package_modules())
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------ public paths
def api_page_targets() -> list[str]:
    """Every object the API pages document: ``::: target`` and its ``members:``."""
    targets = []
    for page in sorted(API_PAGES.glob("*.md")):
        directive = None
        in_members = False
        for line in page.read_text(encoding="utf-8").splitlines():
            match = re.match(r":::\s+(\S+)", line)
            if match:
                directive = match.group(1)
                targets.append(directive)
                in_members = False
            elif directive and line.strip() == "members:":
                in_members = True
            elif in_members and re.match(r"\s+- ", line):
                targets.append(f"{directive}.{line.strip()[2:].strip()}")
            elif line.strip():
                in_members = False
    return targets


def resolve(target: str):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[end:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(target)


def test_api_pages_name_objects():
    targets = set(api_page_targets())
    assert {"fastconv.functional", "fastconv.nn", "fastconv.checkpoint", "fastconv.save"} <= targets


@pytest.mark.parametrize("target", api_page_targets())
def test_api_page_targets_resolve(target):
    obj = resolve(target)
    if isinstance(obj, type(sys)):
        missing = [name for name in getattr(obj, "__all__", ()) if not hasattr(obj, name)]
        assert not missing, f"{target}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("module", PUBLIC)
def test_public_paths_import_and_expose_their_names(module):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = (f"import importlib; m = importlib.import_module({module!r}); "
            "missing = [n for n in getattr(m, '__all__', ()) if not hasattr(m, n)]; "
            "assert not missing, missing; print(len(dir(m)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_functional_keeps_its_public_names():
    import fastconv.functional as F

    kernels = {"conv_output_size", "im2col", "col2im", "conv2d", "conv2d_backward", "conv2d_backward_weights",
               "conv2d_relu", "conv2d_relu_backward", "conv2d_relu_avgpool2", "conv2d_relu_avgpool2_backward",
               "conv_transpose2d", "conv_transpose2d_backward", "avg_pool2d", "avg_pool2d_backward",
               "max_pool2d", "max_pool2d_backward", "batch_norm", "batch_norm_backward", "linear",
               "linear_backward", "softmax_cross_entropy", "relu", "relu_backward", "clamp", "clamp_backward",
               "add", "channel_affine", "sgd_step"}
    assert set(F.__all__) == kernels
    assert {"FLOAT_DTYPES", "MAX_AXIS", "as_array", "get_backend"} <= set(dir(F))


def test_env_keeps_its_import_path():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = ("import fastconv.env, fastconv.system.env as system_env; "
            "from fastconv.env import EnvironmentVariableError; "
            "assert fastconv.env is system_env and EnvironmentVariableError is system_env.EnvironmentVariableError")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
