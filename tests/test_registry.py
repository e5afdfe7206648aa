"""The package keeps its process-wide state in ``driftlock.registry`` only (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import driftlock

SRC = Path(driftlock.__file__).parent
MUTATORS = {"append", "add", "update", "clear", "pop", "discard", "remove", "setdefault", "extend", "insert"}
MEMO = {("engine/cbad.py", "_local")}  # a per-thread compressor: a memo of a pure function, like an lru_cache


def mutated_globals(tree: ast.Module) -> set[str]:
    """Module-level names this module rebinds with ``global``, mutates in place or assigns an item/attribute of."""
    names = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.update(node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
            if isinstance(node.func.value, ast.Name):
                found.add(node.func.value.id)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Subscript | ast.Attribute) and isinstance(t.value, ast.Name):
                    found.add(t.value.id)
    return found & names


def test_no_module_keeps_mutable_state_outside_the_registry() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if module == "registry.py":
            continue
        for name in sorted(mutated_globals(ast.parse(path.read_text(), str(path)))):
            if (module, name) not in MEMO:
                offenders.append(f"{module}: {name}")
    assert not offenders, "module-level state outside driftlock.registry: " + ", ".join(offenders)


def test_the_check_sees_each_kind_of_mutation() -> None:
    source = "a = []\nb = {}\nc = (0,)\nd = {}\ndef f():\n    global c\n    a.append(1)\n    b['k'] = 1\n    c = (1,)\n"
    assert mutated_globals(ast.parse(source)) == {"a", "b", "c"}
