"""Dependencies point down (DEVELOPERS.md "Design"): every import of every
module under trionet/ (at the top, under TYPE_CHECKING or inside a
function) goes to its own layer or a lower one, and no modules import each
other in a circle.

The checker reads the sources with ``ast``; it is tested on made-up trees
first, so that it is known to catch an upward import and a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "trionet"

#: Bottom up. A module belongs to the layer of the longest name naming it or
#: a package above it; a name starting with "=" names that module only.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("trionet.stats", "trionet.validate")),
    ("wire", ("trionet.wire",)),
    ("link", ("trionet.link",)),
    ("interface", ("trionet.interface",)),
    ("network", ("trionet.network",)),
    ("transport", ("trionet.transport", "trionet.tcp")),
    ("dhcp", ("trionet.dhcp",)),
    ("api", ("trionet.api",)),
    ("testing", ("trionet.testing",)),
    ("tools", ("trionet.plot",)),
    ("package", ("=trionet",)),
]


def layer_of(module: str, layers=LAYERS) -> int:
    best, rank = -1, None
    for index, (_, names) in enumerate(layers):
        for name in names:
            exact = name.startswith("=")
            name = name.lstrip("=")
            if (module == name or (not exact and module.startswith(name + "."))) \
                    and len(name) > best:
                best, rank = len(name), index
    if rank is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS")
    return rank


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([package, *parts])] = path
    return names


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its source.
    ``from a.b import c`` counts as an import of ``a.b.c`` when that is a
    module, else of ``a.b``; the parent packages Python also runs are not
    counted (they are not what the code asks for)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    found.discard(module)
    return found


def graph_of(root: Path, package: str) -> dict[str, set[str]]:
    names = module_names(root, package)
    known = set(names)
    return {name: imports_of(name, path, known) for name, path in names.items()}


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        layer_of(module, layers)
        for target in sorted(targets):
            if layer_of(target, layers) > layer_of(module, layers):
                problems.append(f"{module} ({layers[layer_of(module, layers)][0]}) imports "
                                f"{target} ({layers[layer_of(target, layers)][0]})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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
    return found


# --- the checker on made-up trees ------------------------------------------------------

TOY_LAYERS = [("low", ("toy.low",)), ("high", ("toy.high",)), ("package", ("=toy",))]


def make_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "toy"
    for name, text in {"__init__.py": "", "low/__init__.py": "", "high/__init__.py": "",
                       **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_checker_catches_an_upward_import_anywhere_in_a_module(tmp_path):
    root = make_tree(tmp_path, {
        "low/a.py": "def f():\n    from ..high import b\n",
        "high/b.py": "from ..low import a\n",
        "low/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.high.b import X\n",
    })
    graph = graph_of(root, "toy")
    assert graph["toy.high.b"] == {"toy.low.a"}
    assert upward_imports(graph, TOY_LAYERS) == [
        "toy.low.a (low) imports toy.high.b (high)",
        "toy.low.c (low) imports toy.high.b (high)",
    ]


def test_checker_catches_a_cycle_within_a_layer(tmp_path):
    root = make_tree(tmp_path, {
        "low/a.py": "from . import b\n",
        "low/b.py": "from .c import thing\n",
        "low/c.py": "import toy.low.a\n",
        "low/d.py": "from .a import x\n",
    })
    graph = graph_of(root, "toy")
    assert upward_imports(graph, TOY_LAYERS) == []
    assert cycles(graph) == [["toy.low.a", "toy.low.b", "toy.low.c"]]


def test_checker_refuses_a_module_in_no_layer(tmp_path):
    root = make_tree(tmp_path, {"elsewhere.py": ""})
    assert layer_of("toy", TOY_LAYERS) == 2 and layer_of("toy.low.x", TOY_LAYERS) == 0
    with pytest.raises(LookupError, match="toy.elsewhere"):
        upward_imports(graph_of(root, "toy"), TOY_LAYERS)


# --- trionet itself ----------------------------------------------------------------------


def test_every_module_imports_only_its_own_layer_or_lower():
    assert upward_imports(graph_of(PACKAGE_DIR, "trionet")) == []


def test_no_import_cycles():
    assert cycles(graph_of(PACKAGE_DIR, "trionet")) == []


def test_every_module_is_in_a_layer():
    for module in graph_of(PACKAGE_DIR, "trionet"):
        layer_of(module)


def run_python(code: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_the_sans_io_core_imports_with_the_standard_library_and_attrs_only():
    """With trio and pytun made unimportable, the codecs and the TCP state
    machine still import and work."""
    done = run_python(
        "import sys; sys.modules['trio'] = sys.modules['pytun'] = None\n"
        "import trionet.wire, trionet.tcp.connection\n"
        "from trionet.tcp.connection import TcpConfig, TcpConnection\n"
        "from ipaddress import IPv4Address as A\n"
        "c = TcpConnection.connect((A('10.0.0.1'), 1000), (A('10.0.0.2'), 80), 7, TcpConfig(), 0.0)\n"
        "print(c.state.name, len(c.pop_outgoing()))")
    assert done.returncode == 0 and done.stdout.split() == ["SYN_SENT", "1"], done.stderr


def test_the_stack_imports_without_pytun():
    """pytun is imported when a TAP is opened, not before."""
    done = run_python(
        "import sys; sys.modules['pytun'] = None\n"
        "import trionet, trionet.network\n"
        "from trionet import Stack, TapLink, LoopbackLink, virtual_cable\n"
        "try:\n"
        "    TapLink('trionet-none0')\n"
        "except ImportError:\n"
        "    print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
