"""Subcommands besides `diagnose`, one module each.

Each module listed in COMMANDS defines `register(subparsers) -> None`, which adds its
parser (with examples in its epilog) and sets `handler=<function(args) -> int>` as a
default. cli.py imports them lazily, so a command's heavy imports cost nothing to the
others.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "lossdoctor.commands.check",
    "lossdoctor.commands.report",
    "lossdoctor.commands.search",
)
