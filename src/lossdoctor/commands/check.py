"""`lossdoctor check MODULE:FUNCTION`: pre-flight checks of a model before training."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from lossdoctor.commands import _options

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2

EXAMPLES = """\
examples:
  lossdoctor check train:build              train.py in this folder defines build()
  lossdoctor check mypkg.models:make_cnn --format json
  lossdoctor check path/to/script.py:build --checks overfit,gradients
  lossdoctor check train:build --fail-on warning   exit 1 on any warning (CI gate)

The function takes no arguments and returns (model, x, y) or a dict with keys
model, x, y and optionally loss, optimizer, x_val, y_val, regularizer (PyTorch).
model is a Keras model (compiled or not) or a torch.nn.Module; x, y are arrays, or
x is a dataset/loader of (x, y) batches and y is None. The checks run on copies:
the model, its optimizer and the data are left unchanged.

checks: inputs, labels, outputs, initial-loss, outliers, regularization,
        initialization, gradients, overfit, shuffled-labels

exit status: 0 no finding at or above --fail-on, 1 there is one,
             2 bad usage or a build function that cannot be used (one line)
"""

KEYS = ("model", "x", "y", "loss", "optimizer", "x_val", "y_val", "regularizer")


class BuildError(Exception):
    """The build function cannot be found, run, or its result used."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "check",
        help="pre-flight checks of a model before training (Keras or PyTorch)",
        description="Run the checks a careful engineer runs before a long job: initial "
        "loss, regularization, overfitting a tiny batch, gradient check, logits vs "
        "probabilities, labels, inputs, outlier samples, initialization.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="MODULE:FUNCTION",
                   help="function that builds the model and data (module or file.py)")
    _options.add_format(p)
    p.add_argument("--checks", metavar="NAMES",
                   help="comma-separated checks to run (default: all)")
    p.add_argument("--samples", type=int, default=256, metavar="N",
                   help="size of the data sample the checks use (default: 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _options.add_fail_on(p)
    _options.add_color(p)
    _options.add_html(p, "the results")
    p.set_defaults(handler=run_check)


def load_target(target: str) -> Any:
    """The callable named by MODULE:FUNCTION or path/file.py:FUNCTION."""
    module_name, sep, func_name = target.rpartition(":")
    if not sep or not module_name or not func_name:
        raise BuildError("expected MODULE:FUNCTION (e.g. train:build)")
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise BuildError(f"no such file {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise BuildError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise BuildError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        sys.path.insert(0, os.getcwd())  # as `python -m` does
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise BuildError(f"cannot import module {module_name!r}: {exc}") from exc
        except Exception as exc:
            raise BuildError(f"importing {module_name} failed: {type(exc).__name__}: "
                             f"{exc}") from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise BuildError(f"{module_name} has no function {func_name!r}")
    return func


def build(target: str) -> dict[str, Any]:
    func = load_target(target)
    try:
        result = func()
    except Exception as exc:
        raise BuildError(f"{func.__name__}() raised {type(exc).__name__}: {exc}") from exc
    if isinstance(result, dict):
        unknown = sorted(set(result) - set(KEYS))
        if unknown:
            raise BuildError(f"{func.__name__}() returned unknown keys {', '.join(unknown)}; "
                             f"allowed: {', '.join(KEYS)}")
        if "model" not in result or "x" not in result:
            raise BuildError(f"{func.__name__}() must return at least model and x")
        return dict(result)
    if isinstance(result, tuple | list) and len(result) == 3:
        return {"model": result[0], "x": result[1], "y": result[2]}
    raise BuildError(f"{func.__name__}() must return (model, x, y) or a dict, but "
                     f"returned {type(result).__name__}")


def run_check(args: argparse.Namespace) -> int:
    from lossdoctor.checks import CHECK_NAMES, check
    from lossdoctor.errors import MissingExtraError
    from lossdoctor.findings import Severity

    names = None
    if args.checks:
        names = tuple(n.strip() for n in args.checks.split(",") if n.strip())
        unknown = [n for n in names if n not in CHECK_NAMES]
        if unknown:
            sys.stderr.write(f"lossdoctor: check: unknown check {', '.join(unknown)}; "
                             f"choose from {', '.join(CHECK_NAMES)}\n")
            return EXIT_BAD_INPUT
    if _options.html_refused(args.html, args.force, "lossdoctor: check"):
        return EXIT_BAD_INPUT
    if args.samples < 2:
        sys.stderr.write(f"lossdoctor: check: --samples must be >= 2, got {args.samples}\n")
        return EXIT_BAD_INPUT
    try:
        parts = build(args.target)
        model = parts.pop("model")
        x, y = parts.pop("x"), parts.pop("y", None)
        report = check(model, x, y, checks=names, samples=args.samples, seed=args.seed,
                       **parts)
    except (BuildError, MissingExtraError, TypeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        sys.stderr.write(f"lossdoctor: check: {args.target}: {message}\n")
        return EXIT_BAD_INPUT
    if args.format == "json":
        sys.stdout.write(report.to_json() + "\n")
    else:
        sys.stdout.write(report.render(color=_options.use_color(args.color)))
    if args.html is not None:
        try:
            report.save_html(args.html, force=args.force)
        except OSError as exc:
            sys.stderr.write(f"lossdoctor: check: {args.html}: cannot write ({exc})\n")
            return EXIT_BAD_INPUT
    threshold = Severity.parse(args.fail_on)
    worst = report.worst
    return EXIT_FINDINGS if worst is not None and worst.rank >= threshold.rank else EXIT_OK
