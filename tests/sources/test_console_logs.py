"""Console output saved to a file: Keras `fit` progress (Keras 3 captured from a real
fit, Keras 2 as its users pasted it) and the Hugging Face Trainer's printed dicts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lossdoctor.diagnosis import diagnose
from lossdoctor.run import LR, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS
from lossdoctor.sources import load
from lossdoctor.sources.console import looks_like_console, read_console_log

FIT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras, numpy as np
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    keras.utils.set_random_seed(0)
    histories = {}
    for verbose in (1, 2):
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        out, sys.stdout = sys.stdout, open(sys.argv[1] + f"/fit-v{verbose}.log", "w")
        history = model.fit(x, y, validation_split=0.2, epochs=4, batch_size=64,
                            verbose=verbose)
        model.evaluate(x[:128], y[:128], verbose=verbose)  # output after the last epoch
        sys.stdout.close()
        sys.stdout = out
        histories[verbose] = history.history
    json.dump(histories, open(sys.argv[1] + "/histories.json", "w"))
""")


@pytest.fixture(scope="module")
def keras_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("keras")
    folder = tmp_path_factory.mktemp("console")
    subprocess.run([sys.executable, "-c", FIT, str(folder)], check=True, timeout=300,
                   capture_output=True)
    return folder


@pytest.mark.parametrize("verbose", [1, 2])
def test_keras_3_fit_output_matches_its_history(keras_output: Path, verbose: int) -> None:
    path = keras_output / f"fit-v{verbose}.log"
    if verbose == 1:  # the redraws a file keeps: carriage returns, backspaces, colours
        raw = path.read_bytes()
        assert b"\x08" in raw and b"\x1b[" in raw
    history = json.loads((keras_output / "histories.json").read_text())[str(verbose)]
    assert looks_like_console(path.read_bytes()[:65536])
    (item,) = load(path)
    run = item.run
    assert run is not None
    assert run.format == "keras-console"
    for role, key in ((TRAIN_LOSS, "loss"), (VAL_LOSS, "val_loss"),
                      (TRAIN_ACC, "accuracy"), (VAL_ACC, "val_accuracy")):
        assert run.series[role].steps.tolist() == [0, 1, 2, 3]
        # Keras prints 4 decimals.
        np.testing.assert_allclose(run.series[role].values, history[key], atol=6e-5)


# Keras 2 output as users paste it: `# ` before some lines, a redraw of epoch 3's bar
# kept as backspaces, `lr` in the logs (ReduceLROnPlateau), an `evaluate` after the
# last epoch, then a second fit (verbose=2) that ends in NaN.
KERAS_2 = Path(__file__).parent / "data" / "keras2-pasted.log"


def test_keras_2_output_pasted_with_two_fits(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    path.write_bytes(KERAS_2.read_bytes())
    first, second = read_console_log(path)
    assert first.series[TRAIN_LOSS].values.tolist() == [2.5478, 2.0245, 1.9275, 1.8579, 1.8,
                                                        1.74]
    # The `evaluate` line after epoch 6 is not epoch 6.
    assert first.series[VAL_LOSS].values[-1] == 2.07
    assert first.series[LR].values.tolist() == [0.001, 0.0005, 0.0005, 0.0005]
    assert second.series[VAL_LOSS].values[0] == 0.4494
    assert np.isnan(second.series[TRAIN_LOSS].values[1])
    assert "nan-loss" in {f.code for f in diagnose(second).findings}
    names = sorted(item.run.name for item in load(tmp_path) if item.run is not None)
    assert names == ["train.log#1", "train.log#2"]


TRAINER = """\
***** Running training *****
  Num examples = 2000
{'loss': 2.3051, 'grad_norm': 5.12, 'learning_rate': 4.8e-05, 'epoch': 0.25}
{'loss': 1.9921, 'grad_norm': 4.01, 'learning_rate': 4.5e-05, 'epoch': 0.5}
{'loss': 1.5012, 'grad_norm': 3.5, 'learning_rate': 4.2e-05, 'epoch': 0.75}
{'eval_loss': 1.6113, 'eval_runtime': 2.1, 'eval_samples_per_second': 95.2, 'epoch': 1.0}
{'loss': 1.2034, 'grad_norm': nan, 'learning_rate': 3.9e-05, 'epoch': 1.25}
{'train_runtime': 60.5, 'train_samples_per_second': 33.1, 'train_loss': 1.75, 'epoch': 1.25}
"""


def test_trainer_printed_records(tmp_path: Path) -> None:
    path = tmp_path / "nohup.out"
    path.write_text(TRAINER)
    assert looks_like_console(path.read_bytes())
    (run,) = read_console_log(path)
    assert run.format == "hf-trainer-console"
    assert run.series[TRAIN_LOSS].values.tolist() == [2.3051, 1.9921, 1.5012, 1.2034]
    assert run.series[VAL_LOSS].values.tolist() == [1.6113]
    assert np.isnan(run.series["extra/grad_norm"].values[-1])


def test_prose_about_epochs_is_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("Epoch 1/10\nThe model trained well; loss went down.\n"
                    "{'lr': 'cosine', 'epochs': 10}\n")
    assert not looks_like_console(path.read_bytes())
    (item,) = load(path)
    assert item.run is None and item.error is not None
    assert "not a training log" in item.error.problem
