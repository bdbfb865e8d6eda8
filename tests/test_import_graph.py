"""The shape of the package, read from the source with ``ast`` (no import runs, so this is quick).

- no import cycle among the modules of resnet_apps, counting imports made inside functions (a lazy import
  that only hides a cycle is still a cycle);
- every import goes down the layers written in CONTRIBUTING.md (LAYERS below is the same table);
- no module uses another module's private ``_name``;
- the package root holds no ``train_*``, ``weights_*`` or ``evaluate*`` module (they live in train/, weights/);
- io/, report/, recipe/ and errors.py, and all they import, never import torch (nor timm, torchvision, monai).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_apps"
ROOT = PACKAGE.name

# The top-level units of resnet_apps and their layer: a unit imports only from units on a LOWER layer (and from
# itself). The package's own __init__ (the lazy public facade) may import anything and is not listed.
LAYERS: dict[str, int] = {
    "errors": 0,
    "constants": 0,
    "checksum": 0,
    "allocator": 0,
    "recipe": 1,
    "cards": 1,
    "io": 1,
    "metrics": 1,
    "data": 2,
    "report": 2,
    "fetch": 2,
    "weights": 2,
    "models": 3,
    "predict": 4,
    "train": 4,
    "study": 4,
    "bench": 5,
    "cli": 5,
    "demo_data": 5,
    "__main__": 6,
}
TORCH_FREE = ("io", "report", "recipe", "errors")
HEAVY = {"torch", "torchvision", "timm", "monai"}
FLAT_PREFIXES = ("train_", "weights_", "evaluate")


@dataclass
class Module:
    """One module of the package: its dotted name, file, and what it imports."""

    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # modules of the package (no ancestor packages)
    external: set[str] = field(default_factory=set)  # top-level names of third-party/stdlib imports
    private_uses: list[str] = field(default_factory=list)  # "line N: other.module._name"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(name: str) -> str:
    """resnet_apps.train.loop -> train; resnet_apps -> '' (the facade)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    anchor = name.split(".") if is_package else name.split(".")[:-1]
    anchor = anchor[: len(anchor) - node.level + 1]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _scan(path: Path, names: set[str]) -> Module:
    module = Module(_module_name(path), path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    aliases: dict[str, str] = {}  # local name -> project module it is bound to

    def add(target: str) -> str | None:
        if target.split(".")[0] != ROOT:
            module.external.add(target.split(".")[0])
            return None
        full = target
        while target and target not in names:
            target = target.rpartition(".")[0]
        # importing a.b.c also runs a and a.b; the module's own ancestors are not edges (they are its package)
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix != module.name and not module.name.startswith(prefix + "."):
                module.imports.add(prefix)
        return full if full in names else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if add(a.name) and a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module.name, is_package, node)
            add(base)
            for a in node.names:
                target = f"{base}.{a.name}"
                if target in names:  # `from pkg import submodule`
                    add(target)
                    aliases[a.asname or a.name] = target
                elif base.split(".")[0] == ROOT and base != module.name and _is_private(a.name):
                    module.private_uses.append(f"line {node.lineno}: {base}.{a.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != module.name
            and _is_private(node.attr)
        ):
            module.private_uses.append(f"line {node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return module


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _modules() -> dict[str, Module]:
    files = sorted(PACKAGE.rglob("*.py"))
    names = {_module_name(p) for p in files}
    return {m.name: m for m in (_scan(p, names) for p in files)}


MODULES = _modules()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _reachable(starts: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(MODULES[name].imports)
    return seen


def test_the_scan_sees_the_package() -> None:
    # a broken scan would pass every test below: check it against facts that hold for this package
    assert len(MODULES) > 50
    assert f"{ROOT}.io.inspect" in MODULES[f"{ROOT}.cli.inspect"].imports  # made inside a function
    assert "torch" in MODULES[f"{ROOT}.models.heads"].external
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    found = _cycles({name: m.imports for name, m in MODULES.items()})
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_every_unit_has_a_layer() -> None:
    units = {_unit(name) for name in MODULES} - {""}
    missing = sorted(units - set(LAYERS))
    assert not missing, (
        f"{missing}: give each new top-level module a layer in LAYERS (tests/test_import_graph.py) "
        "and in the layer table of CONTRIBUTING.md"
    )


def test_imports_go_down_the_layers() -> None:
    wrong = []
    for name, module in sorted(MODULES.items()):
        unit = _unit(name)
        if not unit:
            continue  # the lazy facade resnet_apps/__init__.py
        for target in sorted(module.imports):
            other = _unit(target)
            if other and other != unit and LAYERS.get(other, 99) >= LAYERS.get(unit, -1):
                wrong.append(
                    f"{name} (layer {LAYERS.get(unit)}) imports {target} (layer {LAYERS.get(other)})"
                )
    assert not wrong, "imports that do not go down a layer:\n" + "\n".join(wrong)


def test_no_use_of_another_modules_private_names() -> None:
    uses = [f"{name} {use}" for name, m in sorted(MODULES.items()) for use in m.private_uses]
    assert not uses, "make the name public (and document it) or move the code:\n" + "\n".join(uses)


def test_the_package_root_holds_no_flat_train_weights_or_evaluate_module() -> None:
    flat = sorted(p.name for p in PACKAGE.iterdir() if p.name.startswith(FLAT_PREFIXES))
    assert flat == [], f"{flat}: these belong in resnet_apps/train/ or resnet_apps/weights/"
    for unit in ("train", "weights", "models"):
        assert (PACKAGE / unit / "__init__.py").is_file()


@pytest.mark.parametrize("unit", TORCH_FREE)
def test_torch_free_layers_never_import_torch(unit: str) -> None:
    starts = [n for n in MODULES if _unit(n) == unit]
    assert starts, f"no module {ROOT}.{unit}"
    heavy = sorted(
        f"{name} imports {sorted(MODULES[name].external & HEAVY)}"
        for name in _reachable(starts)
        if MODULES[name].external & HEAVY
    )
    assert not heavy, f"{unit} must stay torch-free (function-level imports count):\n" + "\n".join(heavy)
