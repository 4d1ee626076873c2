"""lossdoctor: diagnoses neural-network training."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The core (numpy only) is imported eagerly; __version__ comes first because the
# modules below read it.
from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.findings import Finding, Severity
from lossdoctor.run import Run, Series
from lossdoctor.sources import load

# Public names that pull in more than numpy load on first use, so `import lossdoctor`
# stays free of framework imports.
_LAZY = {
    "check": ("lossdoctor.checks", "check"),
    "CheckReport": ("lossdoctor.checks", "CheckReport"),
    "lr_range_test": ("lossdoctor.integrations.lr_range", "lr_range_test"),
    # lossdoctor.search is a callable module: `lossdoctor.search(...)` runs a search.
    "search": ("lossdoctor.search", "search"),
    "ensemble": ("lossdoctor.search.ensemble", "ensemble"),
}


__all__ = [
    "CheckReport",
    "Diagnosis",
    "Finding",
    "Run",
    "Series",
    "Severity",
    "__version__",
    "check",
    "diagnose",
    "ensemble",
    "load",
    "lr_range_test",
    "search",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lossdoctor' has no attribute {name!r}")
