"""`lossdoctor search MODULE:FUNCTION`: a hyperparameter search on Optuna."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lossdoctor.commands import _options

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2

EXAMPLES = """\
examples:
  lossdoctor search examples/search_digits.py:train --trials 40
  lossdoctor search train:fit --space-from train:SMALL_SPACE --sampler tpe
  lossdoctor search train:fit --trials 100 --study lr-sweep \\
      --storage postgresql+psycopg://user:pw@db-host/optuna   (same command on every machine)
  lossdoctor search train:fit --extend         widen a range whose best value is on its edge

The function is called as FUNCTION(params, reporter) once per trial; it trains on a
FIXED validation set and calls reporter.report(epoch, val_loss=..., val_accuracy=...,
train_loss=...) every epoch (report raises when the trial should stop: let it
propagate). The search space is the module's SPACE unless --space-from names
another: a dict of name -> LogUniform/Uniform/Int/Choice (lossdoctor.search).

--trials is the study-wide total: three workers started with --trials 30 on one
--storage run 30 trials together. Every trial is a lossdoctor run folder under
--run-root/STUDY/trial-NNNN (`lossdoctor diagnose` reads it).

exit status: 0 done, 1 the best value sits on an edge of its range
             (search-best-at-boundary; not with --extend once widened ranges settle),
             2 bad usage or a function that cannot be used (one line)
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search",
        help="hyperparameter search (log space, diagnosis-aware pruning, edge warnings)",
        description="Search hyperparameters the expert way on Optuna: log-space ranges, "
        "one fixed validation set recorded every epoch, trials the doctor finds hopeless "
        "stopped early with the reason, and a warning (with the widened range) when the "
        "best value sits on the edge of its range.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="MODULE:FUNCTION",
                   help="train function (module or file.py), called as f(params, reporter)")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="trials in the study, all workers together (default: 20)")
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL of the study (default: sqlite:///RUN_ROOT/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the function's name)")
    p.add_argument("--space-from", metavar="MODULE:NAME",
                   help="the search space (default: SPACE in the function's module)")
    p.add_argument("--extend", action="store_true",
                   help="search again with a widened range when a best value is on an edge")
    p.add_argument("--sampler", choices=("random", "tpe"), default="random",
                   help="random (default, seeded per trial) or tpe")
    p.add_argument("--pruner", choices=("diagnosis", "median", "diagnosis+median", "none"),
                   default="diagnosis", help="how trials are stopped early (default: diagnosis)")
    p.add_argument("--objective", default="val_loss",
                   help="reported metric to optimize (default: val_loss)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--run-root", type=Path, default=Path("runs/search"), metavar="DIR",
                   help="where trial run folders go (default: runs/search)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="output format; json also makes progress JSON lines on stderr")
    _options.add_html(p, "the search (each parameter against the objective, edges marked)")
    p.set_defaults(handler=run_search)


def _load_attr(spec: str) -> Any:
    """The object named by MODULE:NAME or path/file.py:NAME (any object, not only a
    function: a search space is a dict)."""
    import importlib
    import importlib.util
    import os

    from lossdoctor.commands.check import BuildError

    module_name, sep, name = spec.rpartition(":")
    if not sep or not module_name or not name:
        raise BuildError(f"expected MODULE:NAME, but got {spec!r}")
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name)
        module = sys.modules.get(path.stem)
        if module is None or Path(getattr(module, "__file__", "") or "").resolve() != \
                path.resolve():
            if not path.is_file():
                raise BuildError(f"no such file {path}")
            loaded = importlib.util.spec_from_file_location(path.stem, path)
            if loaded is None or loaded.loader is None:
                raise BuildError(f"cannot import {path}")
            module = importlib.util.module_from_spec(loaded)
            sys.modules[path.stem] = module
            sys.path.insert(0, str(path.resolve().parent))
            loaded.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())  # as `python -m` does
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise BuildError(f"cannot import module {module_name!r}: {exc}") from exc
    if not hasattr(module, name):
        raise BuildError(f"{module_name} has no {name!r}")
    return getattr(module, name)


def _space(args: argparse.Namespace, func: Any) -> Any:
    if args.space_from:
        return _load_attr(args.space_from)
    space = getattr(sys.modules.get(func.__module__), "SPACE", None)
    if space is None:
        raise ValueError(f"{func.__module__} defines no SPACE; add one or use --space-from")
    return space


def run_search(args: argparse.Namespace) -> int:
    from lossdoctor.commands.check import BuildError, load_target
    from lossdoctor.errors import MissingExtraError

    if args.trials < 1:
        sys.stderr.write(f"lossdoctor: search: --trials must be >= 1, got {args.trials}\n")
        return EXIT_BAD_INPUT
    if _options.html_refused(args.html, args.force, "lossdoctor: search"):
        return EXIT_BAD_INPUT
    try:
        func = load_target(args.target)
        space = _space(args, func)
        from lossdoctor.search._search import search

        result = search(func, space, args.trials, storage=args.storage, study_name=args.study,
                        sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                        run_root=args.run_root, objective=args.objective, extend=args.extend,
                        progress_format=args.format)
    except (BuildError, MissingExtraError, TypeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        sys.stderr.write(f"lossdoctor: search: {args.target}: {message}\n")
        return EXIT_BAD_INPUT
    if args.format == "json":
        from lossdoctor import __version__

        out = {"lossdoctor": __version__, **result.to_dict()}
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        sys.stdout.write(_render(result))
    if args.html is not None:
        try:
            result.save_html(args.html, force=args.force)
        except OSError as exc:
            sys.stderr.write(f"lossdoctor: search: {args.html}: cannot write ({exc})\n")
            return EXIT_BAD_INPUT
    return EXIT_FINDINGS if result.findings else EXIT_OK


def _render(result: Any) -> str:
    counts = result.counts()
    lines = [f"study {result.study_name} ({result.storage}): "
             + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
             + f"; {result.epochs_trained} epochs trained"]
    if result.prune_reasons():
        lines.append("pruned by: " + ", ".join(f"{k} {v}" for k, v in
                                               sorted(result.prune_reasons().items())))
    best = result.best
    if best is None:
        lines.append("no trial completed")
    else:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in best.params.items())
        lines.append(f"best {result.objective} = {best.value:.4g}: trial {best.number} "
                     f"({params}), run {best.run_dir}")
    for f in result.findings:
        lines.append(f"warning [{f.code}] {f.title}")
        lines.extend(f"  - {fix}" for fix in f.fixes)
    for r in result.rounds:
        lines.append(f"(earlier round: study {r.study_name}, best "
                     f"{r.best.value if r.best else None})")
    return "\n".join(lines) + "\n"
