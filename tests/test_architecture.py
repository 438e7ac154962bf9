"""The package's shape (docs/architecture.md): imports only go downward through the layers,
no import cycle between modules, and no module or class too big to read.

Every module of toolchain/mcutext/ and bench/ is parsed (nothing is imported); every import
statement counts, the ones inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"mcutext": ROOT / "toolchain" / "mcutext", "bench": ROOT / "bench"}

# Lowest first. A unit is a subpackage of mcutext (or a top-level module of it, or bench/); it
# may import the units of the layers before its own, never those after it, nor another unit of
# its own layer.
LAYERS = (
    ("common",),
    ("text",),
    ("model",),
    ("int8",),
    ("train",),
    ("codegen",),
    ("firmware",),
    ("device",),
    ("attack", "explain"),
    ("studies",),
    ("cli",),
    ("reliability", "demo"),
    ("mcutext",),          # the package itself: __version__ and load_bundle
    ("bench",),            # outside the installed package
)
RANK = {unit: k for k, layer in enumerate(LAYERS) for unit in layer}

MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 300
MAX_C_LINES = 600       # a hand-written C file of the firmware or a board


def module_files(sources: dict[str, Path] = SOURCES) -> dict[str, Path]:
    """dotted module name -> file (a package under its own name, for its __init__.py)."""
    mods = {}
    for top, folder in sources.items():
        for p in sorted(folder.rglob("*.py")):
            parts = (top,) + p.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] != "mcutext" or len(parts) == 1 else parts[1]


def imports(mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a module in `mods`."""
    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from package import module` imports the module; `from m import name`, m
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source
                           for a in node.names]
            for t in targets:
                hit = known(t)
                if hit is not None and hit != name:
                    edges.append((name, hit, node.lineno))
    return edges


def layer_violations(mods, edges) -> list[str]:
    bad = []
    for src, dst, line in edges:
        a, b = unit_of(src), unit_of(dst)
        where = f"{_shown(mods[src])}:{line} imports {dst}"
        for u in (a, b):
            if u not in RANK:
                bad.append(f"{where}: '{u}' has no layer (declare it in LAYERS)")
        if a == b or a not in RANK or b not in RANK:
            continue
        if RANK[b] > RANK[a]:
            bad.append(f"{where}: '{a}' (layer {RANK[a]}) may not import '{b}' (layer "
                       f"{RANK[b]}, above it)")
        elif RANK[b] == RANK[a]:
            bad.append(f"{where}: '{a}' and '{b}' are siblings in layer {RANK[a]}; neither "
                       "imports the other")
    return bad


def cycles(nodes, edges) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        if a != b:
            graph[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        # iterative: deep import chains must not hit the recursion limit
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for n in sorted(graph):
        if n not in index:
            visit(n)
    return out


def describe_cycle(comp: list[str], mods, edges) -> str:
    inside = set(comp)
    links = sorted({f"{_shown(mods[a])}:{line} imports {b}"
                    for a, b, line in edges if a in inside and b in inside})
    return f"{len(comp)} modules: {', '.join(comp)}\n    " + "\n    ".join(links)


@pytest.fixture(scope="module")
def graph():
    mods = module_files()
    return mods, imports(mods)


def test_every_module_is_in_a_layer(graph):
    mods, _ = graph
    assert not [m for m in mods if unit_of(m) not in RANK]


def test_imports_only_go_down(graph):
    mods, edges = graph
    bad = layer_violations(mods, edges)
    assert not bad, "imports against the layers (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycle_between_modules(graph):
    mods, edges = graph
    found = cycles(mods, [(a, b) for a, b, _ in edges])
    assert not found, "import cycles:\n" + "\n".join(describe_cycle(c, mods, edges)
                                                    for c in found)


def test_no_import_cycle_between_units(graph):
    mods, edges = graph
    units = {unit_of(m) for m in mods}
    found = cycles(units, [(unit_of(a), unit_of(b)) for a, b, _ in edges])
    assert not found, f"cycles between subpackages: {found}"


def test_sizes(graph):
    mods, _ = graph
    bad = []
    for name, path in mods.items():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            bad.append(f"{_shown(path)}: {n} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    bad.append(f"{_shown(path)}:{node.lineno}: class {node.name} "
                               f"is {size} lines (at most {MAX_CLASS_LINES})")
    assert not bad, "\n".join(bad)


def test_c_file_sizes():
    """The firmware and the boards by concern: no hand-written C file over MAX_C_LINES (the
    generated C lives under build/, never here)."""
    files = sorted(p for d in ("firmware", "boards") for p in (ROOT / d).rglob("*.[ch]"))
    assert len(files) > 30
    bad = [f"{p.relative_to(ROOT)}: {n} lines (at most {MAX_C_LINES})" for p in files
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_C_LINES]
    assert not bad, "\n".join(bad)


def test_the_checks_catch_what_they_should(tmp_path):
    """An upward import and a cycle, in a made-up package, are both named."""
    pkg = tmp_path / "mcutext"
    for rel, text in {
        "__init__.py": "",
        "common/__init__.py": "", "common/errors.py": "from ..text import tokenizer\n",
        "text/__init__.py": "", "text/tokenizer.py": "from . import words\n",
        "text/words.py": "def f():\n    from .tokenizer import X\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    mods = module_files({"mcutext": pkg})
    edges = imports(mods)
    bad = layer_violations(mods, edges)
    assert len(bad) == 1 and "common/errors.py:1 imports mcutext.text.tokenizer" in bad[0] \
        and "'common' (layer 0) may not import 'text'" in bad[0]
    assert cycles(mods, [(a, b) for a, b, _ in edges]) == [["mcutext.text.tokenizer",
                                                            "mcutext.text.words"]]
