"""Lazy imports of optional dependencies with a clear message when an extra is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from lossdoctor.errors import MissingExtraError


def try_import(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module) from exc
