"""Hyperparameter search the expert way, on Optuna (the `search` extra).

    import lossdoctor
    from lossdoctor.search import LogUniform, Choice

    result = lossdoctor.search(train, {"lr": LogUniform(1e-6, 1e1),
                                       "momentum": Choice([0.5, 0.9, 0.95, 0.99])},
                               n_trials=40)
    result.best, result.findings          # search-best-at-boundary when it applies
    lossdoctor.ensemble(result, x_val, y_val, k=5).render()

The space and the reporter need numpy only; optuna is imported when a search runs.
This module is callable (`lossdoctor.search(...)` is `lossdoctor.search.search(...)`),
so the package and the function can share the name the issue asked for.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from lossdoctor.search.reporter import TrialPruned, TrialReporter
from lossdoctor.search.space import Choice, Edge, Int, LogUniform, Uniform, edges

if TYPE_CHECKING:
    from lossdoctor.search._search import SearchResult, TrialSummary


def search(*args: Any, **kwargs: Any) -> SearchResult:
    """See `lossdoctor.search._search.search` (documented there in full)."""
    from lossdoctor.search._search import search as run

    return run(*args, **kwargs)





def __getattr__(name: str) -> Any:
    # Names that need optuna load on first use.
    if name in ("SearchResult", "TrialSummary", "boundary_findings", "make_pruner"):
        from lossdoctor.search import _search

        return getattr(_search, name)
    if name == "DiagnosisPruner":
        from lossdoctor.search.pruning import DiagnosisPruner

        return DiagnosisPruner
    raise AttributeError(f"module 'lossdoctor.search' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> SearchResult:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Choice", "DiagnosisPruner", "Edge", "Int", "LogUniform", "SearchResult",
           "TrialPruned", "TrialReporter", "TrialSummary", "Uniform", "edges", "search"]
