"""Options several commands share, defined once so they read and behave the same."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

FAIL_ON_HELP = "lowest severity that makes the exit status 1 (default: critical)"


def add_format(p: argparse.ArgumentParser, help: str = "output format (default: text)") -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help=help)


def add_fail_on(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fail-on", choices=("warning", "critical"), default="critical",
                   help=FAIL_ON_HELP)


def add_color(p: argparse.ArgumentParser) -> None:
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour in text output (default: auto; NO_COLOR is honoured)")


def add_loss_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-loss", metavar="NAME",
                   help="the column/tag holding the training loss (overrides the guess)")
    p.add_argument("--val-loss", metavar="NAME",
                   help="the column/tag holding the validation loss (overrides the guess)")
    p.add_argument("--verify", action="store_true",
                   help="check the CRC of every TensorBoard record (slower)")


def add_html(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--html", metavar="FILE", type=Path,
                   help=f"also write {what} as a self-contained HTML page")
    p.add_argument("--force", action="store_true",
                   help="with --html: replace FILE if it exists (default: refuse)")


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def html_refused(path: Path | None, force: bool, prefix: str = "lossdoctor") -> bool:
    """True (after one line on stderr) when --html names an existing file and --force
    is not given. Checked before any work: a long run must not end in "exists"."""
    if path is None or force or not path.exists():
        return False
    sys.stderr.write(f"{prefix}: {path}: already exists; choose another name or add "
                     "--force\n")
    return True
