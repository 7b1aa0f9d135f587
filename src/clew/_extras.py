"""Optional dependencies, imported through one helper whose error names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from clew.errors import MissingExtraError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``pip install 'clew[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{purpose} needs the {module!r} package: pip install 'clew[{extra}]'") from exc
