"""The output heads of a multi-output Keras model, as its logs name them: `fit` logs
each output's loss and metrics beside the summed `loss` (CSVLogger: `<output>_loss`,
`<output>_accuracy`, `val_<output>_loss`; the TensorBoard callback:
`train/epoch_<output>_loss`, `validation/epoch_<output>_loss`; the Keras Doctor's run
folder: `epoch/<output>_loss`, `epoch/val_<output>_loss`). The summed loss can
fall while one output learns nothing, so the chance rules read each output on its own
too."""

from __future__ import annotations

from lossdoctor.run import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Run, Series

PREFIX = "extra/"  # where the readers keep the series they give no role
SPLITS = (("train/epoch_", "train"), ("validation/epoch_", "val"), ("epoch/val_", "val"),
          ("epoch/", "train"), ("val_", "val"))
NOT_OUTPUTS = {"", "train", "val", "validation"}  # `epoch/train_loss` is the run's own
METRICS = (("_loss", "loss"), ("_accuracy", "accuracy"), ("_acc", "accuracy"))
ROLES = {("train", "loss"): TRAIN_LOSS, ("train", "accuracy"): TRAIN_ACC,
         ("val", "loss"): VAL_LOSS, ("val", "accuracy"): VAL_ACC}


def _parse(name: str) -> tuple[str, str, str] | None:
    """(split, output, metric) of a logged series name, None for other series."""
    split = "train"
    for prefix, which in SPLITS:
        if name.startswith(prefix):
            name, split = name[len(prefix):], which
            break
    else:
        if "/" in name:
            return None
    for suffix, metric in METRICS:
        if name.endswith(suffix) and name[:-len(suffix)] not in NOT_OUTPUTS:
            return split, name[:-len(suffix)], metric
    return None


def output_heads(run: Run) -> list[tuple[str, Run]]:
    """(output name, a run of that output's loss and accuracy series) for each output
    that logs a training loss and accuracy, when there are at least two (with one,
    the run's own curves are that output's)."""
    by_output: dict[str, dict[str, Series]] = {}
    for key, series in run.series.items():
        parsed = _parse(key[len(PREFIX):]) if key.startswith(PREFIX) else None
        if parsed is not None:
            split, output, metric = parsed
            by_output.setdefault(output, {}).setdefault(ROLES[split, metric], series)
    heads = [(name, Run(f"{run.name}:{name}", run.source, run.format, series,
                        meta={"output": name}))
             for name, series in by_output.items()
             if TRAIN_LOSS in series and TRAIN_ACC in series]
    return heads if len(heads) >= 2 else []
