"""One compact line per finding, printed the first time it appears."""

from __future__ import annotations

import sys
from collections.abc import Callable

from lossdoctor.findings import Finding


def format_line(f: Finding) -> str:
    where = []
    if f.layer:
        where.append(f"layer {f.layer}")
    if f.epoch is not None:
        where.append(f"epoch {f.epoch}")
    if f.step is not None:
        where.append(f"step {f.step}")
    at = f" ({', '.join(where)})" if where else ""
    return f"lossdoctor [{f.severity.value}] {f.code}{at}: {f.title}"


def default_writer() -> Callable[[str], None]:
    """tqdm.write when tqdm is in use (a plain print would tear its bar), else stderr."""
    tqdm_mod = sys.modules.get("tqdm")
    write = getattr(getattr(tqdm_mod, "tqdm", None), "write", None)
    if callable(write):
        return lambda line: write(line, file=sys.stderr)

    def _print(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return _print
