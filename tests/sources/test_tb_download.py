"""The files TensorBoard's "download data" links save (one series of one run, as CSV
or JSON), produced here by TensorBoard's own scalars plugin from real event files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.diagnosis import diagnose
from lossdoctor.run import TRAIN_LOSS, VAL_LOSS
from lossdoctor.sources import Options, load

torch_tb = pytest.importorskip("torch.utils.tensorboard")
pytest.importorskip("tensorboard")

EPOCHS = 30


def train_curve(e: int) -> float:
    return 2.0 * math.exp(-e / 6) + 0.05


def val_curve(e: int) -> float:
    return train_curve(e) + 0.04 * max(0, e - 10)


def download(logdir: Path, run: str, tag: str, fmt: str) -> str:
    """What TensorBoard serves for the download link of (run, tag)."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.scalar.scalars_plugin import ScalarsPlugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = ScalarsPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    body, _ = plugin.scalars_impl(context.RequestContext(), tag, run, "", fmt)
    return body if fmt == "csv" else json.dumps(body)


@pytest.fixture(scope="module")
def keras_logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras-style log folder: `train/` and `validation/`, each with `epoch_loss`."""
    logdir = tmp_path_factory.mktemp("logs")
    for split, curve in (("train", train_curve), ("validation", val_curve)):
        writer = torch_tb.SummaryWriter(str(logdir / split))
        for e in range(EPOCHS):
            writer.add_scalar("epoch_loss", curve(e), e)
        writer.close()
    return logdir


def test_train_and_validation_downloads_are_one_run(tmp_path: Path, keras_logdir: Path) -> None:
    folder = tmp_path / "fit_20251129"
    folder.mkdir()
    for split in ("train", "validation"):
        (folder / f"run-{split}-tag-epoch_loss.csv").write_text(
            download(keras_logdir, split, "epoch_loss", "csv"))
    assert (folder / "run-train-tag-epoch_loss.csv").read_text().startswith("Wall time,Step,Value")
    (item,) = load(tmp_path)
    run = item.run
    assert run is not None, item.error
    assert run.name == "fit_20251129" and run.format == "tensorboard-download"
    np.testing.assert_allclose(run.series[TRAIN_LOSS].values,
                               [train_curve(e) for e in range(EPOCHS)], rtol=1e-6)
    np.testing.assert_allclose(run.series[VAL_LOSS].values,
                               [val_curve(e) for e in range(EPOCHS)], rtol=1e-6)
    assert diagnose(run).regime == "overfitting"

    (named,) = load(tmp_path, Options(val_loss="validation/epoch_loss"))
    assert named.run is not None and VAL_LOSS in named.run.series
    (missing,) = load(tmp_path, Options(val_loss="val/loss"))
    assert missing.error is not None and "no series named 'val/loss'" in missing.error.problem


def test_one_json_download_alone(tmp_path: Path, keras_logdir: Path) -> None:
    path = tmp_path / "run-validation-tag-epoch_loss.json"
    path.write_text(download(keras_logdir, "validation", "epoch_loss", "json"))
    (item,) = load(path)
    assert item.run is not None and item.run.format == "tensorboard-download"
    assert TRAIN_LOSS not in item.run.series
    assert item.run.series[VAL_LOSS].steps.tolist() == list(range(EPOCHS))


def test_a_renamed_download_is_named_by_its_file(tmp_path: Path, keras_logdir: Path) -> None:
    path = tmp_path / "val_loss.csv"
    path.write_text(download(keras_logdir, "validation", "epoch_loss", "csv"))
    (item,) = load(path)
    assert item.run is not None and VAL_LOSS in item.run.series


def test_a_group_with_a_file_that_is_not_a_download(tmp_path: Path, keras_logdir: Path) -> None:
    """Named like a download but holding a CSVLogger log: each file is read on its own."""
    (tmp_path / "run-train-tag-epoch_loss.csv").write_text(
        download(keras_logdir, "train", "epoch_loss", "csv"))
    (tmp_path / "run-validation-tag-epoch_loss.csv").write_text(
        "epoch,loss,val_loss\n" + "".join(f"{e},{train_curve(e)},{val_curve(e)}\n"
                                           for e in range(EPOCHS)))
    formats = sorted(item.run.format for item in load(tmp_path) if item.run is not None)
    assert formats == ["keras-csv", "tensorboard-download"]
