"""The package's shape: layers import only downwards, the public surface is what it says."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import clew
from clew.store import AsyncStore, Store

SRC = Path(clew.__file__).parent
# Each layer may import itself and the layers listed after it, never one before it.
LAYERS = ["integrations", "cli", "web", "audit", "runtime", "store", "codec"]
BASE = {"errors", "_extras"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "clew" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


@pytest.mark.parametrize("layer", LAYERS)
def test_lower_layers_never_import_higher_ones(layer: str) -> None:
    higher = set(LAYERS[: LAYERS.index(layer)])
    offenders = []
    for path in (SRC / layer).rglob("*.py"):
        for module in _imports(path):
            target = _layer(module)
            if target in higher or (module in ("clew._open",) and layer in ("codec", "store")):
                offenders.append(f"{path.relative_to(SRC)} imports {module}")
    assert not offenders


def test_public_all_is_importable_and_complete() -> None:
    for name in clew.__all__:
        assert hasattr(clew, name), name
    public = {n for n in dir(clew) if not n.startswith("_") and not inspect.ismodule(getattr(clew, n))}
    assert public - set(clew.__all__) == set()


@pytest.mark.parametrize("module", ["clew.store", "clew.codec", "clew.runtime", "clew.errors", "clew.audit"])
def test_subpackage_all(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_store_and_async_store_are_twins() -> None:
    def methods(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(f) for n, f in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")
        }

    sync, async_ = methods(Store), methods(AsyncStore)
    assert sync.keys() == async_.keys()
    for name, sig in sync.items():
        assert sig == async_[name], name
        assert inspect.iscoroutinefunction(getattr(AsyncStore, name)), name
