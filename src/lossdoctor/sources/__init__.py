"""Find and read the runs under a path: event files, CSV/JSONL logs, run folders.

Format is decided from the content, never the extension alone. A directory may hold
many runs; each is read on its own so one bad run does not hide the others.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lossdoctor.errors import InputError, NoLossError, NotALogError
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS, Run
from lossdoctor.sources.mlflow_store import display_name as mlflow_display_name
from lossdoctor.sources.mlflow_store import is_mlflow_run_dir, read_mlflow_run
from lossdoctor.sources.mlflow_store import run_name as mlflow_run_name
from lossdoctor.sources.rundir import is_lossdoctor_run_dir, read_run_dir

# File names worth sniffing when walking a folder (a single file given by the user is
# always sniffed, whatever its name).
LOG_SUFFIXES = {".csv", ".tsv", ".log", ".txt", ".jsonl", ".ndjson", ".json", ".wandb"}
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Options:
    verify: bool = False
    train_loss: str | None = None
    val_loss: str | None = None
    # Called with each source as it is read (progress display).
    on_source: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Loaded:
    """One run read from `source`, or the error that kept it from being read."""

    source: str
    run: Run | None = None
    error: InputError | None = None


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(HEAD_BYTES)


def _is_event_name(name: str) -> bool:
    return "tfevents" in name


def _sniff(path: Path) -> str | None:
    """'tensorboard', 'tensorboard-download', 'wandb', 'history', 'jsonl', 'console',
    'table' or None for a file of another kind."""
    from lossdoctor.sources.console import looks_like_console
    from lossdoctor.sources.history import looks_like_history_json
    from lossdoctor.sources.tabular import looks_like_jsonl, looks_like_table
    from lossdoctor.sources.tb_download import looks_like_download_json
    from lossdoctor.sources.tensorboard import looks_like_event_file
    from lossdoctor.sources.wandb_run import looks_like_wandb

    head = _head(path)
    if looks_like_event_file(head):
        return "tensorboard"
    if looks_like_download_json(head):
        return "tensorboard-download"
    if looks_like_wandb(head):
        return "wandb"
    if looks_like_history_json(head):
        return "history"
    if looks_like_jsonl(head):
        return "jsonl"
    if looks_like_console(head):
        return "console"
    if looks_like_table(head):
        return "table"
    return None


def _read_file(path: Path, kind: str, options: Options) -> list[Run]:
    if kind == "tensorboard":
        from lossdoctor.sources.tensorboard import read_tensorboard_run

        return [
            read_tensorboard_run(
                path,
                verify=options.verify,
                train_loss=options.train_loss,
                val_loss=options.val_loss,
            )
        ]
    if kind == "history":
        from lossdoctor.sources.history import read_history_json

        return read_history_json(
            path, train_loss=options.train_loss, val_loss=options.val_loss
        )
    if kind == "wandb":
        from lossdoctor.sources.wandb_run import read_wandb_file

        return read_wandb_file(path, train_loss=options.train_loss, val_loss=options.val_loss)
    if kind == "tensorboard-download":
        from lossdoctor.sources.tb_download import read_download_json

        return read_download_json(path, train_loss=options.train_loss,
                                  val_loss=options.val_loss)
    if kind == "console":
        from lossdoctor.sources.console import read_console_log

        return read_console_log(path, train_loss=options.train_loss,
                                val_loss=options.val_loss)
    from lossdoctor.sources.tabular import read_table_file

    return read_table_file(path, train_loss=options.train_loss, val_loss=options.val_loss)


def _check_has_loss(run: Run) -> Run:
    if run.format == "lossdoctor" and not run.series:
        status = run.meta.get("status")
        raise InputError(
            run.source,
            "the live doctor has recorded nothing here yet (run.json status: "
            f"{status}): "
            + ("its training is in its first seconds, or its process ended before the "
               "first write (e.g. killed)" if status == "running" else "no step was logged"),
        )
    if run.get(TRAIN_LOSS) is None and run.get(VAL_LOSS) is None:
        names = sorted(k.removeprefix("extra/") for k in run.series)
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise NoLossError(
            run.source,
            f"no loss series found (series: {shown or 'none'}); "
            "name one with --train-loss or --val-loss",
        )
    return run


def _safely(
    source: str, read: Callable[[], list[Run]], options: Options | None = None
) -> list[Loaded]:
    if options is not None and options.on_source is not None:
        options.on_source(source)
    try:
        return [Loaded(source, run=_check_has_loss(run)) for run in read()]
    except InputError as exc:
        return [Loaded(source, error=exc)]
    except KeyError as exc:  # an override naming a series the log lacks
        return [Loaded(source, error=InputError(source, str(exc.args[0])))]
    except (OSError, UnicodeError, ValueError, MemoryError) as exc:
        return [Loaded(source, error=InputError(source, _describe(exc)))]
    except Exception as exc:  # a reader bug must cost one run, not the whole report
        return [
            Loaded(
                source,
                error=InputError(
                    source,
                    f"could not be read: lossdoctor failed on it ({type(exc).__name__}: "
                    f"{exc}); please report this with the file",
                ),
            )
        ]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return f"cannot be read ({type(exc).__name__}: {exc})"


def _named(loaded: list[Loaded], name: str) -> list[Loaded]:
    """Name runs by their place under the folder the user gave."""
    out = []
    for item in loaded:
        if item.run is not None:
            suffix = item.run.name.partition("#")[2]
            item.run.name = f"{name}#{suffix}" if suffix else name
        out.append(item)
    return out


def _wandb_named(loaded: list[Loaded], folder: Path) -> list[Loaded]:
    from lossdoctor.sources.wandb_run import display_name

    for item in loaded:
        if item.run is not None and (name := display_name(item.run)) is not None:
            item.run.name = name if folder.parent == Path(".") else str(folder.parent / name)
    return loaded


def _single_record(run: Run) -> bool:
    return all(len(series) <= 1 for series in run.series.values())


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _checkpoint_states(file: Path) -> tuple[list[str], list[str]]:
    """For a Hugging Face `checkpoint-N/trainer_state.json`: the sibling checkpoint
    folders holding one at a later step, and those holding one at an earlier step (each
    checkpoint's log is the start of the next one's)."""
    here = _CHECKPOINT.fullmatch(file.parent.name)
    if file.name != "trainer_state.json" or here is None:
        return [], []
    steps = sorted((int(m.group(1)), sibling.name) for sibling in file.parent.parent.iterdir()
                   if (m := _CHECKPOINT.fullmatch(sibling.name)) is not None
                   and (sibling / file.name).is_file())
    at = int(here.group(1))
    return ([name for n, name in steps if n > at], [name for n, name in steps if n < at])


def _tensorboard_run_dirs(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """(run folder, log files) for every folder under root, in a stable order.
    Subfolders that belong to their parent's run (Keras' train/validation, the folders
    of `add_scalars`) are yielded too, and skipped by the caller."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        # A live-doctor or MLflow run folder is read whole; nothing under it is another
        # run (an MLflow run's artifacts are its outputs, not logs).
        if is_lossdoctor_run_dir(here) or is_mlflow_run_dir(here):
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield here, [here / f for f in sorted(filenames) if not f.startswith(".")]


def _not_a_log(path: Path) -> str:
    """Why a file that no reader takes is not read, in words."""
    from lossdoctor.sources.tabular import header_only

    if path.stat().st_size == 0:
        return "empty file"
    columns = header_only(_head(path))
    if columns is not None:
        return (f"a table header ({', '.join(columns)}) and no rows yet: nothing to "
                "diagnose until the run writes its first values")
    return "not a training log (expected a TensorBoard event file, a CSV log or JSON Lines)"


def load(path: str | Path, options: Options | None = None) -> list[Loaded]:
    """Every run under `path` (a file or a folder, or "-" for a log piped into standard
    input), each read or with its error."""
    options = options or Options()
    if str(path) == STDIN:
        return _load_stdin(options)
    root = Path(path)
    source = str(path)
    if not root.exists():
        return [Loaded(source, error=InputError(source, "no such file or directory"))]
    if root.is_file():
        try:
            kind = _sniff(root)
        except OSError as exc:
            return [Loaded(source, error=InputError(source, _describe(exc)))]
        if kind is None:
            return [Loaded(source, error=InputError(source, _not_a_log(root)))]
        # A single file is named as the user gave it: `metrics.csv` alone says little.
        return _named(_safely(source, lambda: _read_file(root, kind, options), options), source)
    if not root.is_dir():
        return [Loaded(source, error=InputError(source, "not a regular file or directory"))]
    return _load_dir(root, options)


STDIN = "-"


def _load_stdin(options: Options) -> list[Loaded]:
    """A log piped in (`... | lossdoctor diagnose -`), read as a file named "stdin"
    (the readers sniff its content like any file's)."""
    if sys.stdin is None or sys.stdin.isatty():
        return [Loaded(STDIN, error=InputError(
            STDIN, "reads a log from standard input, and none was piped in"))]
    data = sys.stdin.buffer.read()
    with tempfile.TemporaryDirectory(prefix="lossdoctor-stdin-") as folder:
        path = Path(folder) / "stdin"
        path.write_bytes(data)
        loaded = load(path, options)
    out = []
    for item in loaded:
        if item.run is not None:
            suffix = item.run.name.partition("#")[2]  # several runs in one CSV
            item.run.name = f"stdin#{suffix}" if suffix else "stdin"
            item.run.source = STDIN
        error = None if item.error is None else InputError(STDIN, item.error.problem)
        out.append(Loaded(STDIN, run=item.run, error=error))
    return out


def _read_lossdoctor_dir(folder: Path, options: Options) -> list[Run]:
    return [read_run_dir(folder, train_loss=options.train_loss, val_loss=options.val_loss)]


def _read_mlflow_dir(folder: Path, options: Options) -> list[Run]:
    return [read_mlflow_run(folder, train_loss=options.train_loss, val_loss=options.val_loss)]


def _merge_with_roles(runs: list[Run], name: str, source: str, options: Options
                      ) -> list[Run]:
    from lossdoctor.sources.tb_download import merge

    run = merge(runs, name, source, options.train_loss, options.val_loss)
    return [] if run is None else [run]


def _merged_downloads(root: Path, folder: Path, files: list[Path], options: Options
                      ) -> tuple[list[Loaded], list[Path]]:
    """TensorBoard downloads of one run's series side by side (its training and
    validation loss, ...) read as that run; and the files left to read one by one (a
    group with a file that is not a download is read that way, with its errors)."""
    from lossdoctor.sources.tb_download import merge, run_base

    groups: dict[str, list[Path]] = {}
    for file in files:
        if (base := run_base(file)) is not None:
            groups.setdefault(base, []).append(file)
    merged: list[Loaded] = []
    used: set[Path] = set()
    for base, group in groups.items():
        if len(group) < 2:
            continue
        runs: list[Run] = []
        try:
            for file in group:
                kind = _sniff(file)
                if kind in ("tensorboard-download", "table"):  # overrides apply once merged
                    runs += _read_file(file, kind, Options())
        except (InputError, OSError, UnicodeError, ValueError):
            continue
        where = folder.relative_to(root)
        name = (str(where / base) if base
                else str(where) if str(where) != "." else root.resolve().name)
        if len(runs) != len(group) or merge(runs, name, str(folder)) is None:
            continue
        # Again with the user's --train-loss / --val-loss, whose errors _safely reports.
        merged += _safely(str(folder), partial(_merge_with_roles, runs, name, str(folder),
                                               options), options)
        used.update(group)
    return merged, [f for f in files if f not in used]


def _joined_panels(items: list[Loaded], folder: Path) -> list[Loaded]:
    """A W&B run exported from several panels of one folder, read as one run."""
    from lossdoctor.sources.wandb_export import FORMAT, join_panels

    runs = [item.run for item in items if item.run is not None]
    if sum(run.format == FORMAT for run in runs) < 2:
        return items
    joined = iter(join_panels(runs, "" if str(folder) == "." else str(folder)))
    out: list[Loaded] = []
    for item in items:
        if item.run is None or (run := next(joined)) is item.run:
            out.append(item)
        elif run is not None:  # the first part of a joined run
            out.append(Loaded(run.source, run=run))
    return out


def _load_dir(root: Path, options: Options) -> list[Loaded]:
    from lossdoctor.sources.tensorboard import run_subfolders

    results: list[Loaded] = []
    claimed: set[Path] = set()  # split subfolders read as part of their parent run
    for folder, files in _tensorboard_run_dirs(root):
        rel = folder.relative_to(root)
        run_name = str(rel) if str(rel) != "." else root.resolve().name
        if folder in claimed:
            continue
        if is_lossdoctor_run_dir(folder):
            # A live-doctor run folder: its event files and run.json are one run.
            read = partial(_read_lossdoctor_dir, folder, options)
            results += _named(_safely(str(folder), read, options), run_name)
            continue
        if is_mlflow_run_dir(folder):
            read = partial(_read_mlflow_dir, folder, options)
            # By name, not by id (a hash), and by experiment when the folder has several.
            name = mlflow_run_name(folder) if folder == root else mlflow_display_name(folder)
            results += _named(_safely(str(folder), read, options), name)
            continue
        has_events = any(_is_event_name(f.name) for f in files)
        splits = run_subfolders(folder)
        if has_events or splits:
            claimed.update(splits)
            results += _named(
                _safely(str(folder), partial(_read_file, folder, "tensorboard", options), options),
                run_name,
            )
        merged, files = _merged_downloads(root, folder, files, options)
        results += merged
        first = len(results)  # this folder's files
        for file in files:
            if _is_event_name(file.name) or file.suffix.lower() not in LOG_SUFFIXES:
                continue
            try:
                kind = _sniff(file)
            except OSError as exc:
                results.append(Loaded(str(file), error=InputError(str(file), _describe(exc))))
                continue
            if kind in (None, "tensorboard"):
                continue  # a README or config beside the logs: not ours to read
            file_name = str(file.relative_to(root))
            later, earlier = _checkpoint_states(file)
            if later:
                continue  # a later checkpoint's trainer_state.json holds this log and more
            loaded = _safely(str(file), partial(_read_file, file, kind, options), options)
            for item in loaded:
                if earlier and item.run is not None:
                    item.run.warnings.append(
                        f"read from the last checkpoint; the trainer_state.json of "
                        f"{', '.join(earlier)} (the start of this log) skipped")
            if kind in ("history", "jsonl"):
                # JSON beside the logs (a model's config.json, a tokenizer's settings,
                # HF's all_results.json) is not a log: skipped, as a README is.
                # So is one record of results (HF's eval_results.json): no curve.
                loaded = [x for x in loaded
                          if not isinstance(x.error, NotALogError | NoLossError)
                          and not (x.run is not None and _single_record(x.run))]
            if kind == "wandb":  # by the name W&B shows, in the folder of its run
                results += _wandb_named(loaded, file.parent.relative_to(root))
                continue
            results += _named(loaded, file_name)
        results[first:] = _joined_panels(results[first:], folder.relative_to(root))
    if not results:
        return [
            Loaded(
                str(root),
                error=InputError(
                    str(root),
                    "no training logs found (looked for TensorBoard event files, CSV and "
                    "JSON Lines logs)",
                ),
            )
        ]
    return results
