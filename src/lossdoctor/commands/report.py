"""`lossdoctor report PATH... -o report.html`: the diagnosis as a self-contained HTML
page with plots (one run or many), from anything `diagnose` reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lossdoctor.commands import _options

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2

REPORT_EXAMPLES = """\
examples:
  lossdoctor report runs/ -o report.html           every run under runs/, one page
  lossdoctor report training.csv -o training.html  a Keras CSVLogger file
  lossdoctor report lightning_logs/ tb/ -o all.html --title "sweep 12"
  lossdoctor report runs/ -o report.html --force   replace an existing report

The page opens offline (no network, no CDN): plots are inline SVG, with markers
where each finding starts. An existing file is never replaced without --force.

exit status: 0 no finding at or above --fail-on, 1 there is one,
             2 bad usage, unreadable input or an output that cannot be written
             (one line naming the file)
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report with plots",
        description="Read training logs, diagnose them, and write one HTML file with "
        "the loss, accuracy, learning-rate and per-layer plots, each finding marked "
        "where it starts. PATH is anything `diagnose` reads.",
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="log file or folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the HTML file to write")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--title", default="lossdoctor report", help="the page's title")
    _options.add_loss_overrides(p)
    _options.add_fail_on(p)
    p.set_defaults(handler=run_report)


def _fail(message: str) -> int:
    sys.stderr.write(f"lossdoctor: {message}\n")
    return EXIT_BAD_INPUT


def run_report(args: argparse.Namespace) -> int:
    from lossdoctor.diagnosis import Diagnosis, diagnose
    from lossdoctor.errors import InputError
    from lossdoctor.findings import Severity
    from lossdoctor.progress import Progress
    from lossdoctor.report.html import write_html_report
    from lossdoctor.sources import Options, load

    output = Path(args.output)
    # Checked before reading anything: a long read should not end in "exists".
    if output.exists() and not args.force:
        return _fail(f"{output}: already exists (use --force to overwrite it)")
    if output.is_dir():
        return _fail(f"{output}: is a directory")
    if not output.parent.is_dir():
        return _fail(f"{output}: folder {output.parent} does not exist")

    errors: list[InputError] = []
    diagnoses: list[Diagnosis] = []
    with Progress("reading") as progress:
        options = Options(verify=args.verify, train_loss=args.train_loss,
                          val_loss=args.val_loss, on_source=progress.advance)
        for path in args.paths:
            for item in load(path, options):
                if item.error is not None:
                    errors.append(item.error)
                elif item.run is not None:
                    diagnoses.append(diagnose(item.run))
    for error in errors:
        sys.stderr.write(f"lossdoctor: {error.path}: {error.problem}\n")
    if not diagnoses:  # each unreadable input has had its line; nothing to write
        return EXIT_BAD_INPUT if errors else _fail(f"{output}: not written (no run found)")
    try:
        write_html_report(diagnoses, errors, output, force=args.force, title=args.title)
    except FileExistsError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{output}: cannot be written ({exc.strerror or exc})")
    if errors:
        return EXIT_BAD_INPUT
    threshold = Severity.parse(args.fail_on)
    worst = max((d.worst.rank for d in diagnoses if d.worst is not None), default=-1)
    return EXIT_FINDINGS if worst >= threshold.rank else EXIT_OK
