"""The `lossdoctor` command: thin; parses arguments and calls the stages."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lossdoctor import __version__
from lossdoctor.commands import COMMANDS, _options
from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.errors import InputError
from lossdoctor.findings import Severity
from lossdoctor.progress import Progress
from lossdoctor.sources import Loaded, Options, load

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2

DIAGNOSE_EXAMPLES = """\
examples:
  lossdoctor diagnose training.csv                 a Keras CSVLogger file
  lossdoctor diagnose lightning_logs/              every version_* run in it
  lossdoctor diagnose runs/ --format json          machine-readable verdicts
  lossdoctor diagnose events.out.tfevents.* --verify
  lossdoctor diagnose log.csv --train-loss total_loss --val-loss eval_total
  lossdoctor diagnose runs/ --fail-on warning      exit 1 on any warning (CI gate)
  lossdoctor diagnose runs/ --html report.html     also write the HTML report

exit status: 0 no finding at or above --fail-on, 1 there is one,
             2 bad usage or unreadable input (one line naming the file)
"""

MAIN_EXAMPLES = """\
examples:
  lossdoctor diagnose training.csv
  lossdoctor diagnose runs/ --format json
  lossdoctor diagnose --help
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage already; keep its one-line message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lossdoctor",
        description="Diagnoses neural-network training: what is wrong, where, why, "
        "and what to do.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lossdoctor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    d = sub.add_parser(
        "diagnose",
        help="diagnose training logs (TensorBoard, Keras CSV, Lightning CSV, JSONL)",
        description="Read training logs and say what is wrong, where, why and what to do. "
        "PATH is an event file, a CSV/JSONL log, a run folder, or a folder of many runs "
        "(- reads a log piped in); the format is detected from the content.",
        epilog=DIAGNOSE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("paths", nargs="+", metavar="PATH", help="log file or folder")
    _options.add_format(d)
    _options.add_loss_overrides(d)
    _options.add_fail_on(d)
    d.add_argument("--details", action=argparse.BooleanOptionalAction, default=None,
                   help="explanations and fixes for every run (default: when <= 5 runs)")
    _options.add_color(d)
    _options.add_html(d, "the report")
    d.set_defaults(handler=run_diagnose)
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def _read_all(args: argparse.Namespace) -> list[Loaded]:
    loaded: list[Loaded] = []
    with Progress("reading") as progress:
        options = Options(
            verify=args.verify,
            train_loss=args.train_loss,
            val_loss=args.val_loss,
            on_source=progress.advance,
        )
        for path in args.paths:
            loaded += load(path, options)
    return loaded


def run_diagnose(args: argparse.Namespace) -> int:
    if _options.html_refused(args.html, args.force):
        return EXIT_BAD_INPUT
    loaded = _read_all(args)
    errors: list[InputError] = [item.error for item in loaded if item.error is not None]
    runs = [item.run for item in loaded if item.run is not None]
    diagnoses: list[Diagnosis] = []
    with Progress("diagnosing", total=len(runs)) as progress:
        for run in runs:
            diagnoses.append(diagnose(run))
            progress.advance(run.name)
    if args.format == "json":
        from lossdoctor.report.json import render_json

        sys.stdout.write(render_json(diagnoses, errors) + "\n")
    else:
        from lossdoctor.report.text import render_text

        if diagnoses:
            sys.stdout.write(render_text(diagnoses, color=_options.use_color(args.color),
                                         details=args.details))
    if args.html is not None:
        from lossdoctor.report.html import write_html_report

        try:
            write_html_report(diagnoses, errors, args.html, force=args.force)
        except (OSError, FileExistsError) as exc:
            sys.stderr.write(f"lossdoctor: {args.html}: cannot write the report ({exc})\n")
            return EXIT_BAD_INPUT
    for error in errors:
        # One line each on stderr, whatever the format: scripts grep for these.
        sys.stderr.write(f"lossdoctor: {error.path}: {error.problem}\n")
    if errors:
        return EXIT_BAD_INPUT
    threshold = Severity.parse(args.fail_on)
    worst = max((d.worst.rank for d in diagnoses if d.worst is not None), default=-1)
    return EXIT_FINDINGS if worst >= threshold.rank else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        sys.stderr.write("lossdoctor: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # never a traceback: one line that can be reported
        sys.stderr.write(
            f"lossdoctor: internal error ({type(exc).__name__}: {exc}); please report it\n"
        )
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
